"""What travels through the simulated network, and why it may not arrive."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from natkit.endpoint import Endpoint
from natkit.sansio import IcmpKind

#: The IP TTL hosts send with (Linux's ``net.ipv4.ip_default_ttl``).
DEFAULT_TTL = 64
#: How much of an expired datagram an ICMP error quotes (RFC 1812 §4.3.2.3:
#: as much as fits in 576 bytes; Linux quotes this much of the UDP payload).
ICMP_QUOTE = 548


@dataclass(frozen=True, slots=True)
class IcmpInfo:
    """What makes a :class:`Packet` an ICMP error: the type and code, and the
    addresses of the datagram it is about, as they were where it died.

    The packet's ``src`` is the offender, its ``dst`` the datagram's sender
    (port 0: ICMP has none), its ``data`` the quoted UDP payload.
    """

    kind: IcmpKind
    icmp_type: int
    icmp_code: int
    #: The quoted datagram's source and destination.
    source: Endpoint
    destination: Endpoint


class Packet(NamedTuple):
    """One UDP datagram on the wire: addresses as seen at the current hop.

    A NAT never mutates a packet; it forwards a new one with translated
    addresses, so a packet held in a trace or a test stays as it was seen.
    (A NamedTuple rather than a frozen dataclass: one is built per hop, and
    building a tuple costs half as much.)
    """

    src: Endpoint
    dst: Endpoint
    data: bytes
    #: Hops left: every NAT or firewall forwarding it takes one (RFC 1812 §5.3.1).
    ttl: int = DEFAULT_TTL
    #: Set when the packet is an ICMP error rather than a UDP datagram.
    icmp: IcmpInfo | None = None


class PacketDropReason(Enum):
    """Why the network discarded a datagram (counted in ``Network.dropped``)."""

    #: Random link loss (``OneWay.loss``).
    LOSS = "loss"
    #: Nobody in the realm holds the destination address and no gateway applies.
    NO_ROUTE = "no-route"
    #: The host holds the address but has no socket on that port (no ICMP is modelled).
    NO_SOCKET = "no-socket"
    #: Inbound to a NAT port with no live mapping (never made, or timed out).
    NO_MAPPING = "no-mapping"
    #: A mapping or firewall session exists, but its filter does not admit the sender.
    FILTERED = "filtered"
    #: The NAT's mapping table is at ``NatConfig.max_mappings``.
    TABLE_FULL = "table-full"
    #: Every port in the NAT's range is held by a live mapping.
    PORTS_EXHAUSTED = "ports-exhausted"
    #: From inside to the NAT's own public address, with hairpinning off.
    HAIRPIN_DISABLED = "hairpin-disabled"
    #: The middlebox blocks UDP altogether.
    UDP_BLOCKED = "udp-blocked"
    #: A router would have forwarded it with TTL 0 (RFC 1812 §5.3.1).
    TTL_EXPIRED = "ttl-expired"
    #: An ICMP error from inside a NAT toward outside (not translated here).
    ICMP_UNTRANSLATED = "icmp-untranslated"
    #: A drop rule between two addresses (``Network.block``), as an nftables rule.
    BLOCKED = "blocked"


class TraceKind(Enum):
    """What a :class:`TraceEvent` records."""

    #: A socket sent the packet.
    SENT = "sent"
    #: A NAT or firewall forwarded the packet (addresses as they leave it).
    FORWARDED = "forwarded"
    #: A socket received the packet.
    DELIVERED = "delivered"
    #: The network discarded the packet (see ``reason``).
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One line of the packet trace (kept only when tracing is on)."""

    #: Virtual time of the event.
    time: float
    kind: TraceKind
    #: Name of the host, NAT or firewall where it happened.
    node: str
    src: Endpoint
    dst: Endpoint
    #: Payload length in bytes.
    size: int
    #: Set only for ``TraceKind.DROPPED``.
    reason: PacketDropReason | None = None

    def __str__(self) -> str:
        why = f" ({self.reason.value})" if self.reason is not None else ""
        return (
            f"{self.time:10.6f} {self.node:<12} {self.kind.value:<9} "
            f"{self.src} -> {self.dst} [{self.size}]{why}"
        )
