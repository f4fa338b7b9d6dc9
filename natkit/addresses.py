"""Which kind of address space an address is in: the one place natkit decides.

A NAT's inside is private (RFC 1918, RFC 4193) or, for a carrier-grade NAT,
RFC 6598 shared space; its outside is public. The RFC 5737 documentation
networks count as public, because they are the lab's internet (natkit's
tests never route anything else). Used to read hop addresses, gateway
external addresses and mapped addresses alike. Nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
from enum import Enum

from natkit.endpoint import IPAddress

#: RFC 6598 shared address space (carrier-grade NAT).
SHARED_BLOCK = ipaddress.IPv4Network("100.64.0.0/10")
#: RFC 1918 private blocks and RFC 4193 unique local addresses.
PRIVATE_BLOCKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    ipaddress.IPv4Network("10.0.0.0/8"),
    ipaddress.IPv4Network("172.16.0.0/12"),
    ipaddress.IPv4Network("192.168.0.0/16"),
    ipaddress.IPv6Network("fc00::/7"),
)
#: RFC 5737 documentation networks: the lab's internet, counted as public.
DOCUMENTATION_BLOCKS = (
    ipaddress.IPv4Network("192.0.2.0/24"),
    ipaddress.IPv4Network("198.51.100.0/24"),
    ipaddress.IPv4Network("203.0.113.0/24"),
)


class AddressKind(Enum):
    """Which kind of address space an address is in."""

    #: RFC 1918 (IPv4) or RFC 4193 unique local (IPv6).
    PRIVATE = "private"
    #: RFC 6598 shared space, for carrier-grade NAT.
    SHARED = "shared"
    #: Globally routable (the RFC 5737 networks count, as the lab's internet).
    PUBLIC = "public"
    #: Anything else: loopback, link-local, other special-purpose blocks.
    OTHER = "other"


def address_kind(address: IPAddress) -> AddressKind:
    if isinstance(address, ipaddress.IPv4Address):
        if address in SHARED_BLOCK:
            return AddressKind.SHARED
        if any(address in block for block in DOCUMENTATION_BLOCKS):
            return AddressKind.PUBLIC
    if special_block(address) is not None:
        return AddressKind.PRIVATE
    return AddressKind.PUBLIC if address.is_global else AddressKind.OTHER


def special_block(address: IPAddress) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The private or shared block ``address`` is in (a NAT's inside), if any."""
    if isinstance(address, ipaddress.IPv4Address) and address in SHARED_BLOCK:
        return SHARED_BLOCK
    for block in PRIVATE_BLOCKS:
        if address.version == block.version and address in block:
            return block
    return None


def is_shared(address: IPAddress) -> bool:
    """In RFC 6598's 100.64.0.0/10."""
    return address_kind(address) is AddressKind.SHARED


def is_public(address: IPAddress) -> bool:
    """Routable on the internet, counting the RFC 5737 networks the lab uses."""
    return address_kind(address) is AddressKind.PUBLIC
