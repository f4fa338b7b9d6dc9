"""WireGuard through two NATs: the baseline natkit's own path is compared with.

Builds the ``wireguard-pair`` lab (two sites, each behind a port-preserving
masquerade with an input firewall), starts wireguard-go on both clients
(``natkit.lab.wireguard``) and sets each side's endpoint by hand to the
other's public address and listen port, through natkit's ``wg`` wrapper.
Then, in the same run:

* iperf3 TCP throughput through the tunnel, site A -> site B (median of
  ``--runs`` runs of ``--seconds`` each);
* ping RTT through the tunnel (``--pings`` pings 10 ms apart): median and
  95th percentile;
* for scale, the same two without the tunnel: site A to an internet host
  through A's NAT only (B's NAT lets nothing in unasked).

Issue 13 adds rows measured on the same lab by the same functions (the
``TODO(issue 13)`` rows below): the tunnel on the path natkit selected,
whose throughput and RTT are compared with the by-hand row (target: >= 0.9
of its throughput), the time from start to the first ping reply, and the
ping loss during a downgrade to the relay and the upgrade back.

Numbers come from a 2-core machine shared with other work: compare rows of
one run, not runs. Needs root, wireguard-go, wireguard-tools and iperf3.

    sudo .venv/bin/python benchmarks/wireguard.py [--runs 3] [--seconds 3] [--json]
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
from dataclasses import asdict, dataclass

from natkit.lab import Lab
from natkit.lab.plan import PEER_ADDRESSES, PEER_ROLE
from natkit.lab.wireguard import WIREGUARD_PAIR, WireGuardMesh

IPERF_PORT = 5201
_RTT = re.compile(r"time=([0-9.]+) ms")


@dataclass(frozen=True, slots=True)
class Event:
    """A one-off measurement (a time, a loss count); ``None``: not measured (yet)."""

    name: str
    value: float | None
    unit: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table; ``None``: not measured (yet)."""

    path: str
    throughput_mbit: float | None
    rtt_median_ms: float | None
    rtt_p95_ms: float | None
    note: str = ""


