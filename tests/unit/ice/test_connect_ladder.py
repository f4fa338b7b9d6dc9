"""The escalation ladder, table-tested against report pairs.

The reports come from natkit's own classifier run against each simulated
NAT type (``natkit.simulations.classification``); the ladder's prediction for the
direct step is compared with what the traversal matrix's STUN-only punching
actually does for that pair (``natkit.simulations.traversal``), for every ordered
pair of RFC 4787 types; the port-mapping step with the matrix's
port-mapping attempt; the birthday step with natkit's planner.
"""

from __future__ import annotations

import dataclasses
import itertools
from functools import cache

import pytest

from natkit.birthday.planner import Mode
from natkit.birthday.ports import FULL_RANGE, PortRange
from natkit.endpoint import Endpoint
from natkit.ice import PathSelected
from natkit.ice.ladder import (
    Action,
    Expect,
    Hard,
    LadderConfig,
    Step,
    percent,
    plan_ladder,
)
from natkit.ice.report import BirthdayCapability, RelayInUse, TraversalReport
from natkit.portmap.mapping import MappingProtocol
from natkit.probe.report import FilteringBehavior, MappingBehavior
from natkit.simulations.classification import simulate_classification
from natkit.simulations.nat import FilteringBehavior as SimFiltering
from natkit.simulations.nat import MappingBehavior as SimMapping
from natkit.simulations.nat import NatConfig, PortAllocation
from natkit.simulations.relayed import relayed_pair
from natkit.simulations.traversal import BirthdayBudget, NatType, attempt_port_mapping, attempt_stun
from natkit.turn.config import TurnTransport

BUDGET = BirthdayBudget()
#: What each side offers: the traversal matrix's one-hard numbers.
CAPABILITY = BirthdayCapability(BUDGET.one_hard_ports, BUDGET.one_hard_probes, 100)
UDP_RELAY = RelayInUse("turn:192.0.2.30:3478?transport=udp", TurnTransport.UDP)
TLS_RELAY = RelayInUse("turns:relay.example.org:5349", TurnTransport.TLS)
PAIRS = list(itertools.product(NatType, NatType))


@cache
def report(nat: NatType) -> TraversalReport:
    """What a node behind ``nat`` reports (the classifier's verdicts)."""
    classification = simulate_classification(nat.config).report
    return TraversalReport.from_reports(
        classification, birthday=CAPABILITY, port_range=FULL_RANGE, relays=(UDP_RELAY,)
    )


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a.name}-{b.name}" for a, b in PAIRS])
def test_direct_is_predicted_exactly_where_stun_punching_connects(a: NatType, b: NatType) -> None:
    ladder = plan_ladder(report(a), report(b))
    direct = ladder.decision(Step.DIRECT)
    assert direct.action is Action.TRY  # direct checks always run
    connected = attempt_stun(a, b).connected
    assert direct.expect is (Expect.WORKS if connected else Expect.FAILS), direct.reason
    # The relay is the floor either way; the prediction says what carries traffic.
    assert ladder.decision(Step.RELAY).expect is Expect.WORKS
    if connected:
        assert ladder.predicted is Step.DIRECT
        assert ladder.decision(Step.BIRTHDAY).action is Action.SKIP


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a.name}-{b.name}" for a, b in PAIRS])
def test_a_mapped_port_makes_every_pair_direct_as_the_matrix_finds(a: NatType, b: NatType) -> None:
    mapped = dataclasses.replace(
        report(a),
        port_mapping=MappingProtocol.PCP,
        mapped=Endpoint.parse("203.0.113.1:41000"),
    )
    ladder = plan_ladder(mapped, report(b))
    decision = ladder.decision(Step.PORT_MAPPING)
    assert decision.expect is Expect.WORKS
    assert decision.mapped == Endpoint.parse("203.0.113.1:41000")
    assert decision.reason == "site A's gateway maps a port by PCP (203.0.113.1:41000)"
    assert attempt_port_mapping(a, b).connected
    assert ladder.predicted in (Step.DIRECT, Step.PORT_MAPPING)
    assert ladder.decision(Step.BIRTHDAY).action is Action.SKIP


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a.name}-{b.name}" for a, b in PAIRS])
def test_birthday_is_tried_for_one_hard_side_facing_an_easy_one_only(
    a: NatType, b: NatType
) -> None:
    ra, rb = report(a), report(b)
    ladder = plan_ladder(ra, rb)
    birthday = ladder.decision(Step.BIRTHDAY)
    if ladder.decision(Step.DIRECT).expect is not Expect.FAILS:
        assert birthday.action is Action.SKIP
        assert birthday.reason.startswith("not needed")
        return
    if ra.hard and rb.hard:
        # Both hard on the full range: 2,048 probes give well under 1 %.
        plan = birthday.birthday
        assert plan is not None
        assert plan.mode is Mode.BOTH_HARD
        assert plan.probability < 0.01
        assert birthday.action is Action.SKIP
        assert "below 50 %" in birthday.reason
        return
    plan = birthday.birthday
    assert birthday.action is Action.TRY
    assert plan is not None
    assert plan.mode is Mode.ONE_HARD
    assert plan.hard is (Hard.LOCAL if ra.hard else Hard.REMOTE)
    assert plan.probability == pytest.approx(BUDGET.one_hard().success_probability(2048))
    assert (plan.ports, plan.probes, plan.rate) == (256, 2048, 100)
    assert "one hard side, 256 mappings in 65,535 ports, 2,048 probes" in birthday.reason
    assert percent(plan.probability) in birthday.reason


