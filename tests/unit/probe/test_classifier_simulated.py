"""The classifier core end to end, on the simulator's virtual clock.

Every RFC 4787 behaviour, with and without 20 % loss each way, many seeds:
the report must be right every time, never guessed, and concluded by
evidence rather than by the timeout.
"""

from __future__ import annotations

import itertools

import pytest

from natkit.probe.report import (
    FilteringBehavior,
    MappingBehavior,
    PortAllocation,
    ProbeOutcome,
    RunStatus,
)
from natkit.simulations import FilteringBehavior as SimFiltering
from natkit.simulations import FirewallConfig, NatConfig
from natkit.simulations import MappingBehavior as SimMapping
from natkit.simulations import PortAllocation as SimAllocation
from natkit.simulations.classification import ServerKind, simulate_classification

COMBINATIONS = list(itertools.product(SimMapping, SimFiltering))


@pytest.mark.parametrize(("mapping", "filtering"), COMBINATIONS, ids=lambda b: b.name)
def test_every_mapping_and_filtering_combination(
    mapping: SimMapping, filtering: SimFiltering
) -> None:
    run = simulate_classification(NatConfig(mapping, filtering, SimAllocation.RANDOM))
    report = run.report
    assert report.status is RunStatus.OK
    assert report.behind_nat is True
    assert report.mapping is MappingBehavior(mapping.name)
    assert report.filtering is FilteringBehavior(filtering.name)
    assert report.port_allocation is PortAllocation.RANDOM
    assert run.seconds < report.duration + 1e-9 + 0.5  # finished by evidence...
    assert run.seconds < 0.5  # ...in a few round trips of 20 ms, not at the 5 s timeout
    assert run.datagrams < 150


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(("mapping", "filtering"), COMBINATIONS, ids=lambda b: b.name)
def test_twenty_percent_loss_each_way_never_flips_a_verdict(
    mapping: SimMapping, filtering: SimFiltering, seed: int
) -> None:
    hairpinning = seed % 2 == 0
    nat = NatConfig(mapping, filtering, SimAllocation.RANDOM, hairpinning=hairpinning)
    run = simulate_classification(nat, loss=0.2, seed=seed)
    report = run.report
    assert report.mapping is MappingBehavior(mapping.name)
    assert report.filtering is FilteringBehavior(filtering.name)
    # The simulated NAT filters hairpinned packets like any inbound packet,
    # so an unsolicited one only comes back through endpoint-independent filtering.
    assert report.hairpin is (hairpinning and filtering is SimFiltering.EIF)
    assert report.port_allocation is PortAllocation.RANDOM
    assert report.loss_estimate is not None
    assert 0.05 < report.loss_estimate < 0.75  # 36 % round-trip loss, from few samples
    assert run.datagrams < 600
    assert run.seconds < 2.5  # concluded by evidence, not by the 5 s timeout


@pytest.mark.parametrize(
    ("allocation", "expected"),
    [
        (SimAllocation.PRESERVING, PortAllocation.PRESERVING),
        (SimAllocation.SEQUENTIAL, PortAllocation.SEQUENTIAL),
        (SimAllocation.RANDOM, PortAllocation.RANDOM),
    ],
)
@pytest.mark.parametrize("loss", [0.0, 0.2])
def test_port_allocation_pattern(
    allocation: SimAllocation, expected: PortAllocation, loss: float
) -> None:
    nat = NatConfig(SimMapping.APDM, allocation=allocation, sequential_delta=2)
    report = simulate_classification(nat, loss=loss, seed=3).report
    assert report.port_allocation is expected
    if expected is PortAllocation.SEQUENTIAL:
        assert report.port_allocation_delta == 2


@pytest.mark.parametrize("hairpinning", [True, False])
def test_hairpinning(hairpinning: bool) -> None:
    nat = NatConfig(filtering=SimFiltering.EIF, hairpinning=hairpinning)
    assert simulate_classification(nat).report.hairpin is hairpinning


