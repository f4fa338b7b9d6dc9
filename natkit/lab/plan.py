"""The lab topology as plain data, computed by one pure function.

``plan_lab(scenario, run_id)`` returns everything needed to build a lab:
namespaces, veth pairs, per-namespace ``ip -batch`` lines, sysctls and
nftables rulesets. Nothing here touches the system, so the plan can be
checked without root, and a lab left behind by a killed process can be
re-planned from its scenario name and run id alone.

Topology (documentation ranges only; RFC 5737 for the internet, RFC 6598's
100.64.0.0/10 for carrier tiers, RFC 1918 inside)::

    stun 203.0.113.10,.11 ─┐
    coturn 203.0.113.20,.21┼─ inet (bridge nk-br) ─ nk-wan 198.51.100.1 [cgn]
    peer 192.0.2.10,.11 ───┘                          nk-lan 100.64.0.1/24
                                                          │
                                           nk-wan 100.64.0.2 [nat] nk-lan 192.168.1.1/24
                                                          │
                                                 client 192.168.1.2, .3

With one NAT the ``nat`` router sits on the bridge itself; with none, the
client does, as 198.51.100.50. Internet hosts get on-link routes for all
three documentation /24s, so the bridge is one flat "internet" and nothing
has a default route out of the lab.

Extra sites (``Scenario.sites``) are built by the same code as the main
one, side by side on the bridge: site ``b``, the first, has its outermost
router at 198.51.100.2 and its client on 10.0.2.0/24, with roles suffixed
``-b``::

    inet (bridge nk-br) ─┬─ nk-wan 198.51.100.1 [nat]   nk-lan 192.168.1.1 ─ client 192.168.1.2
                         └─ nk-wan 198.51.100.2 [nat-b] nk-lan 10.0.2.1    ─ client-b 10.0.2.2

A scenario with IPv6 (one router, one site) gets the layer of
:mod:`natkit.lab.ipv6` on top, by :func:`_with_ipv6`: 2001:db8:1::/64 on the
bridge, 2001:db8:2::/64 on the client's LAN, routed by ``nat``; an IPv6-only
client loses its IPv4 addresses and routes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum

from natkit.lab import ipv6
from natkit.lab.ipv6 import Ipv6GatewayPlan, Ipv6Spec
from natkit.lab.miniupnpd import GatewayPlan, MiniupnpdPlacement
from natkit.lab.nat import (
    LAN_IF,
    WAN_IF,
    NatPlacement,
    NatSpec,
    dynamic_objects,
    render_ruleset,
)
from natkit.lab.scenarios import Scenario

IPv4 = ipaddress.IPv4Address
Net4 = ipaddress.IPv4Network

#: Every lab namespace and interface name starts with this.
PREFIX = "nk-"
#: ``nk-<5 hex>``: a run id is 5 lowercase hex digits.
RUN_ID_RE = re.compile(r"^[0-9a-f]{5}$")
#: Matches a namespace of any lab: group 1 is the run id, group 2 the role
#: (roles of extra sites carry a suffix: ``client-b``).
NAMESPACE_RE = re.compile(r"^nk-([0-9a-f]{5})-([a-z0-9]+(?:-[a-z0-9]+)?)$")

BRIDGE_IF = "nk-br"
HOST_IF = "nk-eth0"

#: The simulated internet: all three RFC 5737 /24s share one bridge.
INTERNET_PREFIXES: tuple[Net4, ...] = (
    Net4("203.0.113.0/24"),
    Net4("198.51.100.0/24"),
    Net4("192.0.2.0/24"),
)
STUN_ADDRESSES = (IPv4("203.0.113.10"), IPv4("203.0.113.11"))
COTURN_ADDRESSES = (IPv4("203.0.113.20"), IPv4("203.0.113.21"))
PEER_ADDRESSES = (IPv4("192.0.2.10"), IPv4("192.0.2.11"))
ROUTER_WAN_ADDRESS = IPv4("198.51.100.1")
NO_NAT_CLIENT_ADDRESS = IPv4("198.51.100.50")
#: Carrier tier ``i`` (counted from the internet) uses 100.64.i.0/24.
CARRIER_SUPERNET = Net4("100.64.0.0/10")
LAN_PREFIX = Net4("192.168.1.0/24")
CLIENT_ADDRESSES = (IPv4("192.168.1.2"), IPv4("192.168.1.3"))
#: Extra site ``i`` (1 for ``b``) has its client LAN at 10.0.(1 + i).0/24.
SITE_LAN_SUPERNET = Net4("10.0.0.0/16")
#: The main site's name: its roles (``nat``, ``client``) carry no suffix.
MAIN_SITE = ""

#: Roles that always exist.
INET_ROLE, CLIENT_ROLE = "inet", "client"
STUN_ROLE, COTURN_ROLE, PEER_ROLE = "stun", "coturn", "peer"
#: Internet hosts: role -> addresses (the first one is the primary).
INTERNET_HOSTS: dict[str, tuple[IPv4, ...]] = {
    STUN_ROLE: STUN_ADDRESSES,
    COTURN_ROLE: COTURN_ADDRESSES,
    PEER_ROLE: PEER_ADDRESSES,
}

#: Set in every namespace before any link exists, so ``default`` applies to
#: the links created next. Without accept_dad=0 the first IPv6 packets can be
#: lost to duplicate address detection.
COMMON_SYSCTLS: tuple[tuple[str, str], ...] = (
    ("net.ipv6.conf.all.accept_dad", "0"),
    ("net.ipv6.conf.default.accept_dad", "0"),
)
#: br_netfilter is loaded on this kernel and makes bridged frames traverse the
#: namespace's IP hooks; the bridge must switch, not filter.
BRIDGE_SYSCTLS: tuple[tuple[str, str], ...] = (
    ("net.bridge.bridge-nf-call-iptables", "0"),
    ("net.bridge.bridge-nf-call-ip6tables", "0"),
    ("net.bridge.bridge-nf-call-arptables", "0"),
)
#: A router routes between subnets sharing one link: no ICMP redirects.
ROUTER_SYSCTLS: tuple[tuple[str, str], ...] = (
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.conf.all.send_redirects", "0"),
    ("net.ipv4.conf.default.send_redirects", "0"),
)
UDP_TIMEOUT_SYSCTL = "net.netfilter.nf_conntrack_udp_timeout"


class HostKind(Enum):
    """What a namespace is for."""

    BRIDGE = "bridge"
    INTERNET_HOST = "internet-host"
    ROUTER = "router"
    CLIENT = "client"


@dataclass(frozen=True, slots=True)
class VethPair:
    """One veth pair, created with each end directly inside its namespace."""

    namespace_a: str
    name_a: str
    namespace_b: str
    name_b: str

    def ip_command(self) -> str:
        """The ``ip -batch`` line (run in the root namespace) creating the pair.

        Both ends are born inside their namespaces, so no transient interface
        name ever appears in the root namespace.
        """
        return (
            f"link add {self.name_a} netns {self.namespace_a}"
            f" type veth peer name {self.name_b} netns {self.namespace_b}"
        )


@dataclass(frozen=True, slots=True)
class HostPlan:
    """One namespace: its role, what to run in it, and its addresses."""

    role: str
    namespace: str
    kind: HostKind
    ip_commands: tuple[str, ...]
    """``ip -n NAMESPACE -batch -`` lines, run once all veth pairs exist."""
    sysctls: tuple[tuple[str, str], ...]
    """Set right after the namespace is created, before its links."""
    addresses: tuple[IPv4, ...] = ()
    """Host addresses (primary first); for a router its WAN then LAN address."""
    ruleset: str | None = None
    """``nft -f`` input (routers only)."""
    dynamic_objects: tuple[str, ...] = ()
    """Dynamic nftables maps/sets the ruleset keeps."""
    late_sysctls: tuple[tuple[str, str], ...] = ()
    """Set after the ruleset is loaded (conntrack knobs)."""
    gateway: GatewayPlan | None = None
    """A port-mapping daemon (miniupnpd) serving the router's LAN, if any."""
    inside_role: str | None = None
    """For a router: the role of the host on its LAN (next router or the client)."""
    addresses_v6: tuple[ipaddress.IPv6Address, ...] = ()
    """IPv6 addresses (IPv6 scenarios; for a router its WAN then LAN address)."""
    ipv6: Ipv6GatewayPlan | None = None
    """The resolver (unbound) and NAT64 (tayga) a router of an IPv6 scenario runs."""


