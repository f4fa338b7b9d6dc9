""" "Why relayed?": one sentence and structured fields, from both reports and what was seen.

Two entry points share one sentence machinery:

* :func:`explain` predicts, for two :class:`~natkit.ice.report.TraversalReport`
  values (or natkit classification reports, or report bytes), how two peers
  would connect, without connecting: direct, through a mapped port, by
  birthday probing, over a relay, or not at all, and why;
* :func:`explain_session` says why a live session is where it is, from its
  ladder (both peers' reports) and what its checks saw (:class:`Observed`):
  direct checks that all failed, a direct path that was lost, a birthday
  run and its numbers, the relay in use, and, for a relay that stays, what
  is re-checked and when next (relay stickiness after sleep or a network
  change is the complaint to answer: tailscale#12548, netbird#2507).

The sentence is for people; the fields of :class:`Explanation` (and
:meth:`Explanation.to_dict`, JSON-ready) are for programs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from natkit.errors import LocalProtocolError
from natkit.ice.ladder import (
    Action,
    BirthdayPlan,
    Decision,
    Expect,
    Ladder,
    LadderConfig,
    Sides,
    Step,
    percent,
    plan_ladder,
)
from natkit.ice.report import TraversalReport, decode_report
from natkit.probe.report import ClassificationReport
from natkit.turn.config import TurnTransport

__all__ = [
    "BirthdayStatus",
    "Explanation",
    "Observed",
    "Outcome",
    "decision_to_dict",
    "explain",
    "explain_session",
]


class Outcome(Enum):
    """How the peers connect (predicted, or in a session: now)."""

    DIRECT = "direct"
    PORT_MAPPING = "port_mapping"
    BIRTHDAY = "birthday"
    RELAY = "relay"
    NONE = "none"


class BirthdayStatus(Enum):
    """Where a session's birthday attempt is."""

    RUNNING = "running"
    FOUND = "found"
    EXHAUSTED = "exhausted"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Observed:
    """What a live session saw (all optional: a fresh session saw nothing)."""

    #: Direct (unrelayed) pairs, and whether every one of them failed.
    direct_pairs: int = 0
    direct_failed: bool = False
    #: Why the last direct path was lost (``None``: none was).
    direct_lost: str | None = None
    #: The path in use: relayed (with its server and transport) or not.
    relayed: bool = False
    relay: str | None = None
    transport: TurnTransport | None = None
    #: The birthday attempt, its numbers and probes sent.
    birthday: BirthdayStatus | None = None
    birthday_plan: BirthdayPlan | None = None
    birthday_probes: int = 0
    #: Direct re-checks while relayed: how many pairs, seconds since the
    #: last and until the next (relay stickiness).
    rechecked: int = 0
    last_recheck: float | None = None
    next_recheck: float | None = None


