"""The asyncio connect node (``natkit.aio.connect``) on loopback sockets.

Nodes talk through the in-memory signal hub; STUN servers are small
loopback responders that may lie about the mapped address (a NAT in
miniature); the port mapper is a fake. Nothing leaves 127.0.0.0/8, no
name is looked up (NAT64 discovery off).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from natkit.aio.connect import (
    Connection,
    ConnectOptions,
    LocalCandidatesChanged,
    NodeEvent,
    PathLost,
    PathSelected,
    StateChanged,
    StunFailure,
    StunServerAnswered,
    StunServerFailed,
    TraversalOptions,
    connect,
)
from natkit.aio.signal_hub import SignalHub
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.gather.candidates import PortMapObservation, PortMapStatus
from natkit.gather.host import HostPolicy, InterfaceAddress
from natkit.ice import Announcement, ConnectConfig, encode_signal
from natkit.ice.candidates import CandidateKind
from natkit.identity import PrivateKey, PublicKey, WeakKeyError, seal
from natkit.identity.keyfile import save_private_key
from natkit.signal.channel import ChannelState
from natkit.stun.attributes import XorAddressAttribute
from natkit.stun.codec import Message, encode_message, parse_message
from natkit.stun.constants import AttributeType, MessageClass, Method

LIVENESS = 10.0
FAST = ConnectConfig(
    keepalive_default=1.0, keepalive_minimum=0.5, loss_retransmit=0.1, loss_transmissions=3
)


def options(**changes: Any) -> ConnectOptions:
    values: dict[str, Any] = {
        "local_addresses": ("127.0.0.1",),
        "portmap": False,
        "nat64": False,
        "interface_poll": 0.0,
        "host": HostPolicy(include_loopback=True),
        # The fake STUN servers here are no classifier's (tests of it set it).
        "traversal": TraversalOptions(classify=False),
    }
    values.update(changes)
    return ConnectOptions(**values)


@dataclass
class Recorder:
    """Every event a node reported through its callback."""

    events: list[NodeEvent] = field(default_factory=list)

    def __call__(self, event: NodeEvent) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


async def until(predicate: Callable[[], bool], timeout: float = LIVENESS) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


@dataclass
class Pair:
    hub: SignalHub
    keys: tuple[PrivateKey, PrivateKey]
    nodes: tuple[Connection, Connection]
    records: tuple[Recorder, Recorder]


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    async with make_pair() as made:
        yield made


class make_pair:  # an async context manager used like a function
    def __init__(self, **changes: Any) -> None:
        self.changes = changes

    async def __aenter__(self) -> Pair:
        hub = SignalHub()
        keys = (PrivateKey.generate(), PrivateKey.generate())
        records = (Recorder(), Recorder())
        settings = options(**self.changes)
        nodes = tuple(
            Connection(key, hub.channel(key.public_key), options=settings, on_event=r)
            for key, r in zip(keys, records, strict=True)
        )
        self.pair = Pair(hub, keys, nodes, records)  # type: ignore[arg-type]
        await nodes[0].start([keys[1].public_key])
        await nodes[1].start([keys[0].public_key])
        return self.pair

    async def __aexit__(self, *exc: object) -> None:
        for node in self.pair.nodes:
            await node.close()


def selected_both(pair: Pair) -> bool:
    a, b = pair.nodes
    return a.selected(b.public_key) is not None and b.selected(a.public_key) is not None


async def test_two_nodes_agree_on_the_host_path_and_close_cleanly(pair: Pair) -> None:
    a, b = pair.nodes
    seen: list[NodeEvent] = []

    async def read() -> None:
        async for event in a.events():
            seen.append(event)

    reader = asyncio.get_running_loop().create_task(read())
    await until(lambda: selected_both(pair))
    path_a, path_b = a.selected(b.public_key), b.selected(a.public_key)
    assert path_a is not None
    assert path_b is not None
    assert (path_a.local, path_a.remote) == (path_b.remote, path_b.local)
    assert path_a.kind is CandidateKind.HOST
    # The iterator and the callback both saw the selection.
    await until(lambda: any(isinstance(e, PathSelected) for e in seen))
    assert pair.records[0].of(PathSelected)
    sockets = [s for n in pair.nodes for s in n.runner.sockets]
    for node in pair.nodes:
        await node.close()
    await asyncio.wait_for(reader, LIVENESS)  # the iterator ended with close()
    assert all(s.fileno() == -1 for s in sockets)
    assert all(n.channel.state is ChannelState.CLOSED for n in pair.nodes)
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == []


async def test_two_iterators_each_see_every_event() -> None:
    hub = SignalHub()
    keys = (PrivateKey.generate(), PrivateKey.generate())
    a, b = (Connection(k, hub.channel(k.public_key), options=options()) for k in keys)
    seen: tuple[list[NodeEvent], list[NodeEvent]] = ([], [])

    async def read(into: list[NodeEvent]) -> None:
        async for event in a.events():
            into.append(event)

    try:
        await a.start([keys[1].public_key])
        loop = asyncio.get_running_loop()
        readers = [loop.create_task(read(into)) for into in seen]
        while a._events.subscribers < 2:
            await asyncio.sleep(0)
        await b.start([keys[0].public_key])  # only now can a path be chosen
        await until(lambda: all(any(isinstance(e, PathSelected) for e in s) for s in seen))
    finally:
        await a.close()
        await b.close()
    await asyncio.wait_for(asyncio.gather(*readers), LIVENESS)
    first, second = seen
    # Both saw the same events; the first also what came before either ran.
    assert first[len(first) - len(second) :] == second
    assert len(second) >= 2
    assert a.counters.events_dropped == 0


@dataclass
class LyingStun(asyncio.DatagramProtocol):
    """A STUN server that answers every Binding request with ``mapped``
    (a NAT's public endpoint in miniature), and records the sources."""

    mapped: Endpoint
    sources: list[Endpoint] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None
    #: ``False``: a dead server (requests are ignored).
    answering: bool = True

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if not self.answering:
            return
        request = parse_message(data)
        self.sources.append(Endpoint.from_sockaddr(addr))
        answer = Message(
            Method.BINDING,
            MessageClass.SUCCESS_RESPONSE,
            request.transaction_id,
            (XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, self.mapped),),
        )
        assert self.transport is not None
        self.transport.sendto(encode_message(answer), addr)


