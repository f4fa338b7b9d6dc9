"""Real connect agents on the simulator: ranking, hysteresis, pacing, loss,
rebinding, one LAN, and every pair of RFC 4787 NAT types.

Peers ``p0``, ``p1`` sit on one simulated internet with one host per
interface, so each interface has its own link delay (``connect_testlib.sim_peers``).
With ``d0`` the one-way delay of ``p0``'s interface and ``d`` that of one of
``p1``'s, the RTT of the pair through it is ``2 * (d0 + d)``.
"""

from __future__ import annotations

import ipaddress
import itertools
import random

import pytest
from connect_testlib import SimPair, sim_peers

from natkit.endpoint import Endpoint
from natkit.ice import (
    ConnectConfig,
    LossReason,
    PathLost,
    PathSelected,
    PeerRestarted,
    PeerUnreachable,
    SignalReady,
    UnreachableReason,
)
from natkit.ice.candidates import CandidateKind
from natkit.ice.pairs import CheckPurpose
from natkit.simulations.connect import (
    ConnectNode,
    SignalHub,
    connect_pair,
    gather,
    learn_mapped,
)
from natkit.simulations.driver import CoreDriver
from natkit.simulations.link import Link
from natkit.simulations.nat import NatConfig, PortAllocation
from natkit.simulations.network import Network
from natkit.simulations.reflexive import STUN_SERVER, start_stun_server
from natkit.simulations.sites import two_sites
from natkit.simulations.traversal import SITE_DELAY, NatType, attempt_stun, pair_seed
from natkit.simulations.traversal_matrix import Classic, classic_expectation
from natkit.stun.server import ServerConfig, StunServer


def selections(pair: SimPair, node: int = 0) -> list[tuple[float, PathSelected]]:
    return [(t, e) for t, e in pair.nodes[node].timeline if isinstance(e, PathSelected)]


def interface_of(pair: SimPair, event: PathSelected) -> int:
    """Which of ``p1``'s interfaces ``p0``'s selected path goes to."""
    addresses = [host.ips[0] for host in pair.topology.hosts[1]]
    return addresses.index(event.remote.address)


def agree(pair: SimPair) -> bool:
    """Both sides' latest selections are the same pair."""
    a, b = selections(pair, 0)[-1][1], selections(pair, 1)[-1][1]
    return a.remote == b.local and b.remote == a.local


def test_the_lowest_rtt_pair_wins_over_the_higher_priority_one() -> None:
    # p1's interface 0 is preferred by priority (so checked first, and answered
    # first) but 15 ms slower each way; the first selection waits for the other.
    pair = sim_peers([[0.005], [0.025, 0.01]], preferences=[[], [65535, 60000]])
    pair.run(5.0)
    (only,) = selections(pair)
    assert interface_of(pair, only[1]) == 1
    assert only[1].rtt == pytest.approx(2 * (0.005 + 0.01))
    assert agree(pair)
    # Both sides' tables show both pairs answered.
    rows = pair.nodes[0].agent.pairs("p1")
    assert all(row.answers for row in rows)


def test_one_percent_better_never_switches_and_clearly_better_does() -> None:
    pair = sim_peers([[0.005], [0.020, 0.030]])
    pair.run(5.0)
    (first,) = selections(pair)
    assert interface_of(pair, first[1]) == 0  # RTT 50 ms against 70 ms
    # Interface 1 becomes 1 % better than the selected path: 49.5 ms.
    pair.topology.set_delay(1, 1, 0.0495 / 2 - 0.005)
    pair.run(1800.0)
    assert len(selections(pair)) == 1
    assert len(selections(pair, 1)) == 1
    # Then clearly better (20 ms): a switch within one re-check period plus
    # the confirmations.
    changed = pair.loop.now
    pair.topology.set_delay(1, 1, 0.005)
    config = ConnectConfig()
    pair.run(config.recheck_max + config.switch_confirmations * config.confirm_interval + 1)
    when, switched = selections(pair)[-1]
    assert interface_of(pair, switched) == 1
    assert switched.previous is not None
    assert switched.previous.remote == first[1].remote
    assert when - changed <= config.recheck_max + config.switch_confirmations * (
        config.confirm_interval + 0.1
    )
    pair.run(2.0)
    assert agree(pair)


