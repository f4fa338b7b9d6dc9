"""The classifier's hop probe on the virtual clock: the path it finds behind
no NAT, one NAT, a double NAT and a carrier-grade NAT, the CGNAT and double
NAT verdicts drawn from it, and that it costs the RFC 5780 tests nothing."""

from __future__ import annotations

import ipaddress
import itertools
import re

import pytest

from natkit.cli.classify import render_human
from natkit.probe.classifier import ClassifierConfig
from natkit.probe.hops import HopReply
from natkit.probe.report import (
    FilteringBehavior,
    MappingBehavior,
    PortAllocation,
    report_to_dict,
)
from natkit.simulations import FilteringBehavior as SimFiltering
from natkit.simulations import FirewallConfig, NatConfig
from natkit.simulations import MappingBehavior as SimMapping
from natkit.simulations import PortAllocation as SimAllocation
from natkit.simulations.classification import simulate_classification

NO_HOPS = ClassifierConfig(hop_limit=0)
#: The classifier's own defaults, hop probe included (the simulator's
#: harness leaves it off unless given a config).
DEFAULTS = ClassifierConfig()
PRIVATE_CARRIER = ipaddress.IPv4Network("10.0.0.0/8")


def path(report_path: object) -> list[tuple[int, str | None, str]]:
    assert isinstance(report_path, tuple)
    return [
        (h.ttl, None if h.address is None else str(h.address), h.reply.value) for h in report_path
    ]


def test_no_nat_the_server_answers_at_ttl_one() -> None:
    report = simulate_classification(None, config=DEFAULTS).report
    assert path(report.path) == [(1, "203.0.113.10", "destination")]
    assert (report.cgnat, report.double_nat) == (False, False)


def test_one_nat_is_the_one_router_on_the_way() -> None:
    report = simulate_classification(NatConfig(), config=DEFAULTS).report
    assert path(report.path) == [
        (1, "192.168.1.1", "time-exceeded"),
        (2, "203.0.113.10", "destination"),
    ]
    assert (report.cgnat, report.double_nat) == (False, False)
    assert "192.168.1.1" in report.reasons["cgnat"]


def test_carrier_grade_nat_shows_its_shared_address() -> None:
    report = simulate_classification(NatConfig(), carrier=NatConfig(), config=DEFAULTS).report
    assert path(report.path) == [
        (1, "192.168.1.1", "time-exceeded"),
        (2, "100.64.0.1", "time-exceeded"),
        (3, "203.0.113.10", "destination"),
    ]
    assert report.cgnat is True
    assert "100.64.0.1" in report.reasons["cgnat"]
    assert report.double_nat is True
    document = report_to_dict(report)
    assert document["path"][1] == {
        "ttl": 2,
        "address": "100.64.0.1",
        "kind": "shared",
        "reply": "time-exceeded",
    }
    assert document["schema_version"] == 1


def test_a_private_double_nat_is_double_but_not_said_to_be_a_carriers() -> None:
    run = simulate_classification(
        NatConfig(), carrier=NatConfig(), carrier_prefix=PRIVATE_CARRIER, config=DEFAULTS
    )
    report = run.report
    assert [h.address for h in report.path or ()][:2] == [
        ipaddress.IPv4Address("192.168.1.1"),
        ipaddress.IPv4Address("10.0.0.1"),
    ]
    assert report.double_nat is True
    assert report.cgnat is None


@pytest.mark.parametrize("silent", ["home", "carrier"])
def test_a_nat_that_sends_no_time_exceeded_is_never_guessed(silent: str) -> None:
    quiet = NatConfig(sends_time_exceeded=False)
    home, carrier = (quiet, NatConfig()) if silent == "home" else (NatConfig(), quiet)
    report = simulate_classification(home, carrier=carrier, config=DEFAULTS).report
    assert report.path is not None
    assert report.path[0 if silent == "home" else 1].reply is HopReply.NONE
    if silent == "home":
        # The carrier NAT still speaks from shared space: that much is seen.
        assert report.cgnat is True
    else:
        assert (report.cgnat, report.double_nat) == (None, None)


def test_a_firewall_without_nat_adds_nothing() -> None:
    report = simulate_classification(FirewallConfig(), config=DEFAULTS).report
    assert report.behind_nat is False
    assert report.path is not None
    assert (report.cgnat, report.double_nat) == (False, False)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("carrier", [False, True])
