"""``--expect KEY=VALUE,...``: turn a report into a CI verdict.

Keys are the scalar top-level keys of the JSON report; values compare
case-insensitively with their JSON spelling (``true``, ``null``, ``EIM``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from natkit.errors import LocalProtocolError


class ExpectOutcome(IntEnum):
    """Also the exit status of ``natkit classify --expect``."""

    MET = 0
    NOT_MET = 1
    UNDETERMINED = 2


#: Values meaning "natkit could not tell": a mismatch on them is not a failure
#: of the network but of the measurement.
UNDETERMINED_VALUES = frozenset({"unknown", "null"})


@dataclass(frozen=True, slots=True)
class Expectation:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class ExpectationResult:
    expectation: Expectation
    actual: str
    outcome: ExpectOutcome


def json_spelling(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_expectations(texts: Iterable[str], allowed: Iterable[str]) -> list[Expectation]:
    """Parse ``KEY=VALUE[,KEY=VALUE...]`` items; unknown keys are a usage error."""
    allowed_keys = set(allowed)
    expectations = []
    for text in texts:
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key or not value:
                raise LocalProtocolError(f"--expect wants KEY=VALUE, got {item!r}")
            if key not in allowed_keys:
                raise LocalProtocolError(
                    f"--expect: unknown key {key!r} (known: {', '.join(sorted(allowed_keys))})"
                )
            expectations.append(Expectation(key, value))
    return expectations


def check_expectations(
    document: Mapping[str, Any], expectations: Iterable[Expectation]
) -> tuple[ExpectOutcome, list[ExpectationResult]]:
    """Compare; the overall outcome is the worst single one (2 beats 1 beats 0)."""
    results = []
    for expectation in expectations:
        actual = json_spelling(document.get(expectation.key))
        if actual.lower() == expectation.value.lower():
            outcome = ExpectOutcome.MET
        elif actual.lower() in UNDETERMINED_VALUES or document.get("status") == "unreachable":
            outcome = ExpectOutcome.UNDETERMINED
        else:
            outcome = ExpectOutcome.NOT_MET
        results.append(ExpectationResult(expectation, actual, outcome))
    worst = max((r.outcome for r in results), default=ExpectOutcome.MET)
    return worst, results
