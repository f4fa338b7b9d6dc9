"""The connect node's part 2 on loopback and with stand-ins: relays, reports, data, ports.

What the lab cannot isolate: the stream slot's connection life (open on the
first datagram, bytes to the agent, a closed or refused connection reported,
an idle one closed quietly), the extra ports of the runner, the data path's
routing, the report the node builds and sends, and the checks on relay
options. The lab (``tests/lab/test_relay_lab.py``) runs all of it against
coturn through real NATs.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from natkit.aio.connect import Connection, ConnectOptions
from natkit.aio.connect_data import KEPT_PATHS, DataRoutes
from natkit.aio.connect_relay import RelayOptions, RelayStreams, relay_servers
from natkit.aio.connect_report import DEFAULT_BIRTHDAY, TraversalOptions, build_report
from natkit.aio.connect_runner import FIRST_EXTRA_INDEX, NodeRunner
from natkit.aio.signal_hub import SignalHub
from natkit.aio.turn import TurnServer
from natkit.birthday.planner import BirthdayScenario, Mode, budget_odds, estimate
from natkit.birthday.ports import PortRange
from natkit.endpoint import Endpoint, Family
from natkit.errors import LocalProtocolError
from natkit.gather.candidates import CandidateKind, PortMapObservation, PortMapStatus
from natkit.gather.host import HostPolicy
from natkit.ice import ConnectAgent, RelayServer
from natkit.ice.candidates import CandidateKind as IceKind
from natkit.ice.events import BirthdaySocketsWanted, PathSelected
from natkit.ice.pairs import PairState, PairStatus
from natkit.ice.relays import _relayable
from natkit.ice.report import decode_report
from natkit.identity import PrivateKey
from natkit.portmap.mapping import MappingProtocol
from natkit.sansio import Datagram
from natkit.turn.config import TurnConfig, TurnTransport
from natkit.turn.credentials import Credentials, rest_expiry

LIVENESS = 10.0


async def until(predicate: Callable[[], bool], timeout: float = LIVENESS) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


# -- relay options -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"servers": ("turn:203.0.113.30",)}, "--relay needs credentials"),
        ({"user": "u"}, "needs a password"),
        ({"password": "p"}, "needs a password"),
        ({"user": "u", "password": "p", "secret": "s"}, "not both"),
        ({"secret": ""}, "cannot be empty"),
        ({"servers": ("turns:x?transport=udp",), "secret": "s"}, "DTLS"),
        ({"servers": ("stun:x",), "secret": "s"}, "bad server"),
    ],
)
def test_bad_relay_options_are_refused_saying_why(values: dict[str, Any], message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        RelayOptions(**values)


def test_rest_credentials_are_minted_from_the_secret_for_a_day() -> None:
    options = RelayOptions(servers=("turn:203.0.113.31",), secret="s3cret", rest_name="node")
    credentials = options.credentials(now=1_000_000.0)
    assert credentials is not None
    assert credentials.username == "1086400:node"
    assert rest_expiry(credentials.username) == 1_000_000 + 86400
    long_term = RelayOptions(servers=("turn:x",), user="u", password="p").credentials()
    assert long_term == Credentials("u", "p")


async def test_relay_servers_use_the_family_socket_for_udp_and_a_fresh_slot_for_streams() -> None:
    options = RelayOptions(
        servers=(
            "turn:203.0.113.30:3478?transport=udp",
            "turn:203.0.113.30:3478?transport=tcp",
            "turns:203.0.113.30",
            "turn:[2001:db8::30]",
            "turn:no-such-name.invalid",
        ),
        user="u",
        password="p",
    )
    sockets = [Endpoint.parse("0.0.0.0:4000")]
    slots = iter(range(FIRST_EXTRA_INDEX, FIRST_EXTRA_INDEX + 10))
    servers, notes = await relay_servers(options, sockets, lambda: next(slots))
    assert [(s.name, s.transport, s.socket) for s, _ in servers] == [
        ("turn:203.0.113.30:3478?transport=udp", TurnTransport.UDP, 0),
        ("turn:203.0.113.30:3478?transport=tcp", TurnTransport.TCP, FIRST_EXTRA_INDEX),
        ("turns:203.0.113.30", TurnTransport.TLS, FIRST_EXTRA_INDEX + 1),
    ]
    assert servers[2][0].endpoint == Endpoint.parse("203.0.113.30:5349")
    assert servers[0][0].config.credentials == Credentials("u", "p")
    assert notes[0] == "turn:[2001:db8::30]: no socket of its address family"
    assert notes[1].startswith("turn:no-such-name.invalid:")


def test_a_relay_on_the_internet_is_never_asked_for_a_site_local_peer() -> None:
    public, private = Endpoint.parse("203.0.113.30:3478"), Endpoint.parse("10.0.0.1:3478")
    for peer in ("192.168.1.2", "10.0.2.2", "172.16.0.1", "100.64.0.2", "fd00::1"):
        address = Endpoint.parse(f"{peer}:1" if ":" not in peer else f"[{peer}]:1").address
        assert not _relayable(address, public.address), peer
        assert _relayable(address, private.address), peer  # a relay inside the site may
    assert _relayable(Endpoint.parse("198.51.100.2:1").address, public.address)


# -- the stream slots -------------------------------------------------------------------------


@dataclass
class StubAgent:
    """What RelayStreams calls on the agent."""

    data: list[tuple[int, bytes]] = field(default_factory=list)
    lost: list[tuple[int, str]] = field(default_factory=list)

    def relay_stream_data(self, socket: int, data: bytes, now: float) -> None:
        self.data.append((socket, data))

    def relay_stream_lost(self, socket: int, now: float, detail: str = "") -> None:
        self.lost.append((socket, detail))


class StubRunner:
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.ports: dict[int, Callable[[Datagram], None]] = {}
        self.transmits = 0

    def add_port(self, index: int, send: Callable[[Datagram], None]) -> None:
        self.ports[index] = send

    def remove_port(self, index: int) -> None:
        self.ports.pop(index, None)

    def transmit(self, now: float | None = None) -> None:
        self.transmits += 1


@dataclass
class Echo:
    """A TCP server that records what it got and answers with ``answer``."""

    answer: bytes = b"TURN"
    received: bytearray = field(default_factory=bytearray)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        while data := await reader.read(4096):
            self.received += data
            writer.write(self.answer)


async def test_a_stream_slot_opens_on_the_first_datagram_and_feeds_the_agent() -> None:
    echo = Echo()
    server = await asyncio.start_server(echo.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    agent, runner = StubAgent(), StubRunner()
    streams = RelayStreams(agent, runner)  # type: ignore[arg-type]
    slot = FIRST_EXTRA_INDEX
    streams.add(slot, TurnServer(Endpoint.parse(f"127.0.0.1:{port}"), TurnTransport.TCP))
    try:
        assert streams.open_slots == ()
        target = Endpoint.parse(f"127.0.0.1:{port}")
        runner.ports[slot](Datagram(b"first", target, slot))
        runner.ports[slot](Datagram(b"second", target, slot))  # waits, in order
        await until(lambda: bytes(echo.received) == b"firstsecond")
        await until(lambda: bool(agent.data))
        assert agent.data[0] == (slot, b"TURN"[: len(agent.data[0][1])])
        assert streams.connections == 1
        # The server closes: the agent hears of it (it backs off, then sends again).
        echo.writers[0].close()
        await until(lambda: bool(agent.lost))
        assert agent.lost == [(slot, "the server closed the connection")]
        assert streams.open_slots == ()
        # The next datagram opens a new connection; RelayStreamIdle closes it
        # without a word to the agent.
        runner.ports[slot](Datagram(b"again", target, slot))
        await until(lambda: streams.connections == 2)
        streams.idle(slot)
        await asyncio.sleep(0.1)
        assert len(agent.lost) == 1
    finally:
        await streams.close()
        server.close()
        await server.wait_closed()
    assert slot not in runner.ports


async def test_a_stream_that_cannot_connect_is_reported_to_the_agent() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()  # nothing listens there now
    agent, runner = StubAgent(), StubRunner()
    streams = RelayStreams(agent, runner)  # type: ignore[arg-type]
    streams.add(7, TurnServer(Endpoint.parse(f"127.0.0.1:{port}"), TurnTransport.TCP))
    try:
        runner.ports[7](Datagram(b"x", Endpoint.parse(f"127.0.0.1:{port}"), 7))
        await until(lambda: bool(agent.lost))
        ((slot, detail),) = agent.lost
        assert slot == 7
        assert detail.startswith("cannot connect")
    finally:
        await streams.close()


async def test_a_tls_context_that_cannot_be_made_is_a_lost_stream_not_a_lost_task(
    tmp_path: Path,
) -> None:
    # A library caller's tls_ca that holds no certificate (natkit connect
    # refuses one at start): the relay's failure says why.
    junk = tmp_path / "junk.pem"
    junk.write_text("junk\n")
    agent, runner = StubAgent(), StubRunner()
    streams = RelayStreams(agent, runner, tls_ca=str(junk))  # type: ignore[arg-type]
    streams.add(7, TurnServer(Endpoint.parse("127.0.0.1:9"), TurnTransport.TLS))
    try:
        runner.ports[7](Datagram(b"x", Endpoint.parse("127.0.0.1:9"), 7))
        await until(lambda: bool(agent.lost))
        ((slot, detail),) = agent.lost
        assert slot == 7
        assert detail.startswith(f"TLS setup failed: {junk}: no CA certificate could be loaded")
    finally:
        await streams.close()


# -- the runner's extra ports ----------------------------------------------------------------


class NullCore:
    """A core that records what it receives and sends what it is told."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, int]] = []
        self.outbox: list[Datagram] = []

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        self.received.append((data, socket))

    def handle_timer(self, now: float) -> None:
        pass

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self.outbox = self.outbox, []
        return out

    def get_timer(self) -> float | None:
        return None

    def next_event(self) -> None:
        return None


