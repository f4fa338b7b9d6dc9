"""Relay benchmarks in the lab: natkit's TURN client beside coturn's own.

Part 1 (this file now): relay throughput. In the ``eim-apdf`` lab, from the
client's namespace behind the NAT, through the lab's coturn TURN server to
coturn's ``turnutils_peer`` echo on the lab internet, in the same run:

* natkit: ``TurnRelay`` (allocate, bind a channel, then ``--messages``
  datagrams of ``--size`` bytes with at most ``--window`` unanswered),
  run as its own process like the peer tool;
* coturn: ``turnutils_uclient -m 1 -c -z 0 -n N -l SIZE`` (one client,
  no RTCP, no pause between messages),

over UDP, TCP and TLS to the server. Each row is the median of ``--runs``
runs: messages echoed per second of wall time (process start to exit, both
tools alike), lost messages, and natkit's rate over uclient's. natkit also
reports its transfer-only rate (first send to last echo), without process
start-up, imports and allocation.

Part 2, the relayed session (``benchmarks/relay_session.py``): real
``natkit connect`` processes with coturn through kernel NAT: time to first
packet over the relay, time to upgrade to direct (after the checks, and
after birthday probing), datagrams lost in a downgrade and in an upgrade,
each beside its floor or the README's bound.

    sudo .venv/bin/python benchmarks/relay.py [--messages 20000] [--size 100] [--runs 3]
                                              [--part all|throughput|session]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from natkit.aio.turn import TurnRelay
from natkit.endpoint import Endpoint
from natkit.lab import Lab
from natkit.turn import Credentials, TurnConfig, TurnTransport

PEER = Endpoint.parse("192.0.2.10:3480")
TRANSPORTS = ("udp", "tcp", "tls")
#: A run that takes longer than this is stopped (and counted as failed).
RUN_TIMEOUT_S = 120.0


@dataclass
class Runs:
    """What one tool did over one transport, run after run."""

    rates: list[float] = field(default_factory=list)
    lost: list[float] = field(default_factory=list)
    transfer_rates: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def median(self, values: list[float]) -> float | None:
        return statistics.median(values) if values else None


# --- the natkit side, run as its own process in the client namespace ----------


async def natkit_client(args: argparse.Namespace) -> dict[str, object]:
    transport = TurnTransport(args.transport)
    server = Endpoint.parse(args.server)
    config = TurnConfig(server, Credentials(args.user, args.password), transport, keepalive=None)
    relay = TurnRelay(config, cafile=args.cafile, queue_limit=args.messages + 16)
    loop = asyncio.get_running_loop()
    await relay.allocate(timeout=10)
    await relay.bind(PEER, timeout=10)
    payload = bytes(args.size)
    sent = received = 0
    progress = asyncio.Event()
    start = loop.time()
    last = start

    async def receive() -> None:
        nonlocal received, last
        while received < args.messages:
            await relay.receive()
            received += 1
            last = loop.time()
            progress.set()

    receiver = asyncio.create_task(receive())
    written_off = 0  # messages presumed lost, so that their slots free up
    while sent < args.messages:
        if sent - received - written_off < args.window:
            relay.send(PEER, payload)
            sent += 1
            if sent % 64 == 0:
                await asyncio.sleep(0)  # let echoes in
            continue
        progress.clear()
        try:
            async with asyncio.timeout(0.2):
                await progress.wait()
        except TimeoutError:
            written_off = sent - received  # nothing came back for 200 ms
    try:
        async with asyncio.timeout(2.0):
            await receiver
    except TimeoutError:
        receiver.cancel()
    await relay.close()
    return {
        "received": received,
        "lost": args.messages - received,
        "transfer_seconds": last - start,
        "stream_drops": relay.stream_drops,
        "receive_overflow": relay.receive_overflow,
    }


# --- the driver ------------------------------------------------------------------


def run_natkit(
    lab: Lab, transport: str, args: argparse.Namespace
) -> tuple[float, dict[str, float]]:
    server = lab.turn_servers["coturn"]
    endpoint = server.tls if transport == "tls" else server.udp
    argv = [
        sys.executable, str(Path(__file__).resolve()), "client",
        "--server", str(endpoint), "--transport", transport,
        "--user", str(server.user), "--password", str(server.password),
        "--cafile", str(server.ca_file),
        "--messages", str(args.messages), "--size", str(args.size),
        "--window", str(args.window),
    ]  # fmt: skip
    started = time.perf_counter()
    result = lab.client_exec(argv, timeout=RUN_TIMEOUT_S)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr else "failed")
    return wall, json.loads(result.stdout)


def run_uclient(lab: Lab, transport: str, args: argparse.Namespace) -> tuple[float, int]:
    server = lab.turn_servers["coturn"]
    flags: list[str] = {
        "udp": [],
        "tcp": ["-t"],
        "tls": ["-t", "-S", "-p", str(server.tls_port)],
    }[transport]
    argv = [
        "turnutils_uclient", *flags, "-u", str(server.user), "-w", str(server.password),
        "-e", str(PEER.address), "-r", str(PEER.port), "-m", "1", "-c", "-z", "0",
        "-n", str(args.messages), "-l", str(args.size), str(server.address),
    ]  # fmt: skip
    started = time.perf_counter()
    result = lab.client_exec(argv, timeout=RUN_TIMEOUT_S)
    wall = time.perf_counter() - started
    match = re.search(r"Total lost packets (\d+)", result.stdout + result.stderr)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"turnutils_uclient exited {result.returncode}")
    return wall, int(match.group(1))


def bench(args: argparse.Namespace) -> dict[str, dict[str, Runs]]:
    results = {t: {"natkit": Runs(), "uclient": Runs()} for t in TRANSPORTS}
    with Lab.up("eim-apdf", servers=(), turn=True) as lab:
        peer = lab.popen(
            "peer",
            ["turnutils_peer", "-L", str(PEER.address), "-p", str(PEER.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # set-up, not measured: the echo binds its port
        try:
            for _ in range(args.runs):
                for transport in TRANSPORTS:
                    lab.reset_state()
                    natkit = results[transport]["natkit"]
                    try:
                        wall, stats = run_natkit(lab, transport, args)
                        natkit.rates.append(int(stats["received"]) / wall)
                        natkit.lost.append(int(stats["lost"]))
                        natkit.transfer_rates.append(
                            int(stats["received"]) / max(float(stats["transfer_seconds"]), 1e-9)
                        )
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        natkit.failures.append(str(exc))
                    lab.reset_state()
                    uclient = results[transport]["uclient"]
                    try:
                        wall, lost = run_uclient(lab, transport, args)
                        uclient.rates.append((args.messages - lost) / wall)
                        uclient.lost.append(lost)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        uclient.failures.append(str(exc))
        finally:
            peer.terminate()
    return results


def render(results: dict[str, dict[str, Runs]], args: argparse.Namespace) -> str:
    lines = [
        f"relay throughput: {args.messages} messages of {args.size} bytes echoed through"
        f" coturn, median of {args.runs} runs (msg/s of process wall time)",
        f"{'transport':<10}{'natkit msg/s':>14}{'lost':>7}{'uclient msg/s':>15}{'lost':>7}"
        f"{'ratio':>8}{'natkit transfer msg/s':>23}",
    ]
    for transport, tools in results.items():
        natkit, uclient = tools["natkit"], tools["uclient"]
        ours, theirs = natkit.median(natkit.rates), uclient.median(uclient.rates)
        ratio = f"{ours / theirs:.2f}" if ours and theirs else "-"
        transfer = natkit.median(natkit.transfer_rates)
        lines.append(
            f"{transport:<10}{_num(ours):>14}{_num(natkit.median(natkit.lost)):>7}"
            f"{_num(theirs):>15}{_num(uclient.median(uclient.lost)):>7}{ratio:>8}"
            f"{_num(transfer):>23}"
        )
        for tool, runs in tools.items():
            for failure in runs.failures:
                lines.append(f"  {tool} failed over {transport}: {failure}")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    client = sub.add_parser("client", help="(internal) natkit's side of one run")
    client.add_argument("--server", required=True)
    client.add_argument("--transport", choices=TRANSPORTS, required=True)
    client.add_argument("--user", required=True)
    client.add_argument("--password", required=True)
    client.add_argument("--cafile")
    for where in (parser, client):
        where.add_argument("--messages", type=int, default=20000)
        where.add_argument("--size", type=int, default=100)
        where.add_argument("--window", type=int, default=64, help="unanswered messages at most")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--part", choices=("all", "throughput", "session"), default="all")
    args = parser.parse_args()
    if args.command == "client":
        print(json.dumps(asyncio.run(natkit_client(args))))
        return 0
    if args.part in ("all", "throughput"):
        print(render(bench(args), args), flush=True)
    if args.part in ("all", "session"):
        from relay_session import measure, render_rows  # noqa: PLC0415 (beside this file)

        print()
        print("\n".join(render_rows(measure(args.runs), args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
