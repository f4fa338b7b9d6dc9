"""The relayed session in the lab: the rows of ``benchmarks/relay.py`` part 2.

Real ``natkit connect`` processes (``--json-line``, ``--traffic``: a
numbered stream whose losses the receiver counts), the lab's coturn and
real kernel NAT, every figure from the processes' own timestamped lines:

* **time to first packet over the relay** (``connect-apdm``: two APDM
  sites, no direct path): from both peers having signalled (each has the
  other's announcement: its first ``peer_report`` line) to the first
  datagram of the stream arriving; beside it the floor, one relay round
  trip (the two nodes' RTTs to coturn) plus one pacing slot (Ta, 50 ms: the
  relayed check waits for it);
* **time to upgrade to direct** (``connect-eim``: relayed first, then the
  direct pair): from the relayed path to the direct one; the floor is the
  hysteresis (3 samples 1 s apart); and after birthday probing
  (``connect-birthday``: both hard in 40000-40999): from the relayed path
  to the direct one the search found;
* **datagrams lost in a downgrade / an upgrade** (``connect-eim``, a drop
  rule on the client's NAT cuts the direct path, then is removed): the
  stream's ``missing`` count at both ends across each switch, with the time
  from the cut to the relayed path and from the restoration to the direct
  one (the README's bounds: 4.5 s with ``--keepalive 2``; the re-check
  schedule plus 2 s).
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from natkit.identity.keyfile import load_private_key
from natkit.lab import Lab
from natkit.lab.rendezvous import RENDEZVOUS, key_path
from natkit.lab.servers import natkit_cli_env

STUN = "203.0.113.10:3478"
A, B = "client", "client-b"
RATE = 100
KEEPALIVE = 2.0
#: Ta: the pacing slot the first relayed check may wait for.
PACING = 0.05
#: The hysteresis of an upgrade: 3 samples 1 s apart.
HYSTERESIS = 2.0
WAIT = 60.0
Line = dict[str, Any]


def when(line: Line) -> float:
    return datetime.fromisoformat(line["time"].replace("Z", "+00:00")).timestamp()


@dataclass
class Node:
    """One ``natkit connect`` in a lab namespace, its lines collected by a thread."""

    proc: subprocess.Popen[str]
    lines: list[Line] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def read(self) -> None:
        assert self.proc.stdout is not None
        for text in self.proc.stdout:
            with self.changed:
                self.lines.append(json.loads(text))
                self.changed.notify_all()

    def wait(self, test: Callable[[Line], bool], timeout: float = WAIT) -> Line:
        deadline = time.monotonic() + timeout
        with self.changed:
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if test(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"no such line in {timeout:g} s")
                self.changed.wait(min(left, 0.2))

    def events(self, name: str) -> list[Line]:
        with self.changed:
            return [line for line in self.lines if line["event"] == name]

    def missing(self, before: float | None = None) -> int:
        lines = [e for e in self.events("traffic") if before is None or when(e) <= before]
        return lines[-1]["missing"] if lines else 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(lab: Lab, role: str, peer: str, *extra: str) -> Node:
    server = lab.turn_servers["coturn"]
    public = load_private_key(key_path(lab.record.workdir, peer)).public_key
    argv = [
        sys.executable, "-m", "natkit.cli", "connect",
        "--rendezvous", str(RENDEZVOUS), "--key", str(key_path(lab.record.workdir, role)),
        "--peer", str(public), "--stun", STUN, "--json-line", "--no-portmap",
        "--relay", server.uri("udp"), "--relay-user", str(server.user),
        "--relay-password", str(server.password), "--traffic", str(RATE), *extra,
    ]  # fmt: skip
    proc = lab.popen(
        role, argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=natkit_cli_env(),
    )  # fmt: skip
    node = Node(proc)
    threading.Thread(target=node.read, daemon=True).start()
    return node


def relayed(line: Line) -> bool:
    return bool(line["event"] == "path_selected" and line["kind"] == "relay")


def direct(line: Line) -> bool:
    return bool(line["event"] == "path_selected" and line["kind"] != "relay")


@dataclass
class Rows:
    """Samples per row (seconds, or datagrams)."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    floors: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def add(self, row: str, value: float, floor: float | None = None) -> None:
        self.samples.setdefault(row, []).append(value)
        if floor is not None:
            self.floors.setdefault(row, []).append(floor)


FIRST_PACKET = "time to first packet over the relay (s)"
UPGRADE = "time to upgrade to direct (s)"
UPGRADE_BIRTHDAY = "time to upgrade to direct by birthday probing (s)"
DOWNGRADE_TIME = "time from the cut to the relayed path (s)"
DOWNGRADE_LOST = "datagrams lost in a downgrade"
UPGRADE_TIME = "time from the restoration to the direct path (s)"
UPGRADE_LOST = "datagrams lost in an upgrade"
ROWS = (FIRST_PACKET, UPGRADE, UPGRADE_BIRTHDAY, DOWNGRADE_TIME, DOWNGRADE_LOST, UPGRADE_TIME,
        UPGRADE_LOST)  # fmt: skip


