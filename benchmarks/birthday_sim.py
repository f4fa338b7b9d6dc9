"""Speed of the packet-level birthday Monte Carlo (simulations/birthday_trials.py).

Runs one-hard trials (k = 256, the whole port range, budget 2048: the
issue's table) and prints trials per second and the time for 10,000 trials,
the issue's target being under a minute on the 2-CPU development VM:

* in one process, wall and CPU time, with one pair of sites per trial
  (``--per-site 1``, the literal setup) and with the default sharing;
* across ``--jobs`` processes, timing an actual run of ``--trials`` trials.

Other work on the machine slows the wall times; the CPU times (and the
"if the CPUs were ours" projection from them) do not move with it.

    .venv/bin/python benchmarks/birthday_sim.py [--trials 10000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

from natkit.simulations.birthday_trials import OneHardSetup, run_one_hard
from natkit.simulations.parallel import default_jobs, run_trials

TARGET_SECONDS = 60.0
TARGET_TRIALS = 10_000


def single_process(setup: OneHardSetup, trials: int, seed: int) -> tuple[float, float]:
    """(wall, CPU) seconds per trial in this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    run_one_hard(setup, seed, trials)
    return (time.perf_counter() - wall) / trials, (time.process_time() - cpu) / trials


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=TARGET_TRIALS)
    parser.add_argument("--jobs", type=int, default=default_jobs())
    parser.add_argument("--sample", type=int, default=500, help="trials for the 1-process rows")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    setup = OneHardSetup()
    cpus = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    print(f"{cpus} CPU(s), load average {load:.2f} (above 0 means others share them)")

    print(f"\none process, {args.sample} trials:")
    columns = ("trials/s", "ms/trial", "CPU ms", "10k trials")
    print(f"{'trials per pair of sites':<26} " + " ".join(f"{c:>10}" for c in columns))
    cpu_per_trial: dict[int, float] = {}
    for per_site in (1, setup.trials_per_site):
        variant = dataclasses.replace(setup, trials_per_site=per_site)
        wall, cpu = single_process(variant, args.sample, args.seed)
        cpu_per_trial[per_site] = cpu
        label = f"{per_site}{' (default)' if per_site == setup.trials_per_site else ''}"
        print(
            f"{label:<26} {1 / wall:>10.0f} {1000 * wall:>10.2f}"
            f" {1000 * cpu:>10.2f} {TARGET_TRIALS * wall:>8.1f} s"
        )
    projected = TARGET_TRIALS * cpu_per_trial[setup.trials_per_site] / args.jobs

    start_wall, start_cpu = time.perf_counter(), time.process_time()
    run_trials(run_one_hard, setup, args.seed, args.trials, jobs=args.jobs)
    wall = time.perf_counter() - start_wall
    # Children's CPU time is counted once they have been waited for.
    children = os.times().children_user + os.times().children_system
    cpu = time.process_time() - start_cpu + children
    rate = args.trials / wall
    ten_k = TARGET_TRIALS / rate
    print(f"\n{args.jobs} process(es), {args.trials:,} trials: {wall:.1f} s wall, {cpu:.1f} s CPU")
    print(f"  {rate:,.0f} trials/s; 10,000 trials take {ten_k:.1f} s", end="")
    print(f" (target < {TARGET_SECONDS:.0f} s: {'met' if ten_k < TARGET_SECONDS else 'MISSED'})")
    print(f"  with {args.jobs} idle CPU(s) the CPU time projects to {projected:.1f} s per 10,000")
    return 0


if __name__ == "__main__":
    sys.exit(main())