def test_both_hard_is_tried_only_on_a_port_range_that_makes_it_feasible() -> None:
    small = PortRange(40000, 40999)
    capability = BirthdayCapability(8, 1520, 1000)
    hard = dataclasses.replace(report(NatType.SYMMETRIC), birthday=capability, port_range=small)
    birthday = plan_ladder(hard, hard).decision(Step.BIRTHDAY)
    assert birthday.action is Action.TRY
    assert birthday.birthday is not None
    assert birthday.birthday.probability == pytest.approx(0.9, abs=0.01)
    # The same on the full range is hopeless.
    wide = dataclasses.replace(hard, port_range=FULL_RANGE)
    assert plan_ladder(wide, wide).decision(Step.BIRTHDAY).action is Action.SKIP
    # ...and a run longer than allowed is skipped too, with its numbers.
    slow = dataclasses.replace(hard, birthday=BirthdayCapability(8, 1520, 1))
    decision = plan_ladder(slow, slow, LadderConfig(max_seconds=60)).decision(Step.BIRTHDAY)
    assert decision.action is Action.SKIP
    assert "exceeds 60 s" in decision.reason


def test_a_side_without_birthday_or_with_blocked_udp_gets_no_birthday() -> None:
    hard, easy = report(NatType.SYMMETRIC), report(NatType.PORT_RESTRICTED)
    lazy = dataclasses.replace(easy, birthday=None)
    decision = plan_ladder(hard, lazy).decision(Step.BIRTHDAY)
    assert (decision.action, decision.reason) == (
        Action.SKIP,
        "site B does no birthday probing",
    )
    blocked = dataclasses.replace(easy, udp_blocked=True)
    decision = plan_ladder(hard, blocked).decision(Step.BIRTHDAY)
    assert decision.action is Action.SKIP
    assert decision.reason == "birthday probing needs UDP (UDP blocked at site B)"
    # A hard side facing one whose mapping is unknown: no fixed endpoint to open toward.
    murky = dataclasses.replace(easy, mapping=MappingBehavior.UNKNOWN)
    decision = plan_ladder(hard, murky).decision(Step.BIRTHDAY)
    assert decision.action is Action.SKIP
    assert decision.reason == (
        "site A maps per destination but site B is not EIM: no fixed endpoint to open toward"
    )


