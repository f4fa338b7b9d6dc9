"""A sans-IO STUN Binding server with the RFC 5780 behaviour-discovery usage.

Theory of operation. The server owns one or four local sockets, indexed
so that bit 1 of the index is the IP address and bit 0 the port:

    0 = (A1, P1)   1 = (A1, P2)   2 = (A2, P1)   3 = (A2, P2)

With four sockets it is RFC 5780-capable: a response is sent from the
socket whose bits are the receiving socket's bits flipped by CHANGE-REQUEST
(RFC 5780 §6.1, Table 1). OTHER-ADDRESS names the alternate address A2 with
the port the request did not use. For requests received on A1 that is
Table 1's Ca:Cp; for requests received on A2 Table 1 would name A1, but
natkit answers as coturn does, because coturn's client
(``turnutils_natdiscovery``) sends mapping test III to the OTHER-ADDRESS of
test II's response: with Table 1's value that lands on A1 and turns an
address-dependent mapping into a false APDM. Clients that follow RFC 5780
§4.3 take OTHER-ADDRESS from test I (received on A1:P1) and see A2:P2 either
way. With one socket it is a plain RFC 5389/8489 server: no OTHER-ADDRESS,
and CHANGE-REQUEST is answered with 420.

Rules, in the order they are applied:

1. Bytes that do not parse strictly are dropped, silently (never answered).
2. Responses and indications are dropped; so are requests that carry
   FINGERPRINT-less junk after a FINGERPRINT (rule 1 already).
3. A comprehension-required attribute we do not implement -> 420 with
   UNKNOWN-ATTRIBUTES; an unknown method -> 400.
4. PADDING together with RESPONSE-PORT, RESPONSE-PORT 0, or CHANGE-REQUEST
   / RESPONSE-PORT over TCP -> 400 (RFC 5780 §6.1, §7.5).
5. Otherwise a success response: XOR-MAPPED-ADDRESS and MAPPED-ADDRESS
   (RFC 5780 §6.1 asks for both; a mismatch reveals an ALG), RESPONSE-ORIGIN,
   OTHER-ADDRESS when we have one. RFC 3489 clients (no magic cookie) get
   the RFC 3489 set instead: MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS.

Nothing optional is added unless asked: SOFTWARE only when configured,
FINGERPRINT only when the request had one, PADDING only when the request
had PADDING and never longer than the request's own (the RFC's "MTU-sized"
suggestion would turn a small request into an amplified reply).

:meth:`StunServer.answer_plain` is the fast path for the plain Binding
request (:mod:`natkit.stun.fastpath`): the same bytes and the same counters
as :meth:`StunServer.handle`, or ``None`` and the caller asks ``handle``.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from enum import Enum

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.sansio import Datagram
from natkit.stun.attributes import (
    DECODERS,
    AddressAttribute,
    Attribute,
    ErrorCodeAttribute,
    Padding,
    TextAttribute,
    UnknownAttributes,
    XorAddressAttribute,
)
from natkit.stun.codec import Message, StunDecodeError, encode_message, parse_message
from natkit.stun.constants import (
    ERROR_REASONS,
    MAGIC_COOKIE_BYTES,
    AttributeType,
    ChangeFlags,
    ErrorCode,
    MessageClass,
    Method,
)
from natkit.stun.fastpath import PlainBinding, packed_peer


class Transport(Enum):
    UDP = "udp"
    TCP = "tcp"


#: Attribute types this server implements in a request. Everything the codec
#: decodes counts as understood; RESPONSE-ADDRESS (RFC 3489) is deliberately
#: absent, so a request asking us to reflect elsewhere gets a 420.
SERVER_UNDERSTANDS = frozenset(DECODERS)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Which local endpoints the server answers on (see module doc for order)."""

    sockets: tuple[Endpoint, ...]
    software: str | None = None

    def __post_init__(self) -> None:
        if len(self.sockets) not in (1, 4):
            raise LocalProtocolError("a STUN server has 1 socket, or 4 for RFC 5780")
        if len(self.sockets) == 4:
            a1p1, a1p2, a2p1, a2p2 = self.sockets
            if not (
                a1p1.address == a1p2.address != a2p1.address == a2p2.address
                and a1p1.port == a2p1.port != a1p2.port == a2p2.port
            ):
                raise LocalProtocolError("RFC 5780 needs two addresses x two ports")
            if a1p1.address.version != a2p1.address.version:
                # A client reaches one family only: the alternate's answers
                # (filtering test II) could never arrive, which reads as ADF.
                raise LocalProtocolError(
                    f"RFC 5780 needs two addresses of one family, not {a1p1.address}"
                    f" (IPv{a1p1.address.version}) and {a2p1.address}"
                    f" (IPv{a2p1.address.version})"
                )

    @classmethod
    def basic(cls, address: str, port: int = 3478, software: str | None = None) -> ServerConfig:
        """A plain RFC 5389/8489 server on one address and port."""
        return cls((Endpoint.of(address, port),), software)

    @classmethod
    def rfc5780(
        cls,
        primary: str,
        alternate: str,
        port: int = 3478,
        alt_port: int = 3479,
        software: str | None = None,
    ) -> ServerConfig:
        """Two addresses x two ports, the RFC 5780 layout."""
        return cls(
            (
                Endpoint.of(primary, port),
                Endpoint.of(primary, alt_port),
                Endpoint.of(alternate, port),
                Endpoint.of(alternate, alt_port),
            ),
            software,
        )

    @property
    def behaviour_discovery(self) -> bool:
        return len(self.sockets) == 4


