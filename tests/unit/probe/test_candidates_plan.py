"""Candidate gathering as data: host selection, CLAT, target plans, assembly,
verdicts and the JSON contract (pure functions, no sockets)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable

import pytest

from natkit.endpoint import Endpoint, IPAddress
from natkit.gather.candidates import (
    CandidateKind,
    CandidateTransport,
    PathKind,
    PortMapObservation,
    PortMapStatus,
    ServerObservation,
    ServerOutcome,
    report_to_dict,
)
from natkit.gather.host import (
    HostPolicy,
    InterfaceAddress,
    detect_clat,
    has_routable_ipv6,
    select_host_addresses,
)
from natkit.gather.plan import (
    ServerSpec,
    assemble_candidates,
    build_report,
    find_disagreements,
    host_candidates,
    plan_targets,
)
from natkit.ice.candidates import local_preference_of
from natkit.nat64 import Nat64Discovery, Nat64Status
from natkit.probe.layering import nat_layering

ip = ipaddress.ip_address
E = Endpoint.parse
Net6 = ipaddress.IPv6Network
V4_SOCKET, V6_SOCKET = E("0.0.0.0:40000"), E("[::]:40000")
SOCKETS = [V4_SOCKET, V6_SOCKET]
NSP = Net6("2001:db8:64::/96")


def iface(name: str, address: str, length: int = 24) -> InterfaceAddress:
    return InterfaceAddress(name, ip(address), length)


def routes(table: dict[str, str]) -> Callable[[IPAddress], IPAddress | None]:
    """``source_for`` from a family -> source table (``v4``/``v6``)."""

    def source_for(destination: IPAddress) -> IPAddress | None:
        key = "v4" if destination.version == 4 else "v6"
        return ip(table[key]) if key in table else None

    return source_for


DUAL_STACK = routes({"v4": "192.168.1.2", "v6": "2001:db8:2::2"})
IPV6_ONLY = routes({"v6": "2001:db8:2::2"})
IPV4_ONLY = routes({"v4": "192.168.1.2"})


# -- host candidates and CLAT ---------------------------------------------------------


def test_host_selection_rules() -> None:
    addresses = [
        iface("lo", "127.0.0.1", 8),
        iface("lo", "::1", 128),
        iface("eth0", "192.168.1.2"),
        iface("eth0", "2001:db8:2::2", 64),
        iface("eth0", "fe80::1%eth0", 64),
        iface("eth0", "169.254.3.4", 16),
        iface("eth0", "fd00::2", 64),
        iface("eth0", "fec0::1", 64),
        iface("eth1", "192.168.1.2"),  # the same address twice counts once
    ]
    chosen, notes = select_host_addresses(addresses)
    assert [str(a.address) for a in chosen] == ["192.168.1.2", "2001:db8:2::2", "fd00::2"]
    assert "127.0.0.1 on lo: loopback" in notes
    assert "fe80::1%eth0 on eth0: link-local" in notes
    assert "fec0::1 on eth0: deprecated site-local" in notes
    everything, _ = select_host_addresses(addresses, HostPolicy(True, True))
    assert {str(a.address) for a in everything} >= {"127.0.0.1", "::1", "fe80::1%eth0"}


def test_tunnel_interfaces_are_left_out_unless_asked_for() -> None:
    # A WireGuard interface's address as a candidate: the peer's checks to it
    # would run through the tunnel, making the VPN its own endpoint.
    wg = InterfaceAddress("wg0", ipaddress.ip_address("10.200.0.1"), 24, tunnel=True)
    addresses = [iface("eth0", "192.168.1.2"), wg]
    chosen, notes = select_host_addresses(addresses)
    assert [str(a.address) for a in chosen] == ["192.168.1.2"]
    assert any(note.startswith("10.200.0.1 on wg0: a tunnel interface") for note in notes)
    everything, _ = select_host_addresses(addresses, HostPolicy(include_tunnels=True))
    assert wg in everything


def test_clat_by_its_rfc7335_address_and_by_name() -> None:
    android = [iface("wlan0", "2001:db8:2::2", 64), iface("v4-wlan0", "192.0.0.4", 32)]
    clat = detect_clat(android)
    assert clat.present
    assert clat.interface == "v4-wlan0"
    assert "RFC 7335" in clat.reason
    chosen, notes = select_host_addresses(android, clat=clat)
    assert [str(a.address) for a in chosen] == ["2001:db8:2::2"]
    assert any("the CLAT's own address" in n for n in notes)
    named = detect_clat([iface("clat", "10.64.0.1", 32)])
    assert named.present
    assert "named like a CLAT" in named.reason
    assert not detect_clat([iface("eth0", "192.168.1.2")]).present


def test_nat64_discovery_only_makes_sense_with_ipv6() -> None:
    assert not has_routable_ipv6([iface("lo", "::1", 128), iface("eth0", "fe80::1", 64)])
    assert has_routable_ipv6([iface("eth0", "2001:db8:2::2", 64)])
    assert has_routable_ipv6([iface("eth0", "fd00::2", 64)])


def test_host_candidates_take_the_port_of_their_familys_socket() -> None:
    chosen = [iface("eth0", "192.168.1.2"), iface("eth0", "2001:db8:2::2", 64)]
    found = host_candidates(chosen, [V4_SOCKET, E("[::]:40001")])
    assert [str(c.address) for c in found] == ["192.168.1.2:40000", "[2001:db8:2::2]:40001"]
    assert all(c.kind is CandidateKind.HOST and c.base == c.address for c in found)
    assert host_candidates(chosen, [V4_SOCKET]) == found[:1]


def test_every_host_candidate_has_its_own_local_preference() -> None:
    # RFC 8445 §5.1.2.1: unique per candidate of one type; a multihomed
    # host's addresses all had 65535 (IPv6) or 65000 (IPv4), so pairs tied.
    chosen = [
        iface("eth0", "192.168.1.2"),
        iface("eth0", "2001:db8:2::2", 64),
        iface("wlan0", "10.0.0.7"),
        iface("wlan0", "2001:db8:3::3", 64),
    ]
    found = host_candidates(chosen, [V4_SOCKET, E("[::]:40001")])
    assert [local_preference_of(c.priority) for c in found] == [65000, 65535, 64999, 65534]
    # Pairing on, the reflexive candidates get theirs; the host ones keep theirs.
    observations = [
        answered("203.0.113.10:3478", "198.51.100.1:40000"),
        answered("203.0.113.20:3478", "198.51.100.1:40002"),  # disagreeing: two srflx
    ]
    assembled, _ = assemble_candidates(found, observations, sockets=[V4_SOCKET])
    assert len({c.priority for c in assembled}) == len(assembled) == 6
    assert {c.address: c.priority for c in found} == {
        c.address: c.priority for c in assembled if c.kind is CandidateKind.HOST
    }


# -- target plans -------------------------------------------------------------------------


def spec(text: str, **kwargs: object) -> ServerSpec:
    return ServerSpec(text, E(text), **kwargs)  # type: ignore[arg-type]


def test_ipv6_only_host_reaches_an_ipv4_server_through_every_prefix() -> None:
    prefixes = [NSP, Net6("2001:db8:6400::/56")]
    plan = plan_targets([spec("203.0.113.10:3478")], SOCKETS, prefixes, IPV6_ONLY)
    assert [str(t.destination) for t in plan.udp] == [
        "[2001:db8:64::cb00:710a]:3478",
        "[2001:db8:6400:cb:0:710a::]:3478",
    ]
    assert all(t.path is PathKind.NAT64 and t.socket == 1 for t in plan.udp)
    assert [t.server for t in plan.udp] == [E("203.0.113.10:3478")] * 2
    assert all(t.base == E("[2001:db8:2::2]:40000") for t in plan.udp)
    # TCP once, through the first prefix.
    assert [(s.transport, str(s.destination)) for s in plan.streams] == [
        (CandidateTransport.TCP, "[2001:db8:64::cb00:710a]:3478")
    ]
    assert plan.skipped == ()


def test_ipv6_only_without_a_prefix_cannot_reach_ipv4() -> None:
    plan = plan_targets([spec("203.0.113.10:3478")], SOCKETS, [], IPV6_ONLY)
    assert plan.udp == ()
    assert plan.skipped == (
        "203.0.113.10:3478: no IPv4 route to it; and no NAT64 prefix was found",
    )


def test_well_known_prefix_is_not_used_for_non_global_servers() -> None:
    wkp = Net6("64:ff9b::/96")
    plan = plan_targets([spec("203.0.113.10:3478")], SOCKETS, [wkp], IPV6_ONLY)
    assert plan.udp == ()
    assert "RFC 6052 §3.1" in plan.skipped[0]
    public = plan_targets([spec("8.8.8.8:3478")], SOCKETS, [wkp], IPV6_ONLY)
    assert [str(t.destination) for t in public.udp] == ["[64:ff9b::808:808]:3478"]


def test_dual_stack_asks_directly_and_through_the_nat64() -> None:
    servers = [spec("203.0.113.10:3478"), spec("[2001:db8:1::10]:3478")]
    plan = plan_targets(servers, SOCKETS, [NSP], DUAL_STACK)
    assert [(t.path, t.socket, str(t.destination)) for t in plan.udp] == [
        (PathKind.DIRECT, 0, "203.0.113.10:3478"),
        (PathKind.NAT64, 1, "[2001:db8:64::cb00:710a]:3478"),
        (PathKind.DIRECT, 1, "[2001:db8:1::10]:3478"),
    ]
    # TCP goes the direct way only.
    assert [str(s.destination) for s in plan.streams] == [
        "203.0.113.10:3478",
        "[2001:db8:1::10]:3478",
    ]


def test_a_synthesised_server_address_is_an_ipv4_server() -> None:
    # What DNS64 answers for a name of an IPv4-only server.
    plan = plan_targets([spec("[2001:db8:64::cb00:710a]:3478")], SOCKETS, [NSP], IPV6_ONLY)
    (target,) = plan.udp
    assert target.path is PathKind.NAT64
    assert target.server == E("203.0.113.10:3478")
    assert target.prefix == NSP


def test_stuns_servers_are_asked_over_tls_only() -> None:
    server = ServerSpec("stuns:203.0.113.20", E("203.0.113.20:5349"), tls=True)
    plan = plan_targets([server], SOCKETS, [], IPV4_ONLY, tcp=False)
    assert plan.udp == ()
    assert [s.transport for s in plan.streams] == [CandidateTransport.TLS]
    no_tcp = plan_targets([spec("203.0.113.10:3478")], SOCKETS, [], IPV4_ONLY, tcp=False)
    assert no_tcp.streams == ()


# -- assembly -------------------------------------------------------------------------------


def answered(
    server: str,
    mapped: str,
    base: str = "192.168.1.2:40000",
    *,
    rtt: float = 0.01,
    path: PathKind = PathKind.DIRECT,
    transport: CandidateTransport = CandidateTransport.UDP,
    prefix: ipaddress.IPv6Network | None = None,
) -> ServerObservation:
    return ServerObservation(
        server=server,
        address=E(server),
        destination=E(server),
        transport=transport,
        path=path,
        outcome=ServerOutcome.ANSWERED,
        base=E(base),
        mapped=E(mapped),
        rtt=rtt,
        transmissions=1,
        prefix=prefix,
    )


HOST = host_candidates([iface("eth0", "192.168.1.2")], SOCKETS)


def test_agreeing_servers_make_one_candidate_with_every_source() -> None:
    observations = [
        answered("203.0.113.10:3478", "198.51.100.1:40000", rtt=0.02),
        answered("203.0.113.20:3478", "198.51.100.1:40000", rtt=0.01),
    ]
    candidates, notes = assemble_candidates(HOST, observations)
    (srflx,) = [c for c in candidates if c.kind is CandidateKind.SRFLX]
    assert srflx.sources == ("203.0.113.10:3478", "203.0.113.20:3478")
    assert srflx.rtt == 0.01
    assert notes == ()
    assert find_disagreements(observations) == ()


def test_disagreeing_servers_make_a_candidate_each_and_a_disagreement() -> None:
    observations = [
        answered("203.0.113.10:3478", "198.51.100.1:40000"),
        answered("203.0.113.20:3478", "198.51.100.9:51000"),
    ]
    candidates, _ = assemble_candidates(HOST, observations)
    assert len([c for c in candidates if c.kind is CandidateKind.SRFLX]) == 2
    (disagreement,) = find_disagreements(observations)
    assert disagreement.kind.value == "address"
    assert disagreement.reason.startswith("servers disagree about the public address")


def test_a_reflexive_address_equal_to_the_host_one_is_redundant() -> None:
    observations = [answered("203.0.113.10:3478", "192.168.1.2:40000")]
    candidates, notes = assemble_candidates(HOST, observations)
    assert [c.kind for c in candidates] == [CandidateKind.HOST]
    assert notes == (
        "192.168.1.2:40000 from 203.0.113.10:3478 is a host address: no NAT on that path",
    )


def test_every_kind_in_priority_order() -> None:
    observations = [
        answered("203.0.113.10:3478", "198.51.100.1:40000"),
        answered(
            "203.0.113.10:3478",
            "198.51.100.1:41000",
            "[2001:db8:2::2]:40000",
            path=PathKind.NAT64,
            prefix=NSP,
        ),
        answered("203.0.113.10:3478", "198.51.100.1:52000", transport=CandidateTransport.TCP),
    ]
    mapping = PortMapObservation(
        PortMapStatus.MAPPED,
        external=E("198.51.100.1:40000"),
        base=E("192.168.1.2:40000"),
        gateway_external=ip("198.51.100.1"),
        protocol="pcp",
        elapsed=0.004,
    )
    candidates, _ = assemble_candidates(
        HOST, observations, mapping, [E("198.51.100.1:7000")], SOCKETS
    )
    kinds = [(c.kind, c.transport) for c in candidates]
    # The server saw the mapped endpoint: one candidate, listed as mapped.
    assert kinds == [
        (CandidateKind.HOST, CandidateTransport.UDP),
        (CandidateKind.MAPPED, CandidateTransport.UDP),
        (CandidateKind.STATIC, CandidateTransport.UDP),
        (CandidateKind.NAT64, CandidateTransport.UDP),
        (CandidateKind.SRFLX, CandidateTransport.TCP),
    ]
    assert candidates[1].sources == ("pcp", "203.0.113.10:3478")
    nat64 = next(c for c in candidates if c.kind is CandidateKind.NAT64)
    assert nat64.prefix == NSP
    assert nat64.base == E("[2001:db8:2::2]:40000")
    mapped_only = PortMapObservation(
        PortMapStatus.MAPPED, external=E("198.51.100.1:45000"), protocol="nat-pmp"
    )
    with_mapping, _ = assemble_candidates(HOST, (), mapped_only)
    assert [c.kind for c in with_mapping] == [CandidateKind.HOST, CandidateKind.MAPPED]
    assert with_mapping[1].source == "nat-pmp"


# -- verdicts -----------------------------------------------------------------------------------


MAPPED = [("s1", E("198.51.100.1:40000"))]


@pytest.mark.parametrize(
    ("local", "mapped", "gateway", "cgnat", "double"),
    [
        # No NAT: the servers see the host's own address.
        (["198.51.100.50"], [("s1", E("198.51.100.50:40000"))], None, False, False),
        # One NAT, gateway confirms: no CGNAT, no double NAT.
        (["192.168.1.2"], MAPPED, "198.51.100.1", False, False),
        # Gateway in shared space: a carrier NAT outside it.
        (["192.168.1.2"], MAPPED, "100.64.0.2", True, True),
        # Gateway private: another NAT outside, carrier or not unknown.
        (["192.168.1.2"], MAPPED, "10.0.0.2", None, True),
        # Gateway public but not what servers saw.
        (["192.168.1.2"], MAPPED, "203.0.113.77", None, True),
        # On the carrier network itself.
        (["100.64.1.5"], MAPPED, None, True, None),
        # No gateway, one address: no evidence either way.
        (["192.168.1.2"], MAPPED, None, None, None),
        # Servers see different public addresses: pooled addresses.
        (["192.168.1.2"], [*MAPPED, ("s2", E("198.51.100.9:40000"))], None, True, None),
        # Nothing answered.
        (["192.168.1.2"], [], None, None, None),
    ],
)
def test_layering_verdicts(
    local: list[str],
    mapped: list[tuple[str, Endpoint]],
    gateway: str | None,
    cgnat: bool | None,
    double: bool | None,
) -> None:
    verdict = nat_layering(
        local=[ip(a) for a in local],
        mapped=mapped,
        gateway_external=None if gateway is None else ip(gateway),
    )
    assert (verdict.cgnat, verdict.double_nat) == (cgnat, double)
    assert verdict.cgnat_reason
    assert verdict.double_nat_reason


def test_report_and_json_contract() -> None:
    observations = [
        answered("203.0.113.10:3478", "198.51.100.1:40000"),
        answered("203.0.113.20:3478", "198.51.100.1:40000"),
    ]
    nat64 = Nat64Discovery(Nat64Status.FOUND, (NSP,), "found", dns_server="2001:db8:2::1")
    report = build_report(
        host=HOST,
        observations=observations,
        nat64=nat64,
        clat=detect_clat([]),
        port_mapping=PortMapObservation(
            PortMapStatus.NO_GATEWAY, gateway_external=ip("100.64.0.2"), detail="pcp: no answer"
        ),
        sockets=SOCKETS,
        duration=0.25,
    )
    document = json.loads(json.dumps(report_to_dict(report)))
    assert document["schema"] == "natkit.candidates"
    assert document["schema_version"] == 1
    for item in document["candidates"]:
        assert {"kind", "address", "port", "family"} <= set(item)
        assert item["kind"] in {"host", "srflx", "mapped", "nat64", "static"}
        assert item["family"] in {"ipv4", "ipv6"}
    assert [(c["kind"], c["address"], c["port"]) for c in document["candidates"]] == [
        ("host", "192.168.1.2", 40000),
        ("srflx", "198.51.100.1", 40000),
    ]
    assert document["nat64"]["prefixes"] == ["2001:db8:64::/96"]
    assert document["nat64"]["status"] == "found"
    assert document["cgnat"] is True
    assert document["double_nat"] is True
    assert document["udp_blocked"] is False
    assert document["relay_only"] is False
    assert "100.64.0.2" in document["reasons"]["cgnat"]
    assert document["duration_ms"] == 250.0
    assert len(document["servers"]) == 2


def test_udp_blocked_report_says_relay_only() -> None:
    silent = ServerObservation(
        "203.0.113.10:3478",
        E("203.0.113.10:3478"),
        E("203.0.113.10:3478"),
        CandidateTransport.UDP,
        PathKind.DIRECT,
        ServerOutcome.CUT_OFF,
    )
    tcp = answered("203.0.113.10:3478", "198.51.100.1:52000", transport=CandidateTransport.TCP)
    report = build_report(
        host=HOST,
        observations=[silent, tcp],
        nat64=Nat64Discovery(Nat64Status.NOT_APPLICABLE, reason="no IPv6"),
        clat=detect_clat([]),
        port_mapping=PortMapObservation(PortMapStatus.NOT_TESTED),
        sockets=SOCKETS,
        duration=0.1,
    )
    assert report.udp_blocked is True
    assert report.relay_only
    assert "only a relay over TCP or TLS" in report.reasons["udp_blocked"]
    assert [(c.kind, c.transport) for c in report.candidates] == [
        (CandidateKind.HOST, CandidateTransport.UDP),
        (CandidateKind.SRFLX, CandidateTransport.TCP),
    ]
