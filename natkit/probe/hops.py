"""The routers between this host and a STUN server, and what they say about NATs.

The classifier sends its STUN Binding request with IP TTL 1, 2, 3, ... (see
:mod:`natkit.probe.hop_trace`). The router where the TTL runs out drops the
packet and answers ICMP Time Exceeded from one of its own addresses (RFC 792;
RFC 1812 §4.3.2.4: an address of the interface the error leaves by, i.e. the
one facing us), and a packet that gets all the way is answered by the server.
A NAT is a router, so each NAT on the path takes a TTL of its own and, if it
answers at all, answers with its *inside* address, as Linux does. The
sequence of addresses is the evidence read here:

1. A router in RFC 6598 shared space (100.64.0.0/10), before the first
   public hop: shared space exists to number the links between customer
   NATs and a carrier-grade NAT, so a carrier-grade NAT is on the path.
2. Two *tiers* of private or shared addresses before the first public hop
   (a tier is one special-use block: 10/8, 172.16/12, 192.168/16, 100.64/10,
   fc00::/7; this host's own address counts as the first): the packets
   crossed two private address realms, so a second NAT is outside the
   first. Two routers in the *same* block prove nothing: a second NAT, or a
   router inside one network.
3. The whole path seen (every TTL below the server's answered) with a single
   router on it, while the server saw another address than ours: that one
   router is the only NAT.

Anything less is no evidence: a NAT that sends no Time Exceeded leaves a
gap, and a gap is never filled with a guess. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from natkit.addresses import AddressKind, address_kind, special_block
from natkit.endpoint import IPAddress


class HopReply(Enum):
    """What came back for one TTL."""

    #: ICMP Time Exceeded (RFC 792 type 11, RFC 4443 type 3): a router.
    TIME_EXCEEDED = "time-exceeded"
    #: The STUN server answered: the probe got all the way.
    DESTINATION = "destination"
    #: A Destination Unreachable: the path ends at that hop.
    UNREACHABLE = "unreachable"
    #: Nothing, after every attempt (a silent router, ICMP rate limits, loss).
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Hop:
    """What one TTL of the hop probe found."""

    ttl: int
    reply: HopReply
    #: The router that answered, or the server; ``None`` with ``HopReply.NONE``.
    address: IPAddress | None = None

    @property
    def kind(self) -> AddressKind | None:
        return None if self.address is None else address_kind(self.address)

    @property
    def is_router(self) -> bool:
        return self.reply is HopReply.TIME_EXCEEDED and self.address is not None

    def describe(self) -> str:
        if self.reply is HopReply.NONE or self.address is None:
            return f"TTL {self.ttl} no answer"
        what = {
            HopReply.TIME_EXCEEDED: "",
            HopReply.DESTINATION: ", the server",
            HopReply.UNREACHABLE: ", unreachable",
        }[self.reply]
        return f"TTL {self.ttl} {self.address} ({address_kind(self.address).value}{what})"


def describe_path(hops: Sequence[Hop]) -> str:
    """``TTL 1 192.168.1.1 (private), TTL 2 203.0.113.10 (public, the server)``."""
    return ", ".join(hop.describe() for hop in hops) or "no hops"


@dataclass(frozen=True, slots=True)
class Tier:
    """The first address seen in one private or shared block."""

    address: IPAddress
    #: The TTL of the router it belongs to; ``None``: this host's own address.
    ttl: int | None

    def describe(self) -> str:
        space = "RFC 6598 shared" if address_kind(self.address) is AddressKind.SHARED else "private"
        if self.ttl is None:
            return f"this host's address {self.address}, in {space} space"
        return f"router {self.address} (TTL {self.ttl}), in {space} space"


@dataclass(frozen=True, slots=True)
class PathEvidence:
    """What the hops before the first public one say (rules 1-3 of the module doc)."""

    #: The first router in RFC 6598 shared space before the first public hop.
    shared_router: Hop | None
    #: The private/shared tiers before the first public hop, in path order.
    tiers: tuple[Tier, ...]
    #: Routers before the first public hop in the same block as the router before them.
    same_tier: tuple[Hop, ...]
    #: Every router between here and the server, when all of them answered
    #: and the server did too; ``None`` when the path was not seen whole.
    whole_path: tuple[Hop, ...] | None


def path_evidence(hops: Sequence[Hop], origin: IPAddress | None = None) -> PathEvidence:
    """Read the hops (any order) seen from ``origin``, this host's address."""
    ordered = sorted(hops, key=lambda hop: hop.ttl)
    tiers: list[Tier] = []
    if origin is not None and special_block(origin) is not None:
        tiers.append(Tier(origin, None))
    same_tier: list[Hop] = []
    shared: Hop | None = None
    last_block = None
    for hop in ordered:
        if hop.reply in (HopReply.DESTINATION, HopReply.UNREACHABLE):
            break
        if not hop.is_router or hop.address is None:
            continue
        kind = address_kind(hop.address)
        if kind is AddressKind.PUBLIC:
            break
        block = special_block(hop.address)
        if block is None:
            continue  # loopback, link-local, ...: not an address realm of a NAT
        if kind is AddressKind.SHARED and shared is None:
            shared = hop
        if block == last_block:
            same_tier.append(hop)
        if all(special_block(tier.address) != block for tier in tiers):
            tiers.append(Tier(hop.address, hop.ttl))
        last_block = block
    return PathEvidence(shared, tuple(tiers), tuple(same_tier), _whole_path(ordered))


def _whole_path(ordered: Sequence[Hop]) -> tuple[Hop, ...] | None:
    routers: list[Hop] = []
    for expected_ttl, hop in enumerate(ordered, start=1):
        if hop.ttl != expected_ttl:
            return None
        if hop.reply is HopReply.DESTINATION:
            return tuple(routers)
        if not hop.is_router:
            return None
        routers.append(hop)
    return None
