"""WireGuard through two NATs: the baseline natkit's own path is compared with.

Builds the ``wireguard-pair`` lab (two sites, each behind a port-preserving
masquerade with an input firewall) and measures, in the same run:

* **by hand**: wireguard-go on both clients (``natkit.lab.wireguard``), each
  side's endpoint set by hand to the other's public address and listen
  port, through natkit's ``wg`` wrapper;
* **natkit**: the README's quick start, WireGuard from the wg-quick file
  ``natkit lab up`` wrote (peers, no endpoints) and ``natkit connect
  --wireguard`` on both sites, which finds the path and sets the endpoints;
  target: throughput >= 0.9 of the by-hand tunnel's (natkit is not on the
  data path of a direct connection, so the two should match);
* for scale, site A to an internet host without the tunnel.

Each path row: iperf3 TCP throughput through the tunnel, site A -> site B
(median of ``--runs`` runs of ``--seconds`` each), and ping RTT (``--pings``
pings 10 ms apart: median and 95th percentile). Events: the time from
starting natkit on both sites (WireGuard already up, no endpoint) to the
first ping reply through the tunnel (``ping -D`` every 50 ms from the
start), and the ping loss during a downgrade to the relay and the upgrade
back (issue 13's relay rows).

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
from natkit.lab.cut import UdpCut
from natkit.lab.pinger import PingRun
from natkit.lab.plan import PEER_ADDRESSES, PEER_ROLE
from natkit.lab.rendezvous import RENDEZVOUS, traversal_argv
from natkit.lab.servers import natkit_cli_env
from natkit.lab.wireguard import WIREGUARD_PAIR, WireGuardMesh
from natkit.lab.wireguard_quick import QuickStartSite, quick_start

IPERF_PORT = 5201
_RTT = re.compile(r"time=([0-9.]+) ms")
_STAMPED_REPLY = re.compile(r"^\[([0-9.]+)\] \d+ bytes from", re.MULTILINE)
#: natkit's STUN server in the lab.
STUN = "203.0.113.10:3478"
#: natkit's keepalive on the selected path (s): the downgrade bound follows it.
KEEPALIVE = 2.0
#: Seconds between the pings that count the loss in a switch.
PING_INTERVAL = 0.1


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


class NatkitTunnel:
    """The quick start on both sites: WireGuard up, then natkit on each."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.sites: list[QuickStartSite] = quick_start(lab)
        self.procs: list[subprocess.Popen[str]] = []

    def __enter__(self) -> NatkitTunnel:
        for site in self.sites:
            self.lab.exec(site.role, ["wg-quick", "up", str(site.config)], check=True)
        return self

    def start(self) -> float:
        """Start natkit on every site (with the lab's relay, keepalive every
        ``KEEPALIVE`` s); the wall-clock time it started."""
        started = time.time()
        for site in self.sites:
            argv = [sys.executable, "-m", "natkit.cli", "connect", "--wireguard", site.interface,
                    "--rendezvous", str(RENDEZVOUS), "--stun", STUN, "--no-portmap",
                    "--keepalive", str(KEEPALIVE), "--json-line",
                    *traversal_argv(self.lab, site.role)]  # fmt: skip
            quiet, env = subprocess.DEVNULL, natkit_cli_env()
            proc = self.lab.popen(site.role, argv, stdout=quiet, stderr=quiet, text=True, env=env)
            self.procs.append(proc)
        return started

    def __exit__(self, *exc_info: object) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=30)
        for site in self.sites:
            self.lab.exec(site.role, ["wg-quick", "down", str(site.config)], timeout=30)

    def endpoints(self) -> list[str]:
        """Where each site's WireGuard sends to its peer now (``wg show``)."""
        found = []
        for site in self.sites:
            out = self.lab.exec(site.role, ["wg", "show", site.interface, "endpoints"], check=True)
            found.append(out.stdout.split("\t")[1].strip())
        return found

    def wait_for(self, direct: bool, timeout: float = 60.0) -> float:
        """Wait until both WireGuards send straight to the other site's public
        address (``direct``) or both do not (the relay, or natkit's bridge);
        the wall-clock time they did."""
        publics = [str(self.lab.site(s.site).public_address) for s in reversed(self.sites)]
        deadline = time.monotonic() + timeout
        while True:
            ends = self.endpoints()
            hits = [e.rpartition(":")[0] == p for e, p in zip(ends, publics, strict=True)]
            if all(hits) if direct else not any(hits):
                return time.time()
            if time.monotonic() > deadline:
                raise RuntimeError(f"WireGuard's endpoints stayed {ends} (direct={direct})")
            time.sleep(0.05)