@dataclass(frozen=True, slots=True)
class LinkEnd:
    """One end of a link: a namespace and an interface name in it."""

    namespace: str
    interface: str


@dataclass(frozen=True, slots=True)
class SitePlan:
    """One site: a client and the NAT routers in front of it."""

    name: str
    """``""`` for the main site, else the :class:`~natkit.lab.scenarios.Site` name."""
    client_role: str
    router_roles: tuple[str, ...]
    """From the internet inwards."""
    client_addresses: tuple[IPv4, ...]
    """Primary first."""
    public_address: IPv4
    """The address the internet sees the site's client as (outermost NAT's WAN)."""
    client_link: tuple[LinkEnd, LinkEnd] = field(repr=False)
    lan_peers: tuple[tuple[str, IPv4], ...] = ()
    """More hosts on the client's LAN: (role, address), ``client2`` first."""


@dataclass(frozen=True, slots=True)
class LabPlan:
    """Everything needed to build (and tear down) one lab instance."""

    run_id: str
    scenario: Scenario
    hosts: tuple[HostPlan, ...]
    veths: tuple[VethPair, ...]
    client_link: tuple[LinkEnd, LinkEnd] = field(repr=False)
    """Both ends of the client's access link (where the loss knob acts)."""
    public_address: IPv4 = field(repr=False)
    """The address the internet sees the client as (outermost NAT's WAN)."""
    sites: tuple[SitePlan, ...] = field(default=(), repr=False)
    """Every site, the main one (name ``""``) first."""

    @property
    def namespaces(self) -> dict[str, str]:
        """Role -> namespace name, in creation order."""
        return {h.role: h.namespace for h in self.hosts}

    @property
    def routers(self) -> tuple[HostPlan, ...]:
        return tuple(h for h in self.hosts if h.kind is HostKind.ROUTER)

    @property
    def gateways(self) -> tuple[HostPlan, ...]:
        """Routers running a port-mapping daemon, from the internet inwards."""
        return tuple(h for h in self.routers if h.gateway is not None)

    def host(self, role: str) -> HostPlan:
        for h in self.hosts:
            if h.role == role:
                return h
        raise KeyError(f"lab {self.run_id} has no role {role!r}")

    @property
    def ipv6_gateways(self) -> tuple[HostPlan, ...]:
        """Routers running unbound (and tayga) for an IPv6 scenario."""
        return tuple(h for h in self.routers if h.ipv6 is not None)

    def site(self, name: str = MAIN_SITE) -> SitePlan:
        """The site called ``name`` (``""``: the main one)."""
        for site in self.sites:
            if site.name == name:
                return site
        known = ", ".join(repr(s.name) for s in self.sites)
        raise KeyError(f"lab {self.run_id} has no site {name!r} (sites: {known})")


