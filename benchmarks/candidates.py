"""Time to all candidates: one round trip to the slowest server, not the sum.

Part 1 (no root): STUN servers on 127.0.0.x answer after a configured
delay each (a stand-in for distance: 10 to 160 ms). ``gather_candidates``
asks them all at once from one socket; the baseline asks the same servers
one after the other, as a tool that tries one server, then the next,
would. A fake port mapper with its own answer time shows the port-mapping
window: gathering takes the longer of the two, not their sum.

Part 2 (root, ``--lab``): the same in the lab, on the real kernel: the
``upnp`` scenario (PCP mapping from miniupnpd plus natkit's and coturn's
servers) and the ``nat64`` scenario (DNS64 discovery through unbound, then
STUN through tayga), in-process in the client namespace.

Medians of ``--runs`` runs; a printed table, nothing asserted.

    .venv/bin/python benchmarks/candidates.py [--runs 5] [--lab] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from natkit.aio.candidates import GatherOptions, PortMapperProvider, gather_candidates
from natkit.endpoint import Endpoint, IPAddress
from natkit.gather.candidates import PortMapObservation, PortMapStatus
from natkit.gather.host import HostPolicy, InterfaceAddress
from natkit.stun.attributes import XorAddressAttribute
from natkit.stun.codec import Message, StunDecodeError, encode_message, parse_message
from natkit.stun.constants import AttributeType, MessageClass, Method

#: Server answer delays (seconds) of each row's servers.
ROWS: tuple[tuple[float, ...], ...] = (
    (0.010,),
    (0.010, 0.020, 0.040),
    (0.010, 0.020, 0.040, 0.080, 0.160),
    (0.080, 0.080, 0.080, 0.080),
)
#: The fake port mapper's answer time in the port-mapping rows.
PORTMAP_WINDOW = 0.250
LOOPBACK = (InterfaceAddress("lo", ipaddress.ip_address("127.0.0.1"), 8),)
OPTIONS = GatherOptions(host=HostPolicy(include_loopback=True), nat64=False, tcp=False)


class DelayedStun(asyncio.DatagramProtocol):
    """Answers Binding requests ``delay`` seconds late with the seen address."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            request = parse_message(data)
        except StunDecodeError:
            return
        mapped = XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, Endpoint.from_sockaddr(addr))
        reply = encode_message(
            Message(
                Method.BINDING, MessageClass.SUCCESS_RESPONSE, request.transaction_id, (mapped,)
            )
        )
        asyncio.get_running_loop().call_later(self.delay, self._send, reply, addr)

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)


@dataclass
class SlowPortMapper:
    """A port mapper that grants after ``delay`` (the mapping window)."""

    delay: float

    async def map_port(self, base: Endpoint) -> PortMapObservation:
        await asyncio.sleep(self.delay)
        return PortMapObservation(
            PortMapStatus.MAPPED,
            external=Endpoint.parse(f"198.51.100.1:{base.port}"),
            protocol="fake",
            elapsed=self.delay,
        )

    async def release(self) -> None:
        return None


def loopback_source(destination: IPAddress) -> IPAddress | None:
    return ipaddress.ip_address("127.0.0.1") if destination.version == 4 else None


async def gather(servers: Sequence[str], mapper: SlowPortMapper | None = None) -> float:
    started = time.perf_counter()
    await gather_candidates(
        servers, OPTIONS, port_mapper=mapper, interfaces=LOOPBACK, source_for=loopback_source
    )
    return time.perf_counter() - started


