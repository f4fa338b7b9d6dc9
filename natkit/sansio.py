"""The one shape every natkit protocol core has.

Theory of operation (after aioquic's ``QuicConnection``): a core never touches
a socket, a clock or a random source of its own. Drivers feed it

* ``receive_datagram(data, remote, socket, now)`` when bytes arrive on one of
  the local sockets the core was given (``socket`` is that socket's index),
* ``handle_timer(now)`` when the deadline from ``get_timer()`` passes,
* optionally ``receive_icmp_error(error, socket, now)`` when an ICMP error
  about a datagram the core sent comes back (see :class:`IcmpAware`),

and after each call collect ``datagrams_to_send(now)`` and ``next_event()``
until it returns ``None``. ``now`` is a monotonic time in seconds; only its
differences matter. The asyncio driver (``natkit.aio.driver``) and the
virtual-clock simulator (``natkit.simulations``) are the two drivers.

ICMP is opt-in on both sides, so cores written before it keep working
unchanged: a :class:`Datagram` without ``ttl`` leaves with the socket's
default hop limit, and a driver hands ICMP errors only to cores that define
``receive_icmp_error`` (it counts, and otherwise drops, the rest).

Streams (TCP, TLS) are the one thing a core cannot do with datagrams: a
check over TCP that tells "UDP blocked" from "nothing there", STUN over TLS.
A core that needs one (:class:`StreamAware`) hands out a
:class:`StreamRequest` from ``stream_requests()``, drained like the
datagrams after every call; the driver opens the connection, sends the
payload, reads one framed reply, and calls back
``stream_answered(request_id, result, now)`` with a :class:`StreamResult`,
exactly once per request, whatever the network did (no reply is a result,
not an exception). The asyncio driver uses real sockets; the simulator
answers from a responder the scenario gives it.

Drivers also take two observers that see traffic without being a core:
``on_send(now, datagram)`` for every datagram sent (stamped with the ``now``
of the call into the core that produced it) and ``on_receive(now, data,
remote, socket)`` for every datagram before the core gets it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, TypeVar

from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import InvalidArgument

#: ICMP (RFC 792) and ICMPv6 (RFC 4443) message types natkit tells apart.
ICMP_DEST_UNREACHABLE = 3
ICMP_TIME_EXCEEDED = 11
ICMP6_DEST_UNREACHABLE = 1
ICMP6_TIME_EXCEEDED = 3


@dataclass(frozen=True, slots=True)
class Datagram:
    """One UDP payload to send from local socket ``socket`` to ``remote``."""

    data: bytes
    remote: Endpoint
    socket: int = 0
    #: IP TTL / IPv6 hop limit for this datagram alone (1-255); ``None``: the
    #: socket's default. A router that would forward it with TTL 0 drops it
    #: and answers ICMP Time Exceeded (RFC 792, RFC 4443 §3.3, RFC 1812 §5.3.1).
    ttl: int | None = None

    def __post_init__(self) -> None:
        if self.ttl is not None and not 1 <= self.ttl <= 255:
            raise InvalidArgument("ttl", self.ttl, f"ttl must be in 1..255, not {self.ttl}")


class IcmpKind(Enum):
    """What an ICMP error says about a datagram, for either IP version."""

    #: A router's hop limit ran out in transit (ICMP 11/0, ICMPv6 3/0).
    TIME_EXCEEDED = "time-exceeded"
    #: The destination host has no socket on that port (ICMP 3/3, ICMPv6 1/4).
    PORT_UNREACHABLE = "port-unreachable"
    #: The destination host cannot be reached (ICMP 3/1,7,12; ICMPv6 1/3).
    HOST_UNREACHABLE = "host-unreachable"
    #: No route to the destination network (ICMP 3/0,6,11; ICMPv6 1/0).
    NET_UNREACHABLE = "net-unreachable"
    #: A filter refused it (ICMP 3/9,10,13 per RFC 1812 §5.2.7.1; ICMPv6 1/1,5,6).
    ADMIN_PROHIBITED = "admin-prohibited"
    #: Anything else (fragmentation needed, parameter problem, ...).
    OTHER = "other"


_ICMP4_UNREACHABLE = {
    0: IcmpKind.NET_UNREACHABLE,
    1: IcmpKind.HOST_UNREACHABLE,
    3: IcmpKind.PORT_UNREACHABLE,
    6: IcmpKind.NET_UNREACHABLE,
    7: IcmpKind.HOST_UNREACHABLE,
    9: IcmpKind.ADMIN_PROHIBITED,
    10: IcmpKind.ADMIN_PROHIBITED,
    11: IcmpKind.NET_UNREACHABLE,
    12: IcmpKind.HOST_UNREACHABLE,
    13: IcmpKind.ADMIN_PROHIBITED,
}
_ICMP6_UNREACHABLE = {
    0: IcmpKind.NET_UNREACHABLE,
    1: IcmpKind.ADMIN_PROHIBITED,
    3: IcmpKind.HOST_UNREACHABLE,
    4: IcmpKind.PORT_UNREACHABLE,
    # RFC 4443 §3.1: "source address failed ingress/egress policy", "reject route".
    5: IcmpKind.ADMIN_PROHIBITED,
    6: IcmpKind.ADMIN_PROHIBITED,
}


def icmp_kind(version: int, icmp_type: int, icmp_code: int) -> IcmpKind:
    """Classify an ICMP (``version`` 4) or ICMPv6 (6) type and code."""
    if version == 4:
        if icmp_type == ICMP_TIME_EXCEEDED:
            # Code 1 is fragment reassembly timing out, not a hop limit.
            return IcmpKind.TIME_EXCEEDED if icmp_code == 0 else IcmpKind.OTHER
        if icmp_type == ICMP_DEST_UNREACHABLE:
            return _ICMP4_UNREACHABLE.get(icmp_code, IcmpKind.OTHER)
        return IcmpKind.OTHER
    if icmp_type == ICMP6_TIME_EXCEEDED:
        return IcmpKind.TIME_EXCEEDED if icmp_code == 0 else IcmpKind.OTHER
    if icmp_type == ICMP6_DEST_UNREACHABLE:
        return _ICMP6_UNREACHABLE.get(icmp_code, IcmpKind.OTHER)
    return IcmpKind.OTHER


@dataclass(frozen=True, slots=True)
class IcmpError:
    """An ICMP error about one datagram a core sent."""

    kind: IcmpKind
    #: Who sent the error: the router or host that dropped the datagram
    #: (``None`` when the driver could not tell).
    offender: IPAddress | None
    #: Where the original datagram was going.
    destination: Endpoint
    #: The raw ICMP (or ICMPv6, when ``destination`` is IPv6) type and code.
    icmp_type: int
    icmp_code: int
    #: The start of the original datagram's UDP payload as the offender quoted
    #: it. Often whole (RFC 1812 §4.3.2.3 quotes up to 576 bytes), but RFC 792
    #: only promises the 8 bytes of the UDP header, which leaves this empty.
    quoted: bytes = b""


EventT_co = TypeVar("EventT_co", covariant=True)


class SansIOCore(Protocol[EventT_co]):
    """What a driver needs from a core."""

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        """Feed one received datagram."""

    def handle_timer(self, now: float) -> None:
        """Called once the deadline from :meth:`get_timer` has passed."""

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        """Drain the datagrams the core wants sent now."""

    def get_timer(self) -> float | None:
        """The next absolute deadline, or ``None`` when nothing is pending."""

    def next_event(self) -> EventT_co | None:
        """Pop the oldest pending event, or ``None``."""


class IcmpAware(Protocol):
    """The optional input of cores that want ICMP errors (drivers look it up
    with ``getattr``; a core without it never sees one)."""

    def receive_icmp_error(self, error: IcmpError, socket: int, now: float) -> None:
        """An ICMP error arrived about a datagram sent from local ``socket``."""


class StreamTransport(Enum):
    """How a :class:`StreamRequest` is carried."""

    TCP = "tcp"
    #: TLS over TCP; the certificate is checked against ``server_name``.
    TLS = "tls"


class StreamFraming(Enum):
    """Where one reply ends in the byte stream."""

    #: RFC 8489 §6.2.2: the 20-byte STUN header holds the message length.
    STUN = "stun"


#: Largest reply a driver reads for a request unless it says otherwise
#: (a STUN Binding response is a few hundred bytes).
MAX_STREAM_REPLY = 8192


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """Open a stream to ``remote``, send ``payload``, read one reply.

    The driver starts one connection attempt per entry of ``stagger`` (that
    many seconds after the request, in parallel) and the first reply wins,
    so a lost SYN costs a fraction of a second rather than the kernel's 1 s
    retransmission; after ``timeout`` seconds it answers without a reply.
    """

    #: Chosen by the core, unique among its requests; echoed in the answer.
    id: int
    remote: Endpoint
    payload: bytes
    timeout: float
    transport: StreamTransport = StreamTransport.TCP
    #: TLS: the name the certificate must carry (``None``: ``remote``'s address).
    server_name: str | None = None
    framing: StreamFraming = StreamFraming.STUN
    #: A longer reply is refused (answered without a reply).
    max_reply: int = MAX_STREAM_REPLY
    #: Start times of the connection attempts, seconds after the request.
    stagger: tuple[float, ...] = field(default=(0.0,))

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise InvalidArgument("timeout", self.timeout, "a stream request needs a timeout > 0")
        if not self.stagger or any(delay < 0 for delay in self.stagger):
            raise InvalidArgument("stagger", self.stagger, "stagger needs delays >= 0")
        if self.max_reply < 1:
            raise InvalidArgument("max_reply", self.max_reply, "max_reply must be positive")


@dataclass(frozen=True, slots=True)
class StreamResult:
    """What the network did with one :class:`StreamRequest`."""

    #: The whole framed reply (``None``: none; ``detail`` says why).
    reply: bytes | None
    #: Our end of the connection, once one was made (``None``: never connected).
    local: Endpoint | None = None
    #: From sending the payload to the end of the reply, on the winning connection.
    rtt: float | None = None
    detail: str = ""


class StreamAware(Protocol):
    """The optional stream half of a core (drivers look it up with ``getattr``)."""

    def stream_requests(self) -> list[StreamRequest]:
        """Drain the streams the core wants opened now."""

    def stream_answered(self, request_id: int, result: StreamResult, now: float) -> None:
        """The outcome of the request with ``request_id``."""


#: ``on_send(now, datagram)``: a driver sent ``datagram`` for its core.
SendObserver = Callable[[float, Datagram], None]
#: ``on_receive(now, data, remote, socket)``: a datagram arrived for the core.
ReceiveObserver = Callable[[float, bytes, Endpoint, int], None]
