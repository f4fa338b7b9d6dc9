"""Two probers, two NATs, one fake internet: the search works end to end,
finds exactly the pair the plan predicts, and keeps its budget and rate."""

from __future__ import annotations

import math
import random
from ipaddress import IPv4Address

import pytest
from birthday_fakenet import FakeNat, FakeNet
from birthday_testlib import config, kinds, paced_times

from natkit.birthday.events import ExhaustReason, PairFound, SearchExhausted
from natkit.birthday.planner import BirthdayScenario, Mode
from natkit.birthday.ports import PortRange
from natkit.birthday.prober import BirthdayProber
from natkit.birthday.schedule import max_sends_in_window, opener_plan, pacing_gap, spray_plan
from natkit.birthday.wire import Kind, Side
from natkit.endpoint import Endpoint

HARD_IP = IPv4Address("203.0.113.7")
EASY_IP = IPv4Address("198.51.100.9")
HARD_RANGE = PortRange(20000, 20999)
EASY_RANGE = PortRange(40000, 40999)
STUN_SERVER = Endpoint.parse("192.0.2.1:3478")
DELAY = 0.02


def hard_sockets(count: int, prefix: str = "10.0.0.2") -> list[Endpoint]:
    return [Endpoint.of(prefix, 5000 + i) for i in range(count)]


def one_hard(
    seed: int,
    *,
    ports: int = 32,
    budget: int = 300,
    rate: float = 100.0,
    spray_range: PortRange = HARD_RANGE,
    nat_range: PortRange = HARD_RANGE,
    easy_open_filter: bool = False,
) -> tuple[FakeNet, FakeNat]:
    """Hard side A behind an APDM NAT, easy side B behind an EIM one."""
    rng = random.Random(seed)
    hard_nat = FakeNat(HARD_IP, nat_range, random.Random(rng.random()), hard=True)
    easy_nat = FakeNat(
        EASY_IP, EASY_RANGE, random.Random(rng.random()), hard=False, open_filter=easy_open_filter
    )
    easy_socket = Endpoint.of("192.168.1.2", 4000)
    # What STUN would have told the easy side (EIM: the same for every destination).
    easy_mapped = easy_nat.outbound(easy_socket, STUN_SERVER)
    net = FakeNet(DELAY)
    hard_plan = opener_plan(easy_mapped, ports, rate, keepalive=15.0, rounds=2)
    net.add(
        "hard",
        BirthdayProber(
            config(Side.A, rate=rate, budget=0, peer_address=EASY_IP),
            hard_sockets(ports),
            hard_plan,
            0.0,
        ),
        hard_nat,
    )
    # The easy side starts once the hard side's mappings are all open.
    start = ports * pacing_gap(rate) + DELAY
    easy_plan = spray_plan(HARD_IP, spray_range, budget, rate, random.Random(seed), start=start)
    net.add(
        "easy",
        BirthdayProber(
            config(Side.B, rate=rate, budget=budget, peer_address=HARD_IP),
            [easy_socket],
            easy_plan,
            0.0,
        ),
        easy_nat,
    )
    return net, hard_nat


def test_one_hard_side_finds_the_first_planned_port_that_is_open() -> None:
    net, hard_nat = one_hard(seed=1)
    net.run(until=60.0)
    hard, easy = net.hosts["hard"], net.hosts["easy"]
    [easy_event] = easy.events
    [hard_event] = hard.events
    assert isinstance(easy_event, PairFound)
    assert isinstance(hard_event, PairFound)
    assert (easy_event.via, hard_event.via) == (Kind.ACK, Kind.PROBE)

    # The plan is data, so the winner is predictable: the first planned port
    # the hard NAT had opened toward the easy side.
    open_ports = hard_nat.open_ports()
    assert len(open_ports) == 32
    planned = [send.port for send in easy.core.plan.sends]
    winner = next(i for i, port in enumerate(planned) if port in open_ports)
    assert easy_event.pair.remote == Endpoint(HARD_IP, planned[winner])
    # The ACK takes a round trip (40 ms), during which the spray goes on at 100/s.
    in_flight = easy_event.stats.probes_sent - (winner + 1)
    assert 0 <= in_flight <= math.ceil(2 * DELAY * 100)

    # Both sides name the same path, from their own ends.
    assert easy.nat is not None
    easy_mapped = Endpoint(EASY_IP, easy.nat.mapped_port(easy_event.pair.local, STUN_SERVER) or 0)
    assert hard_event.pair.remote == easy_mapped
    assert hard_nat.mapped_port(hard_event.pair.local, easy_mapped) == planned[winner]
    # The hard side's openers never got through the easy side's filter.
    assert net.dropped["filtered"] >= 32


