"""Whole-network behaviour: cores driven through NATs, firewalls, loss and delay."""

from __future__ import annotations

import itertools
import random

import pytest
from sim_cores import SAME, Prober, Reflected, Reflector, Replied, TimedOut

from natkit.endpoint import Endpoint
from natkit.simulations import (
    CoreDriver,
    FilteringBehavior,
    FirewallConfig,
    Link,
    MappingBehavior,
    NatConfig,
    Network,
    OneWay,
    PacketDropReason,
    PortAllocation,
    SimulationError,
    StandardTopology,
    TraceKind,
    standard_topology,
)
from natkit.simulations.topology import CLIENT_IP, CLIENT_PUBLIC_IP, NAT_PUBLIC_IP

# Reflector socket indices, RFC 5780 layout (bit 1 = address, bit 0 = port).
A1P1, A1P2, A2P1, A2P2 = range(4)


class Rig:
    """A standard topology with a reflector on the server's four sockets."""

    def __init__(self, topo: StandardTopology, *, interval: float | None = None) -> None:
        self.topo = topo
        self.server = CoreDriver(Reflector(topo.server_endpoints), topo.bind_server())
        self.prober = Prober(interval=interval, tries=3)
        self.client = CoreDriver(self.prober, topo.bind_client())

    def probe(self, to: int, answer_from: int = SAME) -> int:
        target = self.topo.server_endpoints[to]
        tokens: list[int] = []
        self.client.invoke(lambda now: tokens.append(self.prober.probe(now, target, answer_from)))
        return tokens[0]

    def settle(self) -> dict[int, Replied]:
        assert self.topo.loop.run_until_idle(limit=60.0)
        return {e.token: e for e in self.client.events if isinstance(e, Replied)}


# -- the RFC 4787 matrix, observed from outside as RFC 5780 does -----------------------------------


@pytest.mark.parametrize(
    ("mapping", "filtering"),
    list(itertools.product(MappingBehavior, FilteringBehavior)),
    ids=lambda b: b.name,
)
def test_each_mapping_and_filtering_combination_is_observable(
    mapping: MappingBehavior, filtering: FilteringBehavior
) -> None:
    config = NatConfig(mapping, filtering, PortAllocation.RANDOM)

    # Mapping (RFC 5780 §4.3): compare the mapped address seen by three destinations.
    rig = Rig(standard_topology(config, seed=11))
    base, other_ip, other_port = rig.probe(A1P1), rig.probe(A2P1), rig.probe(A1P2)
    seen = {token: reply.seen for token, reply in rig.settle().items()}
    assert seen[base].address == NAT_PUBLIC_IP
    assert (seen[other_port] == seen[base]) is (mapping is not MappingBehavior.APDM)
    assert (seen[other_ip] == seen[base]) is (mapping is MappingBehavior.EIM)

    # Filtering (RFC 5780 §4.4): ask A1:P1 to answer from elsewhere.
    rig = Rig(standard_topology(config, seed=11))
    changed_both, changed_port = rig.probe(A1P1, A2P2), rig.probe(A1P1, A1P2)
    replies = rig.settle()
    assert (changed_both in replies) is (filtering is FilteringBehavior.EIF)
    assert (changed_port in replies) is (filtering is not FilteringBehavior.APDF)
    expected_filtered = {FilteringBehavior.EIF: 0, FilteringBehavior.ADF: 1}.get(filtering, 2)
    assert rig.topo.network.dropped[PacketDropReason.FILTERED] == expected_filtered
    # Every reflected request really was answered from the socket asked for.
    assert [e.socket for e in rig.server.events if isinstance(e, Reflected)] == [A2P2, A1P2]


# -- nesting ---------------------------------------------------------------------------------------


def test_double_nat_server_sees_the_carrier_address_and_each_tier_maps() -> None:
    topo = standard_topology(NatConfig.full_cone(), carrier=NatConfig.full_cone())
    rig = Rig(topo)
    token = rig.probe(A1P1)
    reply = rig.settle()[token]
    home, carrier = topo.nats
    (home_map,) = home.mappings(topo.loop.now)
    (carrier_map,) = carrier.mappings(topo.loop.now)
    assert home_map.internal == rig.client.endpoints[0]
    assert str(home_map.external.address) == "100.64.0.2"
    assert carrier_map.internal == home_map.external
    assert carrier_map.external == reply.seen
    assert reply.seen.address == NAT_PUBLIC_IP


def test_double_nat_composes_to_the_stricter_behaviour_of_each_kind() -> None:
    # An EIM/EIF home NAT behind an APDM carrier NAT behaves as APDM ...
    rig = Rig(standard_topology(NatConfig.full_cone(), carrier=NatConfig.symmetric(), seed=3))
    a, b = rig.probe(A1P1), rig.probe(A1P2)
    seen = rig.settle()
    assert seen[a].seen != seen[b].seen

    # ... and an APDF home NAT filters what an EIF carrier NAT lets in.
    rig = Rig(standard_topology(NatConfig.port_restricted_cone(), carrier=NatConfig.full_cone()))
    token = rig.probe(A1P1, A2P2)
    assert token not in rig.settle()
    assert rig.topo.network.dropped == {PacketDropReason.FILTERED: 1}


