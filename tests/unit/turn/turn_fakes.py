"""A fake TURN server and a virtual-time harness, for the client core's unit tests.

The server is deliberately simple (one client, no real relaying): it
challenges with 401, checks the long-term key, grants allocations,
permissions and channels, records what the client relayed, and can be told
to misbehave (answer with a given error, rotate nonces, stay silent). Real
behaviour is proved against coturn in ``tests/lab/test_turn_lab.py``.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import TypeVar

from natkit.endpoint import Endpoint, IPAddress
from natkit.sansio import Datagram
from natkit.stun.attributes import (
    IntegerAttribute,
    RawAttribute,
    TextAttribute,
    XorAddressAttribute,
)
from natkit.stun.codec import Message, encode_message, parse_message
from natkit.stun.constants import AttributeType, MessageClass, Method
from natkit.stun.integrity import IntegrityError, long_term_key, verify_integrity
from natkit.turn.channel_data import encode_channel_data, is_channel_data, parse_channel_data
from natkit.turn.client import TurnClient
from natkit.turn.events import TurnEvent
from natkit.turn.framing import StreamFramer
from natkit.turn.messages import data_indication

SERVER = Endpoint.parse("203.0.113.30:3478")
CLIENT = Endpoint.parse("198.51.100.1:40000")
RELAYED = Endpoint.parse("203.0.113.30:50000")
PEER = Endpoint.parse("192.0.2.10:7000")
USER, PASSWORD, REALM = "natkit", "secret", "natkit.lab"

E = TypeVar("E")


@dataclass
class FakeTurnServer:
    """A long-term-credential TURN server for one client, answering synchronously."""

    username: str = USER
    password: str = PASSWORD
    realm: str = REALM
    lifetime: int = 600
    nonce: str = "nonce-1"
    #: Error code to answer per method instead of serving it (``{method: code}``).
    errors: dict[int, int] = field(default_factory=dict)
    #: Requests not answered at all, per method.
    silent: set[int] = field(default_factory=set)
    #: Sign error responses (coturn signs 403/486/508, not 401/437/438).
    sign_errors: bool = True
    allocated: bool = False
    permissions: set[IPAddress] = field(default_factory=set)
    channels: dict[int, Endpoint] = field(default_factory=dict)
    #: What the client relayed: (peer, data, "channel" | "indication").
    relayed: list[tuple[Endpoint, bytes, str]] = field(default_factory=list)
    requests: Counter[int] = field(default_factory=Counter)
    #: Every lifetime asked for in a Refresh.
    refresh_lifetimes: list[int] = field(default_factory=list)
    stream: bool = False

    @property
    def key(self) -> bytes:
        return long_term_key(self.username, self.realm, self.password)

    def receive(self, data: bytes) -> list[bytes]:
        """Bytes from the client (one datagram or one framed message) -> answers."""
        if is_channel_data(data):
            message = parse_channel_data(data)
            peer = self.channels.get(message.channel)
            if peer is not None:
                self.relayed.append((peer, message.data, "channel"))
            return []
        request = parse_message(data)
        if request.message_class is MessageClass.INDICATION:
            if request.method == Method.SEND:
                target = request.find(AttributeType.XOR_PEER_ADDRESS)
                payload = request.find(AttributeType.DATA)
                assert isinstance(target, XorAddressAttribute)
                assert isinstance(payload, RawAttribute)
                if target.endpoint.address in self.permissions:
                    self.relayed.append((target.endpoint, payload.value, "indication"))
            return []
        self.requests[request.method] += 1
        response = self.answer(request)
        if response is None:
            return []
        signed = response.message_class is MessageClass.SUCCESS_RESPONSE or (
            self.sign_errors and _error_code(response) not in (401, 437, 438)
        )
        key = self.key if signed and request.method != Method.BINDING else None
        return [encode_message(response, integrity_key=key)]

    def answer(self, request: Message) -> Message | None:
        method = request.method
        if method in self.silent:
            return None
        if method == Method.BINDING:
            return request.success(XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, CLIENT))
        nonce = request.text(AttributeType.NONCE)
        if request.text(AttributeType.USERNAME) is None or nonce is None:
            return self._challenge(request, 401)
        try:
            verify_integrity(request, self.key)
        except IntegrityError:
            return self._challenge(request, 401)
        if nonce != self.nonce:
            return self._challenge(request, 438)
        if method in self.errors:
            return request.error(self.errors[method])
        if method == Method.ALLOCATE:
            if self.allocated:
                return request.error(437)
            self.allocated = True
            return request.success(
                XorAddressAttribute(AttributeType.XOR_RELAYED_ADDRESS, RELAYED),
                XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, CLIENT),
                IntegerAttribute(AttributeType.LIFETIME, self.lifetime),
            )
        if not self.allocated:
            return request.error(437)
        if method == Method.REFRESH:
            lifetime = request.find(AttributeType.LIFETIME)
            asked = lifetime.value if isinstance(lifetime, IntegerAttribute) else self.lifetime
            self.refresh_lifetimes.append(asked)
            if asked == 0:
                self.allocated = False
            granted = min(asked, self.lifetime)
            return request.success(IntegerAttribute(AttributeType.LIFETIME, granted))
        if method == Method.CREATE_PERMISSION:
            for attribute in request.attributes:
                if isinstance(attribute, XorAddressAttribute):
                    self.permissions.add(attribute.endpoint.address)
            return request.success()
        if method == Method.CHANNEL_BIND:
            number = request.find(AttributeType.CHANNEL_NUMBER)
            peer = request.find(AttributeType.XOR_PEER_ADDRESS)
            assert isinstance(number, IntegerAttribute)
            assert isinstance(peer, XorAddressAttribute)
            self.channels[number.value] = peer.endpoint
            self.permissions.add(peer.endpoint.address)
            return request.success()
        return request.error(400)

    def _challenge(self, request: Message, code: int) -> Message:
        return request.error(
            code,
            TextAttribute(AttributeType.REALM, self.realm),
            TextAttribute(AttributeType.NONCE, self.nonce),
        )

    # -- what the server sends on its own ------------------------------------

    def channel_data(self, peer: Endpoint, data: bytes) -> bytes:
        number = next(n for n, p in self.channels.items() if p == peer)
        return encode_channel_data(number, data, pad=self.stream)

    def data_indication(self, peer: Endpoint, data: bytes) -> bytes:
        return data_indication(random.randbytes(12), peer, data)


def _error_code(message: Message) -> int | None:
    error = message.error_code
    return error.code if error is not None else None


class Harness:
    """Runs a client against a fake server on a virtual clock."""

    def __init__(
        self, client: TurnClient, server: FakeTurnServer | None = None, *, now: float = 0.0
    ) -> None:
        self.client = client
        self.server = server or FakeTurnServer(stream=client.config.transport.reliable)
        self.now = now
        self.events: list[TurnEvent] = []
        self.sent: list[Datagram] = []
        #: (virtual time, STUN method or "channel-data") of each message sent.
        self.sent_at: list[tuple[float, int | str]] = []
        #: Drop everything the client sends while ``True`` (a dead server).
        self.blackhole = False
        self._framer = StreamFramer()

    def pump(self) -> None:
        """Deliver the client's datagrams and the answers, until quiet."""
        while True:
            out = self.client.datagrams_to_send(self.now)
            self._drain_events()
            if not out:
                return
            for datagram in out:
                self.sent.append(datagram)
                messages = (
                    self._framer.feed(datagram.data) if self.server.stream else [datagram.data]
                )
                for message in messages:
                    kind = (
                        "channel-data"
                        if is_channel_data(message)
                        else parse_message(message).method
                    )
                    self.sent_at.append((self.now, kind))
                    if self.blackhole:
                        continue
                    for answer in self.server.receive(message):
                        self.deliver(answer)

    def deliver(self, data: bytes) -> None:
        """Hand bytes from the server to the client."""
        if self.client.config.transport.reliable:
            self.client.receive_stream_data(data, self.now)
        else:
            self.client.receive_datagram(data, SERVER, self.client.config.socket, self.now)
        self._drain_events()

    def run_until(self, until: float) -> None:
        """Fire the client's timer (and pump) until virtual time ``until``."""
        self.pump()
        while (deadline := self.client.get_timer()) is not None and deadline <= until:
            self.now = max(self.now, deadline)
            self.client.handle_timer(self.now)
            self.pump()
        self.now = max(self.now, until)

    def allocate(self) -> None:
        self.client.allocate(self.now)
        self.pump()

    def of_type(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def times(self, method: int | str) -> list[float]:
        """When the client sent messages of ``method``."""
        return [t for t, kind in self.sent_at if kind == method]

    def _drain_events(self) -> None:
        while (event := self.client.next_event()) is not None:
            self.events.append(event)
