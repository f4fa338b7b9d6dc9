"""How ``natkit connect`` prints issue 12's events: relays, the ladder, birthday, reports.

Same contract as :mod:`natkit.cli.connect_render` (schema ``natkit.connect``
v1, keys only added); the README lists every key. Lines:

* ``relay``: an allocation made (``state: "allocated"``), failed or lost,
  with the server (``relay``) and why;
* ``escalation``: one step of a peer's ladder decided (``step``, ``action``,
  ``expect``, ``reason`` and the step's numbers);
* ``birthday``: a birthday attempt started or finished;
* ``report`` / ``peer_report``: this node's traversal report as sent, and
  the peer's as received;
* ``why_relayed``: "why relayed?" for a peer on a relayed path (the
  sentence as ``reason``, and the fields of
  :meth:`~natkit.ice.explain.Explanation.to_dict`).
"""

from __future__ import annotations

from typing import Any

from natkit.aio.connect import LocalReportChanged
from natkit.ice.events import (
    BirthdayFinished,
    BirthdayStarted,
    EscalationDecided,
    PeerReportReceived,
    RelayAllocated,
    RelayFailed,
)
from natkit.ice.explain import Explanation, decision_to_dict
from natkit.ice.ladder import describe_nat
from natkit.ice.report import ReportDecodeError, TraversalReport, decode_report
from natkit.ice.report_json import report_to_dict

__all__ = ["relay_event_to_dict", "relay_event_to_text", "why_to_dict", "why_to_text"]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _text(value: object | None) -> str | None:
    return None if value is None else str(value)


def relay_event_to_dict(event: object) -> dict[str, Any] | None:
    """The JSON object of one of this module's events (``None``: not one)."""
    match event:
        case RelayAllocated():
            return {
                "event": "relay",
                "state": "allocated",
                "relay": event.server,
                "relayed": str(event.relayed),
                "transport": event.transport.value,
                "rtt_ms": _ms(event.rtt),
                "mapped": _text(event.mapped),
            }
        case RelayFailed():
            return {
                "event": "relay",
                "state": "lost" if event.lost else "failed",
                "relay": event.server,
                "failure": event.failure.value,
                "code": event.code,
                "detail": event.detail,
                "retry_in_s": round(event.retry_in, 3),
            }
        case EscalationDecided():
            return {
                "event": "escalation",
                "peer": str(event.peer),
                **decision_to_dict(event.decision),
            }
        case BirthdayStarted():
            return {
                "event": "birthday",
                "peer": str(event.peer),
                "state": "started",
                "attempt": event.attempt,
                "role": event.role.name.lower(),
                "target": str(event.target),
                "ports": event.ports,
                "probes": event.probes,
                "rate": event.rate,
            }
        case BirthdayFinished():
            return {
                "event": "birthday",
                "peer": str(event.peer),
                "state": "finished",
                "attempt": event.attempt,
                "found": event.found,
                "probes": event.probes,
                "remote": _text(event.remote),
                "detail": event.detail,
            }
        case LocalReportChanged():
            return {
                "event": "report",
                "report": report_to_dict(event.report),
                "classified": event.classification is not None,
            }
        case PeerReportReceived():
            report, error = _decoded(event.report)
            return {
                "event": "peer_report",
                "peer": str(event.peer),
                "report": None if report is None else report_to_dict(report),
                "error": error,
            }
        case _:
            return None


def _decoded(data: bytes) -> tuple[TraversalReport | None, str | None]:
    if not data:
        return None, None
    try:
        return decode_report(data), None
    except ReportDecodeError as exc:
        return None, str(exc)


def _report_text(report: TraversalReport) -> str:
    parts = [describe_nat(report)]
    if report.udp_blocked:
        parts.append("UDP blocked")
    if report.mapped is not None:
        parts.append(f"mapped {report.mapped}")
    if report.port_range is not None:
        parts.append(f"ports {report.port_range}")
    if report.relays:
        parts.append("relays " + ", ".join(r.name for r in report.relays))
    return "; ".join(parts)


_EXPECT_WORDS = {
    "works": "expected to work",
    "fails": "expected to fail",
    "unknown": "outcome unknown",
}


def relay_event_to_text(event: object) -> tuple[str, bool] | None:
    """One readable line (and whether it goes to stdout); ``None``: not shown."""
    match event:
        case RelayAllocated():
            rtt = "" if event.rtt is None else f" (rtt {event.rtt * 1000:.1f} ms)"
            return (
                f"relay {event.server}: allocated {event.relayed} over"
                f" {event.transport.value.upper()}{rtt}",
                False,
            )
        case RelayFailed():
            code = "" if event.code is None else f" {event.code}"
            what = "lost" if event.lost else "failed"
            return (
                f"relay {event.server}: {what}: {event.failure.value}{code} ({event.detail}),"
                f" retrying in {event.retry_in:.0f} s",
                False,
            )
        case EscalationDecided():
            decision = event.decision
            expect = _EXPECT_WORDS[decision.expect.value]
            return (
                f"ladder for {event.peer}: {decision.step.value} {decision.action.value}"
                f" ({expect}): {decision.reason}",
                False,
            )
        case BirthdayStarted():
            return (
                f"birthday with {event.peer}: attempt {event.attempt} as {event.role.name.lower()},"
                f" {event.ports} ports, {event.probes} probes at {event.rate:g}/s"
                f" toward {event.target}",
                False,
            )
        case BirthdayFinished():
            result = f"found {event.remote}" if event.found else "no hit"
            return (
                f"birthday with {event.peer}: attempt {event.attempt} {result}"
                f" after {event.probes} probes ({event.detail})",
                False,
            )
        case LocalReportChanged():
            return f"report: {_report_text(event.report)}", False
        case PeerReportReceived():
            report, error = _decoded(event.report)
            if report is None:
                return f"{event.peer} report: {error or 'none'}", False
            return f"{event.peer} report: {_report_text(report)}", False
        case _:
            return None


def why_to_dict(peer: object, explanation: Explanation) -> dict[str, Any]:
    """The ``why_relayed`` line of ``peer``."""
    return {"event": "why_relayed", "peer": str(peer), **explanation.to_dict()}


def why_to_text(peer: object, explanation: Explanation) -> tuple[str, bool]:
    return f"why relayed ({peer}): {explanation.sentence}", True
