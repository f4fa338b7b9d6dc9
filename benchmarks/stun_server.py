"""Binding requests per second: ``natkit stun-server`` beside coturn, one run.

Starts, on loopback ports of their own:

* coturn's ``turnserver`` (STUN only, no auth, UDP and TCP, its default threads),
* ``natkit stun-server`` with its default workers (one per CPU),
* ``natkit stun-server --workers 1`` (what one core gives),
* the load client's own minimal responder (``stun_load --reflect``): the
  ceiling of client plus loopback on this machine, so a server row near it
  would mean the client, not the server, is the limit;

and measures them interleaved, several rounds (the order flips every round,
so drift in the machine's load hits both sides alike), with the same load:
``benchmarks/stun_load.c``, compiled here with gcc, a closed-loop C client
with recvmmsg/sendmmsg that keeps ``--sockets`` x ``--window`` RFC 5389
Binding requests in flight, each with its own transaction ID, from as many
source ports, and counts only valid answers (success response, matching
transaction ID, XOR-MAPPED-ADDRESS naming the client's port).

Prints medians per server: requests and valid responses per second, lost
requests per second (unanswered for 50 ms), CPU cores used by the server
(all its processes and threads, from /proc) and by the client, responses
per server CPU-second, and the ratio natkit/coturn (goal: at least 0.5).
natkit's ``--stats`` at the end must show every request answered and none
malformed. Loopback only; no root needed.

    .venv/bin/python benchmarks/stun_server.py [--rounds 5] [--seconds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOAD_SOURCE = Path(__file__).with_name("stun_load.c")
HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: Seconds a server gets to start answering.
START_TIMEOUT = 30.0


@dataclass
class Subject:
    """One server under load, and what each round measured."""

    name: str
    argv: list[str]
    port: int
    stop_signal: int = signal.SIGTERM
    process: subprocess.Popen[bytes] | None = None
    rounds: list[dict[str, float]] = field(default_factory=list)

    def start(self, workdir: Path) -> None:
        log = (workdir / f"{self.name.split()[0]}-{self.port}.log").open("wb")
        self.process = subprocess.Popen(
            self.argv, stdout=log, stderr=log, cwd=ROOT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start (see {log.name})")
            time.sleep(0.1)

    def pids(self) -> list[int]:
        """The server's process and its children (natkit's workers)."""
        assert self.process is not None
        pids = [self.process.pid]
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            try:
                pids += [int(p) for p in (task / "children").read_text().split()]
            except FileNotFoundError:
                continue
        return pids

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime + stime, all threads
        return total / CLOCK_TICKS

    def stop(self) -> None:
        """Stop it; anything left in its session afterwards is killed (and said)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                print(f"{self.name}: did not stop, killed", file=sys.stderr)
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            pass  # nothing left: the normal case
        else:
            print(f"{self.name}: processes left behind, killed", file=sys.stderr)
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def _answers(port: int) -> bool:
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(request, (HOST, port))
            return sock.recv(2048)[8:20] == request[8:20]
        except OSError:
            return False


