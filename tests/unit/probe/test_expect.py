"""``--expect`` semantics: 0 met, 1 not met, 2 undetermined."""

from __future__ import annotations

import pytest

from natkit.errors import LocalProtocolError
from natkit.probe.expect import ExpectOutcome, check_expectations, parse_expectations

KEYS = ("mapping", "filtering", "hairpin", "udp_blocked", "status")
DOC = {
    "status": "ok",
    "mapping": "EIM",
    "filtering": "unknown",
    "hairpin": False,
    "udp_blocked": False,
}


def _check(text: str) -> ExpectOutcome:
    return check_expectations(DOC, parse_expectations([text], KEYS))[0]


def test_met_is_case_insensitive_and_bools_are_json_spelled() -> None:
    assert _check("mapping=eim,hairpin=false,udp_blocked=FALSE") is ExpectOutcome.MET


def test_a_known_mismatch_is_not_met() -> None:
    assert _check("mapping=APDM") is ExpectOutcome.NOT_MET


def test_an_unknown_value_is_undetermined_and_wins() -> None:
    assert _check("mapping=APDM,filtering=EIF") is ExpectOutcome.UNDETERMINED


@pytest.mark.parametrize("text", ["mapping", "=EIM", "colour=blue", "mapping="])
def test_bad_expectations_are_usage_errors(text: str) -> None:
    with pytest.raises(LocalProtocolError):
        parse_expectations([text], KEYS)