def test_drops_are_attributed_to_the_node_that_dropped() -> None:
    topo = standard_topology(
        NatConfig.port_restricted_cone(), carrier=NatConfig.full_cone(), trace=True
    )
    rig = Rig(topo)
    rig.probe(A1P1, A2P2)
    rig.settle()
    assert topo.network.trace is not None
    (drop,) = [e for e in topo.network.trace if e.kind is TraceKind.DROPPED]
    assert (drop.node, drop.reason) == ("home-nat", PacketDropReason.FILTERED)
    assert drop.src == topo.server_endpoints[A2P2]


# -- hairpinning -----------------------------------------------------------------------------------


@pytest.mark.parametrize("hairpinning", [True, False])
def test_hairpin_loops_back_with_the_senders_external_source(hairpinning: bool) -> None:
    net = Network(random.Random(1))
    internet = net.add_realm("internet")
    home = net.add_realm("home", ["192.168.1.0/24"])
    server = net.add_host("server", internet, ["203.0.113.10"])
    nat = net.add_nat(
        "nat",
        NatConfig(filtering=FilteringBehavior.EIF, hairpinning=hairpinning),
        inside=home,
        outside=internet,
        public_ip="198.51.100.1",
    )
    a = net.add_host("a", home, ["192.168.1.2"]).bind(port=5000)
    b = net.add_host("b", home, ["192.168.1.3"]).bind(port=5000)
    reflector = CoreDriver(Reflector(), [server.bind(port=3478)])
    a.send(b"Q\xff\x00\x00\x00\x00", reflector.endpoints[0])
    b.send(b"Q\xff\x00\x00\x00\x01", reflector.endpoints[0])
    net.loop.run_until_idle()
    a_external = Endpoint.parse(a.received[0].data[5:].decode())
    b_external = Endpoint.parse(b.received[0].data[5:].decode())

    b.send(b"hello, neighbour", a_external)  # to a's public mapping, from inside
    net.loop.run_until_idle()
    if hairpinning:
        assert a.received[-1].data == b"hello, neighbour"
        assert a.received[-1].src == b_external  # REQ-9b: external source, not 192.168.1.3
        assert a.received[-1].dst == a.local
    else:
        assert len(a.received) == 1
        assert net.dropped == {PacketDropReason.HAIRPIN_DISABLED: 1}
    assert nat.public_ip == a_external.address


# -- firewalls and blocking ------------------------------------------------------------------------


def test_public_host_behind_apdf_firewall_keeps_its_address_but_is_filtered() -> None:
    rig = Rig(standard_topology(FirewallConfig(FilteringBehavior.APDF)))
    plain, changed = rig.probe(A1P1), rig.probe(A1P1, A2P2)
    replies = rig.settle()
    assert replies[plain].seen == Endpoint(CLIENT_PUBLIC_IP, rig.client.endpoints[0].port)
    assert changed not in replies
    assert rig.topo.network.dropped == {PacketDropReason.FILTERED: 1}


def test_open_internet_hears_everything() -> None:
    rig = Rig(standard_topology(None))
    tokens = [rig.probe(A1P1, answer) for answer in (A1P1, A1P2, A2P1, A2P2)]
    replies = rig.settle()
    assert all(replies[t].seen == rig.client.endpoints[0] for t in tokens)
    assert [replies[t].source for t in tokens] == list(rig.topo.server_endpoints)


@pytest.mark.parametrize(
    "middlebox", [NatConfig(udp_blocked=True), FirewallConfig(udp_blocked=True)], ids=str
)
def test_udp_blocked_means_every_request_times_out(middlebox: NatConfig | FirewallConfig) -> None:
    rig = Rig(standard_topology(middlebox), interval=0.5)
    token = rig.probe(A1P1)
    assert rig.settle() == {}
    assert rig.client.events == [TimedOut(token, 3)]
    assert rig.topo.network.dropped == {PacketDropReason.UDP_BLOCKED: 3}


# -- timeouts through the network ------------------------------------------------------------------


def test_mapping_times_out_for_unsolicited_traffic() -> None:
    topo = standard_topology(NatConfig(filtering=FilteringBehavior.EIF, mapping_timeout=30.0))
    rig = Rig(topo)
    token = rig.probe(A1P1)
    mapped = rig.settle()[token].seen
    stranger = topo.network.add_host("stranger", topo.internet, ["203.0.113.99"]).bind()
    topo.loop.run_until(29.0)
    stranger.send(b"still there?", mapped)
    topo.loop.run_until(31.0)
    stranger.send(b"gone?", mapped)
    topo.loop.run_until_idle()
    assert rig.client.received == 2  # the reply, then the first stranger datagram
    assert topo.network.dropped == {PacketDropReason.NO_MAPPING: 1}


# -- addressing errors -----------------------------------------------------------------------------


