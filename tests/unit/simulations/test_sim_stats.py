"""Success curves from trial outcomes, and Wilson intervals."""

from __future__ import annotations

import pytest

from natkit.simulations.errors import SimulationError
from natkit.simulations.stats import HitCurve, wilson_interval


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        # Reference values from the closed form (Wilson 1927), z = 1.96.
        (50, 100, 0.40383, 0.59617),
        (0, 10, 0.0, 0.27753),
        (10, 10, 0.72247, 1.0),
        (4944, 10_000, 0.48460, 0.50420),
    ],
)
def test_wilson_interval(successes: int, trials: int, low: float, high: float) -> None:
    got = wilson_interval(successes, trials)
    assert got == pytest.approx((low, high), abs=1e-5)


def test_wilson_interval_refuses_impossible_counts() -> None:
    with pytest.raises(SimulationError, match="successes <= trials"):
        wilson_interval(3, 2)
    with pytest.raises(SimulationError, match="successes <= trials"):
        wilson_interval(0, 0)


def test_one_set_of_trials_gives_the_whole_curve() -> None:
    curve = HitCurve.of([3, None, 1, 7, 3], budget=10)
    assert curve.hits == (1, 3, 3, 7)
    assert [curve.successes(n) for n in (0, 1, 2, 3, 6, 7, 10)] == [0, 1, 1, 3, 3, 4, 4]
    assert curve.probability(3) == 0.6
    low, high = curve.interval(3)
    assert low < 0.6 < high


def test_a_curve_ends_at_its_budget() -> None:
    curve = HitCurve.of([1, 2], budget=5)
    with pytest.raises(SimulationError, match="stopped at 5"):
        curve.successes(6)
    with pytest.raises(SimulationError, match="outside"):
        HitCurve.of([6], budget=5)