def test_loss_leaves_gaps_but_never_a_wrong_verdict(seed: int, carrier: bool) -> None:
    run = simulate_classification(
        NatConfig(), carrier=NatConfig() if carrier else None, loss=0.2, seed=seed, config=DEFAULTS
    )
    report = run.report
    assert report.cgnat in ((True, None) if carrier else (False, None))
    assert report.double_nat in ((True, None) if carrier else (False, None))
    assert report.path is not None
    assert len(report.path) <= 4


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    ("mapping", "filtering"), list(itertools.product(SimMapping, SimFiltering)), ids=str
)
def test_rfc5780_verdicts_stay_right_under_loss_with_the_hop_probe(
    mapping: SimMapping, filtering: SimFiltering, seed: int
) -> None:
    hairpinning = seed % 2 == 0
    nat = NatConfig(mapping, filtering, SimAllocation.RANDOM, hairpinning=hairpinning)
    report = simulate_classification(nat, loss=0.2, seed=seed, config=DEFAULTS).report
    assert report.mapping is MappingBehavior(mapping.name)
    assert report.filtering is FilteringBehavior(filtering.name)
    assert report.hairpin is (hairpinning and filtering is SimFiltering.EIF)
    assert report.port_allocation is PortAllocation.RANDOM
    assert report.cgnat in (False, None)


@pytest.mark.parametrize("carrier", [None, NatConfig()])
@pytest.mark.parametrize("loss", [0.0, 0.2])
def test_the_hop_probe_costs_the_rfc5780_tests_nothing(
    carrier: NatConfig | None, loss: float
) -> None:
    """Same verdicts, port allocation included (the hop datagrams reuse the
    allocation sockets' mappings), and no later report when hops answer."""
    nat = NatConfig(SimMapping.APDM, allocation=SimAllocation.SEQUENTIAL, sequential_delta=2)
    for seed in range(4):
        with_hops = simulate_classification(
            nat, carrier=carrier, loss=loss, seed=seed, config=DEFAULTS
        )
        without = simulate_classification(
            nat, carrier=carrier, loss=loss, seed=seed, config=NO_HOPS
        )
        a, b = with_hops.report, without.report
        assert (a.mapping, a.filtering, a.hairpin) == (b.mapping, b.filtering, b.hairpin)
        assert a.port_allocation is b.port_allocation is PortAllocation.SEQUENTIAL
        assert a.port_allocation_delta == b.port_allocation_delta == 2
        config = ClassifierConfig()
        assert with_hops.datagrams <= without.datagrams + 4 * config.hop_attempts + 4
        if loss == 0.0:
            assert with_hops.seconds == pytest.approx(without.seconds)
        assert b.path is None
        assert b.reasons["path"] == "not probed"


def test_silent_nats_cost_no_time_when_their_attempts_fit() -> None:
    quiet = NatConfig(sends_time_exceeded=False)
    with_hops = simulate_classification(quiet, carrier=quiet, config=DEFAULTS)
    without = simulate_classification(quiet, carrier=quiet, config=NO_HOPS)
    assert with_hops.seconds == pytest.approx(without.seconds)
    assert (with_hops.report.cgnat, with_hops.report.double_nat) == (None, None)


def test_unanswered_hops_hold_the_report_one_window_at_most() -> None:
    # Attempts that would go on for 20 windows: the report waits for one.
    quiet = NatConfig(sends_time_exceeded=False)
    stubborn = ClassifierConfig(hop_attempts=20)
    with_hops = simulate_classification(quiet, config=stubborn)
    without = simulate_classification(quiet, config=NO_HOPS)
    window = 2 * 0.02  # twice the largest round trip (10 ms each way)
    assert without.seconds < with_hops.seconds <= without.seconds + window + 1e-9


def test_the_table_shows_the_path_briefly() -> None:
    report = simulate_classification(NatConfig(), carrier=NatConfig(), config=DEFAULTS).report
    table = render_human(report)
    assert "  Path  " in table
    assert "192.168.1.1 > 100.64.0.1 > server" in table
    assert re.search(r"CGNAT\s+yes\s+router 100\.64\.0\.1", table)
    unprobed = simulate_classification(NatConfig(), config=NO_HOPS).report
    assert "not probed" in render_human(unprobed)
