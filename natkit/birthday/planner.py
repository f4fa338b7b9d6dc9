"""How likely a birthday search is to succeed, and how long it takes.

What is modelled
----------------
**One hard side** (APDM, "symmetric"; the other side EIM, "easy"). The hard
side binds ``k`` sockets and sends one packet from each to the easy side's
one mapped endpoint. Its NAT gives each new mapping a port of its range
(``N`` ports) at random, and never two live mappings toward the same remote
endpoint the same port (it could not tell their replies apart), so the open
ports are a uniformly random k-subset of the range. The easy side sends
probes to distinct ports of the hard side's IP, in random order; probe ``n``
hits when its port is one of the k. With every mapping open before the
first probe::

    P(hit within n probes) = 1 - C(N-k, n) / C(N, n)          (without replacement)
    P(hit within n probes) = 1 - (1 - k/N) ** n               (with replacement)

**Both sides hard.** Each probe side A sends from socket s to port d of B's
IP creates a mapping on A's NAT with a random external port e: it occupies
cell (e, d) of the grid of (A port, B port) pairs, ``M = N * N`` cells. B's
probes occupy cells (d', e') the same way. A probe gets through when the
other side already occupies its cell (or does so at the same moment: then
the second of the two packets finds both NATs open). So after each side
sent n probes the search has succeeded if the two sides' cell sets
intersect. A side's cells are distinct (it never repeats a (socket, port)
pair, and a NAT gives mappings toward the same remote endpoint distinct
ports), and taking each side's set as a uniformly random n-subset of the M
cells::

    P(hit when each side sent n) = 1 - C(M-n, n) / C(M, n)    (without replacement)
    P(hit when each side sent n) = 1 - (1 - n/M) ** n         (with replacement)

The uniform-subset step is the one approximation: the destination ports a
side picks are uniform and its NAT's ports are uniform, but together they
are not a uniform draw of cells (with one socket, no two cells share a
column). Any one A cell and B cell still coincide with probability exactly
1/M, so both give the same expected number of colliding pairs, n²/M, which
is log P(miss) to first order; they differ in corrections of relative size
about n/M (4e-5 at n = 172,000). The fake-network Monte Carlo in the tests
agrees within its statistical error. With replacement the other side's n
cells are taken as distinct. Here k only caps a side's probes at ``k * N``
distinct (socket, port) pairs; "sensible k" has ``k * N`` above the probes
needed (k >= 3 for the 99.9 % figure with N = 65535).

Everywhere: no loss; mappings outlive the search (the one-hard prober
refreshes its k; in both-hard mode the NATs must hold every sprayed mapping
for the whole run, n of them, which real NATs with 30-180 s UDP timeouts
and table limits do not: only about rate x timeout stay live, and the
search then grows linearly, not quadratically, in time); the peer's
public IP is known and fixed; and the NAT's port choice is uniform over
the range, so port-preserving or sequential NATs are not "hard" here.

Time
----
Probes go out at ``rate`` per second (per side), and "seconds" means probes
divided by rate: the time to send them at the cap, RTT not included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from natkit.birthday.model import log_miss, log_miss_with_replacement
from natkit.birthday.ports import FULL_RANGE, PortRange
from natkit.errors import LocalProtocolError

#: The survival sum stops once the rest cannot move it by more than this (relative).
_TAIL_TOLERANCE = 1e-17


class Mode(Enum):
    """Which sides are behind a hard (APDM) NAT."""

    ONE_HARD = "one-hard"
    BOTH_HARD = "both-hard"


class Sampling(Enum):
    """Whether the prober avoids ports (cells) it already tried."""

    WITHOUT_REPLACEMENT = "without-replacement"
    WITH_REPLACEMENT = "with-replacement"


@dataclass(frozen=True, slots=True)
class BirthdayScenario:
    """The inputs of the model."""

    #: k: sockets, hence mappings, the hard side opens (each side, in BOTH_HARD).
    ports: int
    #: The hard NAT's external port range (both NATs', in BOTH_HARD).
    port_range: PortRange = FULL_RANGE
    mode: Mode = Mode.ONE_HARD
    #: Probes per second (per side); only turns probe counts into seconds.
    rate: float = 100.0
    sampling: Sampling = Sampling.WITHOUT_REPLACEMENT

    def __post_init__(self) -> None:
        if self.ports < 1:
            raise LocalProtocolError(f"need at least one port, got {self.ports}")
        if self.mode is Mode.ONE_HARD and self.ports > self.port_range.size:
            raise LocalProtocolError(
                f"{self.ports} mappings do not fit in {self.port_range.size} ports"
            )
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise LocalProtocolError(f"rate must be positive, got {self.rate}")

    @property
    def space(self) -> int:
        """Cells of the urn: N ports, or N² port pairs when both sides are hard."""
        size = self.port_range.size
        return size if self.mode is Mode.ONE_HARD else size * size

    @property
    def max_probes(self) -> int | None:
        """Most probes (per side) the model covers, or ``None`` for no limit.

        Without replacement, one easy socket can probe each port once; a
        hard sprayer can use each of its (socket, port) pairs once.
        """
        if self.sampling is Sampling.WITH_REPLACEMENT:
            return None
        if self.mode is Mode.ONE_HARD:
            return self.port_range.size
        return self.ports * self.port_range.size

    def log_miss(self, probes: int) -> float:
        """log P(no hit after ``probes`` probes, per side)."""
        if probes < 0:
            raise LocalProtocolError(f"negative probe count {probes}")
        limit = self.max_probes
        if limit is not None and probes > limit:
            raise LocalProtocolError(
                f"{probes} probes exceed the {limit} distinct ones this scenario allows"
            )
        space = self.space
        if self.mode is Mode.ONE_HARD:
            if self.sampling is Sampling.WITH_REPLACEMENT:
                return log_miss_with_replacement(space, self.ports, probes)
            return log_miss(space, self.ports, probes)
        if self.sampling is Sampling.WITH_REPLACEMENT:
            if probes > space:
                return -math.inf
            return log_miss_with_replacement(space, probes, probes)
        if 2 * probes > space:
            return -math.inf  # two disjoint n-subsets no longer fit in the grid
        return log_miss(space, probes, probes)

    def success_probability(self, probes: int) -> float:
        """P(a hit within ``probes`` probes, per side)."""
        return -math.expm1(self.log_miss(probes))

    def probes_for(self, probability: float) -> int | None:
        """The fewest probes (per side) that reach ``probability``, or
        ``None`` when no number within :attr:`max_probes` does.

        Binary search over the exact formula (it is monotone in n): about
        log2(N) evaluations, each O(1) or at most 4096 terms.
        """
        if not 0.0 <= probability <= 1.0:
            raise LocalProtocolError(f"probability must be in [0, 1], got {probability}")
        if probability == 0.0:
            return 0
        target = -math.inf if probability == 1.0 else math.log1p(-probability)
        high = self._search_ceiling(target)
        if high is None or self.log_miss(high) > target:
            return None
        low = 0  # log_miss(0) = 0 > target
        while high - low > 1:
            middle = (low + high) // 2
            if self.log_miss(middle) <= target:
                high = middle
            else:
                low = middle
        return high

    def seconds(self, probes: float) -> float:
        """Time to send ``probes`` probes at the rate."""
        return probes / self.rate

    def _search_ceiling(self, target: float) -> int | None:
        limit = self.max_probes
        if self.mode is Mode.BOTH_HARD:
            ceiling = self.space // 2 + 1 if limit is not None else self.space
            return ceiling if limit is None else min(limit, ceiling)
        if limit is not None:
            return limit
        if target == -math.inf:
            return None  # independent draws never make a hit certain
        # (1 - k/N)^n <= e^target  <=>  n >= target / log1p(-k/N); +2 covers rounding.
        step = math.log1p(-self.ports / self.space)
        return 1 if step == -math.inf else math.ceil(target / step) + 2

    def survival_sum(self, probes: int | None = None) -> float:
        """``sum_{n < probes} P(no hit after n)`` = E[min(probes until hit, probes)].

        With ``probes=None``, E[probes until the hit] with no budget
        (``inf`` when even :attr:`max_probes` may all miss).
        Closed forms for one hard side (the hockey-stick identity gives
        ``(N+1)/(k+1) * (1 - C(N+1-B, k+1)/C(N+1, k+1))``); a running product
        for both sides hard.
        """
        n_ports, k = self.space, self.ports
        if self.mode is Mode.ONE_HARD:
            if self.sampling is Sampling.WITH_REPLACEMENT:
                if probes is None:
                    return n_ports / k
                return -math.expm1(self.log_miss(probes)) * n_ports / k
            whole = (n_ports + 1) / (k + 1)
            if probes is None or probes > n_ports:
                return whole
            return whole * -math.expm1(log_miss(n_ports + 1, k + 1, probes))
        return self._both_hard_survival_sum(probes)

    def _both_hard_survival_sum(self, probes: int | None) -> float:
        space = self.space
        end = probes
        if end is None:
            limit = self.max_probes
            if limit is not None and math.exp(self.log_miss(limit)) > 0.0:
                return math.inf  # k * N probes may all miss: no finite expectation
            end = space if limit is None else limit
        total = 0.0
        miss = 1.0
        for n in range(end):
            total += miss
            if self.sampling is Sampling.WITHOUT_REPLACEMENT:
                # Q(n+1)/Q(n): A's next cell avoids B's n among the M-n not A's,
                # then B's next avoids A's n+1 among the M-n not B's.
                rest = space - n
                miss *= (1.0 - n / rest) * (1.0 - (n + 1) / rest)
            else:
                miss = math.exp((n + 1) * math.log1p(-(n + 1) / space))
            # Q falls at least geometrically with ratio 1 - 2n/M from here on.
            if miss <= 0.0 or miss * space / (2 * n + 2) < _TAIL_TOLERANCE * total:
                break
        return total


@dataclass(frozen=True, slots=True)
class Estimate:
    """What the model says about one scenario and budget (per side)."""

    scenario: BirthdayScenario
    #: The probe budget (per side).
    probes: int
    success_probability: float
    #: E[probes until the hit | a hit within the budget]; ``None`` if no hit is possible.
    expected_probes: float | None
    #: The same, in seconds at the rate.
    expected_seconds: float | None
    #: E[probes sent], hit or not (the run stops at the hit or the budget).
    expected_run_probes: float
    expected_run_seconds: float
    #: E[probes until the hit] with no budget at all.
    unbounded_expected_probes: float
    unbounded_expected_seconds: float
    probes_for_50: int | None
    probes_for_99: int | None
    probes_for_999: int | None
    #: The budget as a fraction of the cells (ports, or port pairs) it could try.
    search_space_fraction: float

    def seconds_for(self, probes: int | None) -> float | None:
        return None if probes is None else self.scenario.seconds(probes)


@dataclass(frozen=True, slots=True)
class BudgetOdds:
    """What a budget of ``probes`` buys: the part of :class:`Estimate` that
    costs a few sums (the unbounded expectation of a both-hard search over a
    whole port range sums millions of terms: ~0.1 s, too long for the
    connect agent's event loop, which only needs these)."""

    success_probability: float
    expected_probes: float | None
    expected_seconds: float | None
    expected_run_probes: float
    expected_run_seconds: float


def budget_odds(scenario: BirthdayScenario, probes: int) -> BudgetOdds:
    """P(hit within ``probes``), and the expected probes and seconds."""
    log_q = scenario.log_miss(probes)
    success = -math.expm1(log_q)
    run = scenario.survival_sum(probes)
    conditional = None
    if success > 0.0:
        # sum_{n<B} Q(n) - B Q(B) = sum_{n=1..B} n P(first hit is probe n).
        conditional = max(0.0, run - probes * math.exp(log_q)) / success
    return BudgetOdds(
        success_probability=success,
        expected_probes=conditional,
        expected_seconds=None if conditional is None else scenario.seconds(conditional),
        expected_run_probes=run,
        expected_run_seconds=scenario.seconds(run),
    )


def estimate(
    scenario: BirthdayScenario, *, probes: int | None = None, seconds: float | None = None
) -> Estimate:
    """Evaluate ``scenario`` for a budget of ``probes``, or of ``seconds`` at its rate."""
    if (probes is None) == (seconds is None):
        raise LocalProtocolError("give exactly one of probes and seconds")
    if probes is None:
        assert seconds is not None
        if not (math.isfinite(seconds) and seconds >= 0):
            raise LocalProtocolError(f"bad time budget {seconds}")
        probes = math.floor(seconds * scenario.rate + 1e-9)
    odds = budget_odds(scenario, probes)
    unbounded = scenario.survival_sum(None)
    return Estimate(
        scenario=scenario,
        probes=probes,
        success_probability=odds.success_probability,
        expected_probes=odds.expected_probes,
        expected_seconds=odds.expected_seconds,
        expected_run_probes=odds.expected_run_probes,
        expected_run_seconds=odds.expected_run_seconds,
        unbounded_expected_probes=unbounded,
        unbounded_expected_seconds=scenario.seconds(unbounded),
        probes_for_50=scenario.probes_for(0.5),
        probes_for_99=scenario.probes_for(0.99),
        probes_for_999=scenario.probes_for(0.999),
        search_space_fraction=probes / scenario.space,
    )
