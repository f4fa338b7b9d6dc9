"""The loss-evidence rule that makes silence a verdict."""

from __future__ import annotations

import math
import random

import pytest

from natkit.probe.evidence import LossEvidence


def test_no_evidence_means_a_uniform_prior() -> None:
    assert LossEvidence().false_negative_probability(1) == pytest.approx(0.5)
    assert LossEvidence().false_negative_probability(3) == pytest.approx(0.25)


def test_zero_loss_seen_closed_form() -> None:
    """With s answered and none lost, E[q^k] = 1 / C(s + 1 + k, k)."""
    for answered in (5, 20):
        for k in (1, 4, 9):
            expected = 1 / math.comb(answered + 1 + k, k)
            assert LossEvidence(answered, 0).false_negative_probability(k) == pytest.approx(
                expected
            )


def test_attempts_needed_grows_with_loss() -> None:
    clean = LossEvidence(40, 0).attempts_needed(1e-5, cap=100)
    lossy = LossEvidence(26, 14).attempts_needed(1e-5, cap=100)
    assert clean < lossy <= 100
    assert LossEvidence(26, 14).false_negative_probability(lossy) < 1e-5


def test_the_rule_is_calibrated_by_simulation() -> None:
    """At 36 % round-trip loss (20 % each way), tests stopped by the rule are
    falsely silent far less often than the target tolerates."""
    rng = random.Random(7)
    q, target = 0.36, 1e-2
    false_silent = 0
    trials = 4000
    for _ in range(trials):
        answered = sum(rng.random() > q for _ in range(30))
        evidence = LossEvidence(answered, 30 - answered)
        k = evidence.attempts_needed(target, cap=100)
        false_silent += all(rng.random() < q for _ in range(k))
    assert false_silent / trials < target
