"""The model against exact arithmetic, and against the reference figures
(Tailscale, "How NAT traversal works": 256 ports open, 174 probes 50 %,
256 → 64 %, 1024 → 98 %, 2048 → 99.9 %; both hard: ~54,000 probes for
50 %, ~170,000 for 99.9 %)."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest

from natkit.birthday.model import DIRECT_TERMS, log_miss, log_miss_with_replacement
from natkit.birthday.planner import BirthdayScenario, Mode
from natkit.errors import LocalProtocolError

N = 65535


def exact_miss(space: int, targets: int, probes: int) -> Fraction:
    return Fraction(math.comb(space - targets, probes), math.comb(space, probes))


def product_log_miss(space: int, targets: int, probes: int) -> float:
    """The defining product, summed term by term (the slow, obvious way)."""
    return math.fsum(math.log1p(-targets / (space - i)) for i in range(probes))


# -- the urn ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "targets", "probes"),
    [(10, 3, 4), (100, 1, 99), (1000, 17, 250), (65535, 256, 174), (65535, 256, 2048)],
)
def test_log_miss_is_the_hypergeometric_zero_term(space: int, targets: int, probes: int) -> None:
    exact = exact_miss(space, targets, probes)
    assert math.exp(log_miss(space, targets, probes)) == pytest.approx(float(exact), rel=1e-12)


def test_log_miss_by_brute_force_enumeration() -> None:
    # 8 ports, 3 open: over every set of 3 probed ports, count the misses.
    space, open_ports = 8, {1, 4, 6}
    probes = list(itertools.combinations(range(space), 3))
    misses = sum(1 for probed in probes if not open_ports & set(probed))
    assert math.exp(log_miss(space, 3, 3)) == pytest.approx(misses / len(probes), rel=1e-12)


@pytest.mark.parametrize(
    ("space", "targets", "probes"),
    [
        (65535, DIRECT_TERMS + 1, DIRECT_TERMS + 1),  # just past the direct sum
        (65535, 5000, 30000),
        (N * N, 54563, 54563),  # the both-hard reference points
        (N * N, 172244, 172244),
        (10**6, 10**5, 3 * 10**5),
        (20000, 9000, 10500),  # space - k - n = 500: the lgamma fallback
    ],
)
def test_every_numeric_path_agrees_with_the_product(space: int, targets: int, probes: int) -> None:
    assert log_miss(space, targets, probes) == pytest.approx(
        product_log_miss(space, targets, probes), rel=1e-11
    )


def test_log_miss_is_symmetric_in_targets_and_probes() -> None:
    assert log_miss(65535, 256, 9000) == pytest.approx(log_miss(65535, 9000, 256), rel=1e-13)


def test_edges_of_the_urn() -> None:
    assert log_miss(100, 0, 50) == 0.0
    assert log_miss(100, 10, 0) == 0.0
    assert log_miss(100, 10, 91) == -math.inf  # only 90 unmarked cells
    assert log_miss(100, 10, 90) == pytest.approx(-math.log(math.comb(100, 10)))
    assert log_miss_with_replacement(100, 100, 1) == -math.inf
    assert log_miss_with_replacement(100, 10, 3) == pytest.approx(3 * math.log(0.9))
    with pytest.raises(LocalProtocolError, match="targets <= space"):
        log_miss(10, 11, 1)


def test_huge_spaces_are_fast() -> None:
    # 1,000 evaluations at the both-hard scale, in log space, well under a second.
    for n in range(170_000, 171_000):
        assert log_miss(N * N, n, n) < 0


# -- the reference table --------------------------------------------------------------

ONE_HARD_REFERENCE = [(174, 0.50), (256, 0.64), (1024, 0.98), (2048, 0.999)]


@pytest.mark.parametrize(("probes", "reference"), ONE_HARD_REFERENCE)
def test_one_hard_side_reproduces_the_reference_table(probes: int, reference: float) -> None:
    scenario = BirthdayScenario(ports=256)
    # The article rounds: 174 probes give 49.4 %, 256 give 63.4 %.
    assert scenario.success_probability(probes) == pytest.approx(reference, abs=0.01)


def test_one_hard_side_reference_times_at_100_probes_per_second() -> None:
    scenario = BirthdayScenario(ports=256, rate=100.0)
    assert scenario.seconds(scenario.probes_for(0.5) or 0) < 2.0  # "under 2 s for even odds"
    near_certain = scenario.seconds(scenario.probes_for(0.999) or 0)
    assert 15.0 < near_certain < 21.0  # "about 20 s"
    assert BirthdayScenario(256).max_probes == N
    assert round(2048 / N, 2) == 0.03  # "~3 % of the port space"


def test_both_hard_sides_reproduce_the_reference_probe_counts() -> None:
    scenario = BirthdayScenario(ports=256, mode=Mode.BOTH_HARD)
    assert scenario.probes_for(0.5) == pytest.approx(54_000, rel=0.02)
    assert scenario.probes_for(0.999) == pytest.approx(170_000, rel=0.02)
    # ... and their times: "9 minutes" and "28 minutes" at 100 probes/s per side.
    assert scenario.seconds(54_000) / 60 == pytest.approx(9, abs=0.1)
    assert scenario.seconds(170_000) / 60 == pytest.approx(28, abs=0.5)
    assert scenario.success_probability(54_000) == pytest.approx(0.50, abs=0.01)
    assert scenario.success_probability(170_000) == pytest.approx(0.999, abs=0.0005)


def test_both_hard_is_the_one_hard_urn_with_the_pair_grid_and_the_other_sides_probes() -> None:
    # C(M-n, n) / C(M, n) with M = N²: n grows on both sides, so the search
    # space "squares" and the probes needed grow like N, not N/k.
    scenario = BirthdayScenario(ports=256, mode=Mode.BOTH_HARD)
    for n in (1, 1000, 54_562, 172_240):
        assert scenario.log_miss(n) == pytest.approx(product_log_miss(N * N, n, n), rel=1e-11)
        assert scenario.log_miss(n) == pytest.approx(-(n * n) / (N * N), rel=2 * n / (N * N) + 1e-9)
