"""The named lab scenarios: a public contract (``natkit lab up NAME``).

A scenario is a chain of NATs between the client and the lab's internet,
outermost first (empty: the client is on the internet itself), a one-line
description, and the classification a correct classifier must report for
it. The expectation is written out by hand rather than derived from the
specs, so that it reads as the contract it is; ``tests/lab`` proves each one
on the real kernel, independently of natkit's classifier.

A scenario may also hold further sites (:class:`Site`): other networks
on the same internet, each with its own NAT chain and client, for tests that
connect two NATed hosts (birthday hole punching). The client and its NATs
are the main site; a site named ``b`` adds roles ``nat-b`` and ``client-b``.
``lan_peers`` puts more hosts on the main site's innermost LAN (roles
``client2``, ``client3``, ...), behind the same NAT as the client.

The ``connect-*`` scenarios (``rendezvous=True``) are for ``natkit
connect``: the lab also runs a ``natkit rendezvous`` on the internet
(192.0.2.10:7000) and makes a node key for every client
(:mod:`natkit.lab.rendezvous`), so two sites connect with three commands.
The ``wireguard-*`` scenarios (``wireguard=True``) also write a wg-quick
file per site (peers, no endpoints) for the WireGuard quick start
(:mod:`natkit.lab.wireguard_quick`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from natkit.birthday.ports import PortRange
from natkit.lab.classification import (
    Classification,
    FilteringBehavior,
    MappingBehavior,
    PortAllocation,
)
from natkit.lab.errors import UnknownScenarioError
from natkit.lab.ipv6 import Ipv6Spec
from natkit.lab.miniupnpd import PortMappingSpec
from natkit.lab.nat import NatSpec

EIM, ADM, APDM = MappingBehavior.EIM, MappingBehavior.ADM, MappingBehavior.APDM
EIF, ADF, APDF = FilteringBehavior.EIF, FilteringBehavior.ADF, FilteringBehavior.APDF
PRESERVING = PortAllocation.PRESERVING
SEQUENTIAL = PortAllocation.SEQUENTIAL
RANDOM = PortAllocation.RANDOM


#: A site name: short, lowercase, and usable as a role suffix (``client-b``).
SITE_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,3}$")
#: Extra sites a scenario may have (each takes a WAN address and a 10.0.x.0/24).
MAX_SITES = 8
#: Extra hosts on the main LAN (each takes an address after the client's).
MAX_LAN_PEERS = 4


@dataclass(frozen=True, slots=True)
class Site:
    """Another network on the lab's internet, with its own NATs and client."""

    name: str
    """Suffix of the site's roles: ``client-<name>``, ``nat-<name>``, ``cgn-<name>``."""
    nats: tuple[NatSpec, ...]
    """Its NAT routers from the internet inwards; ``()`` puts its client on the internet."""

    def __post_init__(self) -> None:
        if not SITE_NAME_RE.match(self.name):
            raise ValueError(f"site name must match {SITE_NAME_RE.pattern}, got {self.name!r}")