async def test_extra_ports_carry_their_datagrams_and_a_gone_one_is_counted() -> None:
    core = NullCore()
    runner = NodeRunner(core, lambda event: None)
    await runner.bind([Endpoint.parse("127.0.0.1:0")])
    try:
        carried: list[Datagram] = []
        index = runner.indices.take()
        assert index >= FIRST_EXTRA_INDEX
        assert runner.indices.take() == index + 1  # never the same twice
        runner.add_port(index, carried.append)
        target = Endpoint.parse("127.0.0.1:9")
        core.outbox = [Datagram(b"a", target, index), Datagram(b"b", target, index + 5)]
        runner.transmit()
        assert [d.data for d in carried] == [b"a"]
        assert runner.orphans == 1
        # What arrives on an extra port reaches the core under its index,
        # unless the data tap takes it.
        runner.port_received(index, b"probe", target)
        runner.data_tap = lambda socket, data, remote, now: data == b"data"
        runner.port_received(index, b"data", target)
        assert core.received == [(b"probe", index)]
    finally:
        runner.close()


# -- the data path --------------------------------------------------------------------------


def selection(peer: str, remote: str, socket: int | None, relay: str | None = None) -> PathSelected:
    kind = IceKind.RELAY if relay is not None else IceKind.SRFLX
    return PathSelected(
        peer, Endpoint.parse("198.51.100.1:1"), Endpoint.parse(remote), kind, 0.001, None,
        IceKind.SRFLX, kind, socket, relay,
    )  # fmt: skip