def test_both_hard_sides_meet_and_keep_their_budgets_and_rate() -> None:
    rng = random.Random(5)
    port_range = PortRange(30000, 30199)  # N = 200: M = 40,000 port pairs
    nat_a = FakeNat(IPv4Address("203.0.113.1"), port_range, random.Random(rng.random()), hard=True)
    nat_b = FakeNat(IPv4Address("203.0.113.2"), port_range, random.Random(rng.random()), hard=True)
    net = FakeNet(DELAY)
    budget, ports, rate = 1000, 8, 200.0
    for name, side, nat, peer in (
        ("a", Side.A, nat_a, nat_b.public),
        ("b", Side.B, nat_b, nat_a.public),
    ):
        plan = spray_plan(peer, port_range, budget, rate, random.Random(name), sockets=ports)
        core = BirthdayProber(
            config(side, rate=rate, budget=budget, peer_address=peer),
            hard_sockets(ports, "10.0.0.2" if side is Side.A else "10.9.0.2"),
            plan,
            0.0,
        )
        net.add(name, core, nat)
    net.run(until=60.0)
    for host in net.hosts.values():
        [event] = host.events
        assert isinstance(event, PairFound)
        assert event.stats.probes_sent <= budget
        assert max_sends_in_window(paced_times(host.sent)) <= rate
    # With no filter in the way, whoever hit first names a path the other can use.
    a_event, b_event = net.hosts["a"].events[0], net.hosts["b"].events[0]
    assert isinstance(a_event, PairFound)
    assert isinstance(b_event, PairFound)
    assert {a_event.pair.remote.address, b_event.pair.remote.address} == {
        nat_a.public,
        nat_b.public,
    }


def test_a_search_that_cannot_hit_stops_at_the_budget() -> None:
    # The easy side sprays a range the hard NAT never uses.
    net, _ = one_hard(seed=2, budget=150, rate=50.0, spray_range=PortRange(1000, 1999))
    net.run(until=600.0)
    easy, hard = net.hosts["easy"], net.hosts["hard"]
    [easy_event] = easy.events
    [hard_event] = hard.events
    assert isinstance(easy_event, SearchExhausted)
    assert easy_event.reason is ExhaustReason.BUDGET_SPENT
    assert easy_event.stats.probes_sent == 150
    assert [kind for _, kind in kinds(easy.sent)] == [Kind.PROBE] * 150
    assert max_sends_in_window(paced_times(easy.sent)) == 50
    assert isinstance(hard_event, SearchExhausted)
    assert hard_event.reason is ExhaustReason.SCHEDULE_ENDED
    assert hard_event.stats.opens_sent == 64  # 32 sockets, 2 rounds
    # Both went quiet: the last event is answer_timeout after the last send.
    assert easy_event.at == pytest.approx(easy.sent[-1][0] + 2.0)


def test_an_opener_that_gets_through_is_probed_directly() -> None:
    # Endpoint-independent filtering on the easy side lets the first OPEN in.
    net, hard_nat = one_hard(seed=3, easy_open_filter=True)
    net.run(until=60.0)
    [easy_event] = net.hosts["easy"].events
    assert isinstance(easy_event, PairFound)
    # Every probe went to an opener's source, none was sprayed blind (the
    # spray waits for the openers), and the first opener's source won.
    easy = net.hosts["easy"]
    probed = [d.remote for _, d in easy.sent]
    assert {p.port for p in probed} <= hard_nat.open_ports()
    assert easy.sent[-1][0] < easy.core.plan.sends[0].at
    assert easy_event.pair.remote == probed[0]


def _model_probability(scenario: BirthdayScenario, probes: int) -> float:
    return scenario.success_probability(probes)


@pytest.mark.parametrize(
    ("mode", "nat_range", "ports", "budget"),
    [
        (Mode.ONE_HARD, PortRange(20000, 20059), 6, 10),
        (Mode.BOTH_HARD, PortRange(30000, 30011), 3, 8),
    ],
)
def test_the_fake_network_agrees_with_the_model(
    mode: Mode, nat_range: PortRange, ports: int, budget: int
) -> None:
    # A small Monte Carlo (the real one will use simulations/): the hit rate
    # over seeded runs is within four standard errors of the model.
    runs = 300
    hits = 0
    for seed in range(runs):
        if mode is Mode.ONE_HARD:
            net, _ = one_hard(
                seed, ports=ports, budget=budget, spray_range=nat_range, nat_range=nat_range
            )
            net.run(until=120.0)
            hits += isinstance(net.hosts["easy"].events[0], PairFound)
            continue
        nat_a = FakeNat(IPv4Address("203.0.113.1"), nat_range, random.Random(seed), hard=True)
        nat_b = FakeNat(IPv4Address("203.0.113.2"), nat_range, random.Random(-seed), hard=True)
        net = FakeNet(DELAY)
        for side, nat, peer in ((Side.A, nat_a, nat_b.public), (Side.B, nat_b, nat_a.public)):
            plan = spray_plan(
                peer, nat_range, budget, 100.0, random.Random(f"{seed}{side}"), sockets=ports
            )
            core = BirthdayProber(
                config(side, budget=budget, peer_address=peer),
                hard_sockets(ports, f"10.0.{side.value}.2"),
                plan,
                0.0,
            )
            net.add(side.name, core, nat)
        net.run(until=120.0)
        hits += any(isinstance(h.events[0], PairFound) for h in net.hosts.values())
    expected = _model_probability(BirthdayScenario(ports, nat_range, mode), budget)
    standard_error = math.sqrt(expected * (1 - expected) / runs)
    assert abs(hits / runs - expected) < 4 * standard_error
