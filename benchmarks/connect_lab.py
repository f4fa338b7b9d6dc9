"""The lab half of ``benchmarks/connect.py``: time to the first direct path
between two real ``natkit connect`` processes through real kernel NAT,
beside the physical floor measured in the same run (see ``connect.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from natkit.aio.rendezvous_client import RendezvousChannel, Streams
from natkit.identity import PrivateKey, seal
from natkit.identity.keyfile import load_private_key
from natkit.lab import Lab
from natkit.lab.netns import socket_in
from natkit.lab.rendezvous import RENDEZVOUS, key_path
from natkit.lab.servers import natkit_cli_env

SCENARIO = "connect-eim"
SITES = ("client", "client-b")
STUN = "203.0.113.10:3478"
TIMEOUT = 30.0


def _when(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["time"].replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Side:
    """One process of one run: seconds from spawn and from ``started``."""

    spawned_to_started: float
    started_to_signalling: float
    started_to_path: float
    rtt: float
    kind: str


def run_once(lab: Lab) -> list[Side]:
    """Both ends with ``--once``; what each printed, as timings."""
    keys = {role: key_path(lab.record.workdir, role) for role in SITES}
    public = {role: str(load_private_key(path).public_key) for role, path in keys.items()}
    procs = []
    spawned = time.time()
    for role, other in (SITES, SITES[::-1]):
        argv = [
            sys.executable, "-m", "natkit.cli", "connect", "--rendezvous", str(RENDEZVOUS),
            "--key", str(keys[role]), "--peer", public[other], "--stun", STUN,
            "--once", "--timeout", str(TIMEOUT), "--json-line", "--no-portmap",
        ]  # fmt: skip
        procs.append(lab.popen(role, argv, stdout=subprocess.PIPE, text=True, env=natkit_cli_env()))
    sides = []
    for proc in procs:
        out, _ = proc.communicate(timeout=TIMEOUT + 10)
        if proc.returncode != 0:
            raise SystemExit(f"natkit connect exited {proc.returncode}:\n{out}")
        lines = [json.loads(text) for text in out.splitlines()]
        started = next(x for x in lines if x["event"] == "started")
        up = next(x for x in lines if x["event"] == "signalling" and x["state"] == "up")
        path = next(x for x in lines if x["event"] == "path_selected")
        sides.append(
            Side(
                _when(started) - spawned,
                _when(up) - _when(started),
                _when(path) - _when(started),
                path["rtt_ms"] / 1000,
                path["kind"],
            )
        )
    return sides


async def signalling_rtts(lab: Lab, rounds: int) -> list[float]:
    """A sealed message from one site to the other through the lab's
    rendezvous and straight back, ``rounds`` times (the channels connect
    from inside the sites' namespaces, through their NATs)."""
    keys = [PrivateKey.generate(), PrivateKey.generate()]

    def opener(role: str) -> Any:
        async def open_connection(host: str, port: int) -> Streams:
            sock = socket_in(lab.namespace(role), socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
            return await asyncio.open_connection(sock=sock)

        return open_connection

    host, port = str(RENDEZVOUS.address), RENDEZVOUS.port
    channels = [
        RendezvousChannel(host, port, key, open_connection=opener(role))
        for key, role in zip(keys, SITES, strict=True)
    ]
    for channel in channels:
        channel.start()
    try:
        for channel in channels:
            await asyncio.wait_for(channel.wait_up(), TIMEOUT)
        a, b = channels
        inbox_a, inbox_b = a.receive(), b.receive()
        rtts = []
        for _ in range(rounds):
            sent = time.perf_counter()
            await a.send(keys[1].public_key, seal(keys[0], keys[1].public_key, b"ping"))
            await anext(inbox_b)
            await b.send(keys[0].public_key, seal(keys[1], keys[0].public_key, b"pong"))
            await anext(inbox_a)
            rtts.append(time.perf_counter() - sent)
        return rtts
    finally:
        for closing in channels:
            await closing.close()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def lab_table(runs: int) -> int:
    if os.geteuid() != 0:
        print("the lab part needs root (network namespaces)")
        return 1
    with Lab.up(SCENARIO, servers=("natkit",)) as lab:
        sides: list[Side] = []
        signalling: list[float] = []
        for _ in range(runs):
            lab.reset_state()
            sides += run_once(lab)
            signalling += asyncio.run(signalling_rtts(lab, 5))
    kinds = sorted({s.kind for s in sides})
    check_rtt = statistics.median(s.rtt for s in sides)
    signal_rtt = statistics.median(signalling)
    floor = signal_rtt + check_rtt
    to_path = [s.started_to_path for s in sides]
    median_path = statistics.median(to_path)
    to_signalling = statistics.median(s.started_to_signalling for s in sides)
    start_up = statistics.median(s.spawned_to_started for s in sides)
    ratio = f"{median_path / floor:,.0f} x the floor"
    rows = [
        ("signalling round trip (rendezvous)", _ms(signal_rtt), f"median of {len(signalling)}"),
        ("check RTT on the selected path", _ms(check_rtt), f"median of {len(sides)}"),
        ("physical floor (the two added)", _ms(floor), ""),
        ("started -> signalling up", _ms(to_signalling), ""),
        ("started -> first direct path (median)", _ms(median_path), ratio),
        ("started -> first direct path (worst)", _ms(max(to_path)), ""),
        ("spawned -> started (Python start-up)", _ms(start_up), ""),
    ]
    print(f"lab: {SCENARIO} (EIM/APDF <-> EIM/APDF), {runs} runs x 2 sides, path kinds {kinds}")
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12}  {note}")
    return 0


__all__ = ["lab_table"]
