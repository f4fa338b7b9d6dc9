"""Relayed peers on the simulator: a TURN server, nodes that relay, steady data streams.

* :func:`relayed_pair` builds :func:`~natkit.simulations.sites.two_sites` for two
  NAT types, puts a :class:`~natkit.simulations.turn.SimTurnServer` on the internet
  (``TURN_SERVER``, ``turn_delay`` away), gives each node its host and
  server-reflexive candidates and the relay server, and connects them.
* :class:`DataStream` sends a numbered datagram from one node to the other
  every ``interval`` over whatever path the sender has selected
  (``ConnectAgent.send_data``: straight from the socket, or through the
  relay) and counts what arrives, so a test reads how many datagrams a
  downgrade or an upgrade lost.
* :meth:`RelayedPair.both_signalled_at`: when both peers held each other's
  announcement (the hub's log), the moment issue 12's "time to first
  packet" is measured from.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from natkit.birthday.ports import PortRange
from natkit.endpoint import Endpoint
from natkit.ice import (
    Announcement,
    ConnectAgent,
    ConnectConfig,
    ConnectEvent,
    decode_signal,
)
from natkit.ice.events import RelayedDataReceived
from natkit.ice.relays import RelayServer
from natkit.ice.report import BirthdayCapability, RelayInUse, TraversalReport
from natkit.sansio import Datagram
from natkit.simulations.classification import simulate_classification
from natkit.simulations.clock import EventLoop
from natkit.simulations.connect import ConnectNode, SignalHub, gather, learn_mapped
from natkit.simulations.driver import CoreDriver
from natkit.simulations.nat import NatConfig
from natkit.simulations.reflexive import start_stun_server
from natkit.simulations.sites import TwoSites, two_sites
from natkit.simulations.traversal import SITE_DELAY, NatType
from natkit.simulations.turn import SimTurnServer, start_turn_server
from natkit.turn import Credentials, TurnConfig
from natkit.turn.channel_data import is_channel_data

TURN_SERVER = Endpoint.parse("192.0.2.30:3478")
TURN_USER, TURN_PASSWORD = "natkit", "natkit-sim-password"
#: One-way delay between the TURN host and the internet.
TURN_DELAY = 0.005
#: What a :class:`DataStream` datagram starts with (not STUN: first bits 01).
DATA_MAGIC = b"NKdata"
#: The STUN message type of a Data indication (RFC 8656 §18: method 0x007, indication).
_DATA_INDICATION = b"\x00\x17"


def relay_server(
    endpoint: Endpoint = TURN_SERVER,
    *,
    password: str = TURN_PASSWORD,
    socket: int = 0,
    name: str | None = None,
) -> RelayServer:
    """The simulated server as an agent's :class:`RelayServer` (UDP, socket 0)."""
    config = TurnConfig(endpoint, Credentials(TURN_USER, password), socket=socket)
    return RelayServer(name or f"turn:{endpoint}?transport=udp", config)


