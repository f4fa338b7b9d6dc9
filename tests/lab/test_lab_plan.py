"""The lab's pure parts: specs, rulesets, plans, state records, CLI parsing.

No root needed: nothing here touches the system.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

import pytest

from natkit.birthday.ports import PortRange
from natkit.cli.main import build_parser
from natkit.cli.main import main as cli_main
from natkit.lab import (
    SCENARIOS,
    Classification,
    FilteringBehavior,
    LabRecord,
    MappingBehavior,
    NatSpec,
    PortAllocation,
    UnknownScenarioError,
    get_scenario,
    ipv6,
)
from natkit.lab.ipv6 import Ipv6GatewayPlan, Ipv6Spec
from natkit.lab.loss import loss_threshold, render_loss
from natkit.lab.nat import KERNEL_RANDOM_PORTS, NatPlacement, dynamic_objects, render_ruleset
from natkit.lab.plan import NAMESPACE_RE, HostKind, plan_lab
from natkit.lab.scenarios import BOTH_HARD_PORTS, Scenario, Site
from natkit.lab.servers import (
    ServerKind,
    binding_request,
    is_binding_success,
    server_addresses,
    server_argv,
)
from natkit.lab.wireguard_quick import interface_name, render_config

EIM, ADM, APDM = MappingBehavior.EIM, MappingBehavior.ADM, MappingBehavior.APDM
EIF, ADF, APDF = FilteringBehavior.EIF, FilteringBehavior.ADF, FilteringBehavior.APDF
PLACEMENT = NatPlacement(
    ipaddress.IPv4Address("198.51.100.1"), ipaddress.IPv4Network("192.168.1.0/24")
)

#: Address space the lab may use (see the task's network rules).
ALLOWED = [
    ipaddress.IPv4Network(n)
    for n in ("203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24", "100.64.0.0/10")
] + [ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
#: IPv6 the lab may use: documentation space only (RFC 3849).
LAB_V6 = ipaddress.IPv6Network("2001:db8::/32")


def test_scenario_names_are_the_public_contract() -> None:
    assert list(SCENARIOS) == [
        "no-nat",
        "eim-eif",
        "eim-adf",
        "eim-apdf",
        "eim-apdf-hairpin",
        "eim-random-ports",
        "adm-apdf",
        "apdm-apdf",
        "apdm-sequential",
        "cgnat",
        "udp-blocked",
        "upnp",
        "upnp-igd1",
        "birthday-one-hard",
        "birthday-both-hard",
        "connect-eim",
        "connect-adf-apdm",
        "connect-cgnat",
        "connect-lan",
        "connect-apdm",
        "connect-udp-blocked",
        "connect-birthday",
        "connect-upnp",
        "wireguard-pair",
        "wireguard-eim-apdm",
        "wireguard-cgnat",
        "wireguard-udp-blocked",
        "wireguard-birthday",
        "wireguard-mesh",
        "dual-stack",
        "nat64",
        "nat64-56",
    ]
    for scenario in SCENARIOS.values():
        assert scenario.description


def test_unknown_scenario() -> None:
    with pytest.raises(UnknownScenarioError, match="known: no-nat, eim-eif"):
        get_scenario("full-cone")


def expectation_from_specs(nats: tuple[NatSpec, ...]) -> Classification:
    """What a chain of NATs should classify as (for the shapes the lab builds)."""
    if not nats:
        return Classification(EIM, EIF, None, PortAllocation.PRESERVING, False, False)
    if any(n.block_udp for n in nats):
        return Classification.udp_blocked_result(behind_nat=True)
    inner = nats[-1]
    # Every multi-NAT scenario stacks identical masquerades: the inner one decides.
    assert all(n == inner for n in nats)
    return Classification(
        inner.mapping, inner.filtering, inner.hairpin, inner.allocation, False, True
    )


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_expectation_follows_from_the_specs(name: str) -> None:
    scenario = SCENARIOS[name]
    assert scenario.expected == expectation_from_specs(scenario.nats)


def test_classification_json_and_mismatches() -> None:
    expected = get_scenario("eim-apdf-hairpin").expected
    report = expected.as_json()
    assert report == {
        "mapping": "EIM",
        "filtering": "APDF",
        "hairpin": True,
        "port_allocation": "preserving",
        "udp_blocked": False,
        "behind_nat": True,
    }
    assert json.loads(json.dumps(report)) == report
    assert expected.mismatches({**report, "extra": 1}) == []
    worse = {**report, "filtering": "ADF"}
    del worse["hairpin"]
    assert expected.mismatches(worse) == [
        "filtering: got 'ADF', expected 'APDF'",
        "hairpin: missing, expected True",
    ]
    blocked = get_scenario("udp-blocked").expected.as_json()
    assert blocked == {
        "mapping": "unknown",
        "filtering": "unknown",
        "hairpin": None,
        "port_allocation": "unknown",
        "udp_blocked": True,
        "behind_nat": True,
    }


# ------------------------------------------------------------------ NatSpec


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mapping": APDM, "allocation": PortAllocation.PRESERVING}, "supports allocation"),
        ({"mapping": ADM, "allocation": PortAllocation.SEQUENTIAL}, "supports allocation"),
        ({"mapping": EIM, "allocation": PortAllocation.SEQUENTIAL}, "supports allocation"),
        ({"mapping": MappingBehavior.UNKNOWN}, "cannot build"),
        ({"filtering": FilteringBehavior.UNKNOWN}, "cannot build"),
        (
            {"mapping": APDM, "allocation": PortAllocation.RANDOM, "hairpin": True},
            "only emulated for EIM",
        ),
        ({"udp_timeout_s": 0}, "must be positive"),
        ({"ports": PortRange(40000, 40999)}, "only built for random"),
        (
            {"mapping": ADM, "allocation": PortAllocation.RANDOM, "ports": PortRange(1, 9)},
            "only built for random",
        ),
    ],
)
def test_impossible_specs_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NatSpec(**kwargs)  # type: ignore[arg-type]


def test_plain_masquerade_ruleset() -> None:
    assert render_ruleset(NatSpec(), PLACEMENT) == (
        "table ip nk_nat\n"
        "delete table ip nk_nat\n"
        "table ip nk_nat {\n"
        "\tchain postrouting {\n"
        "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
        '\t\toifname "nk-wan" masquerade\n'
        "\t}\n"
        "}\n"
    )


def test_eif_ruleset_records_and_dnats() -> None:
    text = render_ruleset(NatSpec(EIM, EIF), PLACEMENT)
    assert "map ext2int { type inet_service : ipv4_addr . inet_service;" in text
    assert "type filter hook postrouting priority srcnat + 10" in text
    assert "update @ext2int { ct reply proto-dst : ct original ip saddr" in text
    assert 'iifname "nk-wan" meta l4proto udp dnat ip to udp dport map @ext2int' in text
    assert "@peers" not in text


def test_adf_ruleset_checks_peers() -> None:
    text = render_ruleset(NatSpec(EIM, ADF), PLACEMENT)
    assert "update @peers { ct reply proto-dst . ip daddr }" in text
    assert "udp dport . ip saddr @peers dnat ip to udp dport map @ext2int" in text
    assert dynamic_objects(NatSpec(EIM, ADF)) == ["ext2int", "peers"]


def test_adm_ruleset() -> None:
    spec = NatSpec(ADM, APDF, PortAllocation.RANDOM)
    lines = render_ruleset(spec, PLACEMENT).splitlines()
    snat = [line.strip() for line in lines if "snat" in line or "masquerade" in line]
    assert snat == [
        'oifname "nk-wan" meta l4proto udp snat ip to ip saddr . udp sport . ip daddr map @adm',
        'oifname "nk-wan" masquerade fully-random',
    ]
    assert dynamic_objects(spec) == ["adm"]


def test_hairpin_ruleset_uses_placement() -> None:
    text = render_ruleset(NatSpec(hairpin=True), PLACEMENT)
    assert 'iifname "nk-lan" ip daddr 198.51.100.1 meta l4proto udp dnat' in text
    assert 'oifname "nk-lan" ct status dnat ip saddr 192.168.1.0/24 snat ip to 198.51.100.1' in text
    assert "update @ext2int" in text  # the map hairpinning looks up is kept


def test_sequential_ruleset_maps_the_counter() -> None:
    text = render_ruleset(NatSpec(APDM, APDF, PortAllocation.SEQUENTIAL), PLACEMENT)
    assert "snat ip to 198.51.100.1 : numgen inc mod 512 map { 0 : 40000, 1 : 40001," in text
    assert "511 : 40511 }" in text


def test_random_ports_and_block_udp() -> None:
    text = render_ruleset(NatSpec(allocation=PortAllocation.RANDOM), PLACEMENT)
    assert 'oifname "nk-wan" meta l4proto udp masquerade to :20000-29999' in text
    blocked = render_ruleset(NatSpec(block_udp=True), PLACEMENT)
    assert "type filter hook forward priority filter; policy accept;" in blocked
    assert "meta l4proto udp drop" in blocked


def test_port_range_and_input_firewall_rulesets() -> None:
    spec = NatSpec(APDM, APDF, PortAllocation.RANDOM, ports=BOTH_HARD_PORTS, drop_unsolicited=True)
    assert render_ruleset(spec, PLACEMENT) == (
        "table ip nk_nat\n"
        "delete table ip nk_nat\n"
        "table ip nk_nat {\n"
        "\tchain postrouting {\n"
        "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
        '\t\toifname "nk-wan" meta l4proto udp masquerade to :40000-40999 fully-random\n'
        '\t\toifname "nk-wan" masquerade fully-random\n'
        "\t}\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority filter; policy accept;\n"
        '\t\tiifname "nk-wan" ct state new drop\n'
        "\t}\n"
        "}\n"
    )
    assert spec.udp_ports == BOTH_HARD_PORTS
    eim = NatSpec(allocation=PortAllocation.RANDOM, ports=PortRange(30000, 30099))
    assert 'oifname "nk-wan" meta l4proto udp masquerade to :30000-30099' in render_ruleset(
        eim, PLACEMENT
    )
    assert NatSpec(APDM, APDF, PortAllocation.RANDOM).udp_ports == KERNEL_RANDOM_PORTS
    assert NatSpec(allocation=PortAllocation.RANDOM).udp_ports == PortRange(20000, 29999)
    assert NatSpec().udp_ports is None
    assert NatSpec(APDM, APDF, PortAllocation.SEQUENTIAL).udp_ports is None


# -------------------------------------------------------------------- loss


def test_loss_rules() -> None:
    assert loss_threshold(12.5) == 1250
    assert loss_threshold(100) == 10000
    with pytest.raises(ValueError, match="between 0 and 100"):
        loss_threshold(-1)
    assert render_loss("nk-lan", 0) == "table netdev nk_loss\ndelete table netdev nk_loss\n"
    text = render_loss("nk-lan", 30)
    assert 'type filter hook ingress device "nk-lan" priority 0;' in text
    assert "numgen random mod 10000 < 3000 drop" in text


# -------------------------------------------------------------------- plans


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_plan_names_and_addresses(name: str) -> None:
    plan = plan_lab(SCENARIOS[name], "0a1b2")
    names = [h.namespace for h in plan.hosts]
    assert len(set(names)) == len(names)
    assert all(n.startswith("nk-0a1b2-") for n in names)
    for veth in plan.veths:
        for ifname in (veth.name_a, veth.name_b):
            assert ifname.startswith("nk-")
            assert len(ifname) <= 15  # IFNAMSIZ - 1
        assert veth.namespace_a in names
        assert veth.namespace_b in names
        assert veth.namespace_a != veth.namespace_b
    for host in plan.hosts:
        for line in host.ip_commands:
            for word in line.replace("/", " ").split():
                try:
                    address = ipaddress.ip_address(word)
                except ValueError:
                    continue
                if address.version == 6:
                    assert address in LAB_V6 or address.is_unspecified, (host.role, line)
                    continue
                assert any(address in net for net in ALLOWED), (host.role, line)
    assert plan.client_link[0].namespace == plan.namespaces["client"]
    assert len(plan.routers) == len(SCENARIOS[name].all_nats)
    assert all(r.ruleset for r in plan.routers)
    assert [s.name for s in plan.sites] == ["", *(s.name for s in SCENARIOS[name].sites)]
    assert len({s.public_address for s in plan.sites}) == len(plan.sites)
    assert all(NAMESPACE_RE.match(n) for n in names)


def test_cgnat_plan() -> None:
    plan = plan_lab(get_scenario("cgnat"), "abcde")
    assert [h.role for h in plan.hosts] == [
        "inet", "stun", "coturn", "peer", "cgn", "nat", "client",
    ]  # fmt: skip
    cgn, nat = plan.host("cgn"), plan.host("nat")
    assert [str(a) for a in cgn.addresses] == ["198.51.100.1", "100.64.0.1"]
    assert [str(a) for a in nat.addresses] == ["100.64.0.2", "192.168.1.1"]
    assert "route add default via 100.64.0.1 dev nk-wan" in nat.ip_commands
    assert 'oifname "nk-wan" masquerade' in (nat.ruleset or "")
    assert nat.ruleset == cgn.ruleset  # identical specs, and no address in the rules
    assert str(plan.public_address) == "198.51.100.1"
    assert plan.host("inet").kind is HostKind.BRIDGE
    assert ("net.bridge.bridge-nf-call-iptables", "0") in plan.host("inet").sysctls
    assert ("net.ipv4.ip_forward", "1") in cgn.sysctls
    assert [v.ip_command() for v in plan.veths][-2:] == [
        "link add nk-wan netns nk-abcde-nat type veth peer name nk-lan netns nk-abcde-cgn",
        "link add nk-eth0 netns nk-abcde-client type veth peer name nk-lan netns nk-abcde-nat",
    ]


def test_no_nat_plan_puts_client_on_the_bridge() -> None:
    plan = plan_lab(get_scenario("no-nat"), "abcde")
    client = plan.host("client")
    assert [str(a) for a in client.addresses] == ["198.51.100.50"]
    assert "link set nk-client master nk-br" in plan.host("inet").ip_commands
    assert plan.client_link[1].namespace == "nk-abcde-inet"
    assert plan.routers == ()


def test_two_site_plan() -> None:
    plan = plan_lab(get_scenario("birthday-one-hard"), "abcde")
    assert [h.role for h in plan.hosts] == [
        "inet", "stun", "coturn", "peer", "nat", "client", "nat-b", "client-b",
    ]  # fmt: skip
    nat, nat_b, client_b = plan.host("nat"), plan.host("nat-b"), plan.host("client-b")
    assert [str(a) for a in nat_b.addresses] == ["198.51.100.2", "10.0.2.1"]
    assert [str(a) for a in client_b.addresses] == ["10.0.2.2", "10.0.2.3"]
    assert "route add default via 10.0.2.1 dev nk-eth0" in client_b.ip_commands
    assert (nat.inside_role, nat_b.inside_role) == ("client", "client-b")
    assert "link set nk-nat-b master nk-br" in plan.host("inet").ip_commands
    assert 'oifname "nk-wan" masquerade fully-random' in (nat.ruleset or "")
    assert 'oifname "nk-wan" masquerade\n' in (nat_b.ruleset or "")
    assert 'iifname "nk-wan" ct state new drop' in (nat_b.ruleset or "")
    main, b = plan.site(), plan.site("b")
    assert (main.client_role, main.router_roles, str(main.public_address)) == (
        "client", ("nat",), "198.51.100.1",
    )  # fmt: skip
    assert (b.client_role, b.router_roles, str(b.public_address)) == (
        "client-b", ("nat-b",), "198.51.100.2",
    )  # fmt: skip
    assert b.client_link[1].namespace == "nk-abcde-nat-b"
    assert plan.public_address == main.public_address
    with pytest.raises(KeyError, match="no site 'c'"):
        plan.site("c")


def test_extra_sites_reuse_the_site_builder() -> None:
    """A second extra site and chains in extra sites come from the same code."""
    masq = NatSpec()
    scenario = Scenario(
        "three-sites",
        "test only",
        (masq,),
        get_scenario("eim-apdf").expected,
        sites=(Site("b", (masq, masq)), Site("c", ())),
    )
    plan = plan_lab(scenario, "abcde")
    assert [h.role for h in plan.hosts][4:] == [
        "nat", "client", "cgn-b", "nat-b", "client-b", "client-c",
    ]  # fmt: skip
    assert [str(a) for a in plan.host("cgn-b").addresses] == ["198.51.100.2", "100.64.0.1"]
    assert [str(a) for a in plan.host("nat-b").addresses] == ["100.64.0.2", "10.0.2.1"]
    assert plan.host("cgn-b").inside_role == "nat-b"
    assert [str(a) for a in plan.host("client-c").addresses] == ["198.51.100.52"]
    assert str(plan.site("c").public_address) == "198.51.100.52"
    assert "link set nk-client-c master nk-br" in plan.host("inet").ip_commands


@pytest.mark.parametrize(
    ("sites", "message"),
    [
        ((Site("b", ()), Site("b", ())), "names a site twice"),
        (tuple(Site(f"s{i}", ()) for i in range(9)), "more than 8"),
    ],
)
def test_bad_sites_are_refused(sites: tuple[Site, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Scenario("x", "x", (), get_scenario("no-nat").expected, sites=sites)
    with pytest.raises(ValueError, match="site name"):
        Site("B-2", ())


def test_nat64_plan_has_no_ipv4_on_the_client() -> None:
    plan = plan_lab(get_scenario("nat64"), "abcde")
    client, nat = plan.host("client"), plan.host("nat")
    assert client.ip_commands == (
        "link set lo up",
        "link set nk-eth0 up",
        "address add 2001:db8:2::2/64 dev nk-eth0",
        "route add ::/0 via 2001:db8:2::1 dev nk-eth0",
    )
    assert client.addresses == ()
    assert plan.site().client_addresses == ()
    assert [str(a) for a in nat.addresses_v6] == ["2001:db8:1::1", "2001:db8:2::1"]
    assert ("net.ipv6.conf.all.forwarding", "1") in nat.sysctls
    assert nat.ipv6 is not None
    assert str(nat.ipv6.spec.nat64_prefix) == "2001:db8:64::/96"
    assert str(nat.ipv6.dns_server) == "[2001:db8:2::1]:53"
    assert plan.ipv6_gateways == (nat,)
    stun = plan.host("stun")
    assert "route add 2001:db8:2::/64 via 2001:db8:1::1 dev nk-eth0" in stun.ip_commands
    assert [str(a) for a in stun.addresses_v6] == ["2001:db8:1::10", "2001:db8:1::11"]


def test_dual_stack_plan_keeps_ipv4() -> None:
    plan = plan_lab(get_scenario("dual-stack"), "abcde")
    client = plan.host("client")
    assert "route add default via 192.168.1.1 dev nk-eth0" in client.ip_commands
    assert "route add ::/0 via 2001:db8:2::1 dev nk-eth0" in client.ip_commands
    assert [str(a) for a in client.addresses] == ["192.168.1.2", "192.168.1.3"]
    nat = plan.host("nat")
    assert nat.ipv6 is not None
    assert nat.ipv6.spec.nat64_prefix is None
    assert not get_scenario("dual-stack").generic
    assert get_scenario("eim-apdf").generic


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("2001:db8:6000::/36", "RFC 6052"),
        ("64:ff9b::/96", "tayga drops"),
        ("2001:db8:0:0:100::/96", "bits 64-71"),
        ("2001:db8:2::/96", "overlaps"),
    ],
)
def test_bad_nat64_prefixes_are_refused(prefix: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Ipv6Spec(ipaddress.IPv6Network(prefix))


def test_ipv6_needs_one_nat_and_one_site() -> None:
    expected = get_scenario("cgnat").expected
    with pytest.raises(ValueError, match="one NAT and one site"):
        Scenario("x", "x", get_scenario("cgnat").nats, expected, ipv6=Ipv6Spec())


def test_unbound_and_tayga_configs(tmp_path: Path) -> None:
    prefix = ipaddress.IPv6Network("2001:db8:6400::/56")
    gateway = Ipv6GatewayPlan(Ipv6Spec(prefix), ipaddress.IPv6Address("2001:db8:2::1"))
    text = ipv6.render_unbound_config(gateway, tmp_path, "nat")
    assert 'module-config: "dns64 iterator"' in text
    assert "dns64-prefix: 2001:db8:6400::/56" in text
    assert 'name: "ipv4only.arpa"' in text
    assert 'name: "natkit.test"' in text
    assert 'local-zone: "test." nodefault' in text
    assert "for-upstream: yes" in text
    assert "interface: 2001:db8:2::1" in text
    plain = ipv6.render_unbound_config(
        Ipv6GatewayPlan(Ipv6Spec(), gateway.resolver), tmp_path, "nat"
    )
    assert 'module-config: "iterator"' in plain
    assert "dns64-prefix" not in plain
    zone = ipv6.render_ipv4only_zone()
    assert "@ 3600 IN A 192.0.0.170" in zone
    assert "@ 3600 IN A 192.0.0.171" in zone
    tayga = ipv6.render_tayga_config(prefix, tmp_path, "nat")
    assert "prefix 2001:db8:6400::/56" in tayga
    assert "dynamic-pool 192.168.255.0/24" in tayga
    assert f"data-dir {tmp_path}/tayga-nat" in tayga
    assert ipv6.tayga_lines(prefix)[-1] == "route add 2001:db8:6400::/56 dev nk-nat64"
    names = ipv6.render_names_zone(
        {"stun": (ipaddress.ip_address("203.0.113.10"), ipaddress.ip_address("2001:db8:1::10"))}
    )
    assert "stun 3600 IN A 203.0.113.10" in names
    assert "stun 3600 IN AAAA 2001:db8:1::10" in names


def test_lab_synthesis_matches_rfc6052_examples() -> None:
    # RFC 6052 §2.4: 192.0.2.33 under each length (by hand, as the lab does it).
    v4 = ipaddress.IPv4Address("192.0.2.33")
    for prefix, expected in [
        ("2001:db8::/32", "2001:db8:c000:221::"),
        ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
        ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
        ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
        ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
        ("2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"),
    ]:
        assert ipv6.synthesize(ipaddress.IPv6Network(prefix), v4) == ipaddress.IPv6Address(expected)


def test_dns_bytes_by_hand() -> None:
    query = ipv6.aaaa_query("ipv4only.arpa", 0x1234)
    assert query[:2] == b"\x12\x34"
    assert query.endswith(b"\x08ipv4only\x04arpa\x00\x00\x1c\x00\x01")
    # The same question back, with one AAAA answer (compressed name).
    answer = (
        b"\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00"
        + query[12:]
        + b"\xc0\x0c\x00\x1c\x00\x01\x00\x00\x00\x3c\x00\x10"
        + ipaddress.IPv6Address("2001:db8:64::c000:aa").packed
    )
    assert ipv6.aaaa_answers(answer, 0x1234) == [ipaddress.IPv6Address("2001:db8:64::c000:aa")]
    assert ipv6.aaaa_answers(answer, 0x4321) is None
    assert ipv6.aaaa_answers(answer[:20], 0x1234) is None
    nxdomain = b"\x12\x34\x81\x83" + answer[4:]
    assert ipv6.aaaa_answers(nxdomain, 0x1234) is None


def test_coturn_serves_tls_and_ipv6(tmp_path: Path) -> None:
    argv = server_argv(ServerKind.COTURN, tmp_path, ipv6=True)
    assert "--no-tls" not in argv
    assert argv[argv.index("--cert") + 1] == str(tmp_path / "coturn-cert.pem")
    assert "2001:db8:1::20" in argv
    assert "2001:db8:1::20" not in server_argv(ServerKind.COTURN, tmp_path)
    where = server_addresses(ServerKind.COTURN, ipv6=True)
    assert str(where.ipv6) == "[2001:db8:1::20]:3478"
    assert str(where.tls) == "203.0.113.20:5349"
    assert server_addresses(ServerKind.NATKIT, ipv6=True).ipv6 is None


def test_plan_refuses_bad_run_id() -> None:
    with pytest.raises(ValueError, match="5 lowercase hex"):
        plan_lab(get_scenario("no-nat"), "ABCDE")


# ---------------------------------------------------------- servers, state


def test_server_addresses() -> None:
    natkit = server_addresses(ServerKind.NATKIT)
    assert (str(natkit.primary), str(natkit.alternate)) == (
        "203.0.113.10:3478",
        "203.0.113.11:3479",
    )
    coturn = server_addresses(ServerKind.COTURN)
    assert [str(e) for e in coturn.all()] == [
        "203.0.113.20:3478",
        "203.0.113.20:3479",
        "203.0.113.21:3478",
        "203.0.113.21:3479",
    ]


def test_binding_request_bytes() -> None:
    tid = bytes(range(12))
    request = binding_request(tid)
    assert request == bytes.fromhex("0001 0000 2112a442") + tid
    answer = bytes.fromhex("0101 0000 2112a442") + tid
    assert is_binding_success(answer, tid)
    assert not is_binding_success(answer, bytes(12))


def test_record_round_trip() -> None:
    record = LabRecord(
        run_id="abcde",
        scenario="cgnat",
        namespaces=("nk-abcde-inet", "nk-abcde-client"),
        servers=("coturn",),
        owner_pid=os.getpid(),
        owner_start=None,
        created=1.5,
        pids={"coturn": 42},
        loss_percent=2.5,
    )
    assert LabRecord.from_json(record.to_json()) == record
    assert record.stale  # owner start unknown: cannot be proven alive
    assert not LabRecord.from_json(
        record.to_json().replace('"detached": false', '"detached": true')
    ).stale


# --------------------------------------------------------------------- CLI


def test_cli_parses_up() -> None:
    args = build_parser(["lab"]).parse_args(["lab", "up", "eim-eif", "--loss", "2.5", "--json"])
    assert (args.scenario, args.loss, args.json, args.no_coturn) == ("eim-eif", 2.5, True, False)


@pytest.mark.parametrize("loss", ["-1", "101", "lots"])
def test_cli_rejects_bad_loss(loss: str) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser(["lab"]).parse_args(["lab", "up", "eim-eif", "--loss", loss])
    assert exc.value.code == 64


def test_cli_list_works_without_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli_main(["lab", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in data["scenarios"]] == list(SCENARIOS)
    assert data["scenarios"][0]["expected"]["behind_nat"] is False


def test_lan_peers_share_the_clients_lan_through_a_bridge_on_the_router() -> None:
    plan = plan_lab(SCENARIOS["connect-lan"], "0a1b2")
    (site,) = plan.sites
    assert site.lan_peers == (("client2", ipaddress.ip_address("192.168.1.4")),)
    router = plan.host("nat")
    # The LAN is a bridge keeping the name the ruleset matches on.
    assert router.ip_commands[1] == "link add nk-lan type bridge"
    assert "link set nk-lan0 master nk-lan" in router.ip_commands
    assert "link set nk-lan1 master nk-lan" in router.ip_commands
    assert ("net.bridge.bridge-nf-call-iptables", "0") in router.sysctls
    ends = {(v.namespace_a, v.name_b) for v in plan.veths if v.namespace_b == router.namespace}
    assert ends == {(plan.namespaces["client"], "nk-lan0"), (plan.namespaces["client2"], "nk-lan1")}
    assert plan.client_link[1].interface == "nk-lan0"
    client2 = plan.host("client2")
    assert "route add default via 192.168.1.1 dev nk-eth0" in client2.ip_commands
    # Without LAN peers the router's LAN stays one veth end.
    assert not any(
        "bridge" in line
        for line in plan_lab(SCENARIOS["eim-apdf"], "0a1b2").host("nat").ip_commands
    )


def test_connect_scenarios_are_not_generic() -> None:
    connect = [s for s in SCENARIOS.values() if s.name.startswith("connect-")]
    assert len(connect) == 8
    assert all(s.rendezvous and not s.generic for s in connect)
    wireguard = [s for s in SCENARIOS.values() if s.name.startswith("wireguard-")]
    assert all(s.wireguard and s.rendezvous and s.sites and not s.generic for s in wireguard)
    with pytest.raises(ValueError, match="WireGuard needs a rendezvous and sites"):
        Scenario("x", "x", (), SCENARIOS["no-nat"].expected, wireguard=True)


def test_the_wireguard_quick_start_file_has_peers_and_no_endpoint() -> None:
    text = render_config("PRIVATE=", 1, [("PEER_A=", 0), ("PEER_C=", 2)])
    assert text == (
        "[Interface]\nPrivateKey = PRIVATE=\nListenPort = 51820\nAddress = 10.200.0.2/24\n"
        "\n[Peer]\nPublicKey = PEER_A=\nAllowedIPs = 10.200.0.1/32\n"
        "\n[Peer]\nPublicKey = PEER_C=\nAllowedIPs = 10.200.0.3/32\n"
    )
    assert interface_name("0a1b2", 2) == "wg0a1b2c"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nats": (), "lan_peers": 1}, "LAN peers need a NAT"),
        ({"lan_peers": 9}, "LAN peers"),
    ],
)
def test_bad_lan_peers_are_refused(kwargs: dict[str, object], message: str) -> None:
    values: dict[str, object] = {
        "name": "x",
        "description": "x",
        "nats": (NatSpec(MappingBehavior.EIM, FilteringBehavior.APDF, PortAllocation.PRESERVING),),
        "expected": SCENARIOS["eim-apdf"].expected,
    }
    values.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Scenario(**values)  # type: ignore[arg-type]