def test_data_routes_follow_the_selected_paths_and_the_valid_pairs() -> None:
    routes = DataRoutes()
    routes.path_selected(selection("p", "198.51.100.2:5000", 0))
    assert routes.direct(0, Endpoint.parse("198.51.100.2:5000")) == ("p", False)
    assert routes.direct(1, Endpoint.parse("198.51.100.2:5000")) is None
    routes.path_selected(selection("p", "198.51.100.2:6000", None, relay="turn:x"))
    assert routes.relayed("turn:x", Endpoint.parse("198.51.100.2:6000")) == "p"
    assert routes.relayed("turn:x", Endpoint.parse("198.51.100.9:6000")) is None
    # The last KEPT_PATHS paths stay routes (the peer may lag a switch).
    for port in range(7000, 7000 + KEPT_PATHS):
        routes.path_selected(selection("p", f"198.51.100.2:{port}", 0))
    assert routes.direct(0, Endpoint.parse("198.51.100.2:5000")) is None
    assert routes.direct(0, Endpoint.parse(f"198.51.100.2:{7000 + KEPT_PATHS - 1}"))
    # A valid pair not selected yet is a route once looked up.
    row = PairStatus(
        Endpoint.parse("198.51.100.1:1"), Endpoint.parse("198.51.100.3:1"), IceKind.SRFLX,
        IceKind.RELAY, 0, None, PairState.SUCCEEDED, 1, 0.001, 0.001, 1, 1, False, False,
    )  # fmt: skip
    failed = PairStatus(
        Endpoint.parse("198.51.100.1:1"), Endpoint.parse("198.51.100.4:1"), IceKind.SRFLX,
        IceKind.SRFLX, 0, None, PairState.FAILED, 1, None, None, 5, 0, False, False,
    )  # fmt: skip
    assert routes.due(0.0)
    routes.learn([("q", row), ("q", failed)], 0.0)
    assert not routes.due(0.05)
    assert routes.direct(0, Endpoint.parse("198.51.100.3:1")) == ("q", True)
    assert routes.direct(0, Endpoint.parse("198.51.100.4:1")) is None
    routes.forget("p")
    assert routes.direct(0, Endpoint.parse(f"198.51.100.2:{7000 + KEPT_PATHS - 1}")) is None


def loopback_options(**changes: Any) -> ConnectOptions:
    values: dict[str, Any] = {
        "local_addresses": ("127.0.0.1",),
        "portmap": False,
        "nat64": False,
        "interface_poll": 0.0,
        "host": HostPolicy(include_loopback=True),
        "traversal": TraversalOptions(classify=False),
    }
    values.update(changes)
    return ConnectOptions(**values)


def recorder(box: list[tuple[object, bytes, bool]]) -> Callable[[object, bytes, bool], None]:
    def record(peer: object, data: bytes, relayed: bool) -> None:
        box.append((peer, data, relayed))

    return record


