"""What the connect core tells its driver: one frozen dataclass per event.

``peer`` is always the opaque ``PeerId`` the driver gave ``add_peer``.
Times are seconds; addresses are :class:`~natkit.endpoint.Endpoint`.

The events a consumer acts on:

* :class:`PathSelected`: use this path for the peer (first path, a better
  one, or a replacement after a loss);
* :class:`PathLost`: the path stopped working (or was rejected); another
  may follow at once;
* :class:`PeerUnreachable`: no path to the peer right now (the core keeps
  retrying with backoff);
* :class:`SignalReady`: send this message to the peer through signalling.

The rest inform (a ``--pairs`` table, logs, part 2's reports).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from natkit.endpoint import Endpoint, Family
from natkit.ice.candidates import CandidateKind
from natkit.ice.ladder import Decision
from natkit.ice.signals import BirthdayRole, SignalMessage
from natkit.turn.config import TurnTransport
from natkit.turn.events import TurnFailure


class Role(Enum):
    """RFC 8445 §6.1.1 ICE role of this agent in one session."""

    CONTROLLING = "controlling"
    CONTROLLED = "controlled"


@dataclass(frozen=True, slots=True)
class Path:
    """One working path to a peer."""

    #: Our candidate address as the peer sees it (the XOR-MAPPED-ADDRESS of
    #: our last successful check on this path).
    local: Endpoint
    #: Where we send: the peer's candidate (or its NAT64 synthesis).
    remote: Endpoint
    #: How the path reaches the peer (:func:`~natkit.ice.candidates.path_kind`).
    kind: CandidateKind
    local_kind: CandidateKind
    remote_kind: CandidateKind
    #: The agent's socket the path leaves from (``None``: through a relay).
    socket: int | None
    #: The relay's name for a relayed path.
    relay: str | None = None


@dataclass(frozen=True, slots=True)
class PathSelected:
    """A path to ``peer`` is confirmed and chosen: send through it.

    On the controlling side: the check nominating it (USE-CANDIDATE) was
    answered. On the controlled side: the peer nominated it and our own
    check on it was answered. Both sides therefore report the same pair.
    """

    peer: Any
    local: Endpoint
    remote: Endpoint
    kind: CandidateKind
    #: Smoothed RTT of the path (RFC 6298 SRTT of its checks), seconds.
    rtt: float
    #: The path this one replaces (``None``: none was selected just before).
    previous: Path | None
    local_kind: CandidateKind
    remote_kind: CandidateKind
    socket: int | None
    relay: str | None = None
    #: Why this path, in one sentence (for a relayed one: why relayed, e.g.
    #: "both sides APDM with random ports, no port mapping on either gateway").
    reason: str = ""

    @property
    def path(self) -> Path:
        return Path(
            self.local,
            self.remote,
            self.kind,
            self.local_kind,
            self.remote_kind,
            self.socket,
            self.relay,
        )


class LossReason(Enum):
    """Why a selected path stopped being used."""

    #: Keepalives went unanswered for the whole loss window.
    KEEPALIVE_TIMEOUT = "keepalive_timeout"
    #: The consumer said the path does not work (``path_unusable``).
    REJECTED = "rejected"
    #: The peer restarted (a new generation): its old paths are void.
    PEER_RESTARTED = "peer_restarted"
    #: The local candidate (socket, relay) under the path was removed.
    LOCAL_CANDIDATE_REMOVED = "local_candidate_removed"


@dataclass(frozen=True, slots=True)
class PathLost:
    """The selected path to ``peer`` is gone; the core looks for the next."""

    peer: Any
    local: Endpoint
    remote: Endpoint
    kind: CandidateKind
    reason: LossReason
    #: One sentence for people.
    detail: str
    socket: int | None
    relay: str | None = None


class UnreachableReason(Enum):
    """Why there is no path to a peer."""

    #: The peer never answered through signalling.
    NO_SIGNAL = "no_signal"
    #: No local candidate pairs with any of the peer's (families differ).
    NO_COMPATIBLE_PAIRS = "no_compatible_pairs"
    #: Every pair was checked and none was answered: no direct path.
    CHECKS_FAILED = "checks_failed"


@dataclass(frozen=True, slots=True)
class PeerUnreachable:
    """No path to ``peer`` now; checks are retried with backoff (up to 5 min)."""

    peer: Any
    reason: UnreachableReason
    #: One sentence for people, e.g. "no direct path: 4 pairs checked, none answered".
    detail: str
    #: Candidate pairs checked.
    pairs: int
    #: Seconds until the next retry.
    retry_in: float
    #: Always ``False``: no direct path is claimed (a relay, part 2, may still serve).
    direct: bool = False


@dataclass(frozen=True, slots=True)
class SignalReady:
    """Send ``message`` to ``peer`` through signalling (sealed by the driver)."""

    peer: Any
    message: SignalMessage


@dataclass(frozen=True, slots=True)
class PairChecked:
    """One check on one pair ended (only with ``ConnectConfig.pair_events``)."""

    peer: Any
    local: Endpoint
    remote: Endpoint
    local_kind: CandidateKind
    remote_kind: CandidateKind
    socket: int | None
    succeeded: bool
    #: RTT of the answered attempt (``None`` when the check failed).
    rtt: float | None


@dataclass(frozen=True, slots=True)
class PeerRestarted:
    """The peer announced a new generation: an ICE restart of the session."""

    peer: Any
    generation: int


@dataclass(frozen=True, slots=True)
class RoleChanged:
    """A role conflict (RFC 8445 §7.3.1.1) switched our role toward ``peer``."""

    peer: Any
    role: Role


@dataclass(frozen=True, slots=True)
class PeerReportReceived:
    """The peer's classification report arrived or changed (opaque bytes)."""

    peer: Any
    report: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class RelayAllocated:
    """The node has a relayed candidate on ``server`` (shared by every peer)."""

    #: The server's name (``turn:...``/``turns:...``, as configured).
    server: str
    #: The relayed transport address (the relay candidate).
    relayed: Endpoint
    #: How the node reaches the server (the relayed leg is UDP either way).
    transport: TurnTransport
    #: Round trip to the server when it was picked (``None``: not measured).
    rtt: float | None
    #: Our address as the server saw it (``None``: not given).
    mapped: Endpoint | None = None


