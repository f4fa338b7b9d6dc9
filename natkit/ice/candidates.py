"""Candidates as the connect core sees them: kinds, priorities, foundations, bases.

The candidate types come from natkit's gatherer; this module is the one
place the connect package imports them from, so the gatherer can move
without touching the rest of ``natkit.ice``.

* **Priority** (RFC 8445 §5.1.2.1) is computed by the gatherer's function
  (``natkit.gather.plan.candidate_priority``) from the gatherer's type
  preferences, extended with peer-reflexive (110, §5.1.2.2) and relay (0).
  A candidate that already carries a priority keeps it.
* **Foundation** (§5.1.1.3): equal for candidates of the same kind, base
  address, server and transport; :class:`Foundations` hands out short
  stable strings for those keys.
* **Base**: the local socket a candidate's traffic leaves from and arrives
  at: a socket index of the agent, or a :class:`Relay` (part 2: a TURN
  allocation). Checks and selection only ever compare bases; sending
  through one is the agent's business (:mod:`natkit.ice.agent`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from natkit.endpoint import Endpoint, Family
from natkit.gather.candidates import (
    Candidate,
    CandidateKind,
    CandidateReport,
    CandidateTransport,
)
from natkit.gather.plan import TYPE_PREFERENCE as GATHERER_TYPE_PREFERENCE
from natkit.gather.plan import candidate_priority
from natkit.nat64 import synthesize, translation_problem
from natkit.sansio import Datagram

__all__ = [
    "COMPONENT",
    "TYPE_PREFERENCE",
    "Base",
    "Candidate",
    "CandidateKind",
    "CandidateReport",
    "CandidateTransport",
    "Foundations",
    "LocalCandidate",
    "Relay",
    "destination_for",
    "local_preference_of",
    "pair_priority",
    "path_kind",
    "peer_reflexive_priority",
    "priority_of",
]

#: natkit checks one component (a tunnel has one UDP flow).
COMPONENT = 1
#: RFC 8445 §5.1.2.2 type preferences: the gatherer's, plus the two kinds
#: only the connect core makes (prflx 110 as the RFC recommends; relay 0).
TYPE_PREFERENCE: dict[CandidateKind, int] = {
    **GATHERER_TYPE_PREFERENCE,
    CandidateKind.PEER_REFLEXIVE: 110,
    CandidateKind.RELAY: 0,
}
#: Local preference when nothing better is known (RFC 8445 §5.1.2.1: 65535
#: for a single-homed agent).
DEFAULT_LOCAL_PREFERENCE = 65535


@runtime_checkable
class Relay(Protocol):
    """A relayed base (part 2: a TURN allocation) as the connect core uses it.

    The core hands every datagram for a relayed pair to :meth:`wrap`, which
    returns the datagram to send toward the relay server (a Send indication
    or ChannelData, from one of the agent's sockets), or ``None`` when it
    cannot carry it yet (no permission): the core counts that as lost, the
    check's retransmissions try again. What the relay receives from a peer
    is fed back with ``ConnectAgent.receive_relayed(relay, data, peer, now)``.
    Relays compare by identity.
    """

    @property
    def name(self) -> str:
        """How events and logs name the relay (e.g. ``turn:192.0.2.5:3478``)."""
        ...

    def wrap(self, data: bytes, peer: Endpoint, now: float) -> Datagram | None:
        """The datagram carrying ``data`` to ``peer`` through the relay."""
        ...


#: Where a local candidate's traffic leaves from: a socket index or a relay.
Base = int | Relay


def local_preference_of(priority: int) -> int:
    """The local-preference field of an RFC 8445 §5.1.2.1 priority."""
    return (priority >> 8) & 0xFFFF


def priority_of(kind: CandidateKind, local_preference: int = DEFAULT_LOCAL_PREFERENCE) -> int:
    """RFC 8445 §5.1.2.1 priority of a ``kind`` candidate."""
    return candidate_priority(TYPE_PREFERENCE[kind], local_preference, COMPONENT)


def peer_reflexive_priority(local_priority: int) -> int:
    """The PRIORITY a check carries (RFC 8445 §7.1.1): what a peer-reflexive
    candidate learnt from it would have, with the base candidate's local
    preference."""
    return priority_of(CandidateKind.PEER_REFLEXIVE, local_preference_of(local_priority))


def pair_priority(controlling: int, controlled: int) -> int:
    """RFC 8445 §6.1.2.3: 2^32·min(G, D) + 2·max(G, D) + (G > D ? 1 : 0)."""
    low, high = (controlling, controlled) if controlling < controlled else (controlled, controlling)
    return (low << 32) + 2 * high + (1 if controlling > controlled else 0)


#: Most to least direct, for :func:`path_kind`.
_INDIRECTNESS = (
    CandidateKind.HOST,
    CandidateKind.STATIC,
    CandidateKind.MAPPED,
    CandidateKind.SRFLX,
    CandidateKind.NAT64,
    CandidateKind.PEER_REFLEXIVE,
    CandidateKind.RELAY,
)


def path_kind(local: CandidateKind, remote: CandidateKind) -> CandidateKind:
    """How a path reaches the peer, in one word: the less direct of the two
    candidates' kinds (``relay`` if either side is relayed; ``host`` only
    when both are host candidates, e.g. two peers on one LAN)."""
    return max(local, remote, key=_INDIRECTNESS.index)


class Foundations:
    """Stable foundation strings for RFC 8445 §5.1.1.3 keys."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: dict[tuple[object, ...], str] = {}

    def of(self, candidate: Candidate, base: Base) -> str:
        """Same kind, base address, server (``source``) and transport: same foundation."""
        base_key: object = candidate.base.address if candidate.base is not None else base
        key = (candidate.kind, base_key, candidate.source, candidate.transport)
        found = self._known.get(key)
        if found is None:
            found = self._known[key] = str(len(self._known) + 1)
        return found


@dataclass(frozen=True, slots=True, eq=False)
class LocalCandidate:
    """A local candidate the agent holds: the gatherer's candidate, its base,
    and the derived priority and foundation."""

    candidate: Candidate
    base: Base
    priority: int
    foundation: str
    #: Announced to peers (``False`` for a birthday socket's private base,
    #: which only its one known pair uses).
    announced: bool = True

    @property
    def kind(self) -> CandidateKind:
        return self.candidate.kind

    @property
    def address(self) -> Endpoint:
        return self.candidate.address

    @property
    def base_endpoint(self) -> Endpoint | None:
        return self.candidate.base

    @property
    def pairs_with(self) -> Family:
        """The family of remote candidates it pairs with (a NAT64 candidate is
        an IPv4 address in front of an IPv6 base: it pairs with IPv4)."""
        return self.candidate.address.family


def destination_for(local: LocalCandidate, remote: Endpoint) -> Endpoint | None:
    """Where checks from ``local``'s base to ``remote`` go: ``remote`` itself,
    or for a NAT64 candidate its synthesis in the NAT64 prefix (RFC 6052);
    ``None`` when the families do not match or the NAT64 cannot translate
    the address (RFC 6052 §3.1: no private addresses under 64:ff9b::/96)."""
    if remote.family is not local.pairs_with:
        return None
    prefix = local.candidate.prefix
    if local.kind is CandidateKind.NAT64 and prefix is not None:
        if not isinstance(remote.address, ipaddress.IPv4Address):
            return None
        if translation_problem(prefix, remote.address) is not None:
            return None
        return Endpoint(synthesize(prefix, remote.address), remote.port)
    return remote
