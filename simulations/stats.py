"""Turning trial outcomes into success curves with confidence intervals.

A birthday trial yields the probe count at which it first succeeded (or
``None``: not within the budget). "Succeeded within n probes" is then a
Bernoulli outcome for every n, so one set of trials gives the whole curve,
and each point gets a binomial confidence interval. The interval is
Wilson's score interval: unlike the normal approximation it stays inside
[0, 1] and keeps close to its nominal coverage near 0 % and 100 %, where
the 99.9 % point of the table lives.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

from natkit.simulations.errors import SimulationError

#: z for a two-sided 95 % interval.
Z95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise SimulationError(f"need 0 <= successes <= trials > 0, got {successes}/{trials}")
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z / (1 + z2 / trials) * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class HitCurve:
    """The empirical P(success within n) of a set of trials."""

    #: The success counts of the trials that succeeded, sorted.
    hits: tuple[int, ...]
    #: All trials, successful or not.
    trials: int
    #: The largest n the trials covered (each stopped there at the latest).
    budget: int

    def __post_init__(self) -> None:
        if self.trials < len(self.hits) or self.trials < 1:
            raise SimulationError(f"{len(self.hits)} hits out of {self.trials} trials")
        if self.hits and (self.hits[0] < 1 or self.hits[-1] > self.budget):
            raise SimulationError(f"hits outside 1..{self.budget}")

    @classmethod
    def of(cls, outcomes: Iterable[int | None], budget: int) -> HitCurve:
        """From trial outcomes: the count at the first success, or ``None``."""
        values = list(outcomes)
        return cls(tuple(sorted(v for v in values if v is not None)), len(values), budget)

    def successes(self, n: int) -> int:
        """How many trials succeeded within ``n``."""
        if n > self.budget:
            raise SimulationError(f"the trials stopped at {self.budget}, not {n}")
        return bisect_right(self.hits, n)

    def probability(self, n: int) -> float:
        return self.successes(n) / self.trials

    def interval(self, n: int, z: float = Z95) -> tuple[float, float]:
        """The Wilson interval of :meth:`probability` (95 % by default)."""
        return wilson_interval(self.successes(n), self.trials, z)

    def standard_error(self, p: float) -> float:
        """The binomial standard error of an estimate of ``p`` from these trials."""
        return math.sqrt(p * (1 - p) / self.trials)
