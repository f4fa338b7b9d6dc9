"""PNG plots of birthday success against probes: the model, with Monte Carlo points.

    python -m natkit.simulations.plots --out simulations/out/ [--trials 2000] [--both-trials 1000]

Writes two files into ``--out``:

* ``one_hard.png``: P(hit within n probes) for one hard side with k = 64,
  256 and 1024 mappings on the whole port range, without replacement (what
  natkit's prober does, solid) and with replacement (dashed), against n on
  a log axis with seconds at 100 probes/s on top; the packet-level Monte
  Carlo points with their 95 % Wilson intervals on each curve. Below: the
  simulated minus the analytic value, in percentage points, with the
  intervals and the ±1 point band.
* ``both_hard.png``: both sides hard. Left, the reduced range the Monte
  Carlo can reach (N = 1024 by default) with its points; right, the model
  alone at the full range, marking even odds and 99.9 %.

Figures are drawn on an explicit Agg canvas, without pyplot and its global
state, so no display is needed and nothing leaks between calls.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from natkit.birthday.planner import BirthdayScenario, Mode, Sampling
from natkit.birthday.ports import FULL_RANGE, PortRange
from natkit.simulations.birthday_montecarlo import DEFAULT_BOTH_RANGE, both_hard_setup
from natkit.simulations.birthday_trials import (
    BothHardSetup,
    OneHardSetup,
    run_both_hard,
    run_one_hard,
)
from natkit.simulations.parallel import default_jobs, run_trials
from natkit.simulations.stats import HitCurve

#: The k values of the one-hard figure.
ONE_HARD_PORTS = (64, 256, 1024)
#: Probes per second for the seconds axis.
RATE = 100.0
#: Monte Carlo points per curve.
POINTS = 10
COLOURS = ("tab:blue", "tab:orange", "tab:green")


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)  # attaches itself: savefig renders with Agg
    return figure


def curve_points(scenario: BirthdayScenario, low: float, high: float, count: int) -> list[int]:
    """``count`` probe counts spaced evenly in log between the model's ``low``
    and ``high`` success probabilities."""
    first = scenario.probes_for(low) or 1
    last = scenario.probes_for(high) or first
    ratio = (last / first) ** (1 / max(1, count - 1))
    return sorted({round(first * ratio**i) for i in range(count)})


def _model_line(scenario: BirthdayScenario, top: int) -> tuple[list[float], list[float]]:
    ns = sorted({max(1, round(10 ** (i / 100))) for i in range(round(100 * math.log10(top)) + 1)})
    return [float(n) for n in ns], [scenario.success_probability(n) for n in ns]


def _error_bars(curve: HitCurve, ns: Sequence[int]) -> tuple[list[float], list[list[float]]]:
    ps = [curve.probability(n) for n in ns]
    intervals = [curve.interval(n) for n in ns]
    # max(0, ...): at p = 0 or 1 the bound equals p up to rounding.
    lows = [max(0.0, p - low) for p, (low, _) in zip(ps, intervals, strict=True)]
    highs = [max(0.0, high - p) for p, (_, high) in zip(ps, intervals, strict=True)]
    return ps, [lows, highs]


def one_hard_setup(ports: int) -> OneHardSetup:
    """A setup whose budget reaches the model's 99.9 % point for ``ports``."""
    scenario = BirthdayScenario(ports, FULL_RANGE)
    return OneHardSetup(ports=ports, budget=scenario.probes_for(0.999) or FULL_RANGE.size)


def one_hard_figure(curves: dict[int, HitCurve]) -> Figure:
    """The one-hard figure (see the module doc) from a curve per k."""
    figure = _figure(9, 8)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1.2)})
    top_x = max(c.budget for c in curves.values())
    for colour, (ports, curve) in zip(COLOURS, sorted(curves.items()), strict=False):
        exact = BirthdayScenario(ports, FULL_RANGE, Mode.ONE_HARD, RATE)
        drawn = BirthdayScenario(ports, FULL_RANGE, Mode.ONE_HARD, RATE, Sampling.WITH_REPLACEMENT)
        top.plot(*_model_line(exact, top_x), color=colour, label=f"k = {ports}, model")
        top.plot(*_model_line(drawn, top_x), color=colour, linestyle="--", linewidth=1)
        ns = curve_points(exact, 0.02, 0.999, POINTS)
        ps, bars = _error_bars(curve, ns)
        top.errorbar(
            ns,
            ps,
            yerr=bars,
            fmt="o",
            color=colour,
            markersize=4,
            capsize=3,
            label=f"k = {ports}, {curve.trials:,} simulated trials",
        )
        diffs = [100 * (p - exact.success_probability(n)) for p, n in zip(ps, ns, strict=True)]
        pp_bars = [[100 * b for b in side] for side in bars]
        bottom.errorbar(ns, diffs, yerr=pp_bars, fmt="o", color=colour, markersize=4, capsize=3)
        # The two models differ by hundredths of a point here: draw the gap.
        xs, with_replacement = _model_line(drawn, top_x)
        gap = [
            100 * (w - exact.success_probability(round(x)))
            for x, w in zip(xs, with_replacement, strict=True)
        ]
        bottom.plot(xs, gap, color=colour, linestyle="--", linewidth=1)
    top.plot([], [], color="grey", linestyle="--", linewidth=1, label="with replacement (model)")
    bottom.plot(
        [], [], color="grey", linestyle="--", linewidth=1, label="model with − without replacement"
    )
    top.set_xscale("log")
    top.set_ylim(0, 1.02)
    top.set_ylabel("P(hit within n probes)")
    figure.suptitle(
        f"One hard side: k mappings among N = {FULL_RANGE.size:,} ports\n"
        "points: packets through simulated RFC 4787 NATs between natkit's probers",
        fontsize=11,
    )
    top.grid(True, which="both", alpha=0.3)
    top.legend(loc="upper left", fontsize=8)
    seconds = top.secondary_xaxis("top", functions=(lambda n: n / RATE, lambda s: s * RATE))
    seconds.set_xlabel(f"seconds at {RATE:g} probes/s")
    bottom.axhspan(-1, 1, color="tab:green", alpha=0.12, label="±1 percentage point")
    bottom.axhline(0, color="black", linewidth=0.8)
    bottom.set_ylabel("simulated − model (pp)")
    bottom.set_xlabel("probes sent by the easy side (n)")
    bottom.grid(True, which="both", alpha=0.3)
    bottom.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure


