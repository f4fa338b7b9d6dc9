"""What travels through the simulated network, and why it may not arrive."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from natkit.endpoint import Endpoint


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


class DropReason(Enum):
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
    reason: DropReason | None = None

    def __str__(self) -> str:
        why = f" ({self.reason.value})" if self.reason is not None else ""
        return (
            f"{self.time:10.6f} {self.node:<12} {self.kind.value:<9} "
            f"{self.src} -> {self.dst} [{self.size}]{why}"
        )
