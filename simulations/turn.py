"""A small TURN server (RFC 8656) for the simulator, speaking enough for natkit's client.

It serves many clients over UDP, each allocation relaying from its own
port on the server host, with what natkit's :class:`~natkit.turn.TurnClient`
and the connect agent use:

* long-term credentials (RFC 8489 §9.2): an unsigned request is answered
  401 with REALM and NONCE, a wrongly signed one 401 again;
* Allocate (one per client 5-tuple; 437 for a second), Refresh (LIFETIME 0
  deletes), CreatePermission (300 s, RFC 8656 §9), ChannelBind (600 s, §12),
  Binding (a ping, answered without credentials);
* Send indications and ChannelData toward peers, only to addresses with a
  permission; from peers, only from addresses with a permission, as
  ChannelData when a channel is bound to the peer's endpoint, else as Data
  indications (§11.4, §12.6);
* expiry of allocations, permissions and channels.

Knobs for hostile tests: ``refuse`` answers every Allocate with an error
code (486 quota, 508 capacity...), ``alive = False`` makes the server drop
everything (a dead server; set it back to ``True`` and it answers again,
with no allocations, as a restarted one would), ``password`` may differ
from the client's (wrong credentials).

Relay ports come from a pool bound when the server starts (the driver's
sockets 1..n); an allocation takes a free one or is refused with 508.
Nothing here models TCP or TLS: those transports are unit-tested with a
stream harness; coturn is the real evidence (``tests/lab``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from natkit.endpoint import Endpoint, IPAddress
from natkit.sansio import Datagram
from natkit.simulations.driver import CoreDriver
from natkit.simulations.link import Link
from natkit.simulations.network import Network, Realm
from natkit.stun.attributes import (
    IntegerAttribute,
    RawAttribute,
    TextAttribute,
    XorAddressAttribute,
)
from natkit.stun.codec import Message, StunDecodeError, encode_message, parse_message
from natkit.stun.constants import AttributeType, MessageClass, Method
from natkit.stun.integrity import IntegrityError, long_term_key, verify_integrity
from natkit.turn.channel_data import (
    ChannelDataError,
    encode_channel_data,
    is_channel_data,
    parse_channel_data,
    valid_channel,
)
from natkit.turn.messages import data_indication

#: RFC 8656 §9 and §12 lifetimes.
PERMISSION_LIFETIME = 300.0
CHANNEL_LIFETIME = 600.0
#: The longest allocation lifetime granted (coturn's max-allocate-lifetime default).
MAX_LIFETIME = 3600


@dataclass(slots=True)
class SimAllocation:
    """One client's allocation."""

    client: Endpoint
    relay_socket: int
    relayed: Endpoint
    expires_at: float
    #: Permitted peer addresses and when each permission runs out.
    permissions: dict[IPAddress, float] = field(default_factory=dict)
    #: Bound channels: number -> (peer, expiry), and the reverse.
    channels: dict[int, tuple[Endpoint, float]] = field(default_factory=dict)
    numbers: dict[Endpoint, int] = field(default_factory=dict)

    def permitted(self, peer: IPAddress, now: float) -> bool:
        until = self.permissions.get(peer)
        return until is not None and until > now


@dataclass
class SimTurnCounters:
    """What the server did and dropped."""

    allocations: int = 0
    relayed_to_peers: int = 0
    relayed_to_clients: int = 0
    #: Datagrams to or from a peer without a permission.
    no_permission: int = 0
    unauthenticated: int = 0
    malformed: int = 0
    #: Everything dropped while the server was dead.
    while_dead: int = 0


