"""The birthday table by Monte Carlo, beside natkit's analytic model.

    python -m natkit.simulations.birthday_montecarlo [--trials 10000] [--seed 1] [--jobs 2]

Prints two tables, each point with the simulated success rate, its 95 %
Wilson interval, and the difference from :mod:`natkit.birthday`'s model in
percentage points:

1. **One hard side**, k = 256 mappings on the whole port range, at the
   issue's points (174, 256, 1024 and 2048 probes), from ``--trials``
   packet-level trials (:func:`natkit.simulations.birthday_trials.run_one_hard`).
   The exit status is 1 if any point is more than ``--tolerance`` (1
   percentage point) from the model.
2. **Both sides hard** on a reduced range (``--both-range``, 1024 ports by
   default), where the model's 50 % point is about 850 probes per side
   rather than 54,000, at the model's 10/25/50/90/99/99.9 % points; then the
   model alone at the full range. The full range is out of reach of a
   packet-level Monte Carlo (each trial would send ~110,000 probes), so
   the reduced range checks the model's both-hard formula itself, whose
   structure (n²/M, M = N²) does not depend on N.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from natkit.birthday.planner import BirthdayScenario, Mode
from natkit.birthday.ports import FULL_RANGE, PortRange
from natkit.simulations.birthday_trials import (
    BothHardSetup,
    OneHardSetup,
    run_both_hard,
    run_one_hard,
)
from natkit.simulations.parallel import default_jobs, run_trials
from natkit.simulations.stats import HitCurve

#: The issue's table: probes -> the success rate it quotes (k = 256, one hard side).
ISSUE_TABLE: dict[int, float] = {174: 0.50, 256: 0.64, 1024: 0.98, 2048: 0.999}
#: The rate the issue turns probes into seconds with.
ISSUE_RATE = 100.0
#: Success probabilities at which the both-hard curve is checked.
BOTH_HARD_LEVELS = (0.10, 0.25, 0.50, 0.90, 0.99, 0.999)
#: The reduced range of the both-hard Monte Carlo: N = 1024.
DEFAULT_BOTH_RANGE = PortRange(1024, 2047)


@dataclass(frozen=True, slots=True)
class Point:
    """One row: the model and the simulation at ``probes`` probes."""

    probes: int
    analytic: float
    successes: int
    trials: int
    #: The 95 % Wilson interval of the simulated rate.
    low: float
    high: float

    @property
    def simulated(self) -> float:
        return self.successes / self.trials

    @property
    def difference_pp(self) -> float:
        """Simulated minus analytic, in percentage points."""
        return 100.0 * (self.simulated - self.analytic)

    @property
    def covers_model(self) -> bool:
        """Whether the 95 % interval contains the analytic value."""
        return self.low <= self.analytic <= self.high


@dataclass(frozen=True, slots=True)
class Comparison:
    """A curve checked against the model at some points."""

    title: str
    scenario: BirthdayScenario
    curve: HitCurve
    points: tuple[Point, ...]
    #: Wall-clock seconds the trials took.
    seconds: float
    jobs: int


def compare(
    title: str,
    scenario: BirthdayScenario,
    curve: HitCurve,
    probes: Sequence[int],
    *,
    seconds: float,
    jobs: int,
) -> Comparison:
    """Evaluate ``curve`` and the model at each of ``probes``."""
    points = []
    for n in probes:
        low, high = curve.interval(n)
        points.append(
            Point(n, scenario.success_probability(n), curve.successes(n), curve.trials, low, high)
        )
    return Comparison(title, scenario, curve, tuple(points), seconds, jobs)


def one_hard_comparison(
    trials: int, seed: int, jobs: int, setup: OneHardSetup | None = None
) -> Comparison:
    """The issue's table from ``trials`` packet-level trials."""
    setup = setup or OneHardSetup()
    start = time.perf_counter()
    outcomes = run_trials(run_one_hard, setup, seed, trials, jobs=jobs)
    seconds = time.perf_counter() - start
    curve = HitCurve.of(outcomes, setup.budget)
    title = (
        f"One hard side: k = {setup.ports} mappings, ports {setup.port_range} "
        f"(N = {setup.port_range.size}), {trials:,} trials"
    )
    points = [n for n in ISSUE_TABLE if n <= setup.budget]
    return compare(title, setup.scenario(), curve, points, seconds=seconds, jobs=jobs)