def namespace_name(run_id: str, role: str) -> str:
    """``nk-<run id>-<role>``."""
    return f"{PREFIX}{run_id}-{role}"


def site_role(role: str, site: str = MAIN_SITE) -> str:
    """``role`` in ``site``: unchanged in the main site, ``client-b`` in site ``b``."""
    return f"{role}-{site}" if site else role


def router_roles(count: int, site: str = MAIN_SITE) -> list[str]:
    """Router roles from the internet inwards: ``nat`` innermost, ``cgn`` outside it."""
    if count == 0:
        return []
    carriers = count - 1
    outer = ["cgn"] if carriers == 1 else [f"cgn{i + 1}" for i in range(carriers)]
    return [site_role(role, site) for role in (*outer, "nat")]


def _on_link_routes(own: Net4 | None, ifname: str) -> list[str]:
    return [f"route add {p} dev {ifname}" for p in INTERNET_PREFIXES if p != own]


def _internet_prefix_of(address: IPv4) -> Net4:
    for prefix in INTERNET_PREFIXES:
        if address in prefix:
            return prefix
    raise ValueError(f"{address} is not in the lab's internet")


def _addr_lines(ifname: str, addresses: tuple[IPv4, ...], prefixlen: int) -> list[str]:
    return [f"address add {a}/{prefixlen} dev {ifname}" for a in addresses]


