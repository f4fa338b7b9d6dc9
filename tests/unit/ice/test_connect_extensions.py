"""The extension points parts 2 and 3 build on, each shown working with a fake.

* a **relay base** (part 2's TURN allocation): a fake relay that wraps
  datagrams in its own frames toward a fake relay server on the simulated
  internet; the agent checks and selects through it without knowing how;
* a **new local base at runtime** with a known-good remote (part 2's
  birthday hit): a pair no other way could find is checked and selected;
* the consumer's **path_unusable** (part 3's WireGuard "trust, then verify");
* many peers on **one socket** (part 3, WireGuard's port) demultiplexed by
  USERNAME and transaction ID.

(Reports riding in signals: ``test_connect_signalling.py``.)
"""

from __future__ import annotations

import ipaddress
import random
import struct
from dataclasses import dataclass, field

from connect_testlib import LOCAL, Harness, SimPair, connected_to_fake, host, sim_peers

from natkit.endpoint import Endpoint
from natkit.ice import (
    ConnectAgent,
    ConnectConfig,
    ConnectEvent,
    LossReason,
    PathLost,
    PeerUnreachable,
)
from natkit.ice.candidates import Candidate, CandidateKind
from natkit.sansio import Datagram
from natkit.simulations.connect import ConnectNode, SignalHub, connect_pair, gather, learn_mapped
from natkit.simulations.driver import CoreDriver
from natkit.simulations.link import Link
from natkit.simulations.reflexive import start_stun_server
from natkit.simulations.sites import two_sites
from natkit.simulations.traversal import SITE_DELAY, NatType

SERVER = Endpoint.parse("192.0.2.200:3478")
RELAYED = Endpoint.parse("192.0.2.200:50000")


def frame(peer: Endpoint, data: bytes) -> bytes:
    """The fake relay protocol: "RLY", the peer's IPv4 endpoint, the payload."""
    return b"RLY" + peer.address.packed + struct.pack("!H", peer.port) + data


def unframe(data: bytes) -> tuple[Endpoint, bytes]:
    assert data[:3] == b"RLY"
    address = ipaddress.IPv4Address(data[3:7])
    (port,) = struct.unpack_from("!H", data, 7)
    return Endpoint(address, port), data[9:]


class RelayServer:
    """A fake relay server core: socket 0 talks to its client, socket 1 is the
    relayed address; no permissions, one client."""

    def __init__(self) -> None:
        self.client: Endpoint | None = None
        self.out: list[Datagram] = []
        self.relayed = 0

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        if socket == 0:
            self.client = remote
            peer, payload = unframe(data)
            self.out.append(Datagram(payload, peer, 1))
        elif self.client is not None:
            self.out.append(Datagram(frame(remote, data), self.client, 0))
        self.relayed += 1

    def handle_timer(self, now: float) -> None:
        pass

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self.out = self.out, []
        return out

    def get_timer(self) -> float | None:
        return None

    def next_event(self) -> None:
        return None


@dataclass(eq=False)
class FakeRelay:
    """The client half: what the connect core sees as a relay base."""

    socket: int
    server: Endpoint = SERVER
    name: str = "fake:192.0.2.200:3478"
    wrapped: int = 0
    refuse: set[Endpoint] = field(default_factory=set)

    def wrap(self, data: bytes, peer: Endpoint, now: float) -> Datagram | None:
        if peer in self.refuse:
            return None
        self.wrapped += 1
        return Datagram(frame(peer, data), self.server, self.socket)