def both_hard_setup(port_range: PortRange, ports: int = 16) -> BothHardSetup:
    """A budget that reaches the model's top level, so the curve covers every level."""
    model = BirthdayScenario(ports, port_range, Mode.BOTH_HARD)
    budget = model.probes_for(max(BOTH_HARD_LEVELS))
    if budget is None:
        raise ValueError(f"{ports} sockets x {port_range} cannot reach the top level")
    return BothHardSetup(port_range, budget, ports)


def both_hard_comparison(trials: int, seed: int, jobs: int, setup: BothHardSetup) -> Comparison:
    """Both sides hard on ``setup``'s range, at the model's levels."""
    start = time.perf_counter()
    outcomes = run_trials(run_both_hard, setup, seed, trials, jobs=jobs)
    seconds = time.perf_counter() - start
    curve = HitCurve.of(outcomes, setup.budget)
    scenario = setup.scenario()
    size = setup.port_range.size
    title = (
        f"Both sides hard: ports {setup.port_range} (N = {size}, M = N² = {size * size:,} "
        f"cells), k = {setup.ports} sockets per side, {trials:,} trials"
    )
    probes = sorted({n for level in BOTH_HARD_LEVELS if (n := scenario.probes_for(level))})
    return compare(title, scenario, curve, probes, seconds=seconds, jobs=jobs)


# -- rendering ---------------------------------------------------------------------


def _percent(value: float) -> str:
    return f"{100 * value:7.3f} %"


def render(comparison: Comparison, *, issue: dict[int, float] | None = None) -> str:
    """The comparison as a text table."""
    lines = [comparison.title]
    header = (
        f"{'probes':>7} {'s @100/s':>8} {'analytic':>10} {'simulated':>10} {'diff pp':>8}"
        f"  {'95 % CI (Wilson)':<22} {'CI covers':>9}"
    )
    if issue is not None:
        header += f" {'issue':>7}"
    lines += [header, "-" * len(header)]
    for point in comparison.points:
        row = (
            f"{point.probes:>7} {point.probes / ISSUE_RATE:>8.2f} {_percent(point.analytic)}"
            f" {_percent(point.simulated)} {point.difference_pp:>+8.3f}"
            f"  [{100 * point.low:6.2f}, {100 * point.high:6.2f}] %"
            f"   {'yes' if point.covers_model else 'NO':>6}"
        )
        if issue is not None:
            row += f" {100 * issue.get(point.probes, float('nan')):6.1f}%"
        lines.append(row)
    rate = comparison.curve.trials / comparison.seconds if comparison.seconds > 0 else 0.0
    lines.append(
        f"{comparison.curve.trials:,} trials in {comparison.seconds:.1f} s wall "
        f"({rate:,.0f} trials/s, {comparison.jobs} process(es))"
    )
    return "\n".join(lines)


def render_full_range_both_hard(ports: int = 256, rate: float = ISSUE_RATE) -> str:
    """The model's both-hard figures at the full range (no simulation)."""
    scenario = BirthdayScenario(ports, FULL_RANGE, Mode.BOTH_HARD, rate)
    lines = [
        f"Both sides hard, full range {FULL_RANGE} (M = {scenario.space:,} cells): model only",
        f"{'P(success)':>10} {'probes/side':>12} {'at 100/s':>10}",
    ]
    for level in (0.5, 0.99, 0.999):
        probes = scenario.probes_for(level)
        if probes is None:
            continue
        lines.append(
            f"{100 * level:>9.1f}% {probes:>12,} {scenario.seconds(probes) / 60:>8.1f} min"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10_000, help="one-hard trials; 0 skips")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="processes")
    parser.add_argument(
        "--tolerance", type=float, default=1.0, help="allowed |diff| in percentage points"
    )
    parser.add_argument("--both-trials", type=int, default=2_000, help="0 skips both-hard")
    parser.add_argument("--both-range", type=PortRange.parse, default=DEFAULT_BOTH_RANGE)
    args = parser.parse_args(argv)

    outside: list[Point] = []
    if args.trials > 0:
        one = one_hard_comparison(args.trials, args.seed, args.jobs)
        print(render(one, issue=ISSUE_TABLE))
        outside = [p for p in one.points if abs(p.difference_pp) > args.tolerance]
        verdict = "all within" if not outside else f"{len(outside)} point(s) outside"
        print(f"{verdict} ±{args.tolerance:g} percentage point(s) of the model\n")

    if args.both_trials > 0:
        setup = both_hard_setup(args.both_range)
        print(render(both_hard_comparison(args.both_trials, args.seed, args.jobs, setup)))
        print()
    print(render_full_range_both_hard())
    return 1 if outside else 0


if __name__ == "__main__":
    sys.exit(main())
