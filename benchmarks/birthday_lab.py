"""Birthday hole punching through real kernel NAT, measured beside the model.

For each configuration this builds its two-site lab (``birthday-one-hard``:
site A behind ``masquerade fully-random``, site B behind plain masquerade;
``birthday-both-hard``: both behind ``masquerade to :40000-40999
fully-random``), runs the search ``--runs`` times with NAT state reset
before each run, every run with a budget large enough (the model's 99 %
point) to see where the first hit falls, and prints:

* success vs probes: the share of runs that had hit by n probes (per
  side), with a 95 % Wilson interval, beside the exact model's P(hit
  within n), at the model's 25/50/75/90/99 % points;
* the median and 90th percentile of the probes to the first hit, measured
  and modelled;
* time to punch (a sprayer's first probe to its hit) over probes / rate:
  median, 90th percentile, worst, and how many hits kept within 1.2;
* broken rules (budget, rate cap, router counters, authentication, the
  1.2 bound), counted as the tests count them.

The runs are those of ``tests/lab/birthday_runs.py``, the harness the lab
tests check, on asyncio's default (epoll) loop with normal scheduling, as
``natkit birthday probe`` runs. ``--loop select`` and ``--realtime``
(SCHED_FIFO side threads) show what, if anything, the timing owes to the
loop's timer resolution and to the scheduler. Needs root.

    sudo .venv/bin/python benchmarks/birthday_lab.py [--runs 20] [--rate 250]
        [--loop select epoll] [--realtime] [--json] [one-hard] [both-hard]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# The run harness lives with the lab tests that check it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "lab"))

from birthday_runs import PUNCH_FACTOR, EventLoop, Run, Setup, problems, run_once

from natkit.birthday import Mode
from natkit.lab import Lab, get_scenario
from natkit.lab.scenarios import BOTH_HARD_PORTS

#: The model's points the success table is read at.
REFERENCE_POINTS = (0.25, 0.5, 0.75, 0.9, 0.99)
#: z for a 95 % two-sided interval.
Z95 = 1.959964


@dataclass(frozen=True)
class Configuration:
    name: str
    scenario: str
    setup: Setup


def configurations(rate: float) -> dict[str, Configuration]:
    hard_ports = get_scenario("birthday-one-hard").nats[0].udp_ports
    assert hard_ports is not None
    one = Setup(Mode.ONE_HARD, ports=256, budget=1, rate=rate, port_range=hard_ports)
    both = Setup(Mode.BOTH_HARD, ports=8, budget=1, rate=rate, port_range=BOTH_HARD_PORTS)
    made = {}
    for name, scenario, setup in (
        ("one-hard", "birthday-one-hard", replace(one, open_rate=1000.0)),
        ("both-hard", "birthday-both-hard", both),
    ):
        # A budget at the model's 99 % point shows where first hits fall.
        budget = setup.model.probes_for(0.99)
        assert budget is not None
        made[name] = Configuration(name, scenario, replace(setup, budget=budget))
    return made


def wilson(hits: int, runs: int) -> tuple[float, float]:
    """95 % Wilson score interval for a binomial share."""
    if runs == 0:
        return 0.0, 1.0
    share = hits / runs
    denominator = 1 + Z95**2 / runs
    centre = (share + Z95**2 / (2 * runs)) / denominator
    half = Z95 * math.sqrt(share * (1 - share) / runs + Z95**2 / (4 * runs**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def quantile(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of ``values``; ``inf`` marks a miss."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def measure(config: Configuration, runs: int, loop: EventLoop, realtime: bool) -> dict[str, Any]:
    setup = replace(config.setup, loop=loop, realtime=realtime)
    results: list[Run] = []
    broken: list[str] = []
    started = time.monotonic()
    with Lab.up(config.scenario, servers=("natkit",)) as lab:
        for index in range(runs):
            lab.reset_state()
            run = run_once(lab, setup, seed=index)
            results.append(run)
            broken += [f"run {index}: {line}" for line in problems(run, lab)]
    return summarize(config, setup, results, broken, time.monotonic() - started)


def summarize(
    config: Configuration, setup: Setup, runs: list[Run], broken: list[str], seconds: float
) -> dict[str, Any]:
    model = setup.model
    to_hit = [float(r.probes_to_hit) if r.probes_to_hit else math.inf for r in runs]
    table = []
    for point in REFERENCE_POINTS:
        probes = model.probes_for(point)
        if probes is None or probes > setup.budget:
            continue
        hits = sum(n <= probes for n in to_hit)
        low, high = wilson(hits, len(runs))
        table.append(
            {
                "probes": probes,
                "model": model.success_probability(probes),
                "measured": hits / len(runs),
                "hits": hits,
                "wilson95": [low, high],
            }
        )
    ratios = [
        side.punch_seconds / (side.found.stats.probes_sent / setup.rate)
        for run in runs
        for side in run.sprayers
        if side.found is not None and side.punch_seconds is not None
    ]
    return {
        "configuration": config.name,
        "scenario": config.scenario,
        "ports": setup.ports,
        "port_range": str(setup.port_range),
        "budget": setup.budget,
        "rate": setup.rate,
        "open_rate": setup.open_rate,
        "loop": setup.loop.value,
        "realtime": setup.realtime,
        "runs": len(runs),
        "hits": sum(r.hit for r in runs),
        "model_success": setup.success_probability,
        "success_vs_probes": table,
        "probes_to_hit": {
            "median": quantile(to_hit, 0.5),
            "p90": quantile(to_hit, 0.9),
            "model_median": model.probes_for(0.5),
            "model_p90": model.probes_for(0.9),
        },
        "punch_over_probes_per_rate": {
            "median": statistics.median(ratios) if ratios else None,
            "p90": quantile(ratios, 0.9),
            "max": max(ratios, default=None),
            "within_bound": sum(r <= PUNCH_FACTOR for r in ratios),
            "hits": len(ratios),
        },
        "broken_rules": broken,
        "seconds": round(seconds, 1),
    }


def _count(value: float | None) -> str:
    if value is None:
        return "-"
    return "> budget" if math.isinf(value) else f"{value:.0f}"


def render(summary: dict[str, Any]) -> str:
    s = summary
    lines = [
        f"{s['configuration']} ({s['scenario']}): k = {s['ports']}, NAT ports {s['port_range']},"
        f" budget {s['budget']} per side at {s['rate']:g}/s, loop {s['loop']},"
        f" {'SCHED_FIFO' if s['realtime'] else 'normal scheduling'}; {s['runs']} runs in"
        f" {s['seconds']:.0f} s",
        f"  hits {s['hits']}/{s['runs']}; model {s['model_success'] * 100:.1f} % within the budget",
        "  success vs probes (per side):",
        f"    {'probes':>7}  {'model':>7}  {'measured':>8}  {'95 % interval':>15}",
    ]
    for row in s["success_vs_probes"]:
        low, high = row["wilson95"]
        inside = "" if low <= row["model"] <= high else "  <- model outside"
        lines.append(
            f"    {row['probes']:>7}  {row['model'] * 100:>6.1f}%  {row['measured'] * 100:>7.1f}%"
            f"  {low * 100:>6.1f}-{high * 100:>5.1f} %{inside}"
        )
    hit = s["probes_to_hit"]
    lines.append(
        f"  probes to first hit: median {_count(hit['median'])} (model {hit['model_median']}),"
        f" 90th percentile {_count(hit['p90'])} (model {hit['model_p90']})"
    )
    punch = s["punch_over_probes_per_rate"]
    if punch["hits"]:
        lines.append(
            f"  time to punch / (probes / rate): median {punch['median']:.3f},"
            f" 90th percentile {punch['p90']:.3f}, worst {punch['max']:.3f};"
            f" {punch['within_bound']}/{punch['hits']} hits within {PUNCH_FACTOR}"
        )
    lines.append(f"  broken rules: {len(s['broken_rules'])}")
    lines += [f"    {line}" for line in s["broken_rules"][:10]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configurations", nargs="*", default=["one-hard", "both-hard"])
    parser.add_argument("--runs", type=int, default=20, help="runs per configuration")
    parser.add_argument("--rate", type=float, default=250.0, help="probes per second per side")
    parser.add_argument(
        "--loop",
        nargs="+",
        choices=[loop.value for loop in EventLoop],
        default=[EventLoop.EPOLL.value],
        help="event loops to measure with (default epoll)",
    )
    parser.add_argument("--realtime", action="store_true", help="run the sides SCHED_FIFO")
    parser.add_argument("--json", action="store_true", help="also print the summaries as JSON")
    args = parser.parse_args()
    known = configurations(args.rate)
    unknown = [name for name in args.configurations if name not in known]
    if unknown:
        parser.error(f"unknown configurations {unknown}; known: {', '.join(known)}")
    summaries = []
    for name in args.configurations:
        for loop in args.loop:
            summary = measure(known[name], args.runs, EventLoop(loop), args.realtime)
            summaries.append(summary)
            print(render(summary), flush=True)
            print()
    if args.json:
        print(json.dumps(summaries, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
