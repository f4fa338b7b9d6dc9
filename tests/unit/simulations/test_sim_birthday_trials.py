"""The packet-level birthday Monte Carlo, small: it agrees with natkit's model.

Small configurations where the model gives mid-range probabilities and a
trial costs about a millisecond. Each check allows ``Z`` binomial standard
errors: with a fixed seed the outcome is fixed, and ``Z = 4`` means a
correct simulation fails a point with probability 6e-5.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from natkit.birthday.planner import BirthdayScenario
from natkit.birthday.ports import PortRange
from natkit.simulations.birthday_montecarlo import both_hard_setup
from natkit.simulations.birthday_trials import (
    BothHardSetup,
    OneHardSetup,
    run_both_hard,
    run_one_hard,
)
from natkit.simulations.errors import SimulationError
from natkit.simulations.parallel import chunk_plan, run_trials
from natkit.simulations.stats import HitCurve

Z = 4.0
TRIALS = 200
#: N = 4096, k = 64: P(hit within 64) = 64 %.
ONE_HARD = OneHardSetup(ports=64, port_range=PortRange(1024, 5119), budget=512)
#: N = 64 on both sides, M = 4096: even odds at 53 probes per side.
BOTH_HARD = both_hard_setup(PortRange(1024, 1087), ports=8)


def assert_agrees(curve: HitCurve, scenario: BirthdayScenario, probes: list[int]) -> None:
    for n in probes:
        expected = scenario.success_probability(n)
        tolerance = Z * curve.standard_error(expected)
        assert abs(curve.probability(n) - expected) <= tolerance, (n, curve.probability(n))


def test_one_hard_agrees_with_the_model() -> None:
    curve = HitCurve.of(run_one_hard(ONE_HARD, seed=5, trials=TRIALS), ONE_HARD.budget)
    assert curve.trials == TRIALS
    assert_agrees(curve, ONE_HARD.scenario(), [16, 32, 64, 128, 256])


def test_one_pair_of_sites_per_trial_agrees_too() -> None:
    setup = dataclasses.replace(ONE_HARD, trials_per_site=1)
    curve = HitCurve.of(run_one_hard(setup, seed=6, trials=60), setup.budget)
    assert_agrees(curve, setup.scenario(), [32, 64, 128])


def test_both_hard_agrees_with_the_model() -> None:
    scenario = BOTH_HARD.scenario()
    curve = HitCurve.of(run_both_hard(BOTH_HARD, seed=7, trials=TRIALS), BOTH_HARD.budget)
    probes = [n for p in (0.25, 0.5, 0.9) if (n := scenario.probes_for(p)) is not None]
    assert_agrees(curve, scenario, probes)


def test_trials_are_seeded() -> None:
    assert run_one_hard(ONE_HARD, 9, 40) == run_one_hard(ONE_HARD, 9, 40)
    assert run_one_hard(ONE_HARD, 9, 40) != run_one_hard(ONE_HARD, 10, 40)


def test_outcomes_are_probe_positions_or_none() -> None:
    setup = dataclasses.replace(ONE_HARD, budget=8)  # mostly misses
    outcomes = run_one_hard(setup, 3, 30)
    assert None in outcomes
    assert all(o is None or 1 <= o <= 8 for o in outcomes)


def test_a_spray_is_cut_into_growing_stages_that_add_up_to_the_budget() -> None:
    assert OneHardSetup().stages() == (256, 512, 1024, 256)
    assert ONE_HARD.stages() == (64, 128, 256, 64)
    assert OneHardSetup(ports=1024, budget=100).stages() == (64, 36)


def test_the_process_count_does_not_change_the_outcomes() -> None:
    one = run_trials(run_one_hard, ONE_HARD, 11, 60, jobs=1, chunk=20)
    two = run_trials(run_one_hard, ONE_HARD, 11, 60, jobs=2, chunk=20)
    assert one == two
    assert [n for _, n in chunk_plan(11, 60, 25)] == [25, 25, 10]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: OneHardSetup(ports=0), "mappings do not fit"),
        (lambda: OneHardSetup(budget=70_000), "outside"),
        (lambda: OneHardSetup(trials_per_site=0), "trials_per_site"),
        (lambda: BothHardSetup(PortRange(1, 8), budget=100, ports=4), "does not fit"),
        (lambda: BothHardSetup(PortRange(1, 8), budget=10, ports=9), "does not fit|need more"),
    ],
)
def test_impossible_setups_are_refused(make: Callable[[], object], message: str) -> None:
    with pytest.raises(SimulationError, match=message):
        make()
