"""Host candidates: which interface addresses a peer could use, and a local CLAT.

Pure: the interface list is an input (``natkit.aio.interfaces`` reads it
with ``ifaddr``). A socket bound to the wildcard address receives on every
address of its family, so each usable address, with that socket's port, is
a host candidate (RFC 8445 §5.1.1.1).

Usable means reachable by a peer somewhere:

* IPv4: anything but loopback, link-local (169.254.0.0/16), multicast,
  unspecified and a CLAT's own address; loopback and link-local only when
  asked (tests on one machine, a LAN without DHCP);
* IPv6: global-scope addresses (RFC 4007 §6: global unicast and ULAs);
  loopback and link-local only when asked. Deprecated site-local
  (fec0::/10), IPv4-mapped and multicast addresses never.

A CLAT (the customer side of 464XLAT, RFC 6877) gives an IPv6-only host an
IPv4 address from 192.0.0.0/29 (RFC 7335) on a translating interface, so
that IPv4-only software works. That address is not reachable by any peer;
the host is reachable over IPv4 only through the NAT64, which the NAT64
candidate covers. :func:`detect_clat` recognises one by that address, or by
the interface names the common implementations use (Android ``v4-*``,
clatd's ``clat``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from natkit.endpoint import IPAddress

#: RFC 7335: the IPv4 Service Continuity Prefix, for CLAT and B4 addresses.
CLAT_NETWORK = ipaddress.IPv4Network("192.0.0.0/29")
#: Interface names of common CLATs: clatd ("clat", "clat4"), Android ("v4-wlan0").
CLAT_NAME_PREFIXES = ("clat", "v4-")
_SITE_LOCAL = ipaddress.IPv6Network("fec0::/10")
_IPV4_LINK_LOCAL = ipaddress.IPv4Network("169.254.0.0/16")


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    """One address configured on one interface."""

    interface: str
    address: IPAddress
    prefix_length: int
    #: A layer-3 tunnel (WireGuard, tun: no link-layer header). Its address
    #: is reached through the tunnel, so a path to it would run the VPN
    #: inside itself.
    tunnel: bool = False


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """Which addresses beyond the reachable ones to offer."""

    include_loopback: bool = False
    include_link_local: bool = False
    #: Offer the addresses of tunnel interfaces (WireGuard, tun) too.
    include_tunnels: bool = False


@dataclass(frozen=True, slots=True)
class ClatDetection:
    """Whether this host runs a CLAT, and how that was decided."""

    present: bool
    reason: str
    interface: str | None = None
    address: ipaddress.IPv4Address | None = None


def detect_clat(addresses: Sequence[InterfaceAddress]) -> ClatDetection:
    """A CLAT by its RFC 7335 address, else by its interface name."""
    for item in addresses:
        if isinstance(item.address, ipaddress.IPv4Address) and item.address in CLAT_NETWORK:
            return ClatDetection(
                True,
                f"{item.interface} has {item.address}, an RFC 7335 (464XLAT CLAT) address",
                item.interface,
                item.address,
            )
    for item in addresses:
        if isinstance(item.address, ipaddress.IPv4Address) and item.interface.startswith(
            CLAT_NAME_PREFIXES
        ):
            return ClatDetection(
                True,
                f"{item.interface} carries IPv4 {item.address} and is named like a CLAT",
                item.interface,
                item.address,
            )
    return ClatDetection(False, "no interface with an RFC 7335 address or a CLAT's name")


def exclusion_reason(
    item: InterfaceAddress, policy: HostPolicy, clat: ClatDetection | None = None
) -> str | None:
    """Why ``item`` is not a host candidate, or ``None`` when it is one."""
    address = item.address
    if address.is_unspecified or address.is_multicast:
        return "unspecified or multicast"
    if address.is_loopback:
        return None if policy.include_loopback else "loopback"
    if item.tunnel and not policy.include_tunnels:
        return "a tunnel interface (a path through it would carry the VPN inside itself)"
    if isinstance(address, ipaddress.IPv4Address):
        if clat is not None and clat.present and address == clat.address:
            return "the CLAT's own address (peers reach this host through the NAT64)"
        if address in _IPV4_LINK_LOCAL:
            return None if policy.include_link_local else "link-local"
        return None
    if address.ipv4_mapped is not None:
        return "IPv4-mapped"
    if address in _SITE_LOCAL:
        return "deprecated site-local"
    if address.is_link_local:
        return None if policy.include_link_local else "link-local"
    return None


def select_host_addresses(
    addresses: Sequence[InterfaceAddress],
    policy: HostPolicy | None = None,
    clat: ClatDetection | None = None,
) -> tuple[tuple[InterfaceAddress, ...], tuple[str, ...]]:
    """The usable addresses (first occurrence of each) and one note per excluded one."""
    policy = policy or HostPolicy()
    chosen: list[InterfaceAddress] = []
    notes: list[str] = []
    seen: set[IPAddress] = set()
    for item in addresses:
        if item.address in seen:
            continue
        seen.add(item.address)
        reason = exclusion_reason(item, policy, clat)
        if reason is None:
            chosen.append(item)
        else:
            notes.append(f"{item.address} on {item.interface}: {reason}")
    return tuple(chosen), tuple(notes)


def has_routable_ipv6(addresses: Sequence[InterfaceAddress]) -> bool:
    """Any IPv6 address beyond loopback and link-local: only then can this
    host use a NAT64 at all, so only then is DNS64 discovery worth asking."""
    return any(
        isinstance(item.address, ipaddress.IPv6Address)
        and not (
            item.address.is_loopback
            or item.address.is_link_local
            or item.address.is_multicast
            or item.address.is_unspecified
        )
        for item in addresses
    )
