"""What a TURN client reports (past tense: each already happened).

Failures carry a :class:`TurnFailure`, the server's error code when it gave
one, and its reason phrase, so a caller decides on fields, never on text.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import NatkitError
from natkit.stun.constants import ErrorCode


class TurnFailure(Enum):
    """Why an allocation, a permission or a channel could not be had or kept."""

    #: 401 to a request that carried credentials: wrong user or password,
    #: expired REST API credentials, or a server wanting credentials we lack.
    UNAUTHORIZED = "unauthorized"
    #: 403: e.g. a peer address the server will not relay to.
    FORBIDDEN = "forbidden"
    #: 437: the server has another allocation on this 5-tuple, or none any more.
    ALLOCATION_MISMATCH = "allocation-mismatch"
    #: 441: credentials differ from those the allocation was made with.
    WRONG_CREDENTIALS = "wrong-credentials"
    #: 440 / 443: address family not supported, or the peer's does not match.
    ADDRESS_FAMILY = "address-family"
    #: 442: the server does not relay this transport.
    UNSUPPORTED_TRANSPORT = "unsupported-transport"
    #: 486: this user holds as many allocations as the server allows.
    QUOTA_REACHED = "quota-reached"
    #: 508: the server is out of relay ports or capacity.
    INSUFFICIENT_CAPACITY = "insufficient-capacity"
    #: 500, still there after the retries allowed.
    SERVER_ERROR = "server-error"
    #: 300: the server redirects to ``alternate``.
    TRY_ALTERNATE = "try-alternate"
    #: 438 again and again: the server never accepts a nonce.
    STALE_NONCE = "stale-nonce"
    #: Any other error response (400, 420, ...).
    REJECTED = "rejected"
    #: No answer within the transaction timeout (RFC 8489 §6.2).
    TIMEOUT = "timeout"
    #: ICMP errors say nothing listens at the server's address.
    SERVER_UNREACHABLE = "server-unreachable"
    #: The TCP/TLS connection closed or could not be made.
    CONNECTION_LOST = "connection-lost"
    #: The server's answer broke the protocol (e.g. a success without
    #: XOR-RELAYED-ADDRESS), or the stream lost its framing.
    PROTOCOL_ERROR = "protocol-error"

    @property
    def retryable(self) -> bool:
        """Whether trying again later (with backoff) may succeed without new
        configuration; ``False`` for credentials, policy and protocol faults."""
        return self in _RETRYABLE


_RETRYABLE = frozenset(
    {
        TurnFailure.ALLOCATION_MISMATCH,
        TurnFailure.QUOTA_REACHED,
        TurnFailure.INSUFFICIENT_CAPACITY,
        TurnFailure.SERVER_ERROR,
        TurnFailure.TIMEOUT,
        TurnFailure.SERVER_UNREACHABLE,
        TurnFailure.CONNECTION_LOST,
        TurnFailure.STALE_NONCE,
    }
)

#: Error codes (RFC 8489 §14.8, RFC 8656 §19) with a failure of their own.
_BY_CODE: dict[int, TurnFailure] = {
    ErrorCode.TRY_ALTERNATE: TurnFailure.TRY_ALTERNATE,
    ErrorCode.UNAUTHENTICATED: TurnFailure.UNAUTHORIZED,
    ErrorCode.FORBIDDEN: TurnFailure.FORBIDDEN,
    ErrorCode.ALLOCATION_MISMATCH: TurnFailure.ALLOCATION_MISMATCH,
    ErrorCode.STALE_NONCE: TurnFailure.STALE_NONCE,
    ErrorCode.ADDRESS_FAMILY_NOT_SUPPORTED: TurnFailure.ADDRESS_FAMILY,
    ErrorCode.WRONG_CREDENTIALS: TurnFailure.WRONG_CREDENTIALS,
    ErrorCode.UNSUPPORTED_TRANSPORT_PROTOCOL: TurnFailure.UNSUPPORTED_TRANSPORT,
    ErrorCode.PEER_ADDRESS_FAMILY_MISMATCH: TurnFailure.ADDRESS_FAMILY,
    ErrorCode.ALLOCATION_QUOTA_REACHED: TurnFailure.QUOTA_REACHED,
    ErrorCode.SERVER_ERROR: TurnFailure.SERVER_ERROR,
    ErrorCode.INSUFFICIENT_CAPACITY: TurnFailure.INSUFFICIENT_CAPACITY,
}


def failure_for_code(code: int) -> TurnFailure:
    return _BY_CODE.get(code, TurnFailure.REJECTED)


@dataclass(frozen=True, slots=True)
class Outcome:
    """Why something failed: the kind, and the server's own words if any."""

    failure: TurnFailure
    #: The ERROR-CODE the server sent (``None``: no error response, e.g. a timeout).
    code: int | None = None
    #: The server's reason phrase, or natkit's description.
    reason: str = ""
    #: ALTERNATE-SERVER of a 300 (Try Alternate) answer.
    alternate: Endpoint | None = None

    def __str__(self) -> str:
        code = f" {self.code}" if self.code is not None else ""
        reason = f": {self.reason}" if self.reason else ""
        return f"{self.failure.value}{code}{reason}"


