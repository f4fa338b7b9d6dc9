"""What a TURN client is told: the server, how to reach it, and its timing.

Defaults follow RFC 8656: a 600 s allocation refreshed a minute before it
expires (§7, §8), permissions refreshed before their 300 s run out (§9),
channel bindings before their 600 s (§12), and RFC 8489's retransmission
over UDP (§6.2.1) or a single transmission with a 39.5 s timeout over TCP
and TLS (§6.2.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from natkit.endpoint import Endpoint, Family
from natkit.errors import LocalProtocolError
from natkit.stun.transaction import RetransmissionPolicy
from natkit.turn.credentials import Credentials

#: RFC 8656 §9: a permission lives 300 s unless refreshed.
PERMISSION_LIFETIME = 300.0
#: RFC 8656 §12: a channel binding lives 600 s unless refreshed.
CHANNEL_LIFETIME = 600.0
#: RFC 8656 §7.2: the lifetime a server grants by default.
DEFAULT_LIFETIME = 600
#: RFC 8489 §6.2.2: Ti, the transaction timeout over reliable transports.
STREAM_TRANSACTION_TIMEOUT = 39.5


class TurnTransport(Enum):
    """How the client reaches the server (RFC 8656 §3.1; the relay is UDP either way)."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"

    @property
    def reliable(self) -> bool:
        """A stream: no retransmissions, ChannelData padded (RFC 8656 §12.5)."""
        return self is not TurnTransport.UDP


@dataclass(frozen=True, slots=True)
class TurnConfig:
    """One allocation on one server (attribute docstrings give units)."""

    #: The server's transport address (already resolved).
    server: Endpoint
    #: Long-term or REST API credentials; ``None`` for a server without auth.
    credentials: Credentials | None = None
    transport: TurnTransport = TurnTransport.UDP
    #: The driver's socket index the server is reached through (a UDP
    #: socket, or the stream the driver keeps for TCP/TLS).
    socket: int = 0
    #: The LIFETIME asked for in Allocate and Refresh (seconds; the server decides).
    lifetime: int = DEFAULT_LIFETIME
    #: Refresh this long before expiry (at most half the granted lifetime).
    refresh_margin: float = 60.0
    #: Refresh this many seconds after each grant instead (tests and labs
    #: that want to see refreshes happen); ``None``: by ``refresh_margin``.
    refresh_after: float | None = None
    #: Re-send CreatePermission this often (RFC 8656 §9: before 300 s).
    permission_refresh: float = 240.0
    #: Re-send ChannelBind this often (RFC 8656 §12: before 600 s).
    channel_refresh: float = 480.0
    #: After this many idle seconds toward the server, send a Binding request:
    #: keeps a NAT's mapping to the server open and checks the server is
    #: alive (RFC 8656 §5; RFC 8445 §11's 15 s). ``None``: never.
    keepalive: float | None = 15.0
    #: Bind a channel to a peer on the first datagram sent to it (ChannelData
    #: costs 4 bytes where a Send indication costs 36 or more).
    auto_channel: bool = True
    #: Retransmission over UDP (RFC 8489 §6.2.1).
    policy: RetransmissionPolicy = field(default_factory=RetransmissionPolicy)
    #: The single transmission's timeout over TCP and TLS.
    stream_timeout: float = STREAM_TRANSACTION_TIMEOUT
    #: How long deallocation (Refresh with LIFETIME 0) may take before the
    #: client gives up on a confirmation.
    close_timeout: float = 3.0
    #: 438 (Stale Nonce) answers accepted in a row for one request.
    max_stale_nonce: int = 3
    #: 500 (Server Error) answers retried for one request, with backoff.
    max_server_errors: int = 2
    #: First backoff after a 500; doubles with each further one.
    retry_backoff: float = 1.0
    #: Datagrams held per peer address while its permission is being made.
    pending_limit: int = 64
    #: After a peer's permission is refused, datagrams to it are dropped (not
    #: re-requested) for this many seconds: no request per datagram.
    refusal_hold: float = 30.0
    #: ICMP errors about datagrams to the server, with no answer from it in
    #: between, that declare it unreachable.
    icmp_strikes: int = 3
    #: REQUESTED-ADDRESS-FAMILY (RFC 8656 §7.1); ``None``: the server's default (IPv4).
    family: Family | None = None
    #: SOFTWARE in Allocate requests.
    software: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.permission_refresh < PERMISSION_LIFETIME:
            raise LocalProtocolError(
                f"permission_refresh must be in (0, {PERMISSION_LIFETIME:g}) s (RFC 8656 §9)"
            )
        if not 0 < self.channel_refresh < CHANNEL_LIFETIME:
            raise LocalProtocolError(
                f"channel_refresh must be in (0, {CHANNEL_LIFETIME:g}) s (RFC 8656 §12)"
            )
        if self.lifetime < 1 or self.refresh_margin < 0:
            raise LocalProtocolError("lifetime must be positive and refresh_margin not negative")
        if self.refresh_after is not None and self.refresh_after <= 0:
            raise LocalProtocolError("refresh_after must be positive")
        if self.keepalive is not None and self.keepalive <= 0:
            raise LocalProtocolError("keepalive must be positive (or None)")
        if min(self.stream_timeout, self.close_timeout, self.retry_backoff, self.refusal_hold) <= 0:
            raise LocalProtocolError("timeouts and backoff must be positive")
        if min(self.max_stale_nonce, self.max_server_errors, self.pending_limit) < 0:
            raise LocalProtocolError("retry limits cannot be negative")
        if self.icmp_strikes < 1:
            raise LocalProtocolError("icmp_strikes must be at least 1")

    def request_policy(self) -> RetransmissionPolicy:
        """Retransmission for ordinary requests on this transport."""
        if self.transport.reliable:
            return RetransmissionPolicy(rto=self.stream_timeout, rc=1, rm=1)
        return self.policy

    def close_policy(self) -> RetransmissionPolicy:
        """Retransmission for the deallocating Refresh: done within ``close_timeout``."""
        if self.transport.reliable:
            return RetransmissionPolicy(rto=self.close_timeout, rc=1, rm=1)
        rto = min(self.policy.rto, self.close_timeout / 4)
        # Sends at 0, rto, 3·rto; gives up at rto·(3 + rm) ≈ close_timeout.
        return RetransmissionPolicy(rto=rto, rc=3, rm=max(1, round(self.close_timeout / rto) - 3))