def test_double_nat_shows_the_harder_tier() -> None:
    report = simulate_classification(NatConfig.full_cone(), carrier=NatConfig.symmetric()).report
    assert report.mapping is MappingBehavior.APDM
    assert report.behind_nat is True


def test_open_internet_and_firewall() -> None:
    open_internet = simulate_classification(None).report
    assert (open_internet.behind_nat, open_internet.mapping) == (False, MappingBehavior.EIM)
    assert open_internet.filtering is FilteringBehavior.EIF
    assert open_internet.hairpin is None
    assert open_internet.port_allocation is PortAllocation.PRESERVING
    firewalled = simulate_classification(FirewallConfig()).report
    assert firewalled.behind_nat is False
    assert firewalled.filtering is FilteringBehavior.APDF
    assert firewalled.nat_type == "no NAT, firewalled"


def test_udp_blocked_is_called_fast_when_tcp_answers() -> None:
    run = simulate_classification(NatConfig(udp_blocked=True))
    report = run.report
    assert report.status is RunStatus.UDP_BLOCKED
    assert report.udp_blocked is True
    assert (report.mapping, report.filtering) == (
        MappingBehavior.UNKNOWN,
        FilteringBehavior.UNKNOWN,
    )
    assert report.hairpin is None
    assert run.seconds < 0.5


def test_nothing_answers_means_undetermined_at_the_timeout() -> None:
    run = simulate_classification(NatConfig(udp_blocked=True), tcp_reachable=False)
    assert run.report.status is RunStatus.UNREACHABLE
    assert not run.report.determined
    assert run.report.behind_nat is None


def test_a_server_ignoring_change_request_leaves_filtering_unknown() -> None:
    """The pystun failure mode: answers from the primary address to change
    requests must not be read as endpoint-independent filtering."""
    run = simulate_classification(NatConfig.symmetric(), server=ServerKind.IGNORES_CHANGE_REQUEST)
    assert run.report.filtering is FilteringBehavior.UNKNOWN
    assert "CHANGE-REQUEST" in run.report.reasons["filtering"]
    assert run.report.mapping is MappingBehavior.APDM


def test_plain_rfc5389_server_measures_what_it_can() -> None:
    report = simulate_classification(NatConfig(), server=ServerKind.BASIC).report
    assert report.status is RunStatus.OK
    assert report.behind_nat is True
    assert report.mapping is MappingBehavior.UNKNOWN
    assert report.filtering is FilteringBehavior.UNKNOWN
    assert report.port_allocation is PortAllocation.PRESERVING


@pytest.mark.parametrize(
    ("nat", "expected"),
    [
        (NatConfig(), MappingBehavior.EIM),
        (NatConfig.symmetric(), MappingBehavior.UNKNOWN),  # dependent, but ADM or APDM?
    ],
)
def test_two_plain_servers_tell_eim_from_dependent_mapping(
    nat: NatConfig, expected: MappingBehavior
) -> None:
    report = simulate_classification(nat, server=ServerKind.BASIC, second_server=True).report
    assert report.mapping is expected
    assert report.filtering is FilteringBehavior.UNKNOWN


def test_second_server_does_not_disturb_rfc5780_tests() -> None:
    report = simulate_classification(NatConfig.restricted_cone(), second_server=True).report
    assert (report.mapping, report.filtering) == (MappingBehavior.EIM, FilteringBehavior.ADF)
    assert [s.rfc5780 for s in report.servers] == [True, False]


def test_observations_keep_the_raw_evidence() -> None:
    report = simulate_classification(NatConfig.symmetric(), loss=0.2, seed=5).report
    by_test = {o.test: o for o in report.observations}
    silent = by_test["filtering-II"]
    assert silent.outcome is ProbeOutcome.SILENT
    assert silent.false_negative_probability is not None
    assert silent.false_negative_probability < 1e-5
    assert silent.attempts >= 3
    assert by_test["binding"].answers[0].mapped_address == report.mapped_address