@dataclass(frozen=True, slots=True)
class Scenario:
    """One buildable network between the client and the lab's internet."""

    name: str
    description: str
    nats: tuple[NatSpec, ...]
    """The NAT routers from the internet inwards; ``()`` puts the client on the internet."""
    expected: Classification
    """What natkit's classifier must report from the client namespace."""
    sites: tuple[Site, ...] = ()
    """Further sites on the same internet (the client's own is not listed)."""
    ipv6: Ipv6Spec | None = None
    """IPv6 for the client: dual-stack, or IPv6-only behind NAT64/DNS64
    (:mod:`natkit.lab.ipv6`); ``None``: the lab is IPv4 only."""
    lan_peers: int = 0
    """More hosts on the main site's innermost LAN (``client2``, ...)."""
    rendezvous: bool = False
    """Run a rendezvous on the internet and make a node key per client."""
    wireguard: bool = False
    """Write a wg-quick file per site client for the WireGuard quick start
    (:mod:`natkit.lab.wireguard_quick`; needs ``rendezvous`` for the keys)."""

    def __post_init__(self) -> None:
        names = [site.name for site in self.sites]
        if len(set(names)) != len(names):
            raise ValueError(f"scenario {self.name!r} names a site twice: {names}")
        if len(names) > MAX_SITES:
            raise ValueError(f"scenario {self.name!r} has more than {MAX_SITES} extra sites")
        if self.ipv6 is not None and (len(self.nats) != 1 or self.sites):
            raise ValueError(f"scenario {self.name!r}: IPv6 is built for one NAT and one site")
        if self.lan_peers and (not self.nats or self.ipv6 is not None):
            raise ValueError(f"scenario {self.name!r}: LAN peers need a NAT and IPv4 only")
        if not 0 <= self.lan_peers <= MAX_LAN_PEERS:
            raise ValueError(f"scenario {self.name!r}: 0-{MAX_LAN_PEERS} LAN peers")
        if self.wireguard and (not self.rendezvous or not self.sites or self.lan_peers):
            raise ValueError(f"scenario {self.name!r}: WireGuard needs a rendezvous and sites")

    @property
    def generic(self) -> bool:
        """Whether the generic lab tests (every test taking ``lab`` without
        naming scenarios) apply: one site and an IPv4-only client whose NAT
        the classifier can reach. IPv6, multi-site and connect scenarios have
        their own."""
        return not self.sites and self.ipv6 is None and not self.lan_peers and not self.rendezvous

    @property
    def all_nats(self) -> tuple[NatSpec, ...]:
        """Every NAT of the scenario, the main site's first."""
        return self.nats + tuple(nat for site in self.sites for nat in site.nats)


def _nat(
    mapping: MappingBehavior,
    filtering: FilteringBehavior,
    allocation: PortAllocation,
    *,
    hairpin: bool = False,
) -> Classification:
    return Classification(
        mapping=mapping,
        filtering=filtering,
        hairpin=hairpin,
        port_allocation=allocation,
        udp_blocked=False,
        behind_nat=True,
    )


#: The hard site's NAT for birthday hole punching: symmetric, random ports,
#: and an input firewall, without which each early probe would spoil its own
#: port (see :mod:`natkit.lab.nat`, rule 4).
_HARD = NatSpec(APDM, APDF, RANDOM, drop_unsolicited=True)
#: The easy site's: Linux masquerade as is (port-preserving EIM, APDF), firewalled.
_EASY = NatSpec(EIM, APDF, PRESERVING, drop_unsolicited=True)
#: The connect scenarios' NATs drop unsolicited inbound packets, as home routers
#: do: an early check to a port nobody sent from yet must not leave a conntrack
#: entry that makes the NAT move the port once someone does (rule 4 of
#: :mod:`natkit.lab.nat`; without it two masquerades rarely punch through).
_CONE = _EASY
#: Both-hard NATs allocate from 1,000 ports only, so a both-hard search fits
#: in CI time: with N = 1000 there are 10^6 port pairs, and each side needs
#: about 1,520 probes for 90 % (``natkit birthday plan --both-hard -k 8
#: --range 40000-40999 --probes 1520``), ~1.5 s per side at 1,000/s.
BOTH_HARD_PORTS = PortRange(40000, 40999)
_SMALL_HARD = NatSpec(APDM, APDF, RANDOM, ports=BOTH_HARD_PORTS, drop_unsolicited=True)


@dataclass(frozen=True, slots=True)
class _WireGuardOf:
    """A ``wireguard-*`` scenario declared as a ``connect-*`` one's network
    plus a wg-quick file per site (resolved once every scenario is declared)."""

    base: str
    name: str
    description: str


def _wireguard(base: str, name: str, description: str) -> _WireGuardOf:
    return _WireGuardOf(base, name, description)


def _resolve(declared: tuple[Scenario | _WireGuardOf, ...]) -> tuple[Scenario, ...]:
    by_name = {s.name: s for s in declared if isinstance(s, Scenario)}
    return tuple(
        s
        if isinstance(s, Scenario)
        else replace(by_name[s.base], name=s.name, description=s.description, wireguard=True)
        for s in declared
    )