def _mark_level(
    axes: Axes, scenario: BirthdayScenario, level: float, scale: float, offset: tuple[float, float]
) -> None:
    probes = scenario.probes_for(level)
    if probes is None:
        return
    axes.axvline(probes / scale, color="grey", linestyle=":", linewidth=1)
    axes.annotate(
        f"{100 * level:g} %: {probes:,} probes\n({scenario.seconds(probes) / 60:.1f} min at "
        f"{scenario.rate:g}/s)",
        (probes / scale, level),
        textcoords="offset points",
        xytext=offset,
        fontsize=8,
    )


def both_hard_figure(curve: HitCurve, setup: BothHardSetup) -> Figure:
    """Both sides hard: the reduced range with Monte Carlo, and the full range's model."""
    figure = _figure(12, 5)
    small, full = figure.subplots(1, 2)
    reduced = setup.scenario()
    n_max = curve.budget
    ns = list(range(0, n_max + 1, max(1, n_max // 400)))
    small.plot(ns, [reduced.success_probability(n) for n in ns], color="tab:red", label="model")
    points = curve_points(reduced, 0.05, 0.995, POINTS)
    ps, bars = _error_bars(curve, points)
    small.errorbar(
        points,
        ps,
        yerr=bars,
        fmt="o",
        color="black",
        markersize=4,
        capsize=3,
        label=f"{curve.trials:,} simulated trials (95 % CI)",
    )
    size = setup.port_range.size
    small.set_title(
        f"Reduced range: N = {size:,} ports, M = N² = {size * size:,} cells, k = {setup.ports}"
    )
    small.set_xlabel("probes per side (n)")
    small.set_ylabel("P(hit when each side sent n)")
    small.grid(True, alpha=0.3)
    small.legend(loc="lower right", fontsize=8)

    exact = BirthdayScenario(256, FULL_RANGE, Mode.BOTH_HARD, RATE)
    drawn = BirthdayScenario(256, FULL_RANGE, Mode.BOTH_HARD, RATE, Sampling.WITH_REPLACEMENT)
    top = exact.probes_for(0.9999) or 250_000
    ns = list(range(0, top + 1, top // 400))
    scale = 1000.0
    full.plot(
        [n / scale for n in ns],
        [exact.success_probability(n) for n in ns],
        color="tab:red",
        label="without replacement",
    )
    full.plot(
        [n / scale for n in ns],
        [drawn.success_probability(n) for n in ns],
        color="tab:red",
        linestyle="--",
        linewidth=1,
        label="with replacement (coincides)",
    )
    _mark_level(full, exact, 0.5, scale, (6, -28))
    _mark_level(full, exact, 0.999, scale, (-125, -40))
    minutes = full.secondary_xaxis(
        "top", functions=(lambda k: k * scale / RATE / 60, lambda m: m * 60 * RATE / scale)
    )
    minutes.set_xlabel(f"minutes at {RATE:g} probes/s per side")
    full.set_title(f"Full range: N = {FULL_RANGE.size:,}, M = {exact.space:,} (model only)")
    full.set_xlabel("probes per side (thousands)")
    full.grid(True, alpha=0.3)
    full.legend(loc="lower right", fontsize=8)
    figure.suptitle("Both sides hard (APDM/APDF, random ports)")
    figure.tight_layout()
    return figure


def write_plots(
    out: Path,
    *,
    trials: int,
    both_trials: int,
    seed: int = 1,
    jobs: int = 1,
    one_hard_ports: Sequence[int] = ONE_HARD_PORTS,
    both_range: PortRange = DEFAULT_BOTH_RANGE,
) -> list[Path]:
    """Run the Monte Carlo for both figures and save them; returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    curves = {}
    for ports in one_hard_ports:
        setup = one_hard_setup(ports)
        outcomes = run_trials(run_one_hard, setup, seed, trials, jobs=jobs)
        curves[ports] = HitCurve.of(outcomes, setup.budget)
    both = both_hard_setup(both_range)
    both_curve = HitCurve.of(
        run_trials(run_both_hard, both, seed, both_trials, jobs=jobs), both.budget
    )
    written = []
    for name, figure in (
        ("one_hard.png", one_hard_figure(curves)),
        ("both_hard.png", both_hard_figure(both_curve, both)),
    ):
        path = out / name
        figure.savefig(path, dpi=120)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("simulations/out"))
    parser.add_argument("--trials", type=int, default=2_000, help="one-hard trials per k")
    parser.add_argument("--both-trials", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=default_jobs())
    args = parser.parse_args(argv)
    for path in write_plots(
        args.out,
        trials=args.trials,
        both_trials=args.both_trials,
        seed=args.seed,
        jobs=args.jobs,
    ):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