def test_near_equal_paths_with_jitter_never_flap() -> None:
    pair = sim_peers([[0.005], [0.020, 0.020]], seed=3)
    for host in pair.topology.hosts[1]:
        host.interface.link = Link.symmetric(0.020, jitter=0.004)
    pair.run(3600.0)
    assert len(selections(pair)) == 1


def paced_gaps(node: ConnectNode) -> list[float]:
    log = node.agent.check_log
    assert log is not None
    times = [entry.at for entry in log if entry.paced]
    return [b - a for a, b in itertools.pairwise(times)]


def test_pacing_is_never_exceeded_with_many_peers_and_pairs() -> None:
    config = ConnectConfig(ta=0.02)
    # Five peers, four interfaces each (one unreachable): 16 pairs per session.
    delays = [[0.01, 0.02, 0.03, 0.04] for _ in range(5)]
    pair = sim_peers(delays, config=config, seed=4)
    for node in pair.nodes:
        node.hub.offline.discard(node.name)
    for peer in range(5):
        pair.topology.cut(peer, 3)
    pair.run(120.0)
    for node in pair.nodes:
        log = node.agent.check_log
        assert log is not None
        paced = [entry for entry in log if entry.paced]
        assert len(paced) > 100
        assert min(paced_gaps(node)) >= config.ta - 1e-9
        # Counted per window too: no window of length ta holds two.
        times = [entry.at for entry in paced]
        for start in times:
            assert sum(start <= t < start + config.ta for t in times) == 1
        # Every peer got a path (the cut interface only costs checks).
        assert {e.peer for _, e in node.timeline if isinstance(e, PathSelected)} == {
            other.name for other in pair.nodes if other is not node
        }


def test_path_loss_is_detected_within_the_bound_then_the_next_pair_takes_over() -> None:
    config = ConnectConfig()
    pair = sim_peers([[0.005], [0.01, 0.03]])
    pair.run(1.0)
    ((_, first),) = selections(pair)
    assert interface_of(pair, first) == 0
    # The worst moment: just after a keepalive was answered.
    log = pair.nodes[0].agent.check_log
    assert log is not None
    pair.loop.run_until(
        lambda: any(e.purpose is CheckPurpose.KEEPALIVE for e in log), timeout=config.loss_bound
    )
    pair.run(0.05)
    cut_at = pair.loop.now
    pair.topology.cut(1, 0)
    pair.run(config.loss_bound + 5.0)
    # The controlling side's keepalives find the loss...
    ((lost_at, event),) = [(t, e) for t, e in pair.nodes[0].timeline if isinstance(e, PathLost)]
    assert event.reason is LossReason.KEEPALIVE_TIMEOUT
    assert lost_at - cut_at <= config.loss_bound
    # ...and its nomination of the next pair is the fresh check that selects it.
    when, replacement = selections(pair)[-1]
    assert interface_of(pair, replacement) == 1
    assert replacement.previous is None
    assert when - lost_at < 0.5
    # The controlled side follows that nomination, unless its own keepalives
    # found the loss first; either way within the bound.
    changes = [
        (t, e)
        for t, e in pair.nodes[1].timeline
        if t > cut_at and isinstance(e, PathLost | PathSelected)
    ]
    assert changes
    assert changes[0][0] - cut_at <= config.loss_bound
    assert isinstance(changes[-1][1], PathSelected)
    assert agree(pair)


def connected_sites(nat: NatConfig, seed: int = 7) -> tuple[object, list[ConnectNode]]:
    rng = random.Random(seed)
    sites = two_sites(nat, nat, rng=random.Random(seed), delay=SITE_DELAY)
    start_stun_server(sites)
    hub = SignalHub(sites.loop)
    nodes = []
    for name, site in zip(("a", "b"), sites.sites, strict=True):
        sockets = site.bind(1, 40000)
        mapped = learn_mapped(sockets, rng)
        node = ConnectNode(name, sockets, hub, seed=rng.getrandbits(32))
        gather(node, mapped)
        nodes.append(node)
    nodes[0].connect("b")
    nodes[1].connect("a")
    sites.loop.run_until(sites.loop.now + 5.0)
    return sites, nodes