class _DataTap:
    """The agent, with :class:`DataStream` datagrams taken off its sockets
    first, and the arrival of relayed datagrams noted."""

    def __init__(self, agent: ConnectAgent, stream_sink: list[DataStream]) -> None:
        self.agent = agent
        self.sinks = stream_sink
        #: When a peer's datagram arrived through the relay (ChannelData or a
        #: Data indication from the server).
        self.relayed_arrivals: list[float] = []

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        if data.startswith(DATA_MAGIC):
            _deliver(self.sinks, data, now, relayed=False)
            return
        if remote == TURN_SERVER and (is_channel_data(data) or data[:2] == _DATA_INDICATION):
            self.relayed_arrivals.append(now)
        self.agent.receive_datagram(data, remote, socket, now)

    def handle_timer(self, now: float) -> None:
        self.agent.handle_timer(now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        return self.agent.datagrams_to_send(now)

    def get_timer(self) -> float | None:
        return self.agent.get_timer()

    def next_event(self) -> ConnectEvent | None:
        return self.agent.next_event()


@dataclass
class DataStream:
    """Numbered datagrams from ``sender`` to ``receiver`` every ``interval``."""

    sender: ConnectNode
    receiver: ConnectNode
    interval: float = 0.01
    #: Its index in the pair's list (carried in every datagram).
    number: int = 0
    #: Sequence number -> send time, of every datagram handed to a path.
    sent: dict[int, float] = field(default_factory=dict)
    #: Sequence number -> (arrival time, through a relay).
    received: dict[int, tuple[float, bool]] = field(default_factory=dict)
    #: Ticks with no selected path (nothing sent).
    pathless: int = 0
    running: bool = False
    _seq: int = 0

    def start(self) -> None:
        self.running = True
        self.sender.driver.invoke_later(self.interval, self._tick)

    def stop(self) -> None:
        self.running = False

    def _tick(self, now: float) -> None:
        if not self.running:
            return
        self._seq += 1
        data = DATA_MAGIC + struct.pack("!HI", self.number, self._seq)
        if self.sender.agent.send_data(self.receiver.name, data, now):
            self.sent[self._seq] = now
        else:
            self.pathless += 1
        self.sender.driver.invoke_later(self.interval, self._tick)

    def arrived(self, seq: int, now: float, *, relayed: bool) -> None:
        if seq in self.sent:
            self.received.setdefault(seq, (now, relayed))

    def lost_between(self, start: float, end: float) -> int:
        """Datagrams sent in ``[start, end)`` that never arrived."""
        return sum(
            1 for seq, at in self.sent.items() if start <= at < end and seq not in self.received
        )

    @property
    def lost(self) -> int:
        return len(self.sent) - len(self.received)

    def first_arrival(self, *, relayed: bool | None = None) -> float | None:
        times = [t for t, r in self.received.values() if relayed is None or r is relayed]
        return min(times) if times else None


@dataclass
class RelayedPair:
    """Two nodes behind NATs, relaying through one TURN server."""

    sites: TwoSites
    hub: SignalHub
    nodes: tuple[ConnectNode, ConnectNode]
    turn: SimTurnServer
    turn_driver: CoreDriver[None]
    streams: list[DataStream]
    taps: list[_DataTap]

    @property
    def loop(self) -> EventLoop:
        return self.sites.loop

    def run(self, seconds: float) -> None:
        self.loop.run_until(self.loop.now + seconds)

    def stream(self, sender: int = 0, interval: float = 0.01) -> DataStream:
        """A :class:`DataStream` from node ``sender`` to the other (started)."""
        first, second = self.nodes
        source, sink = (first, second) if sender == 0 else (second, first)
        stream = DataStream(source, sink, interval, len(self.streams))
        self.streams.append(stream)
        stream.start()
        return stream

    def both_signalled_at(self) -> float | None:
        """When the later of the two first received the other's announcement."""
        times: dict[str, float] = {}
        for sent_at, _sender, recipient, data in self.hub.log:
            if recipient in times or not isinstance(decode_signal(data), Announcement):
                continue
            times[recipient] = sent_at + self.hub.delay
        names = [n.name for n in self.nodes]
        return max(times[n] for n in names) if all(n in times for n in names) else None

    def connect(self) -> None:
        """Each node adds the other as its peer (when built with ``connect=False``)."""
        first, second = self.nodes
        first.connect(second.name)
        second.connect(first.name)

    def relayed_arrivals(self) -> list[float]:
        """When datagrams relayed from one peer to the other (Data indications
        and ChannelData from the TURN server) reached either node, in order."""
        return sorted(t for tap in self.taps for t in tap.relayed_arrivals)

    def cut_direct(self) -> None:
        """A drop rule between the two sites' public addresses (the relay still works)."""
        self.sites.network.block(self.sites.a.public_ip, self.sites.b.public_ip)

    def restore_direct(self) -> None:
        self.sites.network.unblock(self.sites.a.public_ip, self.sites.b.public_ip)


#: What each simulated node offers for birthday probing when it sends reports.
SIM_BIRTHDAY = BirthdayCapability(ports=64, probes=2048, rate=100)


def site_report(
    nat: NatConfig | None,
    *,
    relays: Sequence[RelayServer] = (),
    birthday: BirthdayCapability | None = SIM_BIRTHDAY,
) -> TraversalReport:
    """The traversal report a node behind ``nat`` sends: natkit's classifier
    run against that NAT (:mod:`natkit.simulations.classification`), the NAT's port
    range, the node's relays and its birthday limits."""
    classification = simulate_classification(nat).report
    port_range = None if nat is None else PortRange(*nat.port_range)
    in_use = tuple(RelayInUse(r.name, r.transport) for r in relays)
    return TraversalReport.from_reports(
        classification, relays=in_use, birthday=birthday, port_range=port_range
    )


def relayed_pair(
    a: NatType | NatConfig | None,
    b: NatType | NatConfig | None,
    *,
    seed: int = 1,
    config: ConnectConfig | None = None,
    relays: Sequence[bool] = (True, True),
    turn_delay: float = TURN_DELAY,
    connect: bool = True,
    allocate_first: bool = True,
    reports: bool = False,
    birthday: BirthdayCapability | None = SIM_BIRTHDAY,
) -> RelayedPair:
    """Two peers behind ``a`` and ``b``, each relaying through the simulated
    server when ``relays[i]``; ``connect``: add each as the other's peer
    (``allocate_first``: once the relays are allocated, as a node that
    starts its relay before its peers come online); ``reports``: each node
    sends its :func:`site_report` (the ladder then runs, birthday included)."""
    nats = [x.config if isinstance(x, NatType) else x for x in (a, b)]
    labels = "/".join(x.name if isinstance(x, NatType) else _label(x) for x in (a, b))
    rng = random.Random(random.Random(f"{seed}/{labels}").getrandbits(63))
    sites = two_sites(nats[0], nats[1], rng=random.Random(rng.getrandbits(64)), delay=SITE_DELAY)
    start_stun_server(sites)
    turn, turn_driver = start_turn_server(
        sites.network,
        sites.internet,
        TURN_SERVER,
        delay=turn_delay,
        username=TURN_USER,
        password=TURN_PASSWORD,
        rng=random.Random(rng.getrandbits(64)),
    )
    hub = SignalHub(sites.loop)
    streams: list[DataStream] = []
    taps: list[_DataTap] = []
    nodes = []
    for index, (name, site) in enumerate(zip(("a", "b"), sites.sites, strict=True)):
        sockets = site.bind(1, 40000)
        mapped = learn_mapped(sockets, rng)
        holder: list[ConnectNode] = []
        node = ConnectNode(
            name,
            sockets,
            hub,
            config=config,
            seed=rng.getrandbits(64),
            wrap=partial(_tap, taps, streams),
            on_event=partial(_relayed_data, holder, streams=streams),
        )
        holder.append(node)
        gather(node, mapped)
        if relays[index]:
            node.driver.invoke(partial(_add_relay, node.agent))
        if reports:
            report = site_report(
                nats[index], relays=[relay_server()] if relays[index] else [], birthday=birthday
            )
            node.driver.invoke(partial(node.agent.set_traversal_report, report))
        nodes.append(node)
    pair = RelayedPair(sites, hub, (nodes[0], nodes[1]), turn, turn_driver, streams, taps)
    if allocate_first:
        wanted = sum(1 for r in relays if r)

        def allocated() -> bool:
            return sum(n.agent.relays.active is not None for n in nodes) >= wanted

        sites.loop.run_until(allocated, timeout=10.0)
    if connect:
        pair.connect()
    return pair


def _tap(taps: list[_DataTap], streams: list[DataStream], agent: ConnectAgent) -> _DataTap:
    tap = _DataTap(agent, streams)
    taps.append(tap)
    return tap


def _label(nat: NatConfig | None) -> str:
    return "open" if nat is None else f"{nat.label}/{nat.port_range}"


def _add_relay(agent: ConnectAgent, now: float) -> None:
    agent.add_relay_server(relay_server(), now)


def _deliver(streams: list[DataStream], data: bytes, now: float, *, relayed: bool) -> None:
    number, seq = struct.unpack_from("!HI", data, len(DATA_MAGIC))
    if number < len(streams):
        streams[number].arrived(seq, now, relayed=relayed)


def _relayed_data(
    node: list[ConnectNode], event: ConnectEvent, *, streams: list[DataStream]
) -> None:
    if isinstance(event, RelayedDataReceived) and event.data.startswith(DATA_MAGIC):
        _deliver(streams, event.data, node[0].driver.now, relayed=True)
