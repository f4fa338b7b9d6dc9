"""How sure is "no answer"?

A silent test is only a verdict if the answers would have made it through
had they been sent. natkit measures the path's loss during the run: every
attempt of a test that was answered at least once is a Bernoulli trial
(answered, or lost once its window passed). With a uniform prior the
per-attempt loss ``q`` then follows Beta(1 + lost, 1 + answered), and the
chance that ``k`` attempts of a test that *would* be answered all vanish is
the posterior mean of ``q**k``:

    E[q^k] = prod_{i<k} (a + i) / (a + b + i),   a = 1 + lost, b = 1 + answered

A test stops sending once that is below the configured target; the same
number tells the report how confident each negative verdict is.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LossEvidence:
    """Counts of answered and lost attempts on paths known to work."""

    answered: int = 0
    lost: int = 0

    @property
    def observed_loss(self) -> float | None:
        """Fraction of attempts lost, ``None`` before any attempt concluded."""
        total = self.answered + self.lost
        return self.lost / total if total else None

    def false_negative_probability(self, attempts: int) -> float:
        """P(``attempts`` independent attempts all lost | the evidence)."""
        a, b = 1 + self.lost, 1 + self.answered
        probability = 1.0
        for i in range(attempts):
            probability *= (a + i) / (a + b + i)
        return probability

    def attempts_needed(self, target: float, cap: int) -> int:
        """Fewest attempts whose joint loss probability is below ``target`` (at most ``cap``)."""
        a, b = 1 + self.lost, 1 + self.answered
        probability = 1.0
        for i in range(cap):
            probability *= (a + i) / (a + b + i)
            if probability < target:
                return i + 1
        return cap