async def loopback_row(delays: tuple[float, ...], runs: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    transports = []
    servers = []
    for index, delay in enumerate(delays):
        transport, _ = await loop.create_datagram_endpoint(
            lambda delay=delay: DelayedStun(delay), local_addr=(f"127.0.0.{index + 1}", 0)
        )
        transports.append(transport)
        servers.append(str(Endpoint.from_sockaddr(transport.get_extra_info("sockname"))))
    try:
        parallel, sequential, with_portmap = [], [], []
        for _ in range(runs):
            parallel.append(await gather(servers))
            sequential.append(sum([await gather([server]) for server in servers]))
            with_portmap.append(await gather(servers, SlowPortMapper(PORTMAP_WINDOW)))
    finally:
        for transport in transports:
            transport.close()
    return {
        "where": "loopback",
        "servers": len(delays),
        "delays_ms": [round(d * 1000) for d in delays],
        "slowest_ms": round(max(delays) * 1000, 1),
        "sum_ms": round(sum(delays) * 1000, 1),
        "natkit_ms": round(statistics.median(parallel) * 1000, 1),
        "one_by_one_ms": round(statistics.median(sequential) * 1000, 1),
        "with_portmap_ms": round(statistics.median(with_portmap) * 1000, 1),
        "portmap_window_ms": round(PORTMAP_WINDOW * 1000),
    }


def lab_rows(runs: int) -> list[dict[str, Any]]:
    """The same on the real kernel (needs root): everything at once, each
    server alone (summed), and the port mapping alone."""
    from natkit.lab import Lab  # noqa: PLC0415 (root only)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["NATKIT_PORTMAP_JOURNAL"] = f"{tmp}/portmap.json"
        for scenario in ("upnp", "nat64"):
            with Lab.up(scenario) as lab:
                rows.append(_lab_row(lab, scenario, runs))
    return rows


def _lab_row(lab: Any, scenario: str, runs: int) -> dict[str, Any]:
    servers = [str(s.primary) for s in lab.stun_servers.values()]
    gateway = str(lab.gateway_address()) if lab.gateways else None
    options = GatherOptions(
        dns_server=None if lab.dns_server is None else str(lab.dns_server), tcp=False
    )

    windows: list[float] = []

    async def everything() -> float:
        provider = PortMapperProvider(gateway=gateway) if gateway else None
        started = time.perf_counter()
        try:
            report = await gather_candidates(servers, options, port_mapper=provider)
            elapsed = time.perf_counter() - started
            if report.port_mapping.elapsed is not None:
                windows.append(report.port_mapping.elapsed)
            return elapsed
        finally:
            if provider is not None:
                await provider.release()

    async def one_by_one() -> float:
        started = time.perf_counter()
        for server in servers:
            await gather_candidates([server], options)
        return time.perf_counter() - started

    async def portmap_alone() -> float:
        provider = PortMapperProvider(gateway=gateway)
        started = time.perf_counter()
        try:
            await provider.map_port(Endpoint.parse("0.0.0.0:41000"))
            return time.perf_counter() - started
        finally:
            await provider.release()

    def measure(make: Any) -> float:
        samples = []
        for _ in range(runs):
            lab.reset_state()
            samples.append(lab.call_in("client", lambda: asyncio.run(make())))
        return round(statistics.median(samples) * 1000, 1)

    row: dict[str, Any] = {
        "where": f"lab {scenario}",
        "servers": len(servers),
        "note": "PCP from miniupnpd" if gateway else "DNS64 + tayga",
        "natkit_ms": measure(everything),
        "one_by_one_ms": measure(one_by_one),
    }
    if gateway:
        # The mapping's own time inside those same runs: natkit ends right after it.
        row["window_ms"] = round(statistics.median(windows) * 1000, 1)
        row["portmap_ms"] = measure(portmap_alone)
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        "where",
        "servers",
        "delays (ms)",
        "slowest",
        "sum",
        "natkit",
        "one by one",
        "port map alone",
        "natkit + port map",
        "its port map",
    )
    lines = [header]
    for row in rows:
        portmap = row.get("portmap_ms", row.get("portmap_window_ms"))
        lines.append(
            (
                row["where"],
                str(row["servers"]),
                ",".join(str(d) for d in row.get("delays_ms", [])) or row.get("note", ""),
                f"{row['slowest_ms']} ms" if "slowest_ms" in row else "",
                f"{row['sum_ms']} ms" if "sum_ms" in row else "",
                f"{row['natkit_ms']} ms",
                f"{row['one_by_one_ms']} ms",
                "" if portmap is None else f"{portmap} ms",
                f"{row['with_portmap_ms']} ms" if "with_portmap_ms" in row else "",
                f"{row['window_ms']} ms" if "window_ms" in row else "",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    print(
        "natkit: every server at once from one socket; one by one: the same servers asked in"
        " turn. lab upnp: natkit includes the PCP mapping, which took 'its port map' in"
        " those runs; 'port map alone' is a mapping with nothing else running."
    )


async def loopback_rows(runs: int) -> list[dict[str, Any]]:
    return [await loopback_row(delays, runs) for delays in ROWS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lab", action="store_true", help="also measure in the lab (root)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = asyncio.run(loopback_rows(args.runs))
    if args.lab:
        rows += lab_rows(args.runs)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