def plan_lab(scenario: Scenario, run_id: str) -> LabPlan:
    """Lay out the namespaces, links, addresses and rules for ``scenario``."""
    if not RUN_ID_RE.match(run_id):
        raise ValueError(f"run id must be 5 lowercase hex digits, got {run_id!r}")

    def ns(role: str) -> str:
        return namespace_name(run_id, role)

    inet_ns = ns(INET_ROLE)
    veths: list[VethPair] = []
    hosts: list[HostPlan] = []
    bridge_ports: list[str] = []
    up = "link set lo up"

    # Internet hosts: one veth each to the bridge, /24 addresses, on-link routes.
    for role, addresses in INTERNET_HOSTS.items():
        port = f"{PREFIX}{role}"
        veths.append(VethPair(ns(role), HOST_IF, inet_ns, port))
        bridge_ports.append(port)
        prefix = _internet_prefix_of(addresses[0])
        hosts.append(
            HostPlan(
                role=role,
                namespace=ns(role),
                kind=HostKind.INTERNET_HOST,
                ip_commands=(
                    up,
                    *_addr_lines(HOST_IF, addresses, prefix.prefixlen),
                    f"link set {HOST_IF} up",
                    *_on_link_routes(prefix, HOST_IF),
                ),
                sysctls=COMMON_SYSCTLS,
                addresses=addresses,
            )
        )

    sites: list[SitePlan] = []
    for index, (site, nats) in enumerate(
        [(MAIN_SITE, scenario.nats)] + [(extra.name, extra.nats) for extra in scenario.sites]
    ):
        site_hosts, site_veths, site_ports, site_plan = _plan_site(
            site,
            nats,
            _site_addressing(index),
            ns,
            inet_ns,
            lan_peers=scenario.lan_peers if index == 0 else 0,
        )
        hosts += site_hosts
        veths += site_veths
        bridge_ports += site_ports
        sites.append(site_plan)

    bridge = HostPlan(
        role=INET_ROLE,
        namespace=inet_ns,
        kind=HostKind.BRIDGE,
        ip_commands=(
            up,
            f"link add {BRIDGE_IF} type bridge",
            f"link set {BRIDGE_IF} up",
            *(f"link set {p} master {BRIDGE_IF}" for p in bridge_ports),
            *(f"link set {p} up" for p in bridge_ports),
        ),
        sysctls=COMMON_SYSCTLS + BRIDGE_SYSCTLS,
    )
    if scenario.ipv6 is not None:
        hosts, sites[0] = _with_ipv6(hosts, sites[0], scenario.ipv6)
    main = sites[0]
    return LabPlan(
        run_id=run_id,
        scenario=scenario,
        hosts=(bridge, *hosts),
        veths=tuple(veths),
        client_link=main.client_link,
        public_address=main.public_address,
        sites=tuple(sites),
    )


@dataclass(frozen=True, slots=True)
class _SiteAddressing:
    """The addresses one site is built with (see :func:`_site_addressing`)."""

    wan: IPv4
    """The outermost router's address on the bridge."""
    lan: Net4
    """The innermost LAN, where the client lives."""
    clients: tuple[IPv4, ...]
    no_nat_client: IPv4
    """The client's address on the bridge when the site has no NAT."""


def _site_addressing(index: int) -> _SiteAddressing:
    """Site 0 is the main site; extra site ``i`` gets 198.51.100.(1 + i) and
    10.0.(1 + i).0/24, so site ``b`` (the first extra one) is .2 and 10.0.2.0/24."""
    if index == 0:
        return _SiteAddressing(
            ROUTER_WAN_ADDRESS, LAN_PREFIX, CLIENT_ADDRESSES, NO_NAT_CLIENT_ADDRESS
        )
    lan = Net4(f"{SITE_LAN_SUPERNET.network_address + 256 * (index + 1)}/24")
    return _SiteAddressing(
        wan=ROUTER_WAN_ADDRESS + index,
        lan=lan,
        clients=(lan.network_address + 2, lan.network_address + 3),
        no_nat_client=NO_NAT_CLIENT_ADDRESS + index,
    )