def test_unroutable_and_unbound_destinations_are_dropped_and_counted() -> None:
    topo = standard_topology(NatConfig.symmetric())
    sock = topo.bind_client()[0]
    sock.send(b"x", Endpoint.of("203.0.113.99", 1))  # nobody holds it
    sock.send(b"x", Endpoint.of("203.0.113.10", 9))  # held, no socket
    sock.send(b"x", Endpoint.of("192.168.1.50", 1))  # local prefix: never leaves home
    sock.send(b"x", Endpoint.of("2001:db8::1", 1))  # the NAT44 has no IPv6 side
    topo.loop.run_until_idle()
    assert topo.network.dropped == {PacketDropReason.NO_ROUTE: 3, PacketDropReason.NO_SOCKET: 1}
    assert topo.nats[0].created == 2  # only the two that went out


def test_topology_misuse_is_refused() -> None:
    topo = standard_topology(NatConfig())
    with pytest.raises(SimulationError, match="already held by stun in realm internet"):
        topo.network.add_host("twin", topo.internet, ["203.0.113.10"])
    with pytest.raises(SimulationError, match=r"does not hold 10\.0\.0\.1"):
        topo.client.bind("10.0.0.1", 1)
    topo.client.bind(CLIENT_IP, 1234)
    with pytest.raises(SimulationError, match=r"192\.168\.1\.2:1234 is already bound"):
        topo.client.bind(CLIENT_IP, 1234)
    with pytest.raises(SimulationError, match="already named 'stun'"):
        topo.network.add_host("stun", topo.internet, ["203.0.113.50"])
    with pytest.raises(SimulationError, match="loss must be in"):
        OneWay(loss=1.5)


def test_ephemeral_ports_are_seeded() -> None:
    def port(seed: int) -> int:
        return standard_topology(seed=seed).bind_client()[0].local.port

    assert port(1) == port(1)
    assert 49152 <= port(1) <= 65535
    assert port(1) != port(2)


# -- loss, delay, jitter ---------------------------------------------------------------------------


def test_loss_rate_is_roughly_what_was_asked() -> None:
    rig = Rig(standard_topology(NatConfig.full_cone(), loss=0.2, seed=42))
    n = 2000
    for _ in range(n):
        rig.probe(A1P1)
    replies = rig.settle()
    # A round trip survives two crossings of the lossy link: 0.8 ** 2 = 0.64.
    assert 0.60 < len(replies) / n < 0.68
    net = rig.topo.network
    assert set(net.dropped) == {PacketDropReason.LOSS}
    assert net.sent == net.delivered + net.dropped.total()  # nothing vanishes


def test_delay_is_one_way_per_crossing_and_jitter_bounded() -> None:
    rig = Rig(standard_topology(NatConfig(), delay=0.05))
    token = rig.probe(A1P1)
    assert rig.settle()[token].time == pytest.approx(0.1)

    rig = Rig(standard_topology(NatConfig(), delay=0.05, jitter=0.02, seed=9))
    tokens = [rig.probe(A1P1) for _ in range(200)]
    replies = rig.settle()
    times = [replies[t].time for t in tokens]
    assert all(0.1 <= t < 0.14 for t in times)
    arrival_order = [e.token for e in rig.client.events if isinstance(e, Replied)]
    assert arrival_order != tokens  # jitter reorders


def test_per_direction_links() -> None:
    topo = standard_topology(
        NatConfig(), client_link=Link(up=OneWay(delay=0.01), down=OneWay(delay=0.2, loss=1.0))
    )
    rig = Rig(topo)
    rig.probe(A1P1)
    assert rig.settle() == {}
    assert len(rig.server.events) == 1  # the request got through
    assert rig.topo.loop.now == pytest.approx(0.01)  # the lost reply scheduled nothing


# -- determinism -----------------------------------------------------------------------------------


def _scenario(seed: int) -> list[object]:
    topo = standard_topology(
        NatConfig.symmetric(), delay=0.02, jitter=0.01, loss=0.1, seed=seed, trace=True
    )
    rig = Rig(topo, interval=0.2)
    for i in range(50):
        rig.probe(i % 4, (i * 3) % 4)
    rig.settle()
    assert topo.network.trace is not None
    return [*topo.network.trace, *rig.client.events]


def test_same_seed_same_trace() -> None:
    first = _scenario(5)
    assert len(first) > 200
    assert _scenario(5) == first
    assert _scenario(6) != first


def test_trace_lines_read_well() -> None:
    topo = standard_topology(NatConfig(), trace=True)
    rig = Rig(topo)
    rig.probe(A1P1)
    rig.settle()
    assert topo.network.trace is not None
    kinds = [e.kind for e in topo.network.trace]
    assert kinds == [
        TraceKind.SENT,
        TraceKind.FORWARDED,
        TraceKind.DELIVERED,
        TraceKind.SENT,
        TraceKind.FORWARDED,
        TraceKind.DELIVERED,
    ]
    assert "nat          forwarded 198.51.100.1:" in str(topo.network.trace[1])
