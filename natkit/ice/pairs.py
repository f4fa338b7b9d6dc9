"""Candidate pairs: their RFC 8445 states, the check in flight, measured RTT.

One :class:`Pair` per (local base, destination) of a session, after the
pruning of RFC 8445 §6.1.2.4: a server-reflexive (or mapped, static)
local candidate is replaced by its base, so it never makes a pair of its
own; of two pairs with the same base and destination the one with the
higher-priority local candidate stays (:func:`pairing_candidates`).

States follow RFC 8445 §6.1.2.6: *frozen*, *waiting*, *in progress*,
*succeeded* (the pair is valid), *failed*. natkit keeps checking pairs
after the first round (upgrades, keepalives), so a check can be in flight
on a succeeded or failed pair too: ``purpose`` says why; the state only
changes when that check ends.

A check is up to ``limit`` transmissions, each with its own transaction
ID (``tids``), so an answer gives the RTT of exactly the attempt it
answers. Pairs are plain slotted objects (a session with 16 pairs costs a
few kilobytes); their fields are the session's to change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from natkit.endpoint import Endpoint
from natkit.ice.candidates import (
    Base,
    CandidateKind,
    LocalCandidate,
    pair_priority,
    peer_reflexive_priority,
)
from natkit.ice.signals import SignalCandidate
from natkit.stun.transaction import smooth_rtt


class PairState(Enum):
    """RFC 8445 §6.1.2.6 candidate pair states."""

    FROZEN = "frozen"
    WAITING = "waiting"
    IN_PROGRESS = "in-progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class CheckPurpose(Enum):
    """Why a check is in flight."""

    #: The first check of a pair (ordinary or triggered, RFC 8445 §6.1.4, §7.3.1.4).
    CHECK = "check"
    #: A periodic re-check of an unselected pair (upgrade, reconnection).
    RECHECK = "recheck"
    #: Another sample of a pair that beat the selected one (hysteresis).
    CONFIRM = "confirm"
    #: The controlling side's USE-CANDIDATE check (RFC 8445 §8.1.1).
    NOMINATE = "nominate"
    #: Consent / keepalive on the selected pair (RFC 7675, RFC 8445 §11); not paced.
    KEEPALIVE = "keepalive"


class Pair:
    """One candidate pair of a session (see the module doc)."""

    __slots__ = (
        "answers",
        "base",
        "checks",
        "confirmations",
        "destination",
        "fail_at",
        "foundation",
        "held_until",
        "last_rtt",
        "limit",
        "local",
        "mapped",
        "next_send",
        "nominate",
        "priority",
        "purpose",
        "queued",
        "recheck_at",
        "recheck_interval",
        "remote",
        "removed",
        "rttvar",
        "srtt",
        "started",
        "state",
        "tids",
        "transmissions",
    )

    def __init__(
        self,
        local: LocalCandidate,
        remote: SignalCandidate,
        destination: Endpoint,
        state: PairState,
        controlling: bool,
    ) -> None:
        self.local = local
        self.remote = remote
        self.base: Base = local.base
        self.destination = destination
        self.foundation = f"{local.foundation}:{remote.foundation}"
        self.state = state
        self.priority = 0
        self.set_role(controlling)
        # The check in flight (``purpose`` None: none).
        self.purpose: CheckPurpose | None = None
        self.nominate = False
        self.transmissions = 0
        self.limit = 0
        self.started = 0.0
        self.next_send: float | None = None
        self.fail_at: float | None = None
        self.tids: list[bytes] = []
        #: Waiting in the session's queue for a paced transmission.
        self.queued = False
        # What the checks found.
        self.mapped: Endpoint | None = None
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.last_rtt: float | None = None
        self.checks = 0
        self.answers = 0
        # Scheduling.
        self.recheck_at: float | None = None
        self.recheck_interval = 0.0
        self.confirmations = 0
        self.held_until: float | None = None
        self.removed = False

    def set_role(self, controlling: bool) -> None:
        """Recompute the pair priority for our role (RFC 8445 §6.1.2.3)."""
        ours, theirs = self.local.priority, self.remote.priority
        self.priority = pair_priority(ours, theirs) if controlling else pair_priority(theirs, ours)

    @property
    def check_priority(self) -> int:
        """The PRIORITY attribute of checks on this pair (RFC 8445 §7.1.1)."""
        return peer_reflexive_priority(self.local.priority)

    @property
    def in_flight(self) -> bool:
        return self.purpose is not None

    @property
    def valid(self) -> bool:
        return self.state is PairState.SUCCEEDED

    @property
    def relayed(self) -> bool:
        return self.local.kind is CandidateKind.RELAY or self.remote.kind is CandidateKind.RELAY

    def begin(self, purpose: CheckPurpose, limit: int, *, nominate: bool = False) -> None:
        """Start a check (the session transmits or queues it)."""
        self.purpose = purpose
        self.limit = limit
        self.nominate = nominate
        self.transmissions = 0
        self.next_send = None
        self.fail_at = None

    def end(self) -> list[bytes]:
        """Forget the check in flight; returns its transaction IDs."""
        tids, self.tids = self.tids, []
        self.purpose = None
        self.nominate = False
        self.next_send = None
        self.fail_at = None
        self.queued = False
        return tids

    def record_rtt(self, sample: float) -> None:
        self.srtt, self.rttvar = smooth_rtt(self.srtt, self.rttvar, sample)
        self.last_rtt = sample
        self.answers += 1


def pairing_candidates(candidates: Iterable[LocalCandidate]) -> list[LocalCandidate]:
    """The local candidates that make pairs (RFC 8445 §6.1.2.4): one per base,
    remote family and NAT64 prefix, the one with the highest priority (a
    host candidate over the server-reflexive one that shares its base)."""
    best: dict[tuple[object, ...], LocalCandidate] = {}
    for candidate in candidates:
        key = (candidate.base, candidate.pairs_with, candidate.candidate.prefix)
        kept = best.get(key)
        if kept is None or candidate.priority > kept.priority:
            best[key] = candidate
    return list(best.values())


@dataclass(frozen=True, slots=True)
class PairStatus:
    """One row of a session's pair table (``ConnectAgent.pairs``)."""

    #: Our candidate as the peer sees it (after a success), else the local candidate.
    local: Endpoint
    remote: Endpoint
    local_kind: CandidateKind
    remote_kind: CandidateKind
    #: Socket index of the base (``None``: a relay).
    socket: int | None
    relay: str | None
    state: PairState
    priority: int
    #: Smoothed RTT (``None``: never answered).
    rtt: float | None
    last_rtt: float | None
    checks: int
    answers: int
    selected: bool
    nominated: bool


@dataclass(frozen=True, slots=True)
class CheckSent:
    """One request the agent sent (``ConnectAgent(log_checks=True)``), for
    tests and diagnostics: the pacing, the keepalive schedule."""

    at: float
    peer: object
    remote: Endpoint
    purpose: CheckPurpose
    #: Counted against the pacing (``ta``); keepalives are not.
    paced: bool