def _plan_site(
    site: str,
    nats: tuple[NatSpec, ...],
    addressing: _SiteAddressing,
    ns: Callable[[str], str],
    inet_ns: str,
    *,
    lan_peers: int = 0,
) -> tuple[list[HostPlan], list[VethPair], list[str], SitePlan]:
    """The routers and client of one site: hosts, veths, bridge ports, summary.

    Every site is built the same way, from the internet inwards: the
    outermost router (or, without NATs, the client) on the bridge; each
    inner router's WAN on the LAN of the one outside it; the client on the
    innermost LAN. With ``lan_peers``, the innermost router's LAN is a bridge
    (still ``nk-lan``, so its ruleset is unchanged) with a port per host:
    the client's and one per peer (``client2``, ...), which talk to each
    other through it without crossing the NAT.
    """
    hosts: list[HostPlan] = []
    veths: list[VethPair] = []
    bridge_ports: list[str] = []
    up = "link set lo up"
    roles = router_roles(len(nats), site)
    client_role = site_role(CLIENT_ROLE, site)
    client_ns = ns(client_role)
    # The next hop towards the internet: (namespace, ifname) to pair with,
    # and the link prefix/gateway the next host inwards uses on its WAN.
    uplink_prefix: Net4 = INTERNET_PREFIXES[1]
    uplink_gateway: IPv4 | None = None
    previous_lan: LinkEnd | None = None
    public_address = addressing.wan if roles else addressing.no_nat_client

    for tier, (role, spec) in enumerate(zip(roles, nats, strict=True)):
        innermost = tier == len(roles) - 1
        if previous_lan is None:
            port = f"{PREFIX}{role}"
            veths.append(VethPair(ns(role), WAN_IF, inet_ns, port))
            bridge_ports.append(port)
            wan_address = addressing.wan
            wan_routes = _on_link_routes(uplink_prefix, WAN_IF)
        else:
            veths.append(VethPair(ns(role), WAN_IF, previous_lan.namespace, LAN_IF))
            wan_address = IPv4(int(uplink_prefix.network_address) + 2)
            wan_routes = [f"route add default via {uplink_gateway} dev {WAN_IF}"]
        if innermost:
            lan_prefix = addressing.lan
        else:
            lan_prefix = Net4(f"{CARRIER_SUPERNET.network_address + 256 * tier}/24")
        lan_address = IPv4(int(lan_prefix.network_address) + 1)
        placement = NatPlacement(public=wan_address, lan=lan_prefix)
        bridged = innermost and lan_peers > 0
        lan_bridge = (
            (
                f"link add {LAN_IF} type bridge",
                *(f"link set {_lan_port(i)} master {LAN_IF}" for i in range(lan_peers + 1)),
                *(f"link set {_lan_port(i)} up" for i in range(lan_peers + 1)),
            )
            if bridged
            else ()
        )
        late = (
            ((UDP_TIMEOUT_SYSCTL, str(spec.udp_timeout_s)),)
            if spec.udp_timeout_s is not None
            else ()
        )
        hosts.append(
            HostPlan(
                role=role,
                namespace=ns(role),
                kind=HostKind.ROUTER,
                ip_commands=(
                    up,
                    *lan_bridge,
                    f"address add {wan_address}/{uplink_prefix.prefixlen} dev {WAN_IF}",
                    f"address add {lan_address}/{lan_prefix.prefixlen} dev {LAN_IF}",
                    f"link set {WAN_IF} up",
                    f"link set {LAN_IF} up",
                    *wan_routes,
                ),
                sysctls=COMMON_SYSCTLS + ROUTER_SYSCTLS + (BRIDGE_SYSCTLS if bridged else ()),
                addresses=(wan_address, lan_address),
                ruleset=render_ruleset(spec, placement),
                dynamic_objects=tuple(dynamic_objects(spec)),
                late_sysctls=late,
                gateway=None
                if spec.port_mapping is None
                else GatewayPlan(
                    spec.port_mapping,
                    MiniupnpdPlacement(WAN_IF, LAN_IF, lan_prefix, lan_address),
                ),
                inside_role=client_role if innermost else roles[tier + 1],
            )
        )
        previous_lan = LinkEnd(ns(role), LAN_IF)
        uplink_prefix, uplink_gateway = lan_prefix, lan_address

    if previous_lan is None:
        port = f"{PREFIX}{client_role}"
        veths.append(VethPair(client_ns, HOST_IF, inet_ns, port))
        bridge_ports.append(port)
        client_addresses: tuple[IPv4, ...] = (addressing.no_nat_client,)
        client_routes = _on_link_routes(INTERNET_PREFIXES[1], HOST_IF)
        access_far_end = LinkEnd(inet_ns, port)
    else:
        port = _lan_port(0) if lan_peers else LAN_IF
        veths.append(VethPair(client_ns, HOST_IF, previous_lan.namespace, port))
        client_addresses = addressing.clients
        client_routes = [f"route add default via {uplink_gateway} dev {HOST_IF}"]
        access_far_end = LinkEnd(previous_lan.namespace, port)
    hosts.append(
        HostPlan(
            role=client_role,
            namespace=client_ns,
            kind=HostKind.CLIENT,
            ip_commands=(
                up,
                *_addr_lines(HOST_IF, client_addresses, uplink_prefix.prefixlen),
                f"link set {HOST_IF} up",
                *client_routes,
            ),
            sysctls=COMMON_SYSCTLS,
            addresses=client_addresses,
        )
    )
    peers: list[tuple[str, IPv4]] = []
    for index in range(lan_peers):
        assert previous_lan is not None  # Scenario refuses LAN peers without a NAT
        role = site_role(f"{CLIENT_ROLE}{index + 2}", site)
        address = addressing.clients[-1] + 1 + index
        veths.append(VethPair(ns(role), HOST_IF, previous_lan.namespace, _lan_port(index + 1)))
        hosts.append(
            HostPlan(
                role=role,
                namespace=ns(role),
                kind=HostKind.CLIENT,
                ip_commands=(
                    up,
                    *_addr_lines(HOST_IF, (address,), uplink_prefix.prefixlen),
                    f"link set {HOST_IF} up",
                    f"route add default via {uplink_gateway} dev {HOST_IF}",
                ),
                sysctls=COMMON_SYSCTLS,
                addresses=(address,),
            )
        )
        peers.append((role, address))
    summary = SitePlan(
        name=site,
        client_role=client_role,
        router_roles=tuple(roles),
        client_addresses=client_addresses,
        public_address=public_address,
        client_link=(LinkEnd(client_ns, HOST_IF), access_far_end),
        lan_peers=tuple(peers),
    )
    return hosts, veths, bridge_ports, summary


