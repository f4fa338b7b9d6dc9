"""``natkit connect --wireguard``: WireGuard through real kernel NAT, no endpoint set by hand.

Each site runs userspace WireGuard (wireguard-go, started by ``wg-quick``
from the file ``natkit lab up`` wrote: the peers and their allowed IPs, no
endpoints) and the real ``natkit connect --wireguard`` beside it, which
shares WireGuard's port through raw sockets, finds the path through the
NATs and sets the endpoints. ``ping`` through the tunnel is the proof.
What is checked, per issue 13:

* the README's quick start, run as ``natkit lab up`` prints it (CGNAT ↔ EIM);
* three sites in a full mesh, one interface and one listen port per node;
* rebinding (``conntrack -F`` on a NAT): the tunnel carries traffic again
  within two keepalive intervals;
* trust, then verify: a site whose firewall passes natkit's STUN but not
  WireGuard's packets gets its endpoint reverted, and natkit says so;
* the DNS directory (knot, TSIG) instead of the rendezvous, and a wrong
  TSIG key: nothing published, exit 2 and the server's reason.

Each scenario's tests share one lab (``xdist_group``); WireGuard and natkit
are started and stopped by each test.
"""

from __future__ import annotations

import base64
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from connect_nodes import LIVENESS
from wireguard_sites import WgSite, wireguard_sites

from natkit.directory.names import instance_name
from natkit.lab import Lab
from natkit.lab.knot import PRIMARY_ROLE, KnotDirectory
from natkit.lab.netns import in_netns
from natkit.lab.servers import natkit_cli_env
from natkit.pytest_plugin import LabPool

pytestmark = pytest.mark.lab

A, B = "client", "client-b"
README = Path(__file__).resolve().parents[2] / "README.md"
README_MARKER = "<!-- wireguard quick start:"


