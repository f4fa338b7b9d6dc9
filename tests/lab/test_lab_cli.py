"""What ``natkit lab up`` tells a user, one scenario of each kind.

The summary is built from the pooled labs (``natkit.cli.lab.lab_summary``, the
function ``up`` prints from), then rendered as text. Each kind of scenario
must show what it adds: the second site of a birthday lab, the resolver,
NAT64 prefix and IPv6 address of an IPv6 lab, miniupnpd of a ``upnp`` lab,
coturn's TLS port everywhere coturn runs. The example commands of the
IPv6 and port-mapping labs are run as printed, so they cannot rot
(``natkit`` stands for ``python -m natkit.cli`` here: the test may run without the
console script on its PATH).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from natkit.cli.lab import lab_summary, render_up
from natkit.lab import Lab

#: Keys ``up --json`` printed before these were added: never renamed or dropped.
ORIGINAL_KEYS = {
    "id", "scenario", "description", "expected", "namespaces", "client_namespace",
    "client_addresses", "public_address", "stun_servers", "loss_percent",
}  # fmt: skip


def summary_of(lab: Lab) -> dict[str, Any]:
    summary = lab_summary(lab)
    # What --json prints must survive a round trip through JSON unchanged.
    document: dict[str, Any] = json.loads(json.dumps(summary))
    assert document == summary
    return document


def run_example(lab: Lab, summary: dict[str, Any], env: dict[str, str] | None = None) -> str:
    """Run ``example_command`` as printed (with ``natkit`` as ``python -m natkit.cli``)."""
    argv = shlex.split(summary["example_command"])
    prefix = ["ip", "netns", "exec", lab.client_namespace]
    assert argv[:4] == prefix
    command = argv[4:]
    if command[0] == "natkit":
        command = [sys.executable, "-m", "natkit.cli", *command[1:]]
    result = lab.client_exec(command, timeout=60, env=env)
    assert result.returncode == 0, (summary["example_command"], result.stdout, result.stderr)
    return result.stdout


@pytest.mark.scenarios("eim-apdf")
def test_single_site_ipv4_lab_keeps_its_keys_and_shows_coturn_tls(lab: Lab) -> None:
    summary = summary_of(lab)
    assert summary.keys() >= ORIGINAL_KEYS
    assert summary["client_addresses"] == ["192.168.1.2", "192.168.1.3"]
    assert summary["public_address"] == "198.51.100.1"
    # What this lab has not is there, empty: scripts need not test for keys.
    assert summary["client_addresses_v6"] == []
    assert summary["dns_server"] is None
    assert summary["nat64_prefix"] is None
    assert summary["gateways"] == []
    [main] = summary["sites"]
    assert main["name"] == ""
    assert main["client_namespace"] == lab.client_namespace
    assert main["router_roles"] == ["nat"]
    text = render_up(summary)
    assert "site " not in text
    assert "port mapping:" not in text
    assert "resolver:" not in text
    if "coturn" not in lab.stun_servers:
        pytest.skip("coturn is not among the pooled lab's servers (NATKIT_LAB_SERVERS)")
    coturn = summary["stun_servers"]["coturn"]
    assert coturn["primary"] == "203.0.113.20:3478"
    assert coturn["tls"] == "203.0.113.20:5349"
    assert coturn["ipv6"] is None
    assert summary["tls_certificate"] == str(lab.tls_certificate)
    assert Path(summary["tls_certificate"]).exists()
    assert "tls 203.0.113.20:5349" in text
    assert f"tls certificate (CA file): {lab.tls_certificate}" in text
    assert summary["example_command"] == (
        f"ip netns exec {lab.client_namespace} natkit classify"
        f" -s {next(iter(summary['stun_servers'].values()))['primary']}"
    )
    # Printed, not run: test_classify_lab runs classify against the lab's servers.
    assert f"  for example:      {summary['example_command']}" in text


@pytest.mark.scenarios("birthday-one-hard")
def test_two_site_lab_shows_the_second_site(lab: Lab) -> None:
    summary = summary_of(lab)
    main, other = summary["sites"]
    assert main["name"] == ""
    assert main["public_address"] == summary["public_address"] == "198.51.100.1"
    assert other == {
        "name": "b",
        "client_role": "client-b",
        "client_namespace": lab.namespace("client-b"),
        "router_roles": ["nat-b"],
        "router_namespaces": [lab.namespace("nat-b")],
        "client_addresses": ["10.0.2.2", "10.0.2.3"],
        "public_address": "198.51.100.2",
        "lan_peers": [],
    }
    assert (summary["rendezvous"], summary["node_keys"], summary["connect_commands"]) == (
        None,
        {},
        [],
    )
    text = render_up(summary)
    assert (
        "site b: client-b 10.0.2.2, 10.0.2.3 seen as 198.51.100.2; routers nat-b;"
        f" run there: ip netns exec {lab.namespace('client-b')} COMMAND"
    ) in text.splitlines()


@pytest.mark.scenarios("nat64", "dual-stack")
def test_ipv6_lab_shows_resolver_prefix_and_client_ipv6(lab: Lab) -> None:
    summary = summary_of(lab)
    assert lab.dns_server is not None
    assert summary["dns_server"] == str(lab.dns_server) == "[2001:db8:2::1]:53"
    assert summary["client_addresses_v6"] == ["2001:db8:2::2"]
    text = render_up(summary)
    assert "client IPv6: 2001:db8:2::2" in text.splitlines()
    if lab.scenario.name == "nat64":
        assert summary["nat64_prefix"] == "2001:db8:64::/96"
        assert summary["client_addresses"] == []
        assert "resolver: [2001:db8:2::1]:53 (DNS64)" in text.splitlines()
        assert "nat64 prefix: 2001:db8:64::/96" in text.splitlines()
        assert "client: IPv6-only reaches IPv4 through the NAT64 as 198.51.100.1" in text
    else:
        assert summary["nat64_prefix"] is None
        assert summary["client_addresses"] == ["192.168.1.2", "192.168.1.3"]
        assert "resolver: [2001:db8:2::1]:53 (no DNS64)" in text.splitlines()
        assert "nat64 prefix" not in text
    if "coturn" in lab.stun_servers:
        assert summary["stun_servers"]["coturn"]["ipv6"] == "[2001:db8:1::20]:3478"
        assert "ipv6 [2001:db8:1::20]:3478" in text
    if not lab.stun_servers:
        pytest.skip("the pooled lab runs no STUN server (NATKIT_LAB_SERVERS)")
    first = next(iter(summary["stun_servers"].values()))["primary"]
    assert summary["example_command"] == (
        f"ip netns exec {lab.client_namespace} natkit candidates -s {first} --dns 2001:db8:2::1"
    )
    report = run_example(lab, summary)
    if lab.scenario.name == "nat64":
        assert "nat64" in report
        assert "2001:db8:64::/96" in report


@pytest.mark.scenarios("upnp")
def test_upnp_lab_shows_the_port_mapping_gateway(lab: Lab, tmp_path: Path) -> None:
    summary = summary_of(lab)
    assert summary["gateways"] == [
        {
            "role": "nat",
            "namespace": lab.namespace("nat"),
            "address": "192.168.1.1",
            "pcp_nat_pmp": "192.168.1.1:5351",
            "upnp_description": "http://192.168.1.1:5000/rootDesc.xml",
            "upnp_igd_version": 2,
        }
    ]
    text = render_up(summary)
    assert (
        "port mapping: nat 192.168.1.1: PCP and NAT-PMP 192.168.1.1:5351,"
        " UPnP IGD:2 http://192.168.1.1:5000/rootDesc.xml"
    ) in text.splitlines()
    assert summary["example_command"] == (
        f"ip netns exec {lab.client_namespace} natkit portmap --once"
    )
    # The example maps and releases at once; its journal goes to tmp_path.
    env = {**os.environ, "NATKIT_PORTMAP_JOURNAL": str(tmp_path / "journal.json")}
    output = run_example(lab, summary, env)
    assert "mapped    198.51.100.1:" in output
    assert lab.port_mappings() == ()
