"""NAT behaviour as a typed spec, and the one nftables generator for it.

Theory of operation. Linux's NAT is conntrack plus ``masquerade``/``snat``;
on its own that gives endpoint-independent mapping (port-preserving when the
port is free) and address-and-port-dependent filtering, and nothing else.
Every other RFC 4787 behaviour is emulated in the kernel's packet path with
nftables (no userspace relay):

1. *Mapping* is chosen by the SNAT rule in the ``postrouting`` nat chain:
   plain ``masquerade`` (EIM, preserving), ``masquerade to :LO-HI`` (EIM,
   ports moved into a range), ``masquerade fully-random`` (APDM, random), a
   ``numgen inc`` map onto consecutive ports (APDM, sequential), or a dynamic
   map keyed by inside endpoint and destination address (ADM).
2. *Filtering* wider than conntrack's APDF works by DNAT-ing unsolicited
   inbound UDP back to the inside endpoint that owns the external port. The
   ``record`` chain runs after SNAT (priority ``srcnat + 10``), so conntrack
   already knows the external port, and writes it into dynamic maps/sets
   from the packet path: ``ext2int`` (external port → inside endpoint) for
   EIF, plus ``peers`` (external port . remote address) for ADF.
3. *Hairpinning* DNATs LAN packets addressed to the public address through
   ``ext2int`` and SNATs them to the public address on their way back in.
4. *Unsolicited inbound* (``drop_unsolicited``): a packet from the internet
   that matches no mapping is addressed to the router itself. Linux confirms
   a conntrack entry for it at the end of the input hook even though no
   socket takes it, and while that entry lives (30 s) the NAT will not hand
   out that external port toward that sender (``nf_nat_used_tuple``: the
   reply tuple is taken). A birthday probe that arrives a moment too early
   thus spoils its own cell for good. Home routers drop such packets in an
   input firewall, before conntrack confirms them, and so can a lab router.
5. Dynamic elements time out (``DYNAMIC_TIMEOUT``); ``Lab.reset_state``
   reloads the ruleset (which also restarts ``numgen`` counters) and flushes
   conntrack, because stale state makes a NAT look easier than it is.

The rules were checked on this kernel by the lead (see /work/shared/LAB.md);
which mapping and allocation combine is fixed by :data:`SUPPORTED_ALLOCATIONS`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from natkit.birthday.ports import PortRange
from natkit.lab.classification import FilteringBehavior, MappingBehavior, PortAllocation
from natkit.lab.miniupnpd import PortMappingSpec

#: Interface names the rules refer to; the topology uses the same constants.
WAN_IF = "nk-wan"
LAN_IF = "nk-lan"

#: The nftables table holding one router's NAT (family ``ip``).
NAT_TABLE = "nk_nat"

#: Lifetime of dynamically learnt map/set elements, refreshed by traffic.
DYNAMIC_TIMEOUT_S = 120

#: ``masquerade to :LO-HI`` range for EIM with non-preserved ports.
RANDOM_PORT_RANGE = (20000, 29999)
#: Where the kernel picks a random source port when no range is given
#: (``nf_nat_l4proto_unique_tuple``, for inside ports >= 1024).
KERNEL_RANDOM_PORTS = PortRange(1024, 65535)

#: First port and length of the ``numgen inc`` cycle for sequential allocation.
SEQUENTIAL_BASE_PORT = 40000
SEQUENTIAL_PORTS = 512

#: Which port allocations each mapping can be built with.
SUPPORTED_ALLOCATIONS: dict[MappingBehavior, frozenset[PortAllocation]] = {
    MappingBehavior.EIM: frozenset({PortAllocation.PRESERVING, PortAllocation.RANDOM}),
    MappingBehavior.ADM: frozenset({PortAllocation.RANDOM}),
    MappingBehavior.APDM: frozenset({PortAllocation.RANDOM, PortAllocation.SEQUENTIAL}),
}


@dataclass(frozen=True, slots=True)
class NatSpec:
    """The behaviour of one NAT router; the generator turns it into nftables."""

    mapping: MappingBehavior = MappingBehavior.EIM
    filtering: FilteringBehavior = FilteringBehavior.APDF
    allocation: PortAllocation = PortAllocation.PRESERVING
    hairpin: bool = False
    """Loop LAN packets addressed to the public address back in (needs EIM)."""
    block_udp: bool = False
    """Drop all forwarded UDP; TCP still passes, NATed."""
    udp_timeout_s: int | None = None
    """``net.netfilter.nf_conntrack_udp_timeout`` in the router; ``None`` keeps 30 s."""
    port_mapping: PortMappingSpec | None = None
    """Run miniupnpd (UPnP IGD, NAT-PMP, PCP) on the LAN (:mod:`natkit.lab.miniupnpd`)."""
    ports: PortRange | None = None
    """UDP external ports for random allocation (``masquerade to :LO-HI``);
    ``None``: 20000-29999 for EIM, the kernel's 1024-65535 for APDM."""
    drop_unsolicited: bool = False
    """Drop inbound packets for the router itself that match no mapping
    (an input firewall), so they leave no conntrack entry (rule 4 above)."""

    def __post_init__(self) -> None:
        allowed = SUPPORTED_ALLOCATIONS.get(self.mapping)
        if allowed is None:
            raise ValueError(f"cannot build a NAT with mapping {self.mapping.value!r}")
        if self.allocation not in allowed:
            names = ", ".join(sorted(a.value for a in allowed))
            raise ValueError(
                f"mapping {self.mapping.value} supports allocation {names},"
                f" not {self.allocation.value!r}"
            )
        if self.filtering is FilteringBehavior.UNKNOWN:
            raise ValueError("cannot build a NAT with filtering 'unknown'")
        if self.hairpin and self.mapping is not MappingBehavior.EIM:
            raise ValueError("hairpinning is only emulated for EIM mappings")
        if self.udp_timeout_s is not None and self.udp_timeout_s <= 0:
            raise ValueError(f"udp_timeout_s must be positive, got {self.udp_timeout_s}")
        if self.ports is not None and (
            self.allocation is not PortAllocation.RANDOM or self.mapping is MappingBehavior.ADM
        ):
            raise ValueError("a port range is only built for random EIM or APDM allocation")

    @property
    def udp_ports(self) -> PortRange | None:
        """The range UDP mappings get their external port from, when the
        allocation is random; ``None`` for preserving or sequential NATs."""
        if self.allocation is not PortAllocation.RANDOM or self.mapping is MappingBehavior.ADM:
            return None
        if self.ports is not None:
            return self.ports
        if self.mapping is MappingBehavior.EIM:
            return PortRange(*RANDOM_PORT_RANGE)
        return KERNEL_RANDOM_PORTS

    @property
    def needs_ext2int(self) -> bool:
        """Whether the external-port → inside-endpoint map is kept."""
        return self.hairpin or self.filtering in (FilteringBehavior.EIF, FilteringBehavior.ADF)


