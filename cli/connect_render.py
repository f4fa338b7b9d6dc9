"""How ``natkit connect`` prints: one JSON object per event, or readable lines.

The JSON lines are a public contract (schema ``natkit.connect``, version 1;
keys are only ever added, a change of meaning bumps the version). Every
line has ``schema``, ``schema_version``, ``time`` (UTC, ISO 8601) and
``event``. The three path events carry the same keys, ``null`` where one
does not apply: ``peer``, ``kind``, ``local``, ``remote``, ``rtt_ms``,
``reason``, ``detail``, ``previous``. The README lists every event and key.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from natkit.aio.connect import (
    Connection,
    LocalCandidatesChanged,
    NodeEvent,
    StunFailure,
    StunServerAnswered,
    StunServerFailed,
)
from natkit.cli.connect_render_relay import relay_event_to_dict, relay_event_to_text
from natkit.cli.output import utc_now
from natkit.endpoint import Endpoint
from natkit.ice import (
    PairStatus,
    Path,
    PathLost,
    PathSelected,
    PeerRestarted,
    PeerUnreachable,
    RoleChanged,
)
from natkit.ice.candidates import Candidate
from natkit.signal.channel import DownReason, StateChanged

#: A ``stun_server`` failure in words (human output).
_STUN_FAILURES = {
    StunFailure.UNRESOLVED: "name not resolved",
    StunFailure.NO_ROUTE: "not asked",
    StunFailure.TIMED_OUT: "no answer",
    StunFailure.CUT_OFF: "no answer",
    StunFailure.ERROR_RESPONSE: "error response",
    StunFailure.NO_ADDRESS: "answer without an address",
    StunFailure.UNREACHABLE: "unreachable",
}

SCHEMA = "natkit.connect"
SCHEMA_VERSION = 1


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _text(endpoint: Endpoint | None) -> str | None:
    return None if endpoint is None else str(endpoint)


def path_to_dict(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    return {
        "kind": path.kind.value,
        "local": str(path.local),
        "remote": str(path.remote),
        "local_kind": path.local_kind.value,
        "remote_kind": path.remote_kind.value,
    }


def candidate_to_dict(candidate: Candidate) -> dict[str, Any]:
    return {
        "kind": candidate.kind.value,
        "address": str(candidate.address),
        "base": _text(candidate.base),
        "source": candidate.source,
        "priority": candidate.priority,
    }


def pair_to_dict(row: PairStatus) -> dict[str, Any]:
    return {
        "local": str(row.local),
        "remote": str(row.remote),
        "local_kind": row.local_kind.value,
        "remote_kind": row.remote_kind.value,
        "state": row.state.value,
        "rtt_ms": _ms(row.rtt),
        "last_rtt_ms": _ms(row.last_rtt),
        "checks": row.checks,
        "answers": row.answers,
        "selected": row.selected,
        "nominated": row.nominated,
        "relay": row.relay,
    }


def _path_event(name: str, peer: object, **values: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "event": name,
        "peer": str(peer),
        "kind": None,
        "local": None,
        "remote": None,
        "rtt_ms": None,
        "reason": None,
        "detail": None,
        "previous": None,
    }
    document.update(values)
    return document


def _base(socket: int | None, sockets: Sequence[Endpoint]) -> str | None:
    return str(sockets[socket]) if socket is not None and socket < len(sockets) else None


def event_to_dict(event: NodeEvent, sockets: Sequence[Endpoint] = ()) -> dict[str, Any] | None:
    """The JSON object of one event (without schema and time); ``None`` for
    events the command does not print. ``sockets``: the node's bound
    sockets, to name the one a path leaves from (``base``)."""
    match event:
        case PathSelected():
            return _path_event(
                "path_selected",
                event.peer,
                kind=event.kind.value,
                local=str(event.local),
                remote=str(event.remote),
                rtt_ms=_ms(event.rtt),
                previous=path_to_dict(event.previous),
                local_kind=event.local_kind.value,
                remote_kind=event.remote_kind.value,
                base=_base(event.socket, sockets),
                relay=event.relay,
                direct=event.relay is None,
                reason=event.reason or None,
            )
        case PathLost():
            return _path_event(
                "path_lost",
                event.peer,
                kind=event.kind.value,
                local=str(event.local),
                remote=str(event.remote),
                reason=event.reason.value,
                detail=event.detail,
                base=_base(event.socket, sockets),
                relay=event.relay,
            )
        case PeerUnreachable():
            return _path_event(
                "peer_unreachable",
                event.peer,
                reason=event.reason.value,
                detail=event.detail,
                pairs=event.pairs,
                retry_in_s=round(event.retry_in, 3),
                direct=event.direct,
            )
        case StateChanged():
            return {
                "event": "signalling",
                "state": event.state.value,
                "previous_state": event.previous.value,
                "reason": None if event.reason is None else event.reason.value,
                "detail": event.detail or None,
                "retry_in_s": None if event.retry_in is None else round(event.retry_in, 3),
            }
        case LocalCandidatesChanged():
            return {
                "event": "candidates",
                "added": [candidate_to_dict(c) for c in event.added],
                "removed": [candidate_to_dict(c) for c in event.removed],
            }
        case StunServerFailed():
            return {
                "event": "stun_server",
                "server": event.server,
                "state": "failed",
                "reason": event.reason.value,
                "detail": event.detail or None,
                "address": _text(event.address),
                "local": _text(event.local),
            }
        case StunServerAnswered():
            return {
                "event": "stun_server",
                "server": event.server,
                "state": "answered",
                "reason": None,
                "detail": None,
                "address": str(event.address),
                "local": _text(event.local),
            }
        case PeerRestarted():
            return {"event": "peer_restarted", "peer": str(event.peer)}
        case RoleChanged():
            return {"event": "role_changed", "peer": str(event.peer), "role": event.role.value}
        case _:
            return relay_event_to_dict(event)


def event_to_text(event: NodeEvent) -> tuple[str, bool] | None:
    """One readable line, and whether it is a path change (stdout) rather
    than a note (stderr); ``None`` for events not shown."""
    match event:
        case PathSelected():
            via = f" via {event.relay}" if event.relay is not None else ""
            text = (
                f"path to {event.peer}: {event.kind.value} {event.local} -> {event.remote}{via}"
                f" (rtt {event.rtt * 1000:.1f} ms)"
            )
            if event.previous is not None:
                text += f", was {event.previous.kind.value} {event.previous.remote}"
            return text, True
        case PathLost():
            return (
                f"path to {event.peer} lost: {event.kind.value} {event.local} -> {event.remote}"
                f" ({event.reason.value}: {event.detail})",
                True,
            )
        case PeerUnreachable():
            soon = event.retry_in < 0.5
            retry = "retrying now" if soon else f"retrying in {event.retry_in:.0f} s"
            return f"{event.peer} unreachable: {event.detail} ({retry})", True
        case StateChanged():
            text = f"signalling {event.state.value}"
            if event.reason is not None:
                text += f": {event.reason.value}"
                if event.detail:
                    text += f" ({event.detail})"
            if event.retry_in is not None:
                text += f", next attempt in {event.retry_in:.1f} s"
            if event.reason is DownReason.REPLACED:
                # The rendezvous keeps one connection per key: the two back off
                # from each other, but the user should stop one of them.
                text += "; another node connected with this key: is natkit running twice?"
            return text, False
        case LocalCandidatesChanged():
            parts = [f"+{c.kind.value} {c.address}" for c in event.added]
            parts += [f"-{c.kind.value} {c.address}" for c in event.removed]
            return "candidates: " + ", ".join(parts), False
        case StunServerFailed():
            at = "" if event.address is None else f" at {event.address}"
            detail = f" ({event.detail})" if event.detail else ""
            what = _STUN_FAILURES[event.reason]
            return (
                f"stun server {event.server}{at}: {what}{detail}; no server-reflexive"
                " candidate from it (the node goes on)",
                False,
            )
        case StunServerAnswered():
            return f"stun server {event.server} at {event.address}: answering again", False
        case PeerRestarted():
            return f"{event.peer} restarted (ICE restart)", False
        case RoleChanged():
            return f"role toward {event.peer}: {event.role.value} (role conflict)", False
        case _:
            return relay_event_to_text(event)


def pairs_table(peer: object, rows: Sequence[PairStatus]) -> str:
    """The readable pair table of one peer."""
    lines = [f"pairs with {peer}:"]
    cells = [
        (
            "*" if row.selected else ("+" if row.nominated else " "),
            f"{row.local_kind.value} {row.local}",
            f"{row.remote_kind.value} {row.remote}",
            row.state.value,
            "" if row.rtt is None else f"{row.rtt * 1000:.1f} ms",
            f"{row.answers}/{row.checks}",
        )
        for row in rows
    ]
    if not cells:
        return lines[0] + " none yet"
    widths = [max(len(c[i]) for c in cells) for i in range(6)]
    for cell in cells:
        lines.append(
            "  " + "  ".join(v.ljust(w) for v, w in zip(cell, widths, strict=True)).rstrip()
        )
    return "\n".join(lines)


def stats_to_dict(connection: Connection) -> dict[str, Any]:
    """The ``stats`` line: every counter of the agent, signalling and node."""
    from dataclasses import asdict  # noqa: PLC0415

    return {
        "event": "stats",
        "checks": asdict(connection.core_counters),
        "traffic": asdict(connection.stats),
        "signal": asdict(connection.signal_counters),
        "node": asdict(connection.counters),
        "socket_errors": connection.runner.socket_errors,
        "gather_rounds": connection.gathering.rounds,
        "relay": relay_stats(connection),
    }


def relay_stats(connection: Connection) -> dict[str, Any]:
    """The ``stats`` line's ``relay`` object: streams, birthday sockets, data."""
    ladder = connection.ladder
    return {
        "stream_connections": ladder.streams.connections,
        "stream_dropped": ladder.streams.dropped,
        "tls_retries": ladder.streams.tls_retries,
        "birthday_sockets": ladder.birthday.bound,
        "birthday_socket_errors": ladder.birthday.errors,
        "data_unrouted": ladder.routes.unrouted,
        "data_callback_errors": ladder.data_errors,
        "notes": ladder.notes + ladder.report.notes,
    }


def json_line(document: dict[str, Any]) -> str:
    line = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "time": utc_now(), **document}
    return json.dumps(line, separators=(",", ":"))
