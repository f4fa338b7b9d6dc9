"""The IPv4 default gateway from the kernel's routing table, as pure parsing.

Linux publishes its IPv4 routes in ``/proc/net/route``: a header line, then
one tab-separated line per route with Destination, Gateway and Mask as
8-digit hex of the address *as stored in memory* (so little-endian hosts
print 192.168.2.1 as ``0102A8C0``), Flags in hex and Metric in decimal.
A default route has destination and mask 0 and the UP and GATEWAY flags.

This replaces parsing ``netstat -rn`` (what py-natpmp does), which needs
net-tools installed and a subprocess. Reading the file is the driver's job.
"""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass
from typing import Literal

#: <linux/route.h> flags.
RTF_UP = 0x0001
RTF_GATEWAY = 0x0002

PROC_NET_ROUTE = "/proc/net/route"


@dataclass(frozen=True, slots=True)
class DefaultRoute:
    """One IPv4 default route."""

    interface: str
    gateway: ipaddress.IPv4Address
    metric: int


def _address(field: str, byteorder: Literal["little", "big"]) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(field, 16).to_bytes(4, byteorder))


def parse_default_routes(
    text: str, byteorder: Literal["little", "big"] = sys.byteorder
) -> tuple[DefaultRoute, ...]:
    """Every usable IPv4 default route in ``/proc/net/route`` text, lowest
    metric first (ties keep the kernel's order). Lines that do not parse are
    skipped: the file's format is stable, but a partial read should not crash."""
    routes: list[DefaultRoute] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8 or fields[0] == "Iface":
            continue
        interface, destination, gateway, flags, _refcnt, _use, metric, mask = fields[:8]
        try:
            if int(destination, 16) or int(mask, 16):
                continue
            if int(flags, 16) & (RTF_UP | RTF_GATEWAY) != RTF_UP | RTF_GATEWAY:
                continue
            route = DefaultRoute(interface, _address(gateway, byteorder), int(metric))
        except ValueError:
            continue
        routes.append(route)
    return tuple(sorted(routes, key=lambda route: route.metric))


def default_gateway(
    text: str, byteorder: Literal["little", "big"] = sys.byteorder
) -> DefaultRoute | None:
    """The preferred IPv4 default route, or ``None`` when there is none."""
    routes = parse_default_routes(text, byteorder)
    return routes[0] if routes else None