@dataclass(frozen=True, slots=True)
class NatPlacement:
    """Where a router sits: its public (WAN) address and its LAN prefix."""

    public: ipaddress.IPv4Address
    lan: ipaddress.IPv4Network


def render_ruleset(spec: NatSpec, placement: NatPlacement) -> str:
    """The complete ``nft -f`` input for one router.

    The text starts with the flush idiom (declare, delete, redeclare) so that
    loading it again replaces the table atomically: that is how
    ``Lab.reset_state`` empties the dynamic maps and restarts counters.
    """
    wan = f'oifname "{WAN_IF}"'
    wan_in = f'iifname "{WAN_IF}"'
    public = placement.public
    timeout = f"flags dynamic, timeout; timeout {DYNAMIC_TIMEOUT_S}s;"

    objects: list[str] = []
    snat: list[str] = []
    dnat: list[str] = []
    record: list[str] = []
    forward: list[str] = []
    inbound: list[str] = []

    if spec.needs_ext2int:
        objects.append(f"map ext2int {{ type inet_service : ipv4_addr . inet_service; {timeout} }}")
        record.append(
            f"{wan} meta l4proto udp update @ext2int"
            " { ct reply proto-dst : ct original ip saddr . ct original proto-src }"
        )
    if spec.filtering is FilteringBehavior.EIF:
        dnat.append(f"{wan_in} meta l4proto udp dnat ip to udp dport map @ext2int")
    elif spec.filtering is FilteringBehavior.ADF:
        objects.append(f"set peers {{ type inet_service . ipv4_addr; {timeout} }}")
        record.append(f"{wan} meta l4proto udp update @peers {{ ct reply proto-dst . ip daddr }}")
        dnat.append(
            f"{wan_in} meta l4proto udp udp dport . ip saddr @peers"
            " dnat ip to udp dport map @ext2int"
        )
    if spec.hairpin:
        dnat.append(
            f'iifname "{LAN_IF}" ip daddr {public} meta l4proto udp'
            " dnat ip to udp dport map @ext2int"
        )
        snat.append(
            f'oifname "{LAN_IF}" ct status dnat ip saddr {placement.lan} snat ip to {public}'
        )

    if spec.port_mapping is not None:
        # The router's own packets leave untranslated, as a real router's do:
        # miniupnpd checks by STUN that its external ports stay as they are,
        # and behind a translation that randomises them (APDM) it refuses to
        # forward at all ("behind restrictive or symmetric NAT").
        snat.append(f"{wan} ip saddr {public} accept")
    snat.extend(_mapping_rules(spec, public, wan))
    if spec.mapping is MappingBehavior.ADM:
        objects.append(
            "map adm { type ipv4_addr . inet_service . ipv4_addr : ipv4_addr . inet_service;"
            f" {timeout} }}"
        )
        record.append(
            f"{wan} meta l4proto udp update @adm {{ ct original ip saddr . ct original proto-src"
            " . ct original ip daddr : ct reply ip daddr . ct reply proto-dst }"
        )
    if spec.block_udp:
        forward.append("meta l4proto udp drop")
    if spec.drop_unsolicited:
        # Dropped here, the packet's conntrack entry is never confirmed (rule 4).
        inbound.append(f"{wan_in} ct state new drop")

    chains = [
        ("prerouting", "type nat hook prerouting priority dstnat", dnat),
        ("postrouting", "type nat hook postrouting priority srcnat", snat),
        ("record", "type filter hook postrouting priority srcnat + 10", record),
        ("forward", "type filter hook forward priority filter", forward),
        ("input", "type filter hook input priority filter", inbound),
    ]
    lines = [f"table ip {NAT_TABLE}", f"delete table ip {NAT_TABLE}", f"table ip {NAT_TABLE} {{"]
    lines.extend(f"\t{obj}" for obj in objects)
    for name, hook, rules in chains:
        if not rules:
            continue
        lines.append(f"\tchain {name} {{")
        lines.append(f"\t\t{hook}; policy accept;")
        lines.extend(f"\t\t{rule}" for rule in rules)
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mapping_rules(spec: NatSpec, public: ipaddress.IPv4Address, wan: str) -> list[str]:
    """The SNAT rules that give the mapping and port allocation of ``spec``."""
    span = spec.ports
    if spec.mapping is MappingBehavior.EIM:
        if spec.allocation is PortAllocation.RANDOM:
            low, high = RANDOM_PORT_RANGE if span is None else (span.low, span.high)
            # nft rejects a port range without a transport match first.
            return [f"{wan} meta l4proto udp masquerade to :{low}-{high}", f"{wan} masquerade"]
        return [f"{wan} masquerade"]
    if spec.mapping is MappingBehavior.APDM:
        if spec.allocation is PortAllocation.SEQUENTIAL:
            # A bare "numgen inc ... offset N" comes out byte-swapped as a port;
            # an explicit counter → port map does not.
            ports = ", ".join(f"{i} : {SEQUENTIAL_BASE_PORT + i}" for i in range(SEQUENTIAL_PORTS))
            return [
                f"{wan} meta l4proto udp snat ip to {public} :"
                f" numgen inc mod {SEQUENTIAL_PORTS} map {{ {ports} }}",
                f"{wan} masquerade",
            ]
        if span is not None:
            return [
                f"{wan} meta l4proto udp masquerade to :{span} fully-random",
                f"{wan} masquerade fully-random",
            ]
        return [f"{wan} masquerade fully-random"]
    # ADM: reuse the external endpoint learnt for (inside endpoint, destination
    # address); the first packet to a new address falls through to a random one.
    return [
        f"{wan} meta l4proto udp snat ip to ip saddr . udp sport . ip daddr map @adm",
        f"{wan} masquerade fully-random",
    ]


def dynamic_objects(spec: NatSpec) -> list[str]:
    """Names of the dynamic maps/sets the ruleset of ``spec`` keeps."""
    names: list[str] = []
    if spec.needs_ext2int:
        names.append("ext2int")
    if spec.filtering is FilteringBehavior.ADF:
        names.append("peers")
    if spec.mapping is MappingBehavior.ADM:
        names.append("adm")
    return names