def test_rebinding_on_a_port_preserving_nat_is_recovered_within_two_keepalives() -> None:
    config = ConnectConfig()
    sites, nodes = connected_sites(NatConfig())  # Linux-like: EIM/APDF, port-preserving
    assert all(node.selections() for node in nodes)
    flushed_at = sites.loop.now  # type: ignore[attr-defined]
    assert sites.a.nat.flush() > 0  # type: ignore[attr-defined]
    sites.loop.run_until(flushed_at + 2 * config.keepalive_interval)  # type: ignore[attr-defined]
    for node in nodes:
        last = [e for _, e in node.timeline if isinstance(e, PathSelected | PathLost)][-1]
        assert isinstance(last, PathSelected)
        log = node.agent.check_log
        assert log is not None
    # Keepalives after the flush were answered: the mapping is back.
    assert sites.a.nat.mappings(sites.loop.now)  # type: ignore[attr-defined]


def test_rebinding_to_a_new_port_is_recovered_by_trickling_the_new_mapping() -> None:
    nat = NatConfig(allocation=PortAllocation.RANDOM)
    sites, nodes = connected_sites(nat, seed=11)
    a_node = nodes[0]
    before = a_node.selections("b")[-1]
    sites.a.nat.flush()  # type: ignore[attr-defined]
    sites.loop.run_until(  # type: ignore[attr-defined]
        lambda: any(isinstance(e, PathLost) for e in a_node.events), timeout=60.0
    )
    # As the aio layer re-gathers after a loss: the NAT's new mapping for the
    # socket is its new server-reflexive candidate (a STUN server would say so).
    (mapping,) = [
        m for m in sites.a.nat.mappings(sites.loop.now) if m.internal == a_node.sockets[0].local
    ]  # type: ignore[attr-defined]
    assert mapping.external != before.local
    a_node.driver.invoke(lambda now: a_node.agent.remove_local_candidate(before.local, now))
    a_node.add_srflx(0, mapping.external)
    sites.loop.run_until(sites.loop.now + 30.0)  # type: ignore[attr-defined]
    after = a_node.selections("b")[-1]
    assert after.local == mapping.external
    assert nodes[1].selections("a")[-1].remote == mapping.external


def lan_pair(hairpinning: bool) -> list[ConnectNode]:
    """Two peers on one LAN behind one NAT, a STUN server outside."""
    rng = random.Random(5)
    network = Network(random.Random(5))
    internet = network.add_realm("internet")
    stun = network.add_host("stun", internet, [STUN_SERVER.address], link=Link.symmetric(0.01))
    lan = network.add_realm("lan", ["10.9.0.0/24"])
    network.add_nat(
        "nat",
        NatConfig(hairpinning=hairpinning),
        inside=lan,
        outside=internet,
        public_ip="203.0.113.9",
        link=Link.symmetric(0.01),
    )
    CoreDriver(
        StunServer(ServerConfig((STUN_SERVER,))), stun.bind_all([(STUN_SERVER.address, 3478)])
    )
    hub = SignalHub(network.loop)
    nodes = []
    for index in range(2):
        member = network.add_host(
            f"m{index}", lan, [f"10.9.0.{index + 2}"], link=Link.symmetric(0.001)
        )
        sockets = [member.bind(member.ips[0], 40000)]
        mapped = learn_mapped(sockets, rng)
        node = ConnectNode(f"m{index}", sockets, hub, seed=index)
        gather(node, mapped)
        nodes.append(node)
    nodes[0].connect("m1")
    nodes[1].connect("m0")
    network.loop.run_until(network.loop.now + 10.0)
    return nodes


@pytest.mark.parametrize("hairpinning", [False, True])
def test_two_peers_behind_one_nat_select_the_lan_path(hairpinning: bool) -> None:
    nodes = lan_pair(hairpinning)
    lan = ipaddress.ip_network("10.9.0.0/24")
    for node in nodes:
        (selected,) = node.selections()
        assert selected.kind is CandidateKind.HOST
        assert selected.remote.address in lan
    # With hairpinning the path through the NAT works too, and is not chosen.
    through_nat = [
        row
        for row in nodes[0].agent.pairs("m1")
        if row.remote.address == ipaddress.ip_address("203.0.113.9")
    ]
    assert through_nat
    assert all(row.answers > 0 for row in through_nat) is hairpinning


def test_a_peer_restart_is_an_ice_restart() -> None:
    pair = sim_peers([[0.005], [0.01]])
    pair.run(5.0)
    old = pair.nodes[1]
    old.driver.close()
    fresh = ConnectNode("p1", old.sockets, pair.hub, seed=99)
    fresh.add_host_candidates()
    fresh.connect("p0")
    pair.nodes[1] = fresh
    pair.run(10.0)
    kinds = [type(e) for _, e in pair.nodes[0].timeline if not isinstance(e, SignalReady)]
    assert kinds[-3:] == [PeerRestarted, PathLost, PathSelected] or kinds[-3:] == [
        PathLost,
        PeerRestarted,
        PathSelected,
    ]
    lost = [e for _, e in pair.nodes[0].timeline if isinstance(e, PathLost)]
    assert lost[-1].reason is LossReason.PEER_RESTARTED
    assert fresh.selections("p0")