class TurnError(NatkitError):
    """Raised by drivers (:mod:`natkit.aio.turn`) when an allocation fails or is lost."""

    def __init__(self, outcome: Outcome, server: Endpoint | None = None) -> None:
        where = f" ({server})" if server is not None else ""
        super().__init__(f"TURN{where}: {outcome}")
        self.outcome = outcome
        self.server = server

    @property
    def failure(self) -> TurnFailure:
        return self.outcome.failure


@dataclass(frozen=True, slots=True)
class AllocationCreated:
    """The server made an allocation: peers can reach us at ``relayed``."""

    #: XOR-RELAYED-ADDRESS: the relay candidate's address.
    relayed: Endpoint
    #: XOR-MAPPED-ADDRESS: our address as the server saw it (the relay
    #: candidate's related address, RFC 8839 §5.1); ``None`` if absent.
    mapped: Endpoint | None
    #: Seconds granted.
    lifetime: int
    #: Whether the success response carried valid MESSAGE-INTEGRITY.
    authenticated: bool


@dataclass(frozen=True, slots=True)
class AllocationRefreshed:
    """A Refresh succeeded: the allocation now lives ``lifetime`` more seconds."""

    lifetime: int


@dataclass(frozen=True, slots=True)
class AllocationFailed:
    """No allocation was made (terminal)."""

    outcome: Outcome


@dataclass(frozen=True, slots=True)
class AllocationLost:
    """An allocation that existed is gone or unreachable (terminal)."""

    relayed: Endpoint
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Deallocated:
    """``close()`` finished (terminal)."""

    #: The server confirmed the deletion (or had none to delete); ``False``
    #: when it did not answer in time and the allocation will expire instead.
    confirmed: bool


@dataclass(frozen=True, slots=True)
class PermissionCreated:
    """The server relays datagrams from ``peer`` (any port) now (RFC 8656 §9)."""

    peer: IPAddress


@dataclass(frozen=True, slots=True)
class PermissionFailed:
    """CreatePermission for ``peer`` was refused; datagrams held for it were dropped."""

    peer: IPAddress
    outcome: Outcome
    #: How many held datagrams were dropped.
    dropped: int


@dataclass(frozen=True, slots=True)
class ChannelBound:
    """Datagrams to and from ``peer`` travel as ChannelData on ``channel`` now."""

    peer: Endpoint
    channel: int


@dataclass(frozen=True, slots=True)
class ChannelBindFailed:
    """ChannelBind was refused; ``peer``'s datagrams keep using Send/Data indications."""

    peer: Endpoint
    channel: int
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class DataReceived:
    """A datagram from ``peer`` arrived through the relay."""

    peer: Endpoint
    data: bytes
    #: The channel it came on; ``None`` for a Data indication.
    channel: int | None

    def __repr__(self) -> str:
        return f"DataReceived({self.peer}, <{len(self.data)} bytes>, channel={self.channel})"


@dataclass(frozen=True, slots=True)
class PingCompleted:
    """An explicit ``ping()`` ended."""

    #: Seconds from request to answer; ``None`` when no answer came (or a
    #: retransmission made the round trip ambiguous, RFC 6298's Karn rule).
    rtt: float | None


TurnEvent = (
    AllocationCreated
    | AllocationRefreshed
    | AllocationFailed
    | AllocationLost
    | Deallocated
    | PermissionCreated
    | PermissionFailed
    | ChannelBound
    | ChannelBindFailed
    | DataReceived
    | PingCompleted
)