class SimTurnServer:
    """A TURN server core: socket 0 listens at ``server``, sockets 1..n are
    the relay ports ``relays`` (see the module doc)."""

    def __init__(
        self,
        server: Endpoint,
        relays: Sequence[Endpoint],
        *,
        username: str = "natkit",
        password: str = "natkit-sim-password",
        realm: str = "natkit.sim",
        rng: random.Random | None = None,
    ) -> None:
        self.server = server
        self.relays = tuple(relays)
        self.username = username
        self.password = password
        self.realm = realm
        #: Error code every Allocate is answered with (``None``: serve).
        self.refuse: int | None = None
        #: ``False``: drop everything, as a server that died.
        self.alive = True
        self.counters = SimTurnCounters()
        self.allocations: dict[Endpoint, SimAllocation] = {}
        self._rng = rng or random.Random(0)
        self._nonce = "simnonce"
        self._by_socket: dict[int, SimAllocation] = {}
        self._out: list[Datagram] = []

    @property
    def key(self) -> bytes:
        return long_term_key(self.username, self.realm, self.password)

    def restart(self) -> None:
        """Forget every allocation (a server process that came back)."""
        self.allocations.clear()
        self._by_socket.clear()
        self._nonce = f"simnonce{self._rng.getrandbits(32):08x}"
        self.alive = True

    # -- SansIOCore ---------------------------------------------------------------

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        if not self.alive:
            self.counters.while_dead += 1
            return
        self._expire(now)
        if socket == 0:
            self._from_client(data, remote, now)
        else:
            self._from_peer(data, remote, socket, now)

    def handle_timer(self, now: float) -> None:
        self._expire(now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        times = [a.expires_at for a in self.allocations.values()]
        return min(times) if times else None

    def next_event(self) -> None:
        return None

    # -- clients ------------------------------------------------------------------

    def _from_client(self, data: bytes, client: Endpoint, now: float) -> None:
        allocation = self.allocations.get(client)
        if is_channel_data(data):
            try:
                message = parse_channel_data(data)
            except ChannelDataError:
                self.counters.malformed += 1
                return
            bound = None if allocation is None else allocation.channels.get(message.channel)
            if allocation is None or bound is None or bound[1] <= now:
                self.counters.malformed += 1
                return
            self._to_peer(allocation, bound[0], message.data, now)
            return
        try:
            request = parse_message(data)
        except StunDecodeError:
            self.counters.malformed += 1
            return
        if request.message_class is MessageClass.INDICATION:
            if request.method == Method.SEND and allocation is not None:
                peer = request.find(AttributeType.XOR_PEER_ADDRESS)
                payload = request.find(AttributeType.DATA)
                if isinstance(peer, XorAddressAttribute) and isinstance(payload, RawAttribute):
                    self._to_peer(allocation, peer.endpoint, payload.value, now)
            return
        if request.message_class is not MessageClass.REQUEST:
            return
        answer = self._answer(request, client, now)
        if answer is not None:
            response, signed = answer
            key = self.key if signed else None
            self._out.append(Datagram(encode_message(response, integrity_key=key), client, 0))

    def _answer(
        self, request: Message, client: Endpoint, now: float
    ) -> tuple[Message, bool] | None:
        method = request.method
        if method == Method.BINDING:
            mapped = XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, client)
            return request.success(mapped), False
        if request.text(AttributeType.USERNAME) is None:
            return self._challenge(request), False
        try:
            verify_integrity(request, self.key)
        except IntegrityError:
            self.counters.unauthenticated += 1
            return self._challenge(request), False
        if request.text(AttributeType.NONCE) != self._nonce:
            return self._challenge(request, 438), False
        allocation = self.allocations.get(client)
        if method == Method.ALLOCATE:
            return self._allocate(request, client, allocation, now), True
        if allocation is None:
            return request.error(437), False
        if method == Method.REFRESH:
            asked = _integer(request, AttributeType.LIFETIME, 600)
            if asked == 0:
                self._delete(allocation)
                return request.success(IntegerAttribute(AttributeType.LIFETIME, 0)), True
            granted = min(asked, MAX_LIFETIME)
            allocation.expires_at = now + granted
            return request.success(IntegerAttribute(AttributeType.LIFETIME, granted)), True
        if method == Method.CREATE_PERMISSION:
            for attribute in request.attributes:
                if isinstance(attribute, XorAddressAttribute):
                    allocation.permissions[attribute.endpoint.address] = now + PERMISSION_LIFETIME
            return request.success(), True
        if method == Method.CHANNEL_BIND:
            number = _integer(request, AttributeType.CHANNEL_NUMBER, 0)
            peer = request.find(AttributeType.XOR_PEER_ADDRESS)
            if not valid_channel(number) or not isinstance(peer, XorAddressAttribute):
                return request.error(400), True
            endpoint = peer.endpoint
            if allocation.numbers.get(endpoint, number) != number:
                return request.error(400), True
            allocation.channels[number] = (endpoint, now + CHANNEL_LIFETIME)
            allocation.numbers[endpoint] = number
            allocation.permissions[endpoint.address] = now + PERMISSION_LIFETIME
            return request.success(), True
        return request.error(400), True

    def _allocate(
        self, request: Message, client: Endpoint, allocation: SimAllocation | None, now: float
    ) -> Message:
        if allocation is not None:
            return request.error(437)
        if self.refuse is not None:
            return request.error(self.refuse)
        used = set(self._by_socket)
        free = [i for i in range(1, len(self.relays) + 1) if i not in used]
        if not free:
            return request.error(508)
        socket = free[0]
        lifetime = min(_integer(request, AttributeType.LIFETIME, 600), MAX_LIFETIME)
        allocation = SimAllocation(client, socket, self.relays[socket - 1], now + lifetime)
        self.allocations[client] = allocation
        self._by_socket[socket] = allocation
        self.counters.allocations += 1
        return request.success(
            XorAddressAttribute(AttributeType.XOR_RELAYED_ADDRESS, allocation.relayed),
            XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, client),
            IntegerAttribute(AttributeType.LIFETIME, lifetime),
        )

    def _challenge(self, request: Message, code: int = 401) -> Message:
        return request.error(
            code,
            TextAttribute(AttributeType.REALM, self.realm),
            TextAttribute(AttributeType.NONCE, self._nonce),
        )

    # -- peers --------------------------------------------------------------------

    def _to_peer(self, allocation: SimAllocation, peer: Endpoint, data: bytes, now: float) -> None:
        if not allocation.permitted(peer.address, now):
            self.counters.no_permission += 1
            return
        self.counters.relayed_to_peers += 1
        self._out.append(Datagram(data, peer, allocation.relay_socket))

    def _from_peer(self, data: bytes, peer: Endpoint, socket: int, now: float) -> None:
        allocation = self._by_socket.get(socket)
        if allocation is None:
            return
        if not allocation.permitted(peer.address, now):
            self.counters.no_permission += 1
            return
        self.counters.relayed_to_clients += 1
        number = allocation.numbers.get(peer)
        if number is not None and allocation.channels[number][1] > now:
            packet = encode_channel_data(number, data)
        else:
            packet = data_indication(self._rng.randbytes(12), peer, data)
        self._out.append(Datagram(packet, allocation.client, 0))

    # -- time ---------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        for allocation in [a for a in self.allocations.values() if a.expires_at <= now]:
            self._delete(allocation)

    def _delete(self, allocation: SimAllocation) -> None:
        self.allocations.pop(allocation.client, None)
        self._by_socket.pop(allocation.relay_socket, None)


def _integer(request: Message, kind: AttributeType, default: int) -> int:
    attribute = request.find(kind)
    return attribute.value if isinstance(attribute, IntegerAttribute) else default


#: Relay ports each simulated server binds (allocations at once).
RELAY_PORTS = 16
FIRST_RELAY_PORT = 49152


def start_turn_server(
    network: Network,
    realm: Realm,
    server: Endpoint,
    *,
    name: str = "turn",
    delay: float = 0.0,
    ports: int = RELAY_PORTS,
    **options: object,
) -> tuple[SimTurnServer, CoreDriver[None]]:
    """A host at ``server``'s address on ``realm`` (``delay``: its link's one-way
    delay) running a :class:`SimTurnServer` with ``ports`` relay ports."""
    host = network.add_host(name, realm, [server.address], link=Link.symmetric(delay))
    relays = [Endpoint(server.address, FIRST_RELAY_PORT + i) for i in range(ports)]
    core = SimTurnServer(server, relays, **options)  # type: ignore[arg-type]
    sockets = host.bind_all([(e.address, e.port) for e in (server, *relays)])
    return core, CoreDriver(core, sockets)