_DECLARED: tuple[Scenario | _WireGuardOf, ...] = (
    Scenario(
        "no-nat",
        "client on the internet itself (198.51.100.50): no NAT, no firewall",
        (),
        Classification(EIM, EIF, None, PRESERVING, udp_blocked=False, behind_nat=False),
    ),
    Scenario(
        "eim-eif",
        "full cone: one mapping for all destinations, anyone may send to it",
        (NatSpec(EIM, EIF, PRESERVING),),
        _nat(EIM, EIF, PRESERVING),
    ),
    Scenario(
        "eim-adf",
        "restricted cone: one mapping, inbound only from addresses already sent to",
        (NatSpec(EIM, ADF, PRESERVING),),
        _nat(EIM, ADF, PRESERVING),
    ),
    Scenario(
        "eim-apdf",
        "port-restricted cone (Linux masquerade as is): inbound only from endpoints sent to",
        (NatSpec(EIM, APDF, PRESERVING),),
        _nat(EIM, APDF, PRESERVING),
    ),
    Scenario(
        "eim-apdf-hairpin",
        "port-restricted cone that loops LAN traffic to its public address back in",
        (NatSpec(EIM, APDF, PRESERVING, hairpin=True),),
        _nat(EIM, APDF, PRESERVING, hairpin=True),
    ),
    Scenario(
        "eim-random-ports",
        "port-restricted cone that moves every mapping into ports 20000-29999",
        (NatSpec(EIM, APDF, RANDOM),),
        _nat(EIM, APDF, RANDOM),
    ),
    Scenario(
        "adm-apdf",
        "a new random mapping per destination address, reused across its ports",
        (NatSpec(ADM, APDF, RANDOM),),
        _nat(ADM, APDF, RANDOM),
    ),
    Scenario(
        "apdm-apdf",
        "symmetric NAT: a new random mapping per destination address and port",
        (NatSpec(APDM, APDF, RANDOM),),
        _nat(APDM, APDF, RANDOM),
    ),
    Scenario(
        "apdm-sequential",
        "symmetric NAT handing out consecutive ports (40000, 40001, ...)",
        (NatSpec(APDM, APDF, SEQUENTIAL),),
        _nat(APDM, APDF, SEQUENTIAL),
    ),
    Scenario(
        "cgnat",
        "double NAT: home masquerade behind a carrier masquerade on 100.64.0.0/24",
        (NatSpec(EIM, APDF, PRESERVING), NatSpec(EIM, APDF, PRESERVING)),
        _nat(EIM, APDF, PRESERVING),
    ),
    Scenario(
        "udp-blocked",
        "the router drops all forwarded UDP; TCP still passes, NATed",
        (NatSpec(EIM, APDF, PRESERVING, block_udp=True),),
        # TCP still crosses the NAT, and the classifier's TCP check sees it.
        Classification.udp_blocked_result(behind_nat=True),
    ),
    Scenario(
        "upnp",
        "port-restricted cone whose router runs miniupnpd: UPnP IGD:2, NAT-PMP and PCP",
        (NatSpec(EIM, APDF, PRESERVING, port_mapping=PortMappingSpec()),),
        _nat(EIM, APDF, PRESERVING),
    ),
    Scenario(
        "upnp-igd1",
        "as upnp, but miniupnpd describes itself as IGD:1 (no AddAnyPortMapping)",
        (NatSpec(EIM, APDF, PRESERVING, port_mapping=PortMappingSpec(igd_v1=True)),),
        _nat(EIM, APDF, PRESERVING),
    ),
    Scenario(
        "birthday-one-hard",
        "two sites: the client behind a symmetric NAT (fully random ports), client-b"
        " behind a port-preserving masquerade (nat-b, 198.51.100.2)",
        (_HARD,),
        _nat(APDM, APDF, RANDOM),
        sites=(Site("b", (_EASY,)),),
    ),
    Scenario(
        "birthday-both-hard",
        "two sites, both behind symmetric NATs handing out random ports in 40000-40999",
        (_SMALL_HARD,),
        _nat(APDM, APDF, RANDOM),
        sites=(Site("b", (_SMALL_HARD,)),),
    ),
    Scenario(
        "connect-eim",
        "connect: two sites behind port-preserving masquerades (EIM/APDF; nat 198.51.100.1,"
        " nat-b 198.51.100.2), the client with two addresses; a rendezvous on 192.0.2.10:7000",
        (_CONE,),
        _nat(EIM, APDF, PRESERVING),
        sites=(Site("b", (_CONE,)),),
        rendezvous=True,
    ),
    Scenario(
        "connect-adf-apdm",
        "connect: the client behind a restricted cone (EIM/ADF), client-b behind a symmetric"
        " NAT (APDM/APDF, random ports); a rendezvous on 192.0.2.10:7000",
        (NatSpec(EIM, ADF, PRESERVING, drop_unsolicited=True),),
        _nat(EIM, ADF, PRESERVING),
        sites=(Site("b", (NatSpec(APDM, APDF, RANDOM, drop_unsolicited=True),)),),
        rendezvous=True,
    ),
    Scenario(
        "connect-cgnat",
        "connect: the client behind a home masquerade behind a carrier masquerade"
        " (100.64.0.0/24), client-b behind a port-preserving masquerade (EIM/APDF);"
        " a rendezvous on 192.0.2.10:7000",
        (_CONE, _CONE),
        _nat(EIM, APDF, PRESERVING),
        sites=(Site("b", (_CONE,)),),
        rendezvous=True,
    ),
    Scenario(
        "connect-lan",
        "connect: the client and client2 (192.168.1.4) on one LAN behind one masquerade that"
        " hairpins, so the path through the NAT works too; a rendezvous on 192.0.2.10:7000",
        (NatSpec(EIM, APDF, PRESERVING, hairpin=True, drop_unsolicited=True),),
        _nat(EIM, APDF, PRESERVING, hairpin=True),
        lan_peers=1,
        rendezvous=True,
    ),
    Scenario(
        "connect-apdm",
        "connect: two sites, both behind symmetric NATs (APDM/APDF, random ports):"
        " no direct path; a rendezvous on 192.0.2.10:7000",
        (_HARD,),
        _nat(APDM, APDF, RANDOM),
        sites=(Site("b", (_HARD,)),),
        rendezvous=True,
    ),
    Scenario(
        "connect-udp-blocked",
        "connect: the client's router drops all forwarded UDP (TCP passes, NATed), client-b"
        " behind a port-preserving masquerade (EIM/APDF): only a TURN relay over TCP or TLS"
        " connects them; a rendezvous on 192.0.2.10:7000",
        (NatSpec(EIM, APDF, PRESERVING, block_udp=True, drop_unsolicited=True),),
        Classification.udp_blocked_result(behind_nat=True),
        sites=(Site("b", (_CONE,)),),
        rendezvous=True,
    ),
    Scenario(
        "connect-birthday",
        "connect: two sites, both behind symmetric NATs handing out random ports in"
        " 40000-40999 (as birthday-both-hard): relayed first, then birthday probing finds a"
        " direct path; a rendezvous on 192.0.2.10:7000",
        (_SMALL_HARD,),
        _nat(APDM, APDF, RANDOM),
        sites=(Site("b", (_SMALL_HARD,)),),
        rendezvous=True,
    ),
    Scenario(
        "connect-upnp",
        "connect: two sites behind symmetric NATs (APDM/APDF, random ports), the client's"
        " router running miniupnpd (UPnP IGD:2, NAT-PMP, PCP): only its mapped port makes"
        " the pair direct; a rendezvous on 192.0.2.10:7000",
        # No input firewall on the gateway: miniupnpd's own STUN check needs the
        # answers from the server's other address, and refuses to forward without them.
        (NatSpec(APDM, APDF, RANDOM, port_mapping=PortMappingSpec()),),
        _nat(APDM, APDF, RANDOM),
        sites=(Site("b", (_HARD,)),),
        rendezvous=True,
    ),
    Scenario(
        "wireguard-pair",
        "WireGuard: two sites behind port-preserving masquerades (EIM/APDF, firewalled);"
        " a rendezvous on 192.0.2.10:7000, a wg-quick file per site",
        (_CONE,),
        _nat(EIM, APDF, PRESERVING),
        sites=(Site("b", (_CONE,)),),
        rendezvous=True,
        wireguard=True,
    ),
    Scenario(
        "wireguard-eim-apdm",
        "WireGuard: the client behind a port-preserving masquerade (EIM/APDF), client-b"
        " behind a symmetric NAT (APDM/APDF, random ports); a rendezvous on 192.0.2.10:7000",
        (_EASY,),
        _nat(EIM, APDF, PRESERVING),
        sites=(Site("b", (_HARD,)),),
        rendezvous=True,
        wireguard=True,
    ),
    _wireguard(
        "connect-cgnat",
        "wireguard-cgnat",
        "WireGuard: the client behind a home masquerade behind a carrier masquerade"
        " (100.64.0.0/24), client-b behind a port-preserving masquerade (EIM/APDF);"
        " a rendezvous on 192.0.2.10:7000",
    ),
    _wireguard(
        "connect-udp-blocked",
        "wireguard-udp-blocked",
        "WireGuard: the client's router drops forwarded UDP (TCP passes), client-b behind a"
        " port-preserving masquerade: only a TURN relay over TCP or TLS connects them",
    ),
    _wireguard(
        "connect-birthday",
        "wireguard-birthday",
        "WireGuard: both sites behind symmetric NATs with random ports in 40000-40999:"
        " relayed first, then birthday probing finds a direct path (not on WireGuard's port)",
    ),
    Scenario(
        "wireguard-mesh",
        "WireGuard: three sites, each behind a port-preserving masquerade (EIM/APDF,"
        " firewalled); a rendezvous on 192.0.2.10:7000, a wg-quick file per site",
        (_CONE,),
        _nat(EIM, APDF, PRESERVING),
        sites=(Site("b", (_CONE,)), Site("c", (_CONE,))),
        rendezvous=True,
        wireguard=True,
    ),
    Scenario(
        "dual-stack",
        "port-restricted cone for IPv4 and a routed IPv6 address (2001:db8:2::2) beside it;"
        " the router's resolver does no DNS64",
        (NatSpec(EIM, APDF, PRESERVING),),
        _nat(EIM, APDF, PRESERVING),
        ipv6=Ipv6Spec(),
    ),
    Scenario(
        "nat64",
        "IPv6-only client; its router translates 2001:db8:64::/96 to IPv4 (tayga, then"
        " masquerade) and synthesises AAAA records with it (unbound DNS64)",
        (NatSpec(EIM, APDF, PRESERVING),),
        # The IPv4 NAT behind the translator is Linux masquerade as is.
        _nat(EIM, APDF, PRESERVING),
        ipv6=Ipv6Spec(ipaddress.IPv6Network("2001:db8:64::/96")),
    ),
    Scenario(
        "nat64-56",
        "as nat64 with a /56 network-specific prefix, 2001:db8:6400::/56 (RFC 6052 §2.2)",
        (NatSpec(EIM, APDF, PRESERVING),),
        _nat(EIM, APDF, PRESERVING),
        ipv6=Ipv6Spec(ipaddress.IPv6Network("2001:db8:6400::/56")),
    ),
)

_ALL = _resolve(_DECLARED)

#: Every scenario by name, in a stable, documented order.
SCENARIOS: Mapping[str, Scenario] = MappingProxyType({s.name: s for s in _ALL})


def get_scenario(name: str) -> Scenario:
    """Look a scenario up by name; raises :class:`UnknownScenarioError`."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UnknownScenarioError(name, list(SCENARIOS)) from None