@pytest.mark.parametrize("a", list(NatType), ids=lambda t: t.name)
@pytest.mark.parametrize("b", list(NatType), ids=lambda t: t.name)
def test_every_pair_of_nat_types_matches_the_traversal_matrix(a: NatType, b: NatType) -> None:
    run = connect_pair(a, b, seed=1)
    expected = classic_expectation(a, b) is Classic.DIRECT
    # The matrix's own STUN-only punching on the same pair of NATs agrees.
    assert attempt_stun(a, b, pair_seed(a, b, 1)).connected is expected
    assert run.direct is expected
    assert run.claimed is expected
    if not expected:
        for node in run.nodes:
            (event,) = node.unreachable()
            assert event.reason is UnreachableReason.CHECKS_FAILED
            assert event.direct is False
            assert event.detail.startswith("no direct path")
            assert event.pairs > 0


def test_unreachable_peers_are_retried_with_backoff_up_to_five_minutes() -> None:
    run = connect_pair(NatType.SYMMETRIC, NatType.SYMMETRIC, seed=2)
    node = run.nodes[0]
    run.sites.loop.run_until(run.sites.loop.now + 3600.0)
    log = node.agent.check_log
    assert log is not None
    by_remote: dict[Endpoint, list[float]] = {}
    for entry in log:
        if entry.purpose.value == "recheck":
            by_remote.setdefault(entry.remote, []).append(entry.at)
    for times in by_remote.values():
        starts = [times[0]] + [b for a, b in itertools.pairwise(times) if b - a > 1.0]
        gaps = [round(b - a, 6) for a, b in itertools.pairwise(starts)]
        assert gaps == sorted(gaps)  # backing off...
        assert max(gaps) <= ConnectConfig().retry_max + 3.0  # ...up to 5 min
        assert gaps[-1] >= ConnectConfig().retry_max  # and still trying after an hour
    assert len(node.unreachable()) == 1  # reported once, not on every retry


def test_frozen_pairs_are_checked_as_soon_as_their_foundation_is_free() -> None:
    # Two sockets a side on one host address: the host pairs share one
    # foundation (RFC 8445 §5.1.1.3), so they are checked one after another
    # (§6.1.4.2), each the moment the previous one failed.
    config = ConnectConfig()
    rng = random.Random(3)
    symmetric = NatType.SYMMETRIC.config
    sites = two_sites(symmetric, symmetric, rng=random.Random(3), delay=SITE_DELAY)
    start_stun_server(sites)
    hub = SignalHub(sites.loop)
    nodes = []
    for name, site in zip(("a", "b"), sites.sites, strict=True):
        sockets = site.bind(2, 40000)
        mapped = learn_mapped(sockets[:1], rng)
        node = ConnectNode(name, sockets, hub, seed=rng.getrandbits(32))
        node.add_host_candidates()
        assert mapped[0] is not None
        node.add_srflx(0, mapped[0])
        nodes.append(node)
    nodes[0].connect("b")
    nodes[1].connect("a")
    sites.loop.run_until(sites.loop.now + 60.0)
    ((when, event),) = [(t, e) for t, e in nodes[0].timeline if isinstance(e, PeerUnreachable)]
    assert event.pairs == 6
    policy = config.check_policy
    serial = 4 * policy.give_up_after()  # four host pairs, one foundation
    assert when < serial + 2.0


def test_a_network_change_rechecks_every_pair_at_once() -> None:
    pair = sim_peers([[0.005], [0.01, 0.03]])
    pair.run(600.0)  # the re-check backoff of the unselected pair is long by now
    node = pair.nodes[0]
    log = node.agent.check_log
    assert log is not None
    changed = pair.loop.now
    node.driver.invoke(node.agent.network_changed)
    pair.run(0.5)
    after = {entry.remote: entry.purpose for entry in log if entry.at >= changed}
    (selected,) = node.selections()
    assert after[selected.remote] is CheckPurpose.KEEPALIVE
    assert set(after) == {row.remote for row in node.agent.pairs("p1")}