async def lying_stun(mapped: str) -> tuple[LyingStun, str, asyncio.DatagramTransport]:
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(
        lambda: LyingStun(Endpoint.parse(mapped)), local_addr=("127.0.0.2", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    return server, f"127.0.0.2:{port}", transport


def srflx_of(node: Connection) -> list[Endpoint]:
    return [c.address for c in node.local_candidates if c.kind is CandidateKind.SRFLX]


async def test_server_reflexive_candidates_are_learnt_on_the_nodes_own_socket() -> None:
    server, address, transport = await lying_stun("198.51.100.77:40000")
    key, peer = PrivateKey.generate(), PrivateKey.generate()
    hub = SignalHub()
    hub.channel(peer.public_key)
    node = Connection(key, hub.channel(key.public_key), stun=[address], options=options())
    try:
        await node.start([peer.public_key])
        await until(lambda: bool(srflx_of(node)))
        assert srflx_of(node) == [Endpoint.parse("198.51.100.77:40000")]
        # Asked from the socket the checks use, and answered to the gatherer,
        # not to the agent (which would count an unknown transaction).
        assert server.sources == [node.local_endpoints[0]]
        assert node.core_counters.unknown_transaction == 0
        assert node.mux.to_helpers == 1
        await until(lambda: not node.gathering.gathering)
        assert node.mux.helpers == ()
    finally:
        await node.close()
        transport.close()


async def test_stun_servers_that_give_no_address_are_reported_and_so_is_their_return() -> None:
    server, address, transport = await lying_stun("198.51.100.77:40000")
    server.answering = False
    dead_dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead_dns.bind(("127.0.0.1", 0))
    dns_port = dead_dns.getsockname()[1]
    dead_dns.close()  # nothing answers there: the name cannot be resolved
    key, peer = PrivateKey.generate(), PrivateKey.generate()
    hub = SignalHub()
    hub.channel(peer.public_key)
    record = Recorder()
    node = Connection(
        key,
        hub.channel(key.public_key),
        stun=[address, "stun.nowhere.test"],
        options=options(dns_server=f"127.0.0.1:{dns_port}"),
        on_event=record,
    )
    try:
        await node.start([peer.public_key])
        await until(lambda: len(record.of(StunServerFailed)) == 2)
        failed = {e.server: e for e in record.of(StunServerFailed)}
        unresolved = failed["stun.nowhere.test"]
        assert (unresolved.reason, unresolved.address) == (StunFailure.UNRESOLVED, None)
        assert "cannot resolve 'stun.nowhere.test'" in unresolved.detail
        silent = failed[address]
        assert silent.reason in (StunFailure.CUT_OFF, StunFailure.TIMED_OUT)
        assert silent.address == Endpoint.parse(address)
        assert silent.local == node.local_endpoints[0]
        # The node goes on without them (its host candidate, its peer).
        assert node.peers == (peer.public_key,)
        assert not node.closed
        await until(lambda: not node.gathering.gathering)
        node.network_changed()  # another round, the server still dead: not news
        await until(lambda: node.gathering.rounds == 2 and not node.gathering.gathering)
        assert len(record.of(StunServerFailed)) == 2
        server.answering = True
        node.network_changed()
        await until(lambda: bool(record.of(StunServerAnswered)))
        (back,) = record.of(StunServerAnswered)
        assert (back.server, back.address) == (address, silent.address)
        assert srflx_of(node) == [Endpoint.parse("198.51.100.77:40000")]
    finally:
        await node.close()
        transport.close()


async def test_a_moved_mapping_is_regathered_and_the_peer_learns_it() -> None:
    server, address, transport = await lying_stun("198.51.100.77:40000")
    async with make_pair() as pair:
        a, b = pair.nodes
        await a.close()  # rebuilt with the STUN server
        channel = pair.hub.channel(pair.keys[0].public_key)
        a = Connection(pair.keys[0], channel, stun=[address], options=options())
        events = Recorder()
        a.on_event = events
        pair.nodes = (a, b)
        await a.start([pair.keys[1].public_key])
        await until(lambda: selected_both(pair) and bool(srflx_of(a)))
        server.mapped = Endpoint.parse("198.51.100.77:40999")  # the NAT rebound
        a.network_changed()
        new = Endpoint.parse("198.51.100.77:40999")
        await until(lambda: srflx_of(a) == [new])
        (change,) = [e for e in events.of(LocalCandidatesChanged) if e.removed]
        assert [c.address for c in change.removed] == [Endpoint.parse("198.51.100.77:40000")]
        assert [c.address for c in change.added] == [new]
        # Trickled: the peer pairs with it.
        await until(lambda: new in {row.remote for row in b.pairs(a.public_key)})
    transport.close()


async def test_a_lost_path_makes_the_node_gather_again() -> None:
    server, address, transport = await lying_stun("198.51.100.77:40000")
    hub = SignalHub()
    keys = [PrivateKey.generate(), PrivateKey.generate()]
    record = Recorder()
    fast = options(config=FAST)
    a = Connection(keys[0], hub.channel(keys[0].public_key), stun=[address], options=fast)
    b = Connection(keys[1], hub.channel(keys[1].public_key), options=fast)
    a.on_event = record
    try:
        await a.start([keys[1].public_key])
        await b.start([keys[0].public_key])
        await until(lambda: a.selected(b.public_key) is not None and a.gathering.rounds == 1)
        await until(lambda: not a.gathering.gathering)
        await b.close()  # the path dies
        await until(lambda: bool(record.of(PathLost)))
        await until(lambda: a.gathering.rounds == 2)
        await until(lambda: len(server.sources) == 2)
    finally:
        await a.close()
        await b.close()
        transport.close()


async def test_hostile_signals_are_counted_and_dropped() -> None:
    hub = SignalHub()
    me, peer, stranger = PrivateKey.generate(), PrivateKey.generate(), PrivateKey.generate()
    node = Connection(me, hub.channel(me.public_key), options=options())
    peer_channel = hub.channel(peer.public_key)
    stranger_channel = hub.channel(stranger.public_key)
    announcement = Announcement(
        generation=7, ufrag="peerUfrag", pwd="peerPasswordPeerPassword", tie_breaker=5
    )
    good = seal(peer, me.public_key, encode_signal(announcement))
    try:
        await node.start([peer.public_key])
        counters = node.signal_counters
        # From a key that is not a peer: dropped unopened.
        await stranger_channel.send(me.public_key, seal(stranger, me.public_key, b"x"))
        # Garbled on the way, or sealed by someone else for the peer's name.
        await peer_channel.send(me.public_key, good[:-1] + bytes([good[-1] ^ 1]))
        await peer_channel.send(me.public_key, seal(stranger, me.public_key, b"forged"))
        await peer_channel.send(me.public_key, b"short")
        # Opened, but not a signal message.
        await peer_channel.send(me.public_key, seal(peer, me.public_key, b"NKs\x01junk"))
        await until(lambda: counters.malformed == 1)
        assert (counters.unknown_sender, counters.forged, counters.received) == (1, 3, 0)
        # The genuine message still works afterwards.
        await peer_channel.send(me.public_key, good)
        await until(lambda: counters.received == 1)
        assert node.agent.state(peer.public_key) != "new"
        assert not node.closed
    finally:
        await node.close()


async def test_signalling_back_up_reannounces_to_every_peer(pair: Pair) -> None:
    a = pair.nodes[0]
    await until(lambda: selected_both(pair))
    delivered = pair.hub.counters.delivered
    pair.hub.set_online(a.public_key, False)
    pair.hub.set_online(a.public_key, True)
    await until(lambda: a.counters.signalling_up == 1)
    states = [e.state for e in pair.records[0].of(StateChanged)]
    assert states == [ChannelState.CONNECTING, ChannelState.UP]
    # The announcement and the peer's acknowledgement crossed the hub.
    await until(lambda: pair.hub.counters.delivered >= delivered + 2)


async def test_a_raising_callback_is_counted_and_the_node_keeps_working() -> None:
    def broken(event: NodeEvent) -> None:
        raise RuntimeError("consumer bug")

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, _context: None)
    async with make_pair() as pair:
        pair.nodes[0].on_event = broken
        await until(lambda: selected_both(pair))
        assert pair.nodes[0].counters.callback_errors >= 1


async def test_bad_peers_are_refused_and_a_failed_start_leaves_nothing_open() -> None:
    hub = SignalHub()
    key = PrivateKey.generate()
    node = Connection(key, hub.channel(key.public_key), options=options())
    await node.start()
    try:
        with pytest.raises(LocalProtocolError, match="own key"):
            node.add_peer(key.public_key)
        with pytest.raises(LocalProtocolError):
            node.add_peer("not a key")
        with pytest.raises(WeakKeyError):
            node.add_peer(PublicKey(bytes(32)))
        assert node.peers == ()
        taken = node.local_endpoints[0].port
    finally:
        await node.close()
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", 0))
    other = PrivateKey.generate()
    channel = hub.channel(other.public_key)
    busy = Connection(other, channel, options=options(port=blocker.getsockname()[1]))
    try:
        with pytest.raises(OSError, match="in use"):
            await busy.start()
        assert channel.state is ChannelState.CLOSED
    finally:
        blocker.close()
    assert taken > 0


@dataclass
class FakeMapper:
    """A port mapper that grants ``external`` for whatever it is asked."""

    external: Endpoint
    asked: list[Endpoint] = field(default_factory=list)
    released: int = 0

    async def map_port(self, base: Endpoint) -> PortMapObservation:
        self.asked.append(base)
        return PortMapObservation(
            PortMapStatus.MAPPED, external=self.external, base=base, protocol="pcp"
        )

    async def release(self) -> None:
        self.released += 1


async def test_a_port_mapping_becomes_a_mapped_candidate_and_is_released() -> None:
    hub = SignalHub()
    key = PrivateKey.generate()
    mapper = FakeMapper(Endpoint.parse("203.0.113.99:51820"))
    node = Connection(key, hub.channel(key.public_key), options=options(), port_mapper=mapper)
    await node.start()
    try:
        await until(lambda: any(c.kind is CandidateKind.MAPPED for c in node.local_candidates))
        assert mapper.asked == [node.local_endpoints[0]]
    finally:
        await node.close()
    assert mapper.released == 1


async def test_connect_is_the_context_manager(tmp_path: Any) -> None:
    hub = SignalHub()
    me, peer = PrivateKey.generate(), PrivateKey.generate()
    key_file = tmp_path / "node.key"
    save_private_key(key_file, me)
    hub.channel(peer.public_key)
    async with connect(
        str(key_file), [str(peer.public_key)], channel=hub.channel(me.public_key), options=options()
    ) as connection:
        assert connection.public_key == me.public_key
        assert connection.peers == (peer.public_key,)
    assert connection.closed
    assert connection.channel.state is ChannelState.CLOSED
    with pytest.raises(LocalProtocolError, match="exactly one"):
        async with connect(me, [], rendezvous="127.0.0.1:9", channel=hub.channel(me.public_key)):
            pass
    with pytest.raises(LocalProtocolError, match="bad server"):
        async with connect(me, [], rendezvous="127.0.0.1:9", stun=["stun:"]):
            pass


def test_import_natkit_stays_light() -> None:
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    heavy = ("asyncio", "nacl", "natkit.aio.connect")
    code = f"import sys, natkit; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["[]"]


async def test_each_local_address_is_its_own_base_with_its_own_pairs() -> None:
    # A multihomed node: one socket per address, so each address makes pairs
    # of its own and answers leave from the address they were sent to.
    server, address, transport = await lying_stun("198.51.100.77:40000")
    hub = SignalHub()
    keys = [PrivateKey.generate(), PrivateKey.generate()]
    a = Connection(
        keys[0],
        hub.channel(keys[0].public_key),
        stun=[address],
        options=options(local_addresses=("127.0.0.1", "127.0.0.3")),
    )
    b = Connection(keys[1], hub.channel(keys[1].public_key), options=options())
    try:
        await a.start([keys[1].public_key])
        await b.start([keys[0].public_key])
        first, second = a.local_endpoints
        assert first.port == second.port
        assert first.address != second.address
        # Each socket asked the server itself.
        await until(lambda: len(server.sources) == 2)
        assert set(server.sources) == {first, second}
        await until(lambda: len(a.gathering.observations) == 2)
        assert {o.base for o in a.gathering.observations.values()} == {first, second}

        def both_answered() -> bool:
            rows = b.pairs(a.public_key)
            return {r.remote for r in rows if r.answers} >= {first, second}

        def both_asked() -> bool:
            # a's own checks from each address (each paced separately: wait).
            return {r.local for r in a.pairs(b.public_key) if r.answers} >= {first, second}

        await until(both_answered)
        await until(both_asked)
    finally:
        await a.close()
        await b.close()
        transport.close()


async def test_a_new_interface_address_is_trickled_and_the_node_gathers_again() -> None:
    _, address, transport = await lying_stun("198.51.100.77:40000")
    loopback = [InterfaceAddress("lo", ipaddress.ip_address("127.0.0.1"), 8)]
    listed = list(loopback)
    hub = SignalHub()
    keys = [PrivateKey.generate(), PrivateKey.generate()]
    hub.channel(keys[1].public_key)
    record = Recorder()
    node = Connection(
        keys[0],
        hub.channel(keys[0].public_key),
        stun=[address],
        options=options(local_addresses=(), interface_poll=0.05),
        on_event=record,
        interfaces=lambda: listed,
    )
    try:
        await node.start([keys[1].public_key])
        await until(lambda: node.gathering.rounds == 1 and not node.gathering.gathering)
        listed.append(InterfaceAddress("lo", ipaddress.ip_address("127.0.0.7"), 8))
        new = Endpoint(ipaddress.ip_address("127.0.0.7"), node.local_endpoints[0].port)
        await until(lambda: new in {c.address for c in node.local_candidates})
        assert any(new in {c.address for c in e.added} for e in record.of(LocalCandidatesChanged))
        await until(lambda: node.gathering.rounds == 2)
    finally:
        await node.close()
        transport.close()