def switches(lab: Lab, tunnel: NatkitTunnel) -> list[Event]:
    """Site A pings B through the tunnel every 0.1 s while B's NAT drops UDP
    to and from A's public address (the direct path cut, ``UdpCut``) until
    both WireGuards are on the relay, and then passes it again until both
    are direct: the pings lost in each switch, and how long each took."""
    a, b = tunnel.sites[0], tunnel.sites[1]
    tunnel.wait_for(direct=True)
    time.sleep(3.0)  # the relayed pair stands by, checked, before the cut
    cut = UdpCut(lab, lab.site(b.site).router_roles[-1], str(lab.site(a.site).public_address))
    pings = PingRun.start(lab, a.role, str(b.tunnel_address.ip), interval=PING_INTERVAL)
    with cut:
        try:
            time.sleep(1.0)
            cut_at = cut.cut()
            relayed_at = tunnel.wait_for(direct=False)
            time.sleep(2.0)
            restored_at = cut.restore()
            back_at = tunnel.wait_for(direct=True)
            time.sleep(2.0)
        finally:
            pings.stop()
    every = f"pings every {PING_INTERVAL:g} s, keepalive {KEEPALIVE:g} s"
    return [
        Event("direct -> relay: endpoints moved after", relayed_at - cut_at, "s", "cut at 0"),
        Event("pings lost, direct -> relay (downgrade)", pings.lost_between(cut_at, restored_at),
              "", every),
        Event("relay -> direct: endpoints moved after", back_at - restored_at, "s"),
        Event("pings lost, relay -> direct (upgrade)",
              pings.lost_between(restored_at, back_at + 2.0), "", every),
    ]  # fmt: skip


def time_to_first_reply(lab: Lab, tunnel: NatkitTunnel, timeout: float = 30.0) -> float:
    """Seconds from starting natkit on both sites to the first ping reply
    through the tunnel (site A pings B's tunnel address every 50 ms)."""
    a, b = tunnel.sites[0], tunnel.sites[1]
    target = str(b.tunnel_address.ip)
    argv = ["ping", "-D", "-n", "-c", "1", "-i", "0.05", "-w", str(int(timeout)), target]
    pinger = lab.popen(a.role, argv, stdout=subprocess.PIPE, text=True)
    started = tunnel.start()
    out, _ = pinger.communicate(timeout=timeout + 10)
    found = _STAMPED_REPLY.search(out)
    if found is None:
        raise RuntimeError(f"no ping reply through natkit's tunnel in {timeout:g} s: {out}")
    return float(found.group(1)) - started


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
            f"{event.name:<40} {_number(event.value, 0 if isinstance(event.value, int) else 3):>9}"
            f" {event.unit}" + (f"  {event.note}" if event.note else "")
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
    events: list[Event] = []
    with Lab.up(WIREGUARD_PAIR, servers=("natkit",), turn=True) as lab:
        with WireGuardMesh.start(lab) as mesh:
            tunnel_by_hand(lab, mesh)
            a, b = mesh.node(""), mesh.node("b")
            tunnel = {"client": a.role, "server": b.role, "address": str(b.tunnel_address.ip)}
            rows.append(measure(lab, "tunnel, endpoints set by hand", **tunnel, args=args))
        with NatkitTunnel(lab) as natkit:
            first = time_to_first_reply(lab, natkit)
            events.append(Event("time from start to first ping reply", first, "s"))
            a_site, b_site = natkit.sites[0], natkit.sites[1]
            tunnel = {
                "client": a_site.role,
                "server": b_site.role,
                "address": str(b_site.tunnel_address.ip),
            }
            natkit.wait_for(direct=True)  # relayed first, at once: measure the direct path
            rows.append(measure(lab, "tunnel, path natkit selected", **tunnel, args=args))
            events += switches(lab, natkit)
        internet = {"client": a.role, "server": PEER_ROLE, "address": str(PEER_ADDRESSES[0])}
        rows.append(measure(lab, "no tunnel: site A -> internet host", **internet, args=args))
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