@dataclass(frozen=True, slots=True)
class Explanation:
    """One sentence and the fields behind it."""

    sentence: str
    outcome: Outcome
    relayed: bool
    ladder: Ladder
    relay: str | None = None
    transport: TurnTransport | None = None
    observed: Observed | None = None
    #: Relayed while a direct path is still being tried (direct checks or
    #: birthday probing running): the path may yet be upgraded.
    pending: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values (``reason`` is the sentence)."""
        observed = self.observed
        out: dict[str, Any] = {
            "reason": self.sentence,
            "outcome": self.outcome.value,
            "relayed": self.relayed,
            "relay": self.relay,
            "transport": None if self.transport is None else self.transport.value,
            "ladder": [decision_to_dict(d) for d in self.ladder.decisions],
            "pending": self.pending,
        }
        if observed is not None:
            out["direct_failed"] = observed.direct_failed
            out["birthday"] = None if observed.birthday is None else observed.birthday.value
            out["birthday_probes"] = observed.birthday_probes
            out["rechecked"] = observed.rechecked
            out["next_recheck_s"] = _round(observed.next_recheck)
            out["last_recheck_s"] = _round(observed.last_recheck)
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def decision_to_dict(decision: Decision) -> dict[str, Any]:
    """One ladder step as JSON values (an ``escalation`` line, ``ladder`` items)."""
    out: dict[str, Any] = {
        "step": decision.step.value,
        "action": decision.action.value,
        "expect": decision.expect.value,
        "reason": decision.reason,
    }
    plan = decision.birthday
    if plan is not None:
        out["birthday"] = {
            "mode": plan.mode.value,
            "hard": plan.hard.value,
            "ports": plan.ports,
            "port_range": str(plan.port_range),
            "probes": plan.probes,
            "rate": plan.rate,
            "probability": round(plan.probability, 6),
            "expected_s": _round(plan.expected_seconds),
        }
    if decision.mapped is not None:
        out["mapped"] = str(decision.mapped)
    if decision.relay is not None:
        out["relay"] = decision.relay
        out["transport"] = None if decision.transport is None else decision.transport.value
    return out


ReportLike = TraversalReport | ClassificationReport | bytes | None


def _as_report(report: ReportLike) -> TraversalReport | None:
    if report is None or isinstance(report, TraversalReport):
        return report
    if isinstance(report, ClassificationReport):
        return TraversalReport.from_reports(report)
    if isinstance(report, bytes | bytearray | memoryview):
        return decode_report(bytes(report))  # raises ReportDecodeError on junk
    raise LocalProtocolError(f"explain() takes traversal reports, not {type(report).__name__}")


def explain(
    report_a: ReportLike,
    report_b: ReportLike,
    *,
    config: LadderConfig | None = None,
    sides: Sides | None = None,
) -> Explanation:
    """Predict how the peers behind ``report_a`` and ``report_b`` connect, and why.

    Each report may be a :class:`TraversalReport`, its bytes, a
    :class:`~natkit.probe.report.ClassificationReport` (what ``natkit
    classify`` found), or ``None`` (nothing known). Raises
    :class:`~natkit.ice.report.ReportDecodeError` for bytes that are no
    report.
    """
    ladder = plan_ladder(
        _as_report(report_a), _as_report(report_b), config or LadderConfig(), sides or Sides()
    )
    return _explanation(ladder, None)


def explain_session(ladder: Ladder, observed: Observed) -> Explanation:
    """Why a live session is where it is (see the module doc)."""
    return _explanation(ladder, observed)


# -- the sentence -----------------------------------------------------------------------


def _explanation(ladder: Ladder, observed: Observed | None) -> Explanation:
    direct = ladder.decision(Step.DIRECT)
    mapping = ladder.decision(Step.PORT_MAPPING)
    birthday = ladder.decision(Step.BIRTHDAY)
    relay = ladder.decision(Step.RELAY)
    if observed is not None:
        return _live(
            ladder, observed, direct=direct, mapping=mapping, birthday=birthday, relay=relay
        )
    if direct.expect is Expect.WORKS:
        sentence = f"direct: {direct.reason}"
        return Explanation(sentence, Outcome.DIRECT, False, ladder)
    if mapping.expect is Expect.WORKS:
        sentence = f"{direct.reason}, but {mapping.reason}: direct through the mapped port"
        return Explanation(sentence, Outcome.PORT_MAPPING, False, ladder)
    if direct.expect is Expect.UNKNOWN:
        clauses = [f"direct may work ({direct.reason})"]
    else:
        clauses = _why_not_direct(direct, mapping)
    relay_works = relay.expect is Expect.WORKS
    if birthday.action is Action.TRY:
        plan = birthday.birthday
        assert plan is not None
        clauses.append(f"birthday probing: {birthday.reason}")
        tail = (
            f"relayed{_over(relay)} until it finds a path" if relay_works else "no relay meanwhile"
        )
        sentence = _join(clauses) + f"; {tail}"
        return _result(sentence, Outcome.BIRTHDAY, relay, ladder, relayed=relay_works)
    if direct.expect is Expect.FAILS and not _blocked(direct):
        clauses.append(_birthday_skip(birthday))
    if relay_works:
        outcome = Outcome.RELAY if direct.expect is Expect.FAILS else Outcome.DIRECT
        sentence = _join(clauses) + f"; {relay.reason}"
        if outcome is Outcome.DIRECT:
            sentence = _join(clauses) + f"; {relay.reason} until then"
        return _result(sentence, outcome, relay, ladder, relayed=outcome is Outcome.RELAY)
    if direct.expect is Expect.UNKNOWN:
        return Explanation(_join(clauses), Outcome.DIRECT, False, ladder)
    sentence = _join(clauses) + f"; {relay.reason}: no path"
    return Explanation(sentence, Outcome.NONE, False, ladder)


def _live(
    ladder: Ladder,
    observed: Observed,
    *,
    direct: Decision,
    mapping: Decision,
    birthday: Decision,
    relay: Decision,
) -> Explanation:
    if not observed.relayed:
        if observed.birthday is BirthdayStatus.FOUND:
            sentence = "direct: birthday probing found a path"
            return Explanation(sentence, Outcome.BIRTHDAY, False, ladder, observed=observed)
        sentence = "direct path confirmed by connectivity checks"
        return Explanation(sentence, Outcome.DIRECT, False, ladder, observed=observed)
    clauses: list[str] = []
    pending = observed.birthday is BirthdayStatus.RUNNING
    if observed.direct_lost is not None:
        clauses.append(f"the direct path was lost ({observed.direct_lost})")
    elif direct.expect is Expect.FAILS and mapping.expect is Expect.WORKS:
        # Plain punching cannot work, but a mapped port can: its checks decide.
        clauses.append(mapping.reason)
        if observed.direct_failed:
            clauses.append(f"no direct pair answered ({observed.direct_pairs} checked)")
        else:
            clauses.append("checks through the mapped port still running")
            pending = True
    elif direct.expect is Expect.FAILS:
        clauses += _why_not_direct(direct, mapping)
    elif observed.direct_failed:
        clauses.append(f"no direct pair answered ({observed.direct_pairs} checked)")
    else:
        clauses.append("direct checks still running")
        pending = True
    needed = direct.expect is Expect.FAILS and mapping.expect is not Expect.WORKS
    if not _blocked(direct) and observed.direct_lost is None and (needed or observed.birthday):
        clauses.append(_birthday_live(birthday, observed))
    sentence = _join([c for c in clauses if c])
    transport = observed.transport or relay.transport
    if transport is not None:
        sentence += f"; relayed over {transport.value.upper()}"
    else:
        sentence += "; relayed"
    if observed.next_recheck is not None:
        sentence += (
            f"; {observed.rechecked} direct {_plural(observed.rechecked, 'pair')} re-checked"
            f"{_ago(observed.last_recheck)}, next in {observed.next_recheck:.0f} s"
        )
    return Explanation(
        sentence,
        Outcome.RELAY,
        True,
        ladder,
        relay=observed.relay or relay.relay,
        transport=transport,
        observed=observed,
        pending=pending,
    )


def _why_not_direct(direct: Decision, mapping: Decision) -> list[str]:
    if _blocked(direct):
        return [direct.reason]
    return [direct.reason, mapping.reason]


def _blocked(direct: Decision) -> bool:
    return direct.reason.startswith("UDP blocked")


def _birthday_skip(birthday: Decision) -> str:
    reason = birthday.reason
    if birthday.birthday is not None:
        return f"birthday probing not worth it ({reason})"
    return f"no birthday probing ({reason})"


def _birthday_live(birthday: Decision, observed: Observed) -> str:
    plan = observed.birthday_plan or birthday.birthday
    status = observed.birthday
    if status is None:
        if birthday.action is Action.TRY:
            return "birthday probing not started yet"
        return _birthday_skip(birthday)
    assert plan is not None
    odds = f"expected success {percent(plan.probability)}"
    if status is BirthdayStatus.RUNNING:
        return f"birthday probing under way ({plan.probes:,} probes, {odds})"
    if status is BirthdayStatus.EXHAUSTED:
        return f"birthday budget of {plan.probes:,} probes spent ({odds})"
    if status is BirthdayStatus.FAILED:
        return "birthday probing could not run"
    return "birthday probing found a path"


def _over(relay: Decision) -> str:
    if relay.expect is Expect.WORKS and relay.transport is not None:
        return f" over {relay.transport.value.upper()}"
    return ""


def _result(
    sentence: str, outcome: Outcome, relay: Decision, ladder: Ladder, *, relayed: bool
) -> Explanation:
    return Explanation(
        sentence,
        outcome,
        relayed,
        ladder,
        relay=relay.relay if relayed else None,
        transport=relay.transport if relayed else None,
    )


def _join(clauses: list[str]) -> str:
    return ", ".join(clauses)


def _plural(count: int, word: str) -> str:
    return word if count == 1 else f"{word}s"


def _ago(seconds: float | None) -> str:
    return "" if seconds is None else f" {seconds:.0f} s ago"