def test_udp_blocked_leaves_the_relay_over_tcp_or_tls_only() -> None:
    easy = report(NatType.PORT_RESTRICTED)
    blocked = TraversalReport(udp_blocked=True, behind_nat=True, relays=(TLS_RELAY,))
    ladder = plan_ladder(easy, blocked)
    assert ladder.decision(Step.DIRECT).expect is Expect.FAILS
    assert ladder.decision(Step.DIRECT).reason == "UDP blocked at site B"
    assert ladder.decision(Step.PORT_MAPPING).action is Action.SKIP
    relay = ladder.decision(Step.RELAY)
    assert (relay.expect, relay.relay, relay.transport) == (
        Expect.WORKS,
        TLS_RELAY.name,
        TurnTransport.TLS,
    )
    assert relay.reason == "relayed over TLS"
    assert ladder.predicted is Step.RELAY
    # A blocked site whose only relay is over UDP cannot reach it, nor the peer's.
    stuck = dataclasses.replace(blocked, relays=(UDP_RELAY,))
    ladder = plan_ladder(TraversalReport(), stuck)
    assert ladder.decision(Step.RELAY).expect is Expect.FAILS
    assert ladder.predicted is None
    # Both blocked, each with a TLS relay: relay to relay works.
    ladder = plan_ladder(blocked, blocked)
    assert ladder.decision(Step.DIRECT).reason == "UDP blocked at both sites"
    assert ladder.decision(Step.RELAY).expect is Expect.WORKS


def test_no_relay_anywhere_and_unknown_reports() -> None:
    bare = dataclasses.replace(report(NatType.SYMMETRIC), relays=())
    ladder = plan_ladder(bare, bare)
    assert ladder.decision(Step.RELAY).reason == "no relay configured on either side"
    assert ladder.predicted is None
    unknown = plan_ladder(None, None)
    assert unknown.decision(Step.DIRECT).expect is Expect.UNKNOWN
    assert unknown.predicted is Step.DIRECT


# -- every combination of mapping and filtering ---------------------------------------------

BEHAVIOURS = [(m, f) for m in SimMapping for f in SimFiltering]


@cache
def classified(mapping: SimMapping, filtering: SimFiltering) -> TraversalReport:
    nat = NatConfig(mapping, filtering, PortAllocation.RANDOM)
    return TraversalReport.from_reports(simulate_classification(nat).report)


@cache
def connects(a: tuple[SimMapping, SimFiltering], b: tuple[SimMapping, SimFiltering]) -> bool:
    """Whether natkit's agents find a direct path between the two NATs."""
    nats = [NatConfig(m, f, PortAllocation.RANDOM) for m, f in (a, b)]
    pair = relayed_pair(nats[0], nats[1], relays=(False, False), allocate_first=False)
    pair.run(12.0)
    return any(isinstance(e, PathSelected) for _, e in pair.nodes[0].timeline)


def test_the_direct_table_holds_for_all_81_combinations_of_mapping_and_filtering() -> None:
    wrong = []
    for a, b in itertools.product(BEHAVIOURS, BEHAVIOURS):
        ra, rb = classified(*a), classified(*b)
        assert (ra.mapping.name, ra.filtering.name) == (a[0].name, a[1].name)
        expect = plan_ladder(ra, rb).decision(Step.DIRECT).expect
        if expect is not (Expect.WORKS if connects(a, b) else Expect.FAILS):
            wrong.append((a, b, expect))
    assert not wrong


def test_an_unclassified_side_is_unknown_unless_every_possibility_agrees() -> None:
    hard = classified(SimMapping.APDM, SimFiltering.APDF)
    unclassified = TraversalReport(behind_nat=True)
    assert plan_ladder(hard, unclassified).decision(Step.DIRECT).expect is Expect.UNKNOWN
    # Whatever its mapping, a side filtering by address and port fails a hard one.
    filters = dataclasses.replace(unclassified, filtering=FilteringBehavior.APDF)
    decision = plan_ladder(hard, filters).decision(Step.DIRECT)
    assert decision.expect is Expect.FAILS
    # An open host (no NAT) works with anything but UDP blocked.
    open_host = TraversalReport(behind_nat=False)
    assert plan_ladder(hard, open_host).decision(Step.DIRECT).expect is Expect.WORKS
