"""Wall time of ``natkit classify`` beside the peer tools, per lab scenario.

For every scenario this builds the real-kernel lab, then times, in the
lab's client namespace and in the same run, with NAT state reset before
each run:

* ``natkit classify`` (full run: mapping, filtering, hairpin, allocation),
* coturn's ``turnutils_natdiscovery -m -f`` (mapping and filtering),
* Debian's RFC 3489 ``stun`` client,

all three against natkit's RFC 5780 server, and prints the medians with
the ratios the issue sets as targets: natkit faster than ``stun``, at most a
tenth of ``turnutils_natdiscovery``, under 0.5 s at 0 % loss. Needs root.

    sudo .venv/bin/python benchmarks/classify.py [--runs 5] [--loss 0] [SCENARIO ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from natkit.lab import SCENARIOS, Lab

NATKIT = str(Path(sys.executable).with_name("natkit"))
#: A peer tool that has not answered after this long is stopped.
PEER_TIMEOUT_S = 60.0


@dataclass
class Timing:
    seconds: list[float]
    correct: list[bool]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def timed(lab: Lab, argv: list[str]) -> tuple[float, str]:
    lab.reset_state()
    start = time.perf_counter()
    result = lab.client_exec(argv, timeout=PEER_TIMEOUT_S, check=False)
    return time.perf_counter() - start, result.stdout


def bench_scenario(name: str, runs: int, loss: float) -> dict[str, Timing]:
    timings = {tool: Timing([], []) for tool in ("natkit", "turnutils", "stun")}
    with Lab.up(name, servers=("natkit",)) as lab:
        lab.set_loss(loss)
        server = lab.stun_servers["natkit"].primary
        expected = lab.scenario.expected
        commands = {
            "natkit": [NATKIT, "classify", "--server", str(server), "--json"],
            "turnutils": [
                "turnutils_natdiscovery",
                "-m",
                "-f",
                "-p",
                str(server.port),
                str(server.address),
            ],
            "stun": ["stun", f"{server.address}:{server.port}"],
        }
        for _ in range(runs):
            for tool, argv in commands.items():
                seconds, output = timed(lab, argv)
                timings[tool].seconds.append(seconds)
                if tool == "natkit":
                    timings[tool].correct.append(not expected.mismatches(json.loads(output)))
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "scenarios", nargs="*", default=[s.name for s in SCENARIOS.values() if s.generic]
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--loss", type=float, default=0.0, help="percent, each way")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    rows = []
    header = (
        f"{'scenario':<18} {'natkit':>8} {'turnutils':>10} {'stun':>8}"
        f" {'turnutils/natkit':>17} {'stun/natkit':>12}  natkit verdicts  targets"
    )
    print(f"median wall time of {args.runs} runs per tool, loss {args.loss:g}% each way")
    print(header)
    print("-" * len(header))
    for name in args.scenarios:
        t = bench_scenario(name, args.runs, args.loss)
        natkit, turnutils, stun = t["natkit"].median, t["turnutils"].median, t["stun"].median
        right = sum(t["natkit"].correct)
        targets = []
        if natkit >= stun:
            targets.append("slower than stun")
        if natkit > turnutils / 10:
            targets.append("over 1/10 of turnutils")
        if args.loss == 0 and natkit >= 0.5:
            targets.append("over 0.5 s")
        rows.append(
            {
                "scenario": name,
                "natkit_s": natkit,
                "turnutils_s": turnutils,
                "stun_s": stun,
                "natkit_correct": f"{right}/{args.runs}",
                "targets_met": not targets,
            }
        )
        print(
            f"{name:<18} {natkit * 1000:>6.0f}ms {turnutils * 1000:>8.0f}ms {stun * 1000:>6.0f}ms"
            f" {turnutils / natkit:>16.1f}x {stun / natkit:>11.1f}x  {right}/{args.runs} right"
            f"       {'met' if not targets else '; '.join(targets)}",
            flush=True,
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
