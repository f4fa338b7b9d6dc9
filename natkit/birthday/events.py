"""What a birthday prober reports: one terminal event per run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from natkit.birthday.wire import Kind
from natkit.endpoint import Endpoint


class BirthdayDropReason(Enum):
    """Why a received datagram was ignored (counted, never raised)."""

    #: Not a well-formed probe packet (length, magic, version, fields).
    MALFORMED = "malformed"
    #: Well-formed, but the tag does not verify under our key.
    UNAUTHENTICATED = "unauthenticated"
    #: Authentic, but for another session.
    WRONG_SESSION = "wrong session"
    #: Authentic, but sent by our own side (reflected back at us).
    REFLECTED = "reflected"
    #: From an address other than the peer's.
    WRONG_SOURCE = "wrong source"
    #: An ACK for no probe we sent, or arriving on another socket or path.
    UNMATCHED_ACK = "unmatched ack"
    #: Arrived after the run had ended.
    LATE = "late"


class ExhaustReason(Enum):
    """Why a run ended without a hit."""

    #: Every probe of the budget was sent, and the last answers did not come.
    BUDGET_SPENT = "budget spent"
    #: The plan ran out first (the hard side's openers, or a short spray).
    SCHEDULE_ENDED = "schedule ended"


@dataclass(frozen=True, slots=True)
class ProberStats:
    """Counters of one run."""

    probes_sent: int = 0
    opens_sent: int = 0
    acks_sent: int = 0
    received: int = 0
    dropped: Mapping[BirthdayDropReason, int] = field(default_factory=dict)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


@dataclass(frozen=True, slots=True)
class WinningPair:
    """The path that worked, seen from this side."""

    #: Index of the local socket (as given to the prober).
    socket: int
    #: That socket's bound address.
    local: Endpoint
    #: The peer as seen from here: its NAT's mapped endpoint.
    remote: Endpoint


@dataclass(frozen=True, slots=True)
class PairFound:
    """An authenticated packet from the peer arrived: the search is over.

    ``via`` is :attr:`Kind.PROBE` when the peer's probe reached us (we
    answered it with ACKs), :attr:`Kind.ACK` when the peer answered ours.
    Either proves both directions: a probe only gets in through a mapping
    our own NAT made toward that very remote endpoint.
    """

    pair: WinningPair
    via: Kind
    at: float
    stats: ProberStats


@dataclass(frozen=True, slots=True)
class SearchExhausted:
    """The run ended without a hit; nothing more will be sent."""

    reason: ExhaustReason
    at: float
    stats: ProberStats


BirthdayEvent = PairFound | SearchExhausted