def throughput(lab: Lab, client_role: str, server_role: str, address: str, seconds: float) -> float:
    """iperf3 TCP, ``client_role`` -> ``address`` (served in ``server_role``): Mbit/s received."""
    server = lab.popen(
        server_role,
        ["iperf3", "-s", "-1", "-B", address, "-p", str(IPERF_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(lab, server_role, IPERF_PORT)
        argv = ["iperf3", "-c", address, "-p", str(IPERF_PORT), "-t", str(seconds), "-J"]
        result = lab.exec(client_role, argv, timeout=seconds + 30)
        if result.returncode != 0:
            raise RuntimeError(f"iperf3 failed: {result.stdout[-500:]}{result.stderr[-500:]}")
        report = json.loads(result.stdout)
        return float(report["end"]["sum_received"]["bits_per_second"]) / 1e6
    finally:
        server.kill()
        server.wait()


def _wait_listening(lab: Lab, role: str, port: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        listening = lab.exec(role, ["ss", "-Hltn", f"sport = :{port}"]).stdout
        if listening.strip():
            return
        time.sleep(0.02)
    raise RuntimeError(f"iperf3 is not listening on {port} in {role}")


def rtts(lab: Lab, role: str, address: str, count: int) -> list[float]:
    """``count`` ping RTTs in ms, 10 ms apart (root may ping that fast)."""
    argv = ["ping", "-n", "-c", str(count), "-i", "0.01", "-W", "1", address]
    result = lab.exec(role, argv, timeout=count * 0.05 + 10)
    samples = [float(m) for m in _RTT.findall(result.stdout)]
    if not samples:
        raise RuntimeError(f"no ping reply from {address}: {result.stdout}")
    return samples


def measure(
    lab: Lab, path: str, *, client: str, server: str, address: str, args: argparse.Namespace
) -> Row:
    """One row: throughput and RTT from role ``client`` to ``address`` (in role ``server``)."""
    rates = [throughput(lab, client, server, address, args.seconds) for _ in range(args.runs)]
    samples = sorted(rtts(lab, client, address, args.pings))
    p95 = samples[min(len(samples) - 1, int(0.95 * len(samples)))]
    return Row(path, statistics.median(rates), statistics.median(samples), p95)


def tunnel_by_hand(lab: Lab, mesh: WireGuardMesh) -> None:
    """Each side's endpoint set to the other's public endpoint, through natkit's wrapper."""
    a, b = mesh.node(""), mesh.node("b")
    mesh.add_peers()

    async def set_endpoints() -> None:
        await a.control.set_endpoint(b.public_key, mesh.public_endpoint("b"))
        await b.control.set_endpoint(a.public_key, mesh.public_endpoint(""))

    asyncio.run(set_endpoints())
    mesh.set_keepalive(25)
    deadline = time.monotonic() + 10
    while mesh.ping("", "b").returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the tunnel did not come up:\n" + a.log_tail())


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(rows: list[Row], events: list[Event]) -> str:
    """The two tables: paths (ratio: throughput over the by-hand tunnel's), events."""
    baseline = rows[0].throughput_mbit
    header = f"{'path':<40} {'Mbit/s':>9} {'RTT med ms':>10} {'RTT p95 ms':>10} {'ratio':>6}"
    lines = [header, "-" * len(header)]
    for row in rows:
        ratio = (
            None if row.throughput_mbit is None or not baseline else row.throughput_mbit / baseline
        )
        lines.append(
            f"{row.path:<40} {_number(row.throughput_mbit, 1):>9}"
            f" {_number(row.rtt_median_ms, 3):>10} {_number(row.rtt_p95_ms, 3):>10}"
            f" {_number(ratio, 2):>6}" + (f"  {row.note}" if row.note else "")
        )
    lines += ["", f"{'event':<40} {'value':>9}", "-" * 50]
    for event in events:
        lines.append(
            f"{event.name:<40} {_number(event.value, 3):>9} {event.unit}"
            + (f"  {event.note}" if event.note else "")
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="iperf3 runs per row (median)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per iperf3 run")
    parser.add_argument("--pings", type=int, default=200, help="pings per row")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args()
    rows: list[Row] = []
    with Lab.up(WIREGUARD_PAIR, servers=()) as lab, WireGuardMesh.start(lab) as mesh:
        tunnel_by_hand(lab, mesh)
        a, b = mesh.node(""), mesh.node("b")
        tunnel = {"client": a.role, "server": b.role, "address": str(b.tunnel_address.ip)}
        rows.append(measure(lab, "tunnel, endpoints set by hand", **tunnel, args=args))
        # TODO(issue 13): the same measure() with the endpoints natkit's
        # WireGuard adapter sets (natkit connect --wireguard on both sites);
        # target: throughput >= 0.9 of the by-hand row.
        rows.append(Row("tunnel, path natkit selected", None, None, None, "issue 13"))
        internet = {"client": a.role, "server": PEER_ROLE, "address": str(PEER_ADDRESSES[0])}
        rows.append(measure(lab, "no tunnel: site A -> internet host", **internet, args=args))
    # TODO(issue 13): measured with natkit connect --wireguard and a relay.
    events = [
        Event("time from start to first ping reply", None, "s", "issue 13"),
        Event("pings lost, direct -> relay (downgrade)", None, "", "issue 13"),
        Event("pings lost, relay -> direct (upgrade)", None, "", "issue 13"),
    ]
    print(
        f"wireguard-go through two port-preserving NATs ({args.runs} x {args.seconds:g} s iperf3"
        f" TCP, {args.pings} pings 10 ms apart)"
    )
    print(render(rows, events))
    if args.json:
        print(json.dumps({"paths": [asdict(r) for r in rows],
                          "events": [asdict(e) for e in events]}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
