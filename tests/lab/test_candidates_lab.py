"""``natkit candidates`` against the real kernel, tayga, unbound, coturn and miniupnpd.

Grouped by scenario:

* ``nat64``, ``nat64-56``: an IPv6-only client; the prefix (/96 and /56) is
  found through the router's unbound DNS64, IPv4 servers given as addresses
  or as names are reached through tayga by natkit itself, the NAT64
  candidate is the router's public IPv4 address, and an IPv4 peer reaches
  the client's IPv6 socket at it (the ground truth);
* ``dual-stack``: both families' host candidates, the IPv4 reflexive one,
  and a real resolver without DNS64 saying so;
* ``cgnat``: behind two NATs the reflexive address is the outer one;
* ``apdm-apdf``: servers that see different ports are reported;
* ``udp-blocked``: TCP and TLS (coturn, per-lab certificate) still give
  reflexive addresses, and the report says only a relay can work;
* ``upnp``: the mapped candidate from miniupnpd, and the single-NAT verdict
  from the gateway's external address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from natkit.aio.candidates import GatherOptions, gather_candidates
from natkit.endpoint import Endpoint
from natkit.gather.candidates import CandidateKind
from natkit.lab import Lab
from natkit.nat64 import PRIMARY_WKA, SECONDARY_WKA, synthesize

pytestmark = pytest.mark.lab

CLI = [sys.executable, "-m", "natkit.cli.candidates"]


def candidates(lab: Lab, *argv: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``natkit candidates --json`` in the client namespace (exit 0 required)."""
    result = lab.client_exec([*CLI, "--json", *argv], timeout=60, env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def of_kind(document: dict[str, Any], kind: str, transport: str = "udp") -> list[dict[str, Any]]:
    return [c for c in document["candidates"] if c["kind"] == kind and c["transport"] == transport]


def endpoints(items: list[dict[str, Any]]) -> set[str]:
    return {str(Endpoint.of(c["address"], c["port"])) for c in items}


def servers(lab: Lab) -> list[str]:
    """Every lab STUN server's primary address, as ``--server`` flags."""
    return [f"--server={s.primary}" for s in lab.stun_servers.values()]


def dns(lab: Lab) -> list[str]:
    assert lab.dns_server is not None
    return ["--dns", str(lab.dns_server)]


# -- NAT64 --------------------------------------------------------------------------------


@pytest.mark.scenarios("nat64", "nat64-56")
def test_prefix_is_found_for_each_length(lab: Lab) -> None:
    prefix = lab.nat64_prefix
    assert prefix is not None
    document = candidates(lab, *dns(lab), "--no-portmap")
    nat64 = document["nat64"]
    assert nat64["status"] == "found", nat64["reason"]
    assert nat64["prefixes"] == [str(prefix)]
    assert sorted(nat64["answers"]) == sorted(
        str(synthesize(prefix, a)) for a in (PRIMARY_WKA, SECONDARY_WKA)
    )


@pytest.mark.scenarios("nat64", "nat64-56")
def test_ipv4_servers_are_reached_through_the_nat64(lab: Lab) -> None:
    prefix = lab.nat64_prefix
    assert prefix is not None
    document = candidates(lab, *servers(lab), *dns(lab), "--no-portmap")
    (v6,) = lab.client_addresses_v6
    hosts = of_kind(document, "host")
    assert {h["address"] for h in hosts} == {str(v6)}  # no IPv4 on this client
    (nat64,) = of_kind(document, "nat64")
    port = hosts[0]["port"]
    # Masquerade keeps the port: the NAT64 gives this socket the router's
    # public address and the same port, whichever server asked.
    assert (nat64["address"], nat64["port"]) == (str(lab.public_address), port)
    assert nat64["family"] == "ipv4"
    assert nat64["base"] == str(Endpoint(v6, port))
    assert nat64["prefix"] == str(prefix)
    assert len(nat64["sources"]) == len(lab.stun_servers)
    assert of_kind(document, "srflx") == []
    udp = [s for s in document["servers"] if s["transport"] == "udp"]
    for server in udp:
        assert server["path"] == "nat64"
        destination = Endpoint.parse(server["destination"])
        assert destination.address in prefix
    assert document["udp_blocked"] is False


@pytest.mark.scenarios("nat64")
def test_an_ipv4_peer_reaches_the_nat64_candidate(lab: Lab) -> None:
    """Ground truth: what natkit says, the NAT64 does."""
    prefix = lab.nat64_prefix
    assert prefix is not None
    own = lab.socket("client", socket.AF_INET6)
    peer = lab.socket("peer")
    try:
        own.bind(("::", 0))
        server = next(iter(lab.stun_servers.values())).primary
        options = GatherOptions(dns_server=str(lab.dns_server), tcp=False)
        report = lab.call_in(
            "client",
            lambda: asyncio.run(gather_candidates([str(server)], options, sockets=[own])),
        )
        (candidate,) = report.of_kind(CandidateKind.NAT64)
        peer.bind(("192.0.2.10", 0))
        peer.settimeout(2.0)
        own.settimeout(2.0)
        peer_v4 = Endpoint.from_sockaddr(peer.getsockname())
        assert isinstance(peer_v4.address, ipaddress.IPv4Address)
        peer_v6 = Endpoint(synthesize(prefix, peer_v4.address), peer_v4.port)
        # The client opens the NAT64's filter towards the peer (APDF)...
        own.sendto(b"punch", peer_v6.sockaddr())
        data, seen = peer.recvfrom(64)
        assert data == b"punch"
        # ...through the very mapping the candidate names (EIM)...
        assert Endpoint.from_sockaddr(seen) == candidate.address
        # ...and the IPv4 peer reaches the IPv6 socket at the candidate.
        peer.sendto(b"hello", candidate.address.sockaddr())
        data, source = own.recvfrom(64)
        assert data == b"hello"
        assert Endpoint.from_sockaddr(source) == peer_v6
    finally:
        own.close()
        peer.close()


@pytest.mark.scenarios("nat64", "nat64-56")
def test_server_names_through_dns64(lab: Lab) -> None:
    # natkit's server has an A record only: DNS64 synthesises its AAAA, which
    # natkit recognises as the NAT64 path. coturn has a native AAAA too.
    names = [f"--server={lab.server_name(kind)}" for kind in lab.stun_servers]
    document = candidates(lab, *names, *dns(lab), "--no-portmap")
    (nat64,) = of_kind(document, "nat64")
    assert nat64["address"] == str(lab.public_address)
    paths = {(s["server"], s["path"]) for s in document["servers"] if s["transport"] == "udp"}
    assert (lab.server_name("natkit"), "nat64") in paths
    if "coturn" in lab.stun_servers:
        assert (lab.server_name("coturn"), "direct") in paths  # over IPv6, no NAT66


@pytest.mark.scenarios("nat64")
def test_classify_reports_the_nat64_prefix(lab: Lab) -> None:
    if "coturn" not in lab.stun_servers:
        pytest.skip("needs coturn's IPv6 address")
    ipv6_server = lab.stun_servers["coturn"].ipv6
    assert ipv6_server is not None
    argv = [
        sys.executable,
        "-m",
        "natkit.cli",
        "classify",
        "-s",
        str(ipv6_server),
        "--json",
        *dns(lab),
    ]
    result = lab.client_exec(argv, timeout=60)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["nat64"]["status"] == "found"
    assert document["nat64"]["prefixes"] == [str(lab.nat64_prefix)]
    assert document["behind_nat"] is False  # IPv6 is routed, not translated


# -- dual stack, double NAT, disagreeing servers ------------------------------------------


@pytest.mark.scenarios("dual-stack")
def test_dual_stack_candidate_set(lab: Lab) -> None:
    v4_servers = [f"--server={s.primary}" for s in lab.stun_servers.values()]
    v6_servers = [f"--server={s.ipv6}" for s in lab.stun_servers.values() if s.ipv6]
    document = candidates(lab, *v4_servers, *v6_servers, *dns(lab), "--no-portmap")
    hosts = of_kind(document, "host")
    port = hosts[0]["port"]
    expected_hosts = {str(Endpoint(a, port)) for a in lab.client_addresses}
    expected_hosts |= {str(Endpoint(a, port)) for a in lab.client_addresses_v6}
    assert endpoints(hosts) == expected_hosts
    (srflx,) = of_kind(document, "srflx")
    assert (srflx["address"], srflx["port"]) == (str(lab.public_address), port)
    assert len(srflx["sources"]) == len(v4_servers)
    assert of_kind(document, "nat64") == []
    assert document["nat64"]["status"] == "absent"  # a real resolver without DNS64
    for server in document["servers"]:
        if server["transport"] == "udp" and server["destination"].startswith("["):
            # The IPv6 server saw the host address itself: no NAT66, no candidate.
            assert server["mapped_address"] == server["base"]
    assert len(document["candidates"]) == len(expected_hosts) + 1


@pytest.mark.scenarios("cgnat")
def test_double_nat_candidate_set(lab: Lab) -> None:
    document = candidates(lab, *servers(lab), "--no-portmap")
    hosts = of_kind(document, "host")
    port = hosts[0]["port"]
    assert endpoints(hosts) == {str(Endpoint(a, port)) for a in lab.client_addresses}
    (srflx,) = of_kind(document, "srflx")
    # The outer (carrier) NAT's address; both masquerades keep the port.
    assert (srflx["address"], srflx["port"]) == (str(lab.public_address), port)
    assert document["disagreements"] == []
    assert document["nat64"]["status"] == "not_applicable"
    # Without a gateway's word the inner tier cannot be seen from the client.
    assert document["double_nat"] is None
    assert "no port-mapping gateway" in document["reasons"]["double_nat"]


@pytest.mark.scenarios("apdm-apdf")
def test_servers_that_disagree_are_reported(lab: Lab) -> None:
    if len(lab.stun_servers) < 2:
        pytest.skip("needs two servers")
    document = candidates(lab, *servers(lab), "--no-portmap")
    srflx = of_kind(document, "srflx")
    assert len(srflx) == len(lab.stun_servers)
    assert {c["address"] for c in srflx} == {str(lab.public_address)}
    (disagreement,) = document["disagreements"]
    assert disagreement["kind"] == "port"
    assert len(disagreement["mapped"]) == len(lab.stun_servers)


# -- UDP blocked, port mapping -------------------------------------------------------------


@pytest.mark.scenarios("udp-blocked")
def test_udp_blocked_still_gives_tcp_and_tls_addresses(lab: Lab) -> None:
    if "coturn" not in lab.stun_servers:
        pytest.skip("needs coturn for TLS")
    tls = lab.stun_servers["coturn"].tls
    assert tls is not None
    document = candidates(
        lab,
        *servers(lab),
        f"--server=stuns:{tls}",
        "--tls-ca",
        str(lab.tls_certificate),
        "--no-portmap",
    )
    assert document["udp_blocked"] is True
    assert document["relay_only"] is True
    assert "only a relay over TCP or TLS" in document["reasons"]["udp_blocked"]
    tcp = of_kind(document, "srflx", "tcp")
    tls_candidates = of_kind(document, "srflx", "tls")
    assert tcp
    assert len(tls_candidates) == 1
    assert {c["address"] for c in tcp + tls_candidates} == {str(lab.public_address)}
    assert of_kind(document, "srflx") == []  # no UDP reflexive address


@pytest.mark.scenarios("upnp")
def test_mapped_candidate_and_one_nat_verdict(lab: Lab, tmp_path: Path) -> None:
    env = dict(os.environ, NATKIT_PORTMAP_JOURNAL=str(tmp_path / "portmap.json"))
    document = candidates(lab, *servers(lab), "--gateway", str(lab.gateway_address()), env=env)
    (mapped,) = of_kind(document, "mapped")
    assert mapped["address"] == str(lab.public_address)
    assert document["port_mapping"]["status"] == "mapped"
    assert document["port_mapping"]["gateway_external_address"] == str(lab.public_address)
    # The gateway's external address is the one the servers saw: one NAT.
    assert document["double_nat"] is False
    assert document["cgnat"] is False
    # The command released its mapping on the way out.
    assert lab.port_mapping_rule_count() == 0, lab.port_mapping_ruleset()