def _lan_port(index: int) -> str:
    """The bridge port of LAN host ``index`` (0: the client) on a bridged LAN."""
    return f"{LAN_IF}{index}"


def _with_ipv6(
    hosts: list[HostPlan], site: SitePlan, spec: Ipv6Spec
) -> tuple[list[HostPlan], SitePlan]:
    """Add the IPv6 layer of :mod:`natkit.lab.ipv6` to a one-router plan.

    Internet hosts get their IPv6 addresses and a route to the client's LAN;
    the router its two addresses, forwarding and the resolver/NAT64 plan;
    the client its address and default route, and, when IPv6-only, nothing
    of IPv4 but its loopback.
    """
    (router_role,) = site.router_roles
    out = [_host_with_ipv6(host, router_role, site.client_role, spec) for host in hosts]
    if spec.ipv6_only:
        site = replace(site, client_addresses=())
    return out, site


def _host_with_ipv6(host: HostPlan, router_role: str, client_role: str, spec: Ipv6Spec) -> HostPlan:
    if host.kind is HostKind.INTERNET_HOST:
        return replace(
            host,
            ip_commands=(*host.ip_commands, *ipv6.internet_host_lines(host.role, HOST_IF)),
            addresses_v6=ipv6.INTERNET_HOSTS_V6[host.role],
        )
    if host.role == router_role:
        return replace(
            host,
            ip_commands=(*host.ip_commands, *ipv6.router_lines(WAN_IF, LAN_IF)),
            sysctls=host.sysctls + ipv6.ROUTER_SYSCTLS,
            addresses_v6=(ipv6.ROUTER_WAN_V6, ipv6.ROUTER_LAN_V6),
            ipv6=Ipv6GatewayPlan(spec, ipv6.ROUTER_LAN_V6),
        )
    if host.role != client_role:
        return host
    lines = ipv6.client_lines(HOST_IF)
    if spec.ipv6_only:
        commands = ("link set lo up", f"link set {HOST_IF} up", *lines)
        return replace(host, ip_commands=commands, addresses=(), addresses_v6=(ipv6.CLIENT_V6,))
    return replace(host, ip_commands=(*host.ip_commands, *lines), addresses_v6=(ipv6.CLIENT_V6,))
