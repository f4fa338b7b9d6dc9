"""The planner: inverse searches, exact expectations, budgets in probes or
seconds, and the JSON document the CLI prints."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest

from natkit.birthday.planner import BirthdayScenario, Estimate, Mode, Sampling, estimate
from natkit.birthday.ports import PortRange
from natkit.birthday.report import SCHEMA_VERSION, estimate_to_dict
from natkit.errors import LocalProtocolError

SCENARIOS = [
    BirthdayScenario(256),
    BirthdayScenario(256, sampling=Sampling.WITH_REPLACEMENT),
    BirthdayScenario(16, PortRange(1024, 65535)),
    BirthdayScenario(256, mode=Mode.BOTH_HARD),
    BirthdayScenario(256, mode=Mode.BOTH_HARD, sampling=Sampling.WITH_REPLACEMENT),
    BirthdayScenario(4, PortRange(30000, 30099), Mode.BOTH_HARD),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=repr)
@pytest.mark.parametrize("probability", [1e-6, 0.1, 0.5, 0.99, 0.999])
def test_probes_for_is_the_least_count_that_reaches_the_probability(
    scenario: BirthdayScenario, probability: float
) -> None:
    probes = scenario.probes_for(probability)
    assert probes is not None
    assert scenario.success_probability(probes) >= probability
    assert scenario.success_probability(probes - 1) < probability


def test_probes_for_the_edges() -> None:
    assert BirthdayScenario(256).probes_for(0.0) == 0
    # Without replacement a hit is certain once every closed port was tried.
    assert BirthdayScenario(256).probes_for(1.0) == 65535 - 256 + 1
    assert BirthdayScenario(256, sampling=Sampling.WITH_REPLACEMENT).probes_for(1.0) is None
    # One socket per side caps a both-hard search at N probes: 63 % at most.
    one_socket = BirthdayScenario(1, mode=Mode.BOTH_HARD)
    assert one_socket.probes_for(0.6) is not None
    assert one_socket.probes_for(0.7) is None
    with pytest.raises(LocalProtocolError, match="probability"):
        BirthdayScenario(256).probes_for(1.5)


def brute_force_first_hit(space: int, targets: int) -> dict[int, Fraction]:
    """P(the first hit is probe n), over every probe order and open set."""
    counts: dict[int, int] = {}
    total = 0
    for order in itertools.permutations(range(space)):
        for open_ports in itertools.combinations(range(space), targets):
            first = next(i for i, port in enumerate(order) if port in open_ports) + 1
            counts[first] = counts.get(first, 0) + 1
            total += 1
    return {n: Fraction(c, total) for n, c in counts.items()}


def test_expectations_match_brute_force_on_a_tiny_port_range() -> None:
    distribution = brute_force_first_hit(6, 2)
    scenario = BirthdayScenario(2, PortRange(1, 6), rate=1.0)
    for budget in range(7):
        hit = sum((p for n, p in distribution.items() if n <= budget), Fraction(0))
        assert scenario.success_probability(budget) == pytest.approx(float(hit), abs=1e-15)
        result = estimate(scenario, probes=budget)
        run = sum(p * min(n, budget) for n, p in distribution.items())
        assert result.expected_run_probes == pytest.approx(float(run), rel=1e-12)
        if hit:
            conditional = sum(p * n for n, p in distribution.items() if n <= budget) / hit
            assert result.expected_probes == pytest.approx(float(conditional), rel=1e-12)
        else:
            assert result.expected_probes is None
    unbounded = sum(p * n for n, p in distribution.items())
    assert estimate(scenario, probes=1).unbounded_expected_probes == pytest.approx(float(unbounded))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=repr)
def test_survival_sums_match_the_definition(scenario: BirthdayScenario) -> None:
    # E[min(T, B)] = sum_{n<B} P(T > n), summed the slow way.
    for budget in (1, 7, 300):
        slow = math.fsum(math.exp(scenario.log_miss(n)) for n in range(budget))
        assert scenario.survival_sum(budget) == pytest.approx(slow, rel=1e-11)


def test_unbounded_expectations_in_closed_form() -> None:
    # Draws without replacement: E[draws to the first of k marked in N] = (N+1)/(k+1).
    assert BirthdayScenario(256).survival_sum() == pytest.approx(65536 / 257)
    # Independent draws: geometric, N/k.
    assert BirthdayScenario(
        256, sampling=Sampling.WITH_REPLACEMENT
    ).survival_sum() == pytest.approx(65535 / 256)
    # One socket per side may never hit: no finite expectation.
    assert BirthdayScenario(1, mode=Mode.BOTH_HARD).survival_sum() == math.inf


def test_the_estimate_for_the_reference_budget() -> None:
    result = estimate(BirthdayScenario(256, rate=100.0), probes=2048)
    assert result == Estimate(
        scenario=BirthdayScenario(256, rate=100.0),
        probes=2048,
        success_probability=pytest.approx(0.99971, abs=1e-5),  # type: ignore[arg-type]
        expected_probes=pytest.approx(254.41, abs=0.01),  # type: ignore[arg-type]
        expected_seconds=pytest.approx(2.5441, abs=1e-4),  # type: ignore[arg-type]
        expected_run_probes=pytest.approx(254.93, abs=0.01),  # type: ignore[arg-type]
        expected_run_seconds=pytest.approx(2.5493, abs=1e-4),  # type: ignore[arg-type]
        unbounded_expected_probes=pytest.approx(255.0039, abs=1e-4),  # type: ignore[arg-type]
        unbounded_expected_seconds=pytest.approx(2.550039, abs=1e-6),  # type: ignore[arg-type]
        probes_for_50=177,
        probes_for_99=1167,
        probes_for_999=1742,
        search_space_fraction=pytest.approx(2048 / 65535),  # type: ignore[arg-type]
    )


def test_a_time_budget_is_the_probes_sent_in_that_time() -> None:
    scenario = BirthdayScenario(256, rate=100.0)
    assert estimate(scenario, seconds=20.48).probes == 2048
    assert estimate(scenario, seconds=0.999).probes == 99
    with pytest.raises(LocalProtocolError, match="exactly one"):
        estimate(scenario, probes=1, seconds=1.0)
    with pytest.raises(LocalProtocolError, match="exactly one"):
        estimate(scenario)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ports": 0}, "at least one port"),
        ({"ports": 11, "port_range": PortRange(1, 10)}, "do not fit"),
        ({"rate": 0.0}, "rate must be positive"),
        ({"rate": math.inf}, "rate must be positive"),
    ],
)
def test_impossible_scenarios_are_refused(changes: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"ports": 256, **changes}
    with pytest.raises(LocalProtocolError, match=message):
        BirthdayScenario(**arguments)  # type: ignore[arg-type]


def test_more_probes_than_distinct_ones_are_refused() -> None:
    with pytest.raises(LocalProtocolError, match="distinct"):
        BirthdayScenario(16, PortRange(1, 100)).log_miss(101)
    with pytest.raises(LocalProtocolError, match="distinct"):
        BirthdayScenario(2, PortRange(1, 100), Mode.BOTH_HARD).log_miss(201)


def test_the_json_document_has_the_inputs_and_the_answers() -> None:
    document = estimate_to_dict(estimate(BirthdayScenario(256), probes=174))
    assert document["schema_version"] == SCHEMA_VERSION == 1
    assert document["inputs"] == {
        "mode": "one-hard",
        "ports": 256,
        "port_range": "1-65535",
        "range_size": 65535,
        "rate": 100.0,
        "probes": 174,
        "sampling": "without-replacement",
    }
    assert document["success_probability"] == pytest.approx(0.4944, abs=1e-4)
    assert document["probes_for_50"] == 177
    assert document["seconds_for_50"] == pytest.approx(1.77)
    assert document["budget_seconds"] == pytest.approx(1.74)
    assert {"expected_seconds", "probes_for_99", "seconds_for_99", "seconds_for_99_9"} <= set(
        document
    )


def test_a_missing_expectation_is_null_in_json() -> None:
    document = estimate_to_dict(estimate(BirthdayScenario(1, mode=Mode.BOTH_HARD), probes=0))
    assert document["expected_seconds"] is None
    assert document["unbounded_expected_seconds"] is None