def pair(lab: Lab, *extra: str) -> tuple[Node, Node]:
    lab.reset_state()
    return start(lab, A, B, *extra), start(lab, B, A, *extra)


def first_packet(lab: Lab, rows: Rows) -> None:
    a, b = pair(lab)
    try:
        data = [n.wait(lambda e: e["event"] == "data") for n in (a, b)]
        signalled = max(when(n.wait(lambda e: e["event"] == "peer_report")) for n in (a, b))
        relay_rtt = sum(n.events("relay")[0]["rtt_ms"] / 1000 for n in (a, b))
        rows.add(FIRST_PACKET, min(when(d) for d in data) - signalled, relay_rtt + PACING)
    finally:
        for node in (a, b):
            node.stop()


def upgrade(lab: Lab, rows: Rows) -> None:
    a, b = pair(lab)
    try:
        first = a.wait(lambda e: e["event"] == "path_selected")
        if first["kind"] != "relay":
            rows.failures.append("connect-eim: the direct path came first (no upgrade to time)")
            return
        rows.add(UPGRADE, when(a.wait(direct)) - when(first), HYSTERESIS)
    finally:
        for node in (a, b):
            node.stop()


BIRTHDAY = ("--port-range", "40000-40999", "--birthday-ports", "16",
            "--birthday-probes", "3000", "--birthday-rate", "500")  # fmt: skip


def birthday(lab: Lab, rows: Rows) -> None:
    a, b = pair(lab, *BIRTHDAY)
    try:
        first = a.wait(relayed)
        rows.add(UPGRADE_BIRTHDAY, when(a.wait(direct)) - when(first), HYSTERESIS)
    finally:
        for node in (a, b):
            node.stop()


def cut_and_restore(lab: Lab, rows: Rows) -> None:
    public_b = str(lab.site("b").public_address)
    a, b = pair(lab, "--keepalive", str(KEEPALIVE))
    try:
        for node in (a, b):
            node.wait(direct)
        time.sleep(3.0)  # the relayed pair stands by
        rule = (
            "table ip nk_cut {\n chain forward {\n"
            "  type filter hook forward priority filter - 10; policy accept;\n"
            f"  ip daddr {public_b} meta l4proto udp drop\n }}\n}}\n"
        )
        lab.exec("nat", ["nft", "-f", "-"], input=rule, check=True, timeout=10)
        cut_at = time.time()
        moved = max(when(n.wait(lambda e: relayed(e) and when(e) >= cut_at)) for n in (a, b))
        time.sleep(2.0)
        lost = sum(n.missing() - n.missing(cut_at) for n in (a, b))
        rows.add(DOWNGRADE_TIME, moved - cut_at)
        rows.add(DOWNGRADE_LOST, lost)
        lab.exec("nat", ["nft", "delete", "table", "ip", "nk_cut"], timeout=10)
        back_at = time.time()
        back = max(when(n.wait(lambda e: direct(e) and when(e) >= back_at)) for n in (a, b))
        time.sleep(2.0)
        rows.add(UPGRADE_TIME, back - back_at)
        rows.add(UPGRADE_LOST, sum(n.missing() - n.missing(back_at) for n in (a, b)))
    finally:
        lab.exec("nat", ["nft", "delete", "table", "ip", "nk_cut"], timeout=10)
        for node in (a, b):
            node.stop()


def measure(runs: int) -> Rows:
    rows = Rows()
    plan: list[tuple[str, list[Callable[[Lab, Rows], None]]]] = [
        ("connect-apdm", [first_packet]),
        ("connect-eim", [upgrade, cut_and_restore]),
        ("connect-birthday", [birthday]),
    ]
    for scenario, steps in plan:
        with Lab.up(scenario, turn=True) as lab:
            for _ in range(runs):
                for step in steps:
                    try:
                        step(lab, rows)
                    except (RuntimeError, subprocess.SubprocessError) as exc:
                        rows.failures.append(f"{scenario} {step.__name__}: {exc}")
    return rows


def render_rows(rows: Rows, runs: int) -> list[str]:
    lines = [
        f"relayed sessions (natkit connect through coturn and kernel NAT, --traffic {RATE}/s,"
        f" median of {runs} runs)",
        f"{'':<52}{'median':>8}{'min':>8}{'max':>8}{'floor':>8}",
    ]
    for row in ROWS:
        values = rows.samples.get(row)
        if not values:
            lines.append(f"{row:<52}{'-':>8}")
            continue
        floor = rows.floors.get(row)
        digits = 0 if "datagrams" in row else 3
        cells = [statistics.median(values), min(values), max(values)]
        text = "".join(f"{v:>8.{digits}f}" for v in cells)
        text += f"{statistics.median(floor):>8.3f}" if floor else f"{'':>8}"
        lines.append(f"{row:<52}{text}")
    lines += [f"  failed: {failure}" for failure in rows.failures]
    return lines