@dataclass(slots=True)
class ServerCounters:
    """What the server saw and did, for ``--stats`` and tests."""

    received: int = 0
    answered: int = 0
    classic_requests: int = 0
    change_requests: int = 0
    response_port_requests: int = 0
    padding_requests: int = 0
    ignored_not_request: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    errors_sent: Counter[int] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "received": self.received,
            "answered": self.answered,
            "classic_requests": self.classic_requests,
            "change_requests": self.change_requests,
            "response_port_requests": self.response_port_requests,
            "padding_requests": self.padding_requests,
            "ignored_not_request": self.ignored_not_request,
            "malformed": dict(self.malformed),
            "errors_sent": {str(k): v for k, v in self.errors_sent.items()},
        }

    def add(self, other: ServerCounters) -> None:
        """Add ``other``'s counts to these (workers' counters into one total)."""
        self.received += other.received
        self.answered += other.answered
        self.classic_requests += other.classic_requests
        self.change_requests += other.change_requests
        self.response_port_requests += other.response_port_requests
        self.padding_requests += other.padding_requests
        self.ignored_not_request += other.ignored_not_request
        self.malformed.update(other.malformed)
        self.errors_sent.update(other.errors_sent)

    @classmethod
    def from_dict(cls, document: dict[str, object]) -> ServerCounters:
        """The inverse of :meth:`as_dict`; ``ValueError`` on anything else."""
        try:
            malformed = document["malformed"]
            errors_sent = document["errors_sent"]
            if not isinstance(malformed, dict) or not isinstance(errors_sent, dict):
                raise TypeError("malformed and errors_sent are objects")
            return cls(
                received=_count(document["received"]),
                answered=_count(document["answered"]),
                classic_requests=_count(document["classic_requests"]),
                change_requests=_count(document["change_requests"]),
                response_port_requests=_count(document["response_port_requests"]),
                padding_requests=_count(document["padding_requests"]),
                ignored_not_request=_count(document["ignored_not_request"]),
                malformed=Counter({str(k): _count(v) for k, v in malformed.items()}),
                errors_sent=Counter({int(k): _count(v) for k, v in errors_sent.items()}),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not server counters: {exc}") from None


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"a count is a non-negative integer, not {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Reply:
    """A response: its bytes, the socket index to send from, and where to."""

    data: bytes
    socket: int
    remote: Endpoint


class StunServer:
    """The server core (SansIOCore without timers or events)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.counters = ServerCounters()
        self._outbox: deque[Datagram] = deque()
        self._plain = tuple(
            PlainBinding(origin, self._other_address(index), config.software)
            for index, origin in enumerate(config.sockets)
        )

    # -- SansIOCore -------------------------------------------------------------

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        plain = self.answer_plain(data, packed_peer(remote), socket)
        if plain is not None:
            self._outbox.append(Datagram(plain, remote, socket))
            return
        reply = self.handle(data, remote, socket, Transport.UDP)
        if reply is not None:
            self._outbox.append(Datagram(reply.data, reply.remote, reply.socket))

    def handle_timer(self, now: float) -> None:
        """The server has no timers."""

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out = list(self._outbox)
        self._outbox.clear()
        return out

    def get_timer(self) -> float | None:
        return None

    def next_event(self) -> None:
        return None

    # -- the fast path (UDP) -----------------------------------------------------

    def answer_plain(self, data: bytes, peer: bytes, socket: int) -> bytes | None:
        """The answer to a plain Binding request from ``peer`` (port and
        address in network order, :func:`~natkit.stun.fastpath.packed_peer`)
        received on ``socket``, to be sent back from that socket; ``None``
        when :meth:`handle` must decide. Counts exactly as :meth:`handle`."""
        reply = self._plain[socket].answer(data, peer)
        if reply is not None:
            counters = self.counters
            counters.received += 1
            counters.answered += 1
            if data[4:8] != MAGIC_COOKIE_BYTES:
                counters.classic_requests += 1
        return reply

    # -- the logic, shared by UDP and TCP ----------------------------------------

    def handle(
        self, data: bytes, remote: Endpoint, socket: int, transport: Transport
    ) -> Reply | None:
        """Decide the reply to one request, or ``None`` to stay silent."""
        self.counters.received += 1
        try:
            request = parse_message(data, allow_classic=True)
        except StunDecodeError as exc:
            self.counters.malformed[exc.reason.name.lower()] += 1
            return None
        if request.message_class is not MessageClass.REQUEST:
            self.counters.ignored_not_request += 1
            return None
        if request.is_classic:
            self.counters.classic_requests += 1
        reply = self._respond(request, remote, socket, transport)
        self.counters.answered += 1
        return reply

    def _respond(
        self, request: Message, remote: Endpoint, socket: int, transport: Transport
    ) -> Reply:
        def error(code: ErrorCode, *extra: Attribute) -> Reply:
            self.counters.errors_sent[int(code)] += 1
            attributes = (ErrorCodeAttribute(code, ERROR_REASONS.get(code, "")), *extra)
            return self._reply(request, MessageClass.ERROR_RESPONSE, attributes, socket, remote)

        if request.method != Method.BINDING:
            return error(ErrorCode.BAD_REQUEST)
        unknown = request.unknown_comprehension_required(SERVER_UNDERSTANDS)
        flags = request.change_request
        if flags is not None:
            self.counters.change_requests += 1
            if not self.config.behaviour_discovery:
                # RFC 5780 §6: no alternate address, so CHANGE-REQUEST is unknown to us.
                unknown = (*unknown, AttributeType.CHANGE_REQUEST)
        if unknown:
            return error(ErrorCode.UNKNOWN_ATTRIBUTE, UnknownAttributes(unknown))
        response_port = request.response_port
        padding = request.padding
        if response_port is not None:
            self.counters.response_port_requests += 1
        if padding is not None:
            self.counters.padding_requests += 1
        if (padding is not None and response_port is not None) or response_port == 0:
            return error(ErrorCode.BAD_REQUEST)
        if transport is Transport.TCP and (flags or response_port is not None):
            # A TCP response can only go back on the connection it came in on.
            return error(ErrorCode.BAD_REQUEST)

        out_socket = self._source_socket(socket, flags or ChangeFlags.NONE)
        origin = self.config.sockets[out_socket]
        attributes: list[Attribute]
        if request.is_classic:
            attributes = [
                AddressAttribute(AttributeType.MAPPED_ADDRESS, remote),
                AddressAttribute(AttributeType.SOURCE_ADDRESS, origin),
            ]
            other = self._other_address(socket)
            if other is not None:
                attributes.append(AddressAttribute(AttributeType.CHANGED_ADDRESS, other))
        else:
            attributes = [
                XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, remote),
                AddressAttribute(AttributeType.MAPPED_ADDRESS, remote),
                AddressAttribute(AttributeType.RESPONSE_ORIGIN, origin),
            ]
            other = self._other_address(socket)
            if other is not None:
                attributes.append(AddressAttribute(AttributeType.OTHER_ADDRESS, other))
        if padding is not None:
            attributes.append(Padding.of_length(len(padding.data)))
        destination = remote if response_port is None else Endpoint(remote.address, response_port)
        return self._reply(
            request, MessageClass.SUCCESS_RESPONSE, tuple(attributes), out_socket, destination
        )

    def _reply(
        self,
        request: Message,
        message_class: MessageClass,
        attributes: tuple[Attribute, ...],
        socket: int,
        remote: Endpoint,
    ) -> Reply:
        if self.config.software is not None and not request.is_classic:
            attributes = (*attributes, TextAttribute(AttributeType.SOFTWARE, self.config.software))
        response = Message(request.method, message_class, request.transaction_id, attributes)
        data = encode_message(response, fingerprint=request.has_fingerprint)
        return Reply(data, socket, remote)

    def _source_socket(self, socket: int, flags: ChangeFlags) -> int:
        if not self.config.behaviour_discovery:
            return socket
        ip_bit = (socket >> 1) ^ (1 if flags & ChangeFlags.CHANGE_IP else 0)
        port_bit = (socket & 1) ^ (1 if flags & ChangeFlags.CHANGE_PORT else 0)
        return (ip_bit << 1) | port_bit

    def _other_address(self, socket: int) -> Endpoint | None:
        if not self.config.behaviour_discovery:
            return None
        # Always the alternate address (bit 1 set), with the other port (see module doc).
        return self.config.sockets[0b10 | ((socket & 1) ^ 1)]
