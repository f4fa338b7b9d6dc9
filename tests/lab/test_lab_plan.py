"""The lab's pure parts: specs, rulesets, plans, state records, CLI parsing.

No root needed: nothing here touches the system.
"""

from __future__ import annotations

import ipaddress
import json
import os

import pytest

from cli.main import build_parser
from cli.main import main as cli_main
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
)
from natkit.lab.loss import loss_threshold, render_loss
from natkit.lab.nat import NatPlacement, dynamic_objects, render_ruleset
from natkit.lab.plan import HostKind, plan_lab
from natkit.lab.servers import (
    ServerKind,
    binding_request,
    is_binding_success,
    server_addresses,
)

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
                    address = ipaddress.IPv4Address(word)
                except ValueError:
                    continue
                assert any(address in net for net in ALLOWED), (host.role, line)
    assert plan.client_link[0].namespace == plan.namespaces["client"]
    assert len(plan.routers) == len(SCENARIOS[name].nats)
    assert all(r.ruleset for r in plan.routers)


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