class RelayAware:
    """What part 2's driver does: datagrams from the relay server are unwrapped
    and fed to the agent as received through the relay; the rest go as they are."""

    def __init__(self, agent: ConnectAgent, relay: FakeRelay) -> None:
        self.agent = agent
        self.relay = relay

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        if remote == self.relay.server:
            peer, payload = unframe(data)
            self.agent.receive_relayed(self.relay, payload, peer, now)
        else:
            self.agent.receive_datagram(data, remote, socket, now)

    def handle_timer(self, now: float) -> None:
        self.agent.handle_timer(now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        return self.agent.datagrams_to_send(now)

    def get_timer(self) -> float | None:
        return self.agent.get_timer()

    def next_event(self) -> ConnectEvent | None:
        return self.agent.next_event()


def relay_pair() -> tuple[SimPair, FakeRelay, RelayServer]:
    """p0 with a direct interface (0) and one toward the relay only (1); p1 direct."""
    pair = sim_peers([[0.005, 0.005], [0.01]], without_candidates=[0], connect=False)
    network = pair.topology.network
    relay_host = network.add_host(
        "relay", pair.topology.internet, [SERVER.address], link=Link.symmetric(0.002)
    )
    server = RelayServer()
    CoreDriver(
        server,
        relay_host.bind_all([(SERVER.address, SERVER.port), (RELAYED.address, RELAYED.port)]),
    )
    relay = FakeRelay(socket=1)
    old = pair.nodes[0]
    old.driver.close()
    node = ConnectNode(
        "p0", old.sockets, pair.hub, seed=3, wrap=lambda agent: RelayAware(agent, relay)
    )
    pair.nodes[0] = node
    direct = node.sockets[0].local
    node.add_candidate(Candidate(CandidateKind.HOST, direct, direct, "eth0"), 0)
    node.driver.invoke(
        lambda now: node.agent.add_local_candidate(
            Candidate(CandidateKind.RELAY, RELAYED, None, relay.name), now, relay=relay
        )
    )
    for one, other in (("p0", "p1"), ("p1", "p0")):
        member = next(n for n in pair.nodes if n.name == one)
        member.connect(other)
    return pair, relay, server


def test_a_relayed_path_is_checked_and_used_when_the_direct_one_dies_and_left_when_it_returns() -> (
    None
):
    pair, relay, server = relay_pair()
    node = pair.nodes[0]
    pair.run(3.0)
    # Relay first (issue 12), then direct beats relay, whatever their RTTs.
    relayed_first, first = node.selections()
    assert relayed_first.kind is CandidateKind.RELAY
    assert first.kind is CandidateKind.HOST
    relayed_rows = [row for row in node.agent.pairs("p1") if row.relay == relay.name]
    assert relayed_rows
    assert all(row.answers for row in relayed_rows)  # checked through the relay
    assert relay.wrapped > 0
    assert server.relayed > 0
    # The direct interface dies: the relay takes over (downgrade)...
    pair.topology.cut(0, 0)
    pair.run(ConnectConfig().loss_bound + 2.0)
    relayed = node.selections()[-1]
    assert relayed.kind is CandidateKind.RELAY
    assert relayed.relay == relay.name
    assert relayed.socket is None
    peer_view = pair.nodes[1].selections()[-1]
    assert (peer_view.remote, peer_view.remote_kind) == (RELAYED, CandidateKind.RELAY)
    # ...and when it comes back, the direct path wins again (upgrade).
    pair.topology.set_delay(0, 0, 0.005)
    pair.run(400.0)
    back = node.selections()[-1]
    assert back.kind is CandidateKind.HOST
    assert back.previous is not None
    assert back.previous.kind is CandidateKind.RELAY


def test_a_relay_that_cannot_carry_a_datagram_is_counted() -> None:
    harness, fake = connected_to_fake()
    relay = FakeRelay(socket=0, refuse={fake.address})
    candidate = Candidate(CandidateKind.RELAY, RELAYED, None, relay.name)
    harness.call(lambda now: harness.agent.add_local_candidate(candidate, now, relay=relay))
    harness.advance(5.0)
    assert harness.agent.counters.relay_refused > 0


def test_a_new_socket_and_a_known_good_remote_at_runtime_make_a_path() -> None:
    # Symmetric NAT on both sides: no direct path from the candidates...
    rng = random.Random(3)
    sites = two_sites(
        NatType.SYMMETRIC.config, NatType.SYMMETRIC.config, rng=random.Random(3), delay=SITE_DELAY
    )
    start_stun_server(sites)
    hub = SignalHub(sites.loop)
    nodes = []
    for name, site in zip(("a", "b"), sites.sites, strict=True):
        sockets = site.bind(2, 40000)  # socket 1: the driver's, unknown to the agent
        mapped = learn_mapped(sockets[:1], rng)
        node = ConnectNode(name, sockets, hub, seed=rng.getrandbits(32))
        local = sockets[0].local
        node.add_candidate(Candidate(CandidateKind.HOST, local, local, "eth0"), 0)
        assert mapped[0] is not None
        node.add_srflx(0, mapped[0])
        nodes.append(node)
    a, b = nodes
    a.connect("b")
    b.connect("a")
    sites.loop.run_until(sites.loop.now + 20.0)
    assert a.unreachable()
    assert b.unreachable()
    # ...until a "birthday hit": a's socket 1 gets a port b can reach (here a
    # static mapping), b's socket 1 opens its own mapping toward it.
    a_nat, b_nat = sites.a.nat, sites.b.nat
    assert a_nat is not None
    assert b_nat is not None
    a_public = a_nat.add_static_mapping(a.sockets[1].local, None, sites.loop.now)
    b.sockets[1].send(b"open", a_public)
    sites.loop.run_until(sites.loop.now + 0.001)  # through b's LAN to its NAT
    (b_public,) = [
        m.external
        for m in b_nat.mappings(sites.loop.now)
        if m.internal == b.sockets[1].local and m.remote == a_public
    ]
    a.driver.invoke(lambda now: a.agent.add_known_pair("b", 1, a.sockets[1].local, b_public, now))
    b.driver.invoke(lambda now: b.agent.add_known_pair("a", 1, b.sockets[1].local, a_public, now))
    sites.loop.run_until(sites.loop.now + 2.0)
    for node, remote in ((a, b_public), (b, a_public)):
        (selected,) = node.selections()
        assert (selected.socket, selected.remote) == (1, remote)
    assert a.selections()[0].local == a_public


def test_a_rejected_path_is_dropped_held_off_then_allowed_back() -> None:
    config = ConnectConfig()
    pair = sim_peers([[0.005], [0.01, 0.03]])
    pair.run(5.0)
    (first,) = pair.nodes[0].selections()
    for node, peer in zip(pair.nodes, ("p1", "p0"), strict=True):
        node.driver.invoke(
            lambda now, n=node, p=peer: n.agent.path_unusable(p, now, "no handshake")
        )
    pair.run(2.0)
    for node in pair.nodes:
        (lost,) = [e for e in node.events if isinstance(e, PathLost)]
        assert (lost.reason, lost.detail) == (LossReason.REJECTED, "no handshake")
    replacement = pair.nodes[0].selections()[-1]
    assert replacement.remote != first.remote
    # Clearly faster, yet not taken back while held...
    pair.run(config.unusable_hold - 5.0)
    assert pair.nodes[0].selections()[-1] == replacement
    # ...and taken back on its merits afterwards.
    pair.run(config.recheck_max + 10.0)
    assert pair.nodes[0].selections()[-1].remote == first.remote


def test_many_peers_share_one_socket() -> None:
    # p0 has one socket and twenty peers; every check and answer is routed by
    # USERNAME and transaction ID to the right session.
    delays = [[0.005]] + [[0.01 + i / 1000] for i in range(20)]
    pair = sim_peers(delays, connect=False)
    hub_node = pair.nodes[0]
    for other in pair.nodes[1:]:
        hub_node.connect(other.name)
        other.connect("p0")
    pair.run(10.0)
    assert {e.peer for e in hub_node.selections()} == {n.name for n in pair.nodes[1:]}
    for other in pair.nodes[1:]:
        (selected,) = other.selections()
        assert selected.remote == hub_node.sockets[0].local
    counters = hub_node.agent.counters
    assert counters.unknown_username == counters.unknown_transaction == counters.wrong_source == 0


def test_every_unreachable_pair_says_no_direct_path() -> None:
    run = connect_pair(NatType.SYMMETRIC, NatType.SYMMETRIC)
    for node in run.nodes:
        (event,) = [e for e in node.events if isinstance(e, PeerUnreachable)]
        assert "no direct path" in event.detail
    assert not run.claimed


def test_gather_helper_adds_host_and_reflexive_candidates() -> None:
    harness = Harness()
    harness.call(lambda now: harness.agent.add_local_candidate(host(LOCAL), now))
    assert [c.kind for c in harness.agent.local_candidates] == [CandidateKind.HOST]
    assert callable(gather)