async def test_send_and_on_data_carry_datagrams_between_two_nodes() -> None:
    hub = SignalHub()
    keys = [PrivateKey.generate(), PrivateKey.generate()]
    got: list[list[tuple[object, bytes, bool]]] = [[], []]
    nodes = [
        Connection(
            key,
            hub.channel(key.public_key),
            options=loopback_options(),
            on_data=recorder(box),
        )
        for key, box in zip(keys, got, strict=True)
    ]
    a, b = nodes
    try:
        await a.start([keys[1].public_key])
        await b.start([keys[0].public_key])
        assert not a.send(b.public_key, b"too early")  # no path yet: nothing queued
        await until(lambda: a.selected(b.public_key) is not None)
        await until(lambda: b.selected(a.public_key) is not None)
        assert a.send(b.public_key, b"hello")
        assert b.send(a.public_key, b"and back")
        await until(lambda: bool(got[0]) and bool(got[1]))
        assert got[1] == [(a.public_key, b"hello", False)]
        assert got[0] == [(b.public_key, b"and back", False)]
        # A path this side has not selected yet (the peer switched first) is
        # found among the valid pairs.
        a.ladder.routes = DataRoutes()
        assert b.send(a.public_key, b"switched first")
        await until(lambda: len(got[0]) == 2)
        assert got[0][1] == (b.public_key, b"switched first", False)
        # Data is not the agent's input: nothing counted as junk.
        assert b.core_counters.not_stun == 0
        assert a.core_counters.not_stun == 0
        assert b.explain(a.public_key).relayed is False
    finally:
        for node in nodes:
            await node.close()


async def test_birthday_sockets_nobody_wants_any_more_are_closed() -> None:
    hub = SignalHub()
    key, peer = PrivateKey.generate(), PrivateKey.generate()
    node = Connection(key, hub.channel(key.public_key), options=loopback_options())
    try:
        await node.start([peer.public_key])
        sockets = node.ladder.birthday
        # An attempt the agent does not know (it ended meanwhile): the bound
        # sockets are handed back at once, and nothing is left open.
        sockets.wanted(BirthdaySocketsWanted(peer.public_key, 7, 3, Family.IPV4))
        await until(lambda: sockets.bound == 3)
        await asyncio.sleep(0.05)
        assert sockets.open == ()
        assert not [i for i in node.runner.extra if i not in node.ladder.streams.open_slots]
    finally:
        await node.close()


# -- this node's report -----------------------------------------------------------------


def test_the_report_combines_the_gatherer_and_the_options() -> None:
    mapped = Endpoint.parse("198.51.100.1:41000")
    options = TraversalOptions(port_range=PortRange(40000, 40999))
    report = build_report(
        None,
        PortMapObservation(PortMapStatus.MAPPED, external=mapped, protocol="pcp"),
        [
            (CandidateKind.HOST, Endpoint.parse("192.168.1.2:4000")),
            (CandidateKind.SRFLX, Endpoint.parse("198.51.100.1:4000")),
            (CandidateKind.MAPPED, mapped),
        ],
        options,
    )
    assert report.port_mapping is MappingProtocol.PCP
    assert report.mapped == mapped
    assert str(report.public_address) == "198.51.100.1"
    assert report.port_range == PortRange(40000, 40999)
    assert report.birthday == DEFAULT_BIRTHDAY
    bare = build_report(
        None, PortMapObservation(PortMapStatus.NOT_TESTED), [], TraversalOptions(birthday=None)
    )
    assert bare.birthday is None
    assert bare.mapped is None


def test_the_report_peers_get_names_the_relays_of_this_node() -> None:
    agent = ConnectAgent("a", rng=random.Random(1), sockets=[Endpoint.parse("0.0.0.0:4000")])
    config = TurnConfig(Endpoint.parse("203.0.113.30:5349"), None, TurnTransport.TLS, socket=99)
    report = build_report(
        None, PortMapObservation(PortMapStatus.NOT_TESTED), [], TraversalOptions()
    )
    agent.set_traversal_report(report, 0.0)
    assert decode_report(agent.report).relays == ()
    agent.add_relay_server(RelayServer("turns:203.0.113.30", config), 0.0)
    sent = decode_report(agent.report)
    assert [(r.name, r.transport) for r in sent.relays] == [
        ("turns:203.0.113.30", TurnTransport.TLS)
    ]


def test_the_ladder_asks_the_planner_only_what_a_budget_buys() -> None:
    scenario = BirthdayScenario(16, PortRange(40000, 40999), Mode.BOTH_HARD, 500.0)
    full, odds = estimate(scenario, probes=3000), budget_odds(scenario, 3000)
    assert odds.success_probability == full.success_probability
    assert odds.expected_seconds == full.expected_seconds
    assert odds.expected_run_seconds == full.expected_run_seconds