def interface_ports(lab: Lab, site: WgSite) -> list[str]:
    """Who holds UDP sockets in the site client's namespace: ``ss`` lines."""
    out = lab.exec(site.role, ["ss", "-uanpH"], check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


# -- the quick start ------------------------------------------------------------------------


@pytest.mark.scenarios("wireguard-cgnat")
def test_the_quick_start_as_printed_brings_the_tunnel_up(lab: Lab) -> None:
    """CGNAT ↔ EIM: ``wg-quick up``, ``natkit connect --wireguard``, ``ping``."""
    from natkit.cli.lab import lab_summary, render_up  # noqa: PLC0415

    summary = lab_summary(lab)
    text = render_up(summary)
    sites = summary["wireguard"]
    assert [s["role"] for s in sites] == [A, B]
    # The README prints the same six commands (with ID for the lab's id).
    readme = README.read_text(encoding="utf-8")
    block = readme[readme.index(README_MARKER) :].split("```sh\n", 1)[1].split("```", 1)[0]
    printed = [c for s in sites for c in s["commands"]]
    documented = [
        line.replace("ID", lab.run_id)
        for line in block.splitlines()
        if line.startswith("ip netns exec")
    ]
    assert documented == printed
    procs: list[subprocess.Popen[str]] = []
    try:
        for site in sites:
            up, connect, ping = site["commands"]
            assert all(f"    {command}" in text for command in site["commands"])
            assert "Endpoint" not in Path(site["config"]).read_text()
            subprocess.run(shlex.split(up), check=True, capture_output=True, timeout=30)
            argv = shlex.split(connect)
            at = argv.index("natkit")  # this checkout's natkit
            argv[at : at + 1] = [sys.executable, "-m", "natkit.cli"]
            out, env = subprocess.PIPE, natkit_cli_env()
            procs.append(subprocess.Popen(argv, stdout=out, stderr=out, text=True, env=env))
        for site in sites:
            ping = shlex.split(site["commands"][2])
            deadline = time.monotonic() + LIVENESS
            while run(ping).returncode != 0:
                assert time.monotonic() < deadline, f"{site['role']}: no ping through the tunnel"
            settled = run(ping)
            assert " 0% packet loss" in settled.stdout, settled.stdout
    finally:
        for proc in procs:
            proc.terminate()
        outputs = [proc.communicate(timeout=30) for proc in procs]
        for site in sites:
            down = [*shlex.split(site["commands"][0])]
            down[down.index("up")] = "down"
            run(down)
    assert [proc.returncode for proc in procs] == [143, 143]
    for (stdout, _), other in zip(outputs, reversed(sites), strict=True):
        # The human lines: the path, the endpoint set, WireGuard seen working.
        assert "path to " in stdout
        assert "wireguard endpoint of " in stdout
        assert "wireguard works with " in stdout, stdout
        assert other["tunnel_address"].split("/")[0] not in stdout  # no tunnel-address path


# -- one port, many peers ------------------------------------------------------------------


@pytest.mark.scenarios("wireguard-mesh")
def test_three_sites_in_a_full_mesh_on_one_port_each(lab: Lab) -> None:
    with wireguard_sites(lab) as sites:
        keys = {site.role: site.node.wait_event("started")["key"] for site in sites if site.node}
        for site in sites:
            verified = site.verified()
            assert {line["peer"] for line in verified} == set(keys.values()) - {keys[site.role]}
        for site in sites:
            for other in sites:
                if other is not site:
                    site.ping_until_answered(other)
                    result = site.ping(other, count=3)
                    assert " 0% packet loss" in result.stdout, result.stdout
        for site in sites:
            started = site.node.events("started")[0]
            assert started["listen_port"] == 51820
            assert started["sockets"] == ["0.0.0.0:51820", "[::]:51820"]
            # One UDP port on the host: WireGuard's (natkit holds raw sockets only).
            holders = interface_ports(lab, site)
            assert all("wireguard-go" in line for line in holders), holders
            # The tunnel's own addresses are never offered (a check through the
            # tunnel would make it its own endpoint).
            offered = [c["address"] for e in site.node.events("candidates") for c in e["added"]]
            assert offered
            assert not [a for a in offered if a.startswith("10.200.0.")], offered
            for line in site.node.events("endpoint_set"):
                assert line["bridged"] is False
                assert line["endpoint"] == line["remote"]
            # Two peers, two endpoints, both on the far sites' public addresses.
            endpoints = site.wg("show", site.interface, "endpoints")
            public = {str(s.public_address) for s in lab.sites}
            seen = {line.split("\t")[1].rpartition(":")[0] for line in endpoints.splitlines()}
            assert seen <= public
            assert len(seen) == 2


# -- rebinding -----------------------------------------------------------------------------


@pytest.mark.scenarios("wireguard-cgnat")
def test_after_a_rebinding_natkit_alone_reopens_wireguards_mapping_in_two_keepalives(
    lab: Lab,
) -> None:
    """Both of site A's NATs forget every mapping (``conntrack -F``) while
    the tunnel is idle (WireGuard has no persistent keepalive). natkit's
    keepalives leave from WireGuard's port, so within two keepalive
    intervals they alone have made the NATs map that port again: the first
    packet site B's WireGuard sends in then passes A's firewalled NATs."""
    keepalive = 2.0
    with wireguard_sites(lab, "--keepalive", str(keepalive)) as sites:
        a, b = sites
        for site in sites:
            site.verified()
        a.ping_until_answered(b)
        for router in lab.site("").router_roles:
            lab.exec(router, ["conntrack", "-F"], check=True)
        time.sleep(2 * keepalive)
        first = b.ping(a, count=1, wait=2)
        assert first.returncode == 0, first.stdout
        # The flows were made again from WireGuard's port, and answered.
        carrier = lab.site("").router_roles[0]
        entries = lab.exec(carrier, ["conntrack", "-L", "-p", "udp"], check=True).stdout
        flows = [e for e in entries.splitlines() if "sport=51820" in e and "UNREPLIED" not in e]
        assert flows, entries


# -- trust, then verify ----------------------------------------------------------------------


@pytest.mark.scenarios("wireguard-cgnat")
def test_an_endpoint_wireguard_cannot_use_is_reverted_and_said_so(lab: Lab) -> None:
    """Site b's firewall passes STUN to WireGuard's port (natkit's checks
    succeed) and drops everything else (WireGuard never shakes hands)."""
    role = lab.site("b").client_role
    table = "nk_wg_block"
    rules = (
        f"table inet {table} {{\n chain input {{\n"
        "  type filter hook input priority -10; policy accept;\n"
        "  udp dport 51820 @th,96,32 != 0x2112a442 drop\n }\n}\n"
    )
    lab.exec(role, ["nft", "-f", "-"], input=rules, check=True)
    try:
        with wireguard_sites(lab) as sites:
            for site in sites:
                # Both ends: b hears nothing, a hears b's initiations but no
                # handshake completes (a's answers are dropped).
                assert site.node is not None
                reverted = site.node.wait_event("endpoint_reverted", timeout=LIVENESS)
                assert reverted["restored"] is None  # nothing had been verified before
                assert reverted["waited_s"] >= 10
                assert reverted["reason"].startswith("no WireGuard handshake or traffic")
                lost = site.node.wait_event("path_lost", reason="rejected")
                assert lost["detail"] == reverted["reason"]
                assert not site.node.events("endpoint_verified")
    finally:
        lab.exec(role, ["nft", "delete", "table", "inet", table])
    # The warning log line, on stderr.
    for site in sites:
        assert site.node is not None
        assert any("no WireGuard handshake" in line for line in site.node.stderr), site.node.stderr


# -- the DNS directory --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def knot_cgnat(lab_pool: LabPool) -> Iterator[KnotDirectory]:
    if shutil.which("knotd") is None:
        reason = "the DNS directory lab needs knotd (Debian package 'knot')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    with KnotDirectory.start(lab_pool.get("wireguard-cgnat")) as servers:
        yield servers


def ask(
    knot: KnotDirectory, name: dns.name.Name | str, rdtype: dns.rdatatype.RdataType
) -> dns.message.Message:
    """One query to the primary, from its namespace (the lab's internet)."""
    query = dns.message.make_query(name, rdtype)
    return in_netns(
        knot.namespace(PRIMARY_ROLE),
        lambda: dns.query.tcp(query, str(knot.primary.address), timeout=2),
    )


@pytest.mark.xdist_group("wireguard-cgnat")
def test_the_dns_directory_instead_of_the_rendezvous(knot_cgnat: KnotDirectory) -> None:
    knot = knot_cgnat
    lab = knot.lab
    lab.reset_state()
    signalling = ["--directory", knot.directory, "--tsig-key", str(knot.update_key_file),
                  "--read-server", str(knot.secondary), "--poll-interval", "1"]  # fmt: skip
    with wireguard_sites(lab, signalling=signalling) as sites:
        a, b = sites
        for site in sites:
            site.verified(timeout=2 * LIVENESS)
        a.ping_until_answered(b)
        b.ping_until_answered(a)
        # Both nodes are in the zone, advertising WireGuard's public endpoint
        # (its port through the NAT: the server-reflexive candidate).
        for site, plan in zip(sites, lab.sites, strict=True):
            assert site.node is not None
            key = base64.b64decode(site.node.events("started")[0]["key"])
            name = instance_name(dns.name.from_text(knot.zone), key)
            srv = ask(knot, name, dns.rdatatype.SRV)
            assert [r.port for rrset in srv.answer for r in rrset] == [51820]
            a_records = ask(knot, name, dns.rdatatype.A)
            assert [str(r) for rrset in a_records.answer for r in rrset] == [
                str(plan.public_address)
            ]


@pytest.mark.xdist_group("wireguard-cgnat")
def test_a_wrong_tsig_key_publishes_nothing_and_says_why(
    knot_cgnat: KnotDirectory, tmp_path: Path
) -> None:
    knot = knot_cgnat
    lab = knot.lab
    wrong = tmp_path / "wrong.key"
    text = knot.update_key_file.read_text()
    secret = text.split("secret:")[1].split()[0]
    wrong.write_text(text.replace(secret, "A" * 43 + "="))
    wrong.chmod(0o600)
    serial = knot.serial()
    with wireguard_sites(lab, start=False) as sites:
        a = sites[0]
        argv = a.connect_argv(
            "--timeout", "20",
            signalling=["--directory", knot.directory, "--tsig-key", str(wrong)],
        )  # fmt: skip
        started = time.monotonic()
        result = lab.exec(a.role, argv, timeout=60, env=natkit_cli_env())
        took = time.monotonic() - started
    assert result.returncode == 2, (result.stdout[-2000:], result.stderr[-2000:])
    assert took < 15, "a refusal ends the command at once, not at --timeout"
    assert result.stderr.strip().endswith(
        "refused the update of zone dir.natkit.test.: the TSIG key 'natkit-update.' has a"
        " different secret on the server (BADSIG); nothing was published"
    ), result.stderr
    # Nothing was published: the zone's serial has not moved.
    assert knot.serial() == serial
