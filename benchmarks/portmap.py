"""Time to a port mapping: natkit per protocol beside Debian's ``upnpc``.

Builds the ``upnp`` lab (miniupnpd 2.3.1 on the router) and, in the client
namespace and in the same run, measures:

* the round-trip time to the gateway (NAT-PMP public address requests);
* natkit's PortMapper per protocol, in-process: time from start to grant
  (``mapped_after``); targets: PCP and NAT-PMP within 2 RTT + 50 ms, UPnP
  within its discovery window (``UpnpConfig.discovery_timeout``, 2 s);
* a bare MAP exchange for PCP and for NAT-PMP (one blocking socket, one
  request, the answer, then the delete; no retransmission, no journal, no
  event loop): the floor any client pays, which is mostly the gateway's own
  work of writing its nftables rule, so natkit's overhead is the gap
  between the two rows;
* ``upnpc``: its SSDP discovery (``upnpc -s``; miniupnpc waits its whole
  2 s delay) and its mapping given the description URL
  (``upnpc -u URL -a``); the sum is what a user of upnpc waits. (Without
  ``-u`` upnpc 2.2.4 refuses the lab's RFC 5737 WAN address as
  "not connected", so the two legs are timed apart.)

Every mapping is released before the next run. Needs root.

    sudo .venv/bin/python benchmarks/portmap.py [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from natkit.aio.portmap import LeaseJournal, PortMapper
from natkit.lab import Lab
from natkit.portmap import pcp, pmp
from natkit.portmap.mapper import PortMapperConfig
from natkit.portmap.mapping import MappingProtocol, TransportProtocol

PORT = 42000


def gateway_rtt(gateway: str, samples: int = 20) -> float:
    """Median NAT-PMP public-address round trip (runs in the client namespace)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    times = []
    try:
        for _ in range(samples):
            start = time.perf_counter()
            sock.sendto(b"\x00\x00", (gateway, 5351))
            sock.recvfrom(64)
            times.append(time.perf_counter() - start)
    finally:
        sock.close()
    return statistics.median(times)


def bare_map(gateway: str, client: str, protocol: MappingProtocol, port: int) -> float:
    """One MAP request and its answer on a blocking socket (then the delete,
    untimed): the time the gateway itself takes to grant a mapping."""
    udp = int(TransportProtocol.UDP)
    if protocol is MappingProtocol.PCP:
        nonce, address = os.urandom(pcp.NONCE_LENGTH), ipaddress.ip_address(client)

        def request(lifetime: int) -> bytes:
            return pcp.build_map_request(
                client_address=address, nonce=nonce, protocol=udp, internal_port=port,
                suggested_external_port=port, lifetime=lifetime,
            )  # fmt: skip
    else:

        def request(lifetime: int) -> bytes:
            return pmp.build_map_request(
                transport=TransportProtocol.UDP, internal_port=port,
                suggested_external_port=port, lifetime=lifetime,
            )  # fmt: skip

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    try:
        sock.bind((client, 0))
        start = time.perf_counter()
        sock.sendto(request(600), (gateway, 5351))
        sock.recvfrom(1100)
        elapsed = time.perf_counter() - start
        sock.sendto(request(0), (gateway, 5351))
        sock.recvfrom(1100)
    finally:
        sock.close()
    return elapsed


async def natkit_once(gateway: str, protocol: MappingProtocol, journal: Path) -> float:
    config = PortMapperConfig(protocols=(protocol,), listen_announcements=False)
    mapper = PortMapper(PORT, gateway=gateway, config=config, journal=LeaseJournal(journal))
    try:
        result = await mapper.start()
        if result.mapping is None or result.mapped_after is None:
            raise RuntimeError(f"{protocol.value}: no mapping: {result.protocols}")
        return result.mapped_after
    finally:
        await mapper.close()


def timed(lab: Lab, argv: list[str]) -> float:
    start = time.perf_counter()
    lab.client_exec(argv, timeout=60)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows: dict[str, list[float]] = {}
    with Lab.up("upnp", servers=("natkit",)) as lab, tempfile.TemporaryDirectory() as tmp:
        gateway = str(lab.gateway_address())
        location = f"http://{gateway}:5000/rootDesc.xml"
        client = str(lab.client_addresses[0])
        rtt = lab.call_in("client", lambda: gateway_rtt(gateway))
        for run in range(args.runs):
            for protocol in (MappingProtocol.PCP, MappingProtocol.NAT_PMP,
                             MappingProtocol.UPNP_IGD):  # fmt: skip
                journal = Path(tmp) / f"j{run}.json"
                seconds = lab.call_in(
                    "client",
                    lambda p=protocol, j=journal: asyncio.run(natkit_once(gateway, p, j)),  # type: ignore[misc]
                )
                rows.setdefault(f"natkit {protocol.value}", []).append(seconds)
            for protocol in (MappingProtocol.PCP, MappingProtocol.NAT_PMP):
                seconds = lab.call_in(
                    "client",
                    lambda p=protocol: bare_map(gateway, client, p, PORT + 1),  # type: ignore[misc]
                )
                rows.setdefault(f"bare {protocol.value} MAP", []).append(seconds)
            discovery = timed(lab, ["upnpc", "-s"])
            mapping = timed(lab, ["upnpc", "-u", location, "-a", client, str(PORT), str(PORT),
                                  "UDP", "600"])  # fmt: skip
            timed(lab, ["upnpc", "-u", location, "-d", str(PORT), "UDP"])
            rows.setdefault("upnpc discovery", []).append(discovery)
            rows.setdefault("upnpc map (-u)", []).append(mapping)
            rows.setdefault("upnpc total", []).append(discovery + mapping)
        leaked = lab.port_mappings()
    budget = 2 * rtt + 0.050
    targets = {
        "natkit pcp": budget,
        "natkit nat-pmp": budget,
        "natkit upnp-igd": PortMapperConfig().upnp.discovery_timeout,
    }
    upnpc_total = statistics.median(rows["upnpc total"])
    print(f"gateway RTT (median of 20 NAT-PMP requests): {rtt * 1000:.3f} ms;"
          f" 2 RTT + 50 ms = {budget * 1000:.1f} ms; runs: {args.runs}")  # fmt: skip
    header = (
        f"{'what':<18} {'median':>10} {'max':>10} {'target':>10}  met  upnpc total / this"
        "  natkit - bare (median)"
    )
    print(header)
    print("-" * len(header))
    summary = []
    for name, values in rows.items():
        median, worst = statistics.median(values), max(values)
        target = targets.get(name)
        met = "" if target is None else ("yes" if worst <= target else "NO")
        ratio = upnpc_total / median if median else float("inf")
        target_text = "" if target is None else f"{target * 1000:.1f}ms"
        bare = rows.get(name.replace("natkit ", "bare ") + " MAP")
        gap = "" if bare is None else f"{(median - statistics.median(bare)) * 1000:+.1f}ms"
        print(f"{name:<18} {median * 1000:>8.1f}ms {worst * 1000:>8.1f}ms {target_text:>10}"
              f"  {met:<3}  {f'{ratio:.1f}x':<18}  {gap}")  # fmt: skip
        summary.append({"what": name, "median_s": median, "max_s": worst, "target_s": target})
    print(f"mappings left on the router: {len(leaked)}")
    if args.json:
        print(json.dumps({"rtt_s": rtt, "rows": summary, "leaked": len(leaked)}, indent=2))
    return 0 if not leaked else 1


if __name__ == "__main__":
    sys.exit(main())