@dataclass(frozen=True, slots=True)
class RelayFailed:
    """No allocation on ``server`` (``lost``: the one we had is gone); the
    manager tries again in ``retry_in`` seconds (with other servers first)."""

    server: str
    failure: TurnFailure
    #: The server's error code (401, 486, 508...), ``None`` for timeouts etc.
    code: int | None
    #: The server's reason phrase or natkit's description.
    detail: str
    lost: bool
    retry_in: float


@dataclass(frozen=True, slots=True)
class RelayStreamIdle:
    """The driver may close the TCP/TLS connection of stream slot ``socket``
    (its allocation ended); a later datagram on the slot opens a new one."""

    socket: int
    server: str


@dataclass(frozen=True, slots=True)
class RelayedDataReceived:
    """A datagram that is not a connectivity check arrived through the relay
    (a tunnel's traffic on a relayed path): ``remote`` is the peer's endpoint
    as the relay saw it (the ``remote`` of that peer's relayed ``Path``)."""

    relay: str
    remote: Endpoint
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class EscalationDecided:
    """One step of ``peer``'s escalation ladder was decided (or decided
    again: the reports changed). The decision is a value: logged as is."""

    peer: Any
    decision: Decision


@dataclass(frozen=True, slots=True)
class BirthdaySocketsWanted:
    """Bind ``count`` UDP sockets of ``family`` (any port) and give them to
    ``ConnectAgent.birthday_sockets(peer, attempt, [(index, endpoint)...], now)``."""

    peer: Any
    attempt: int
    count: int
    family: Family


@dataclass(frozen=True, slots=True)
class BirthdaySocketsReleased:
    """Close these sockets (indices the driver gave); the agent is done with them."""

    peer: Any
    attempt: int
    sockets: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BirthdayStarted:
    """This side's part of a birthday attempt began."""

    peer: Any
    attempt: int
    role: BirthdayRole
    #: Where it opens mappings to (opener) or which address it probes.
    target: Endpoint
    ports: int
    probes: int
    rate: float


@dataclass(frozen=True, slots=True)
class BirthdayFinished:
    """This side's part of an attempt ended (``found``: a pair was found)."""

    peer: Any
    attempt: int
    found: bool
    probes: int
    #: The peer's endpoint of the pair found.
    remote: Endpoint | None
    detail: str


ConnectEvent = (
    PathSelected
    | PathLost
    | PeerUnreachable
    | SignalReady
    | PairChecked
    | PeerRestarted
    | RoleChanged
    | PeerReportReceived
    | RelayAllocated
    | RelayFailed
    | RelayStreamIdle
    | RelayedDataReceived
    | EscalationDecided
    | BirthdaySocketsWanted
    | BirthdaySocketsReleased
    | BirthdayStarted
    | BirthdayFinished
)