def free_port(taken: set[int]) -> int:
    """A port free for UDP and TCP on the loopback address."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port: int = udp.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                    tcp.bind((HOST, port))
            except OSError:
                continue
        if port not in taken:
            taken.add(port)
            return port


def build_load(workdir: Path) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        sys.exit("benchmarks/stun_server.py: gcc is needed to build the load client")
    binary = workdir / "stun_load"
    subprocess.run(
        [gcc, "-O2", "-Wall", "-o", str(binary), str(LOAD_SOURCE)], check=True, timeout=120
    )
    return binary


def subjects(load: Path, workdir: Path, taken: set[int]) -> list[Subject]:
    coturn, natkit, natkit1, ceiling = (free_port(taken) for _ in range(4))
    turnserver = [
        "turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls", "--stun-only", "--no-auth",
        "-L", HOST, "--listening-port", str(coturn),
        "--pidfile", str(workdir / "coturn.pid"), "--userdb", str(workdir / "coturn.db"),
        "--log-file", str(workdir / "coturn.log"),
    ]  # fmt: skip
    stun_server = [sys.executable, "-m", "natkit.cli", "stun-server", "--bind", HOST, "--stats"]
    return [
        Subject("coturn turnserver", turnserver, coturn),
        Subject("natkit stun-server", [*stun_server, "--port", str(natkit)], natkit, signal.SIGINT),
        Subject(
            "natkit --workers 1",
            [*stun_server, "--port", str(natkit1), "--workers", "1"],
            natkit1,
            signal.SIGINT,
        ),
        Subject("C reflector (ceiling)", [str(load), "--reflect", str(ceiling)], ceiling),
    ]


def measure(subject: Subject, load: Path, args: argparse.Namespace) -> dict[str, float]:
    cpu_before, wall_before = subject.cpu_seconds(), time.monotonic()
    result = subprocess.run(
        [
            str(load), "--server", f"{HOST}:{subject.port}", "--sockets", str(args.sockets),
            "--window", str(args.window), "--duration", str(args.seconds),
            "--warmup", "0.5", "--loss-ms", "50",
        ],
        capture_output=True, check=True, timeout=args.seconds + 60,
    )  # fmt: skip
    wall = time.monotonic() - wall_before
    server_cores = (subject.cpu_seconds() - cpu_before) / wall
    counts: dict[str, Any] = json.loads(result.stdout)
    seconds = counts["seconds"]
    responses = counts["valid"] / seconds
    return {
        "requests_per_s": counts["sent"] / seconds,
        "responses_per_s": responses,
        "lost_per_s": counts["lost"] / seconds,
        "invalid": counts["invalid"],
        "late": counts["late"],
        "server_cores": server_cores,
        "client_cores": counts["cpu_seconds"] / seconds,
        "responses_per_cpu_s": responses / server_cores if server_cores else 0.0,
    }


def summarise(all_subjects: list[Subject], stats: dict[str, Any]) -> dict[str, Any]:
    medians = {
        s.name: {key: statistics.median(r[key] for r in s.rounds) for key in s.rounds[0]}
        for s in all_subjects
    }
    coturn, natkit = all_subjects[0], all_subjects[1]
    per_round = [
        n["responses_per_s"] / c["responses_per_s"]
        for c, n in zip(coturn.rounds, natkit.rounds, strict=True)
    ]
    return {
        "medians": medians,
        "ratio_natkit_coturn": {
            "per_round": per_round,
            "median": statistics.median(per_round),
            "of_medians": medians[natkit.name]["responses_per_s"]
            / medians[coturn.name]["responses_per_s"],
        },
        "natkit_stats": stats,
        "cpus": os.cpu_count(),
    }


def render(summary: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"STUN Binding requests on loopback: medians of {args.rounds} rounds x {args.seconds} s,"
        f" {args.sockets} source ports x {args.window} in flight, {summary['cpus']} CPUs",
        "",
        f"{'server':<24}{'requests/s':>12}{'responses/s':>13}{'lost/s':>9}"
        f"{'server CPU':>12}{'client CPU':>12}{'resp/CPU-s':>12}",
    ]
    for name, m in summary["medians"].items():
        lines.append(
            f"{name:<24}{m['requests_per_s']:>12,.0f}{m['responses_per_s']:>13,.0f}"
            f"{m['lost_per_s']:>9,.0f}{m['server_cores']:>12.2f}{m['client_cores']:>12.2f}"
            f"{m['responses_per_cpu_s']:>12,.0f}"
        )
    ratio = summary["ratio_natkit_coturn"]
    rounds = ", ".join(f"{r:.2f}" for r in ratio["per_round"])
    lines += [
        "",
        f"natkit/coturn responses/s: {ratio['median']:.2f} (median of rounds: {rounds});"
        f" goal >= 0.50",
        "(CPU columns in cores: CPU-seconds per second; natkit counts all its workers)",
    ]
    for name, m in summary["medians"].items():
        if m["invalid"]:
            lines.append(f"WARNING: {name} sent invalid answers (median {m['invalid']:.0f} a run)")
    for name, stats in summary["natkit_stats"].items():
        lines.append(
            f"{name} --stats: received {stats.get('received')}, answered {stats.get('answered')},"
            f" malformed {stats.get('malformed')}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--sockets", type=int, default=64, help="client source ports")
    parser.add_argument("--window", type=int, default=4, help="requests in flight per port")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("turnserver") is None:
        sys.exit("benchmarks/stun_server.py: coturn's turnserver is needed (Debian coturn)")
    with tempfile.TemporaryDirectory(prefix="natkit-stunbench-") as tmp:
        workdir = Path(tmp)
        load = build_load(workdir)
        all_subjects = subjects(load, workdir, set())
        stats: dict[str, Any] = {}
        try:
            for subject in all_subjects:
                subject.start(workdir)
            for number in range(args.rounds):
                order = all_subjects if number % 2 == 0 else all_subjects[::-1]
                for subject in order:
                    subject.rounds.append(measure(subject, load, args))
        finally:
            for subject in all_subjects:
                subject.stop()
                if subject.name.startswith("natkit"):
                    log = (workdir / f"natkit-{subject.port}.log").read_text()
                    lines = [line for line in log.splitlines() if line.startswith("{")]
                    stats[subject.name] = json.loads(lines[-1]) if lines else {}
    summary = summarise(all_subjects, stats)
    print(json.dumps(summary, indent=2) if args.json else render(summary, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
