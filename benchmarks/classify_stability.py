"""How often is ``natkit classify`` right? Many runs per lab scenario.

For each scenario and server (natkit's, coturn's) and loss level, runs the
``natkit classify`` command N times in the lab's client namespace (NAT state
reset before each run) and prints how many verdicts matched the scenario,
which ones did not, and the median and worst wall time. Needs root.

    sudo .venv/bin/python benchmarks/classify_stability.py --runs 30 --loss 0 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from natkit.lab import SCENARIOS, Lab

NATKIT = str(Path(sys.executable).with_name("natkit"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "scenarios", nargs="*", default=[s.name for s in SCENARIOS.values() if s.generic]
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--loss", type=float, nargs="+", default=[0.0, 20.0])
    parser.add_argument("--servers", nargs="+", default=["natkit", "coturn"])
    args = parser.parse_args()

    header = (
        f"{'scenario':<18} {'server':<7} {'loss':>5} {'right':>7} {'median':>8} {'worst':>8}  wrong"
    )
    print(header)
    print("-" * len(header))
    total = wrong_total = 0
    for name in args.scenarios:
        with Lab.up(name, servers=tuple(args.servers)) as lab:
            for server in args.servers:
                primary = str(lab.stun_servers[server].primary)
                for loss in args.loss:
                    lab.set_loss(loss)
                    times: list[float] = []
                    wrong: Counter[str] = Counter()
                    for _ in range(args.runs):
                        lab.reset_state()
                        start = time.perf_counter()
                        result = lab.client_exec(
                            [NATKIT, "classify", "--server", primary, "--json"], timeout=60
                        )
                        times.append(time.perf_counter() - start)
                        document = json.loads(result.stdout)
                        for problem in lab.scenario.expected.mismatches(document):
                            wrong[problem] += 1
                    bad_runs = max(wrong.values(), default=0)
                    total += args.runs
                    wrong_total += bad_runs
                    right = args.runs - bad_runs
                    print(
                        f"{name:<18} {server:<7} {loss:>4g}% {right:>3}/{args.runs:<3}"
                        f" {statistics.median(times) * 1000:>6.0f}ms {max(times) * 1000:>6.0f}ms"
                        f"  {dict(wrong) if wrong else ''}",
                        flush=True,
                    )
            lab.set_loss(0.0)
    print(f"\n{total - wrong_total}/{total} runs with every verdict right")
    return 0 if wrong_total == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
