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
* EIM/APDF ↔ APDM: relayed at once (loopback bridge), then one-hard
  birthday probing finds a direct path;
* both APDM in a small port range: relayed, then birthday sockets on both
  sides carry the tunnel through the bridges, its session kept;
* UDP blocked at one site: the tunnel crosses TURN over TCP and over TLS;
* the direct path cut and restored: the tunnel moves to the relay and
  back, the pings lost in each switch counted (``natkit.lab.pinger``);
* the DNS directory (knot, TSIG; reads from a secondary fed by zone
  transfer) instead of the rendezvous for the EIM ↔ APDM tunnel, and a
  wrong TSIG key: nothing published, exit 2 at once and the server's reason.

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
from connect_nodes import LIVENESS, when
from wireguard_sites import WgSite, wireguard_sites

from natkit.directory.names import instance_name
from natkit.lab import Lab
from natkit.lab.cut import UdpCut
from natkit.lab.knot import PRIMARY_ROLE, KnotDirectory
from natkit.lab.netns import in_netns
from natkit.lab.pinger import PingRun
from natkit.lab.servers import natkit_cli_env
from natkit.lab.turn import TurnOptions
from natkit.pytest_plugin import LabPool

pytestmark = pytest.mark.lab

A, B = "client", "client-b"
#: The DNS directory tests' lab (and knot's).
DNS_SCENARIO = "wireguard-eim-apdm"
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


# -- relays and birthday: WireGuard through natkit's loopback bridges ---------------------


def ensure_turn(lab: Lab) -> None:
    """The lab's coturn running with its default options (a pooled lab
    starts without TURN, and another test may have changed its options)."""
    servers = lab.turn_servers
    if "coturn" not in servers or servers["coturn"].options != TurnOptions():
        lab.start_turn()


def relay_args(lab: Lab, transport: str = "udp") -> list[str]:
    """The lab's coturn (running with its default options) as --relay flags."""
    ensure_turn(lab)
    server = lab.turn_servers["coturn"]
    assert server.user is not None
    assert server.password is not None
    return [
        "--relay", server.uri(transport), "--relay-user", server.user,
        "--relay-password", server.password, "--tls-ca", str(server.ca_file),
    ]  # fmt: skip


def last_set(site: WgSite) -> dict[str, object]:
    assert site.node is not None
    return site.node.events("endpoint_set")[-1]


def settled(site: WgSite, *, bridged: bool, timeout: float = LIVENESS) -> str:
    """Wait until the last endpoint natkit set has ``bridged`` and is the one
    WireGuard sends to; that endpoint. A peer already on its bridge (a relay
    of its own) keeps it when birthday probing's socket takes over: the
    bridge moves to the new path with no endpoint change for WireGuard."""
    deadline = time.monotonic() + timeout
    while True:
        (line,) = site.wg("show", site.interface, "endpoints").splitlines()
        endpoint = line.split("\t")[1]
        assert site.node is not None
        sets = site.node.events("endpoint_set")
        last = sets[-1] if sets else None
        if last is not None and last["bridged"] is bridged and last["endpoint"] == endpoint:
            return endpoint
        assert time.monotonic() < deadline, (site.role, endpoint, last)
        time.sleep(0.1)


def direct(site: WgSite) -> dict[str, object]:
    """Wait for the first direct path natkit selected (birthday probing's)."""
    assert site.node is not None
    return site.node.wait(
        lambda e: e["event"] == "path_selected" and e["direct"] is True, timeout=2 * LIVENESS
    )


#: The hard side opens 256 mappings, the easy side sprays 2,048 probes at
#: 500/s over 64,512 ports: a miss once in ~3,000 runs (the default, 64
#: mappings, 2,048 probes at 100/s, finds one in 87 %).
ONE_HARD = ("--birthday-ports", "256", "--birthday-probes", "2048", "--birthday-rate", "500")


# -- the DNS directory --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def knot(lab_pool: LabPool) -> Iterator[KnotDirectory]:
    if shutil.which("knotd") is None:
        reason = "the DNS directory lab needs knotd (Debian package 'knot')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    with KnotDirectory.start(lab_pool.get(DNS_SCENARIO)) as servers:
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


@pytest.mark.xdist_group(DNS_SCENARIO)
def test_the_dns_directory_instead_of_the_rendezvous(knot: KnotDirectory) -> None:
    """The EIM ↔ APDM tunnel (relayed first, then birthday probing) with
    every signal message going through knot: updates to the primary, reads
    from the secondary (zone transfer)."""
    lab = knot.lab
    lab.reset_state()
    signalling = ["--directory", knot.directory, "--tsig-key", str(knot.update_key_file),
                  "--read-server", str(knot.secondary), "--poll-interval", "1"]  # fmt: skip
    extra = (*relay_args(lab), *ONE_HARD)
    with wireguard_sites(lab, *extra, signalling=signalling) as sites:
        a, b = sites
        for site in sites:
            site.verified(timeout=2 * LIVENESS)
        a.ping_until_answered(b)
        b.ping_until_answered(a)
        # Both nodes are in the zone, advertising WireGuard's port as the
        # internet sees it (its server-reflexive candidate: 51820 through the
        # port-preserving NAT, a random port through the symmetric one).
        for site, plan in zip(sites, lab.sites, strict=True):
            assert site.node is not None
            key = base64.b64decode(site.node.events("started")[0]["key"])
            name = instance_name(dns.name.from_text(knot.zone), key)
            srflx = [
                c["address"]
                for e in site.node.events("candidates")
                for c in e["added"]
                if c["kind"] == "srflx"
            ]
            address, _, port = srflx[-1].rpartition(":")
            assert address == str(plan.public_address)
            srv = ask(knot, name, dns.rdatatype.SRV)
            assert [r.port for rrset in srv.answer for r in rrset] == [int(port)]
            a_records = ask(knot, name, dns.rdatatype.A)
            assert [str(r) for rrset in a_records.answer for r in rrset] == [address]


def settled_serial(knot: KnotDirectory) -> int | None:
    """The primary's serial once it has stood still for a second: an update
    the previous test's nodes had on the wire when they were stopped may
    land late on a loaded machine (at most ten tries)."""
    serial = knot.serial()
    for _ in range(10):
        time.sleep(1.0)
        again = knot.serial()
        if again == serial:
            break
        serial = again
    return serial


@pytest.mark.xdist_group(DNS_SCENARIO)
def test_a_wrong_tsig_key_publishes_nothing_and_says_why(
    knot: KnotDirectory, tmp_path: Path
) -> None:
    lab = knot.lab
    wrong = tmp_path / "wrong.key"
    text = knot.update_key_file.read_text()
    secret = text.split("secret:")[1].split()[0]
    wrong.write_text(text.replace(secret, "A" * 43 + "="))
    wrong.chmod(0o600)
    serial = settled_serial(knot)
    with wireguard_sites(lab, start=False) as sites:
        a = sites[0]
        # Neither timeout can end the command within exec's 60 s: only the
        # refusal can (a hang fails the test with TimeoutExpired).
        argv = a.connect_argv(
            "--timeout", "600", "--signal-timeout", "600",
            signalling=["--directory", knot.directory, "--tsig-key", str(wrong)],
        )  # fmt: skip
        result = lab.exec(a.role, argv, timeout=60, env=natkit_cli_env())
    assert result.returncode == 2, (result.stdout[-2000:], result.stderr[-2000:])
    assert result.stderr.strip().endswith(
        "natkit connect: signalling refused: DNS server 203.0.113.53:53 refused the update of"
        " zone dir.natkit.test.: the TSIG key 'natkit-update.' has a different secret on the"
        " server (BADSIG); nothing was published"
    ), result.stderr
    # Nothing was published: the zone's serial has not moved.
    assert knot.serial() == serial


@pytest.mark.scenarios("wireguard-eim-apdm")
def test_eim_and_a_symmetric_nat_tunnel_relayed_first_then_direct(lab: Lab) -> None:
    """EIM/APDF ↔ APDM: no direct path by checks alone. The relay carries the
    tunnel at once (the relayed side's WireGuard through its bridge, the
    other's straight to the allocation), then one-hard birthday probing
    finds a direct path: the APDM side's socket that hit is not WireGuard's,
    so its WireGuard stays on a bridge; the EIM side's goes direct."""
    with wireguard_sites(lab, *relay_args(lab), *ONE_HARD) as sites:
        a, b = sites
        assert a.node is not None
        assert b.node is not None
        for site in sites:
            site.node.wait(lambda e: e["event"] == "endpoint_set" and e["kind"] == "relay")
        a.ping_until_answered(b)
        b.ping_until_answered(a)
        for site in sites:
            direct(site)
        # A: WireGuard's own port to B's birthday socket; B: a bridge (its
        # birthday socket is not WireGuard's).
        assert not settled(a, bridged=False).startswith("127.0.0.1:")
        assert settled(b, bridged=True).startswith("127.0.0.1:")
        a.ping_until_answered(b)
        result = a.ping(b, count=5)
        assert " 0% packet loss" in result.stdout, result.stdout
        verified = b.node.events("endpoint_verified")[-1]
        assert verified["endpoint"] == last_set(b)["endpoint"]


@pytest.mark.scenarios("wireguard-udp-blocked")
@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_udp_blocked_at_one_site_the_tunnel_crosses_turn_over_a_stream(
    lab: Lab, transport: str
) -> None:
    """Over TLS with the flags ``natkit lab up`` prints for this scenario
    (the blocked site's relay over TLS, the other's over UDP); over TCP with
    both sites' relay over TCP."""
    printed = transport == "tls"
    ensure_turn(lab)  # before the sites read the printed commands
    extra = () if printed else relay_args(lab, transport)
    with wireguard_sites(lab, *extra, start=not printed) as sites:
        a, b = sites
        for site in sites:
            if printed:
                site.start(*site.printed_flags())
        for site in sites:
            site.verified()
        a.ping_until_answered(b)
        b.ping_until_answered(a)
        assert a.node is not None
        allocated = a.node.wait_event("relay", state="allocated")
        assert allocated["transport"] == transport
        # The blocked site's WireGuard talks to its bridge; the other site's
        # straight to the blocked site's allocation, or to its own relay's
        # bridge: it has a relay too in both cases (UDP with the printed flags,
        # TCP here), and between relayed pairs RTT decides.
        assert last_set(a)["bridged"] is True
        assert last_set(a)["kind"] == "relay"
        b_set = last_set(b)
        assert b_set["kind"] == "relay"
        if not b_set["bridged"]:
            assert b_set["endpoint"] == allocated["relayed"]


#: Each side: 16 sockets, 3,000 probes at 500/s in 1,000 ports (as the relay tests).
BIRTHDAY = (
    "--port-range", "40000-40999",
    "--birthday-ports", "16", "--birthday-probes", "3000", "--birthday-rate", "500",
)  # fmt: skip


@pytest.mark.scenarios("wireguard-birthday")
def test_both_hard_birthday_path_on_sockets_that_are_not_wireguards(lab: Lab) -> None:
    """Both sites APDM in 1,000 ports: relayed first, then birthday probing
    finds a pair of natkit's sockets; WireGuard (one port) reaches it through
    the bridges on both sides, and its session survives the switch."""
    with wireguard_sites(lab, *relay_args(lab), *BIRTHDAY) as sites:
        a, b = sites
        a.ping_until_answered(b)  # over the relay, or already over the birthday path
        before = transfer(a)
        for site in sites:
            assert site.node is not None
            found = site.node.wait(
                lambda e: e["event"] == "birthday" and e["state"] == "finished", 2 * LIVENESS
            )
            assert found["found"] is True, found
            direct(site)
            assert site.node.events("path_selected")[0]["kind"] == "relay"
            assert settled(site, bridged=True).startswith("127.0.0.1:")
        a.ping_until_answered(b)
        b.ping_until_answered(a)
        assert a.ping(b, count=5).returncode == 0
        # The switch moved WireGuard's endpoint, never removed the peer (which
        # would reset its counters): the session carried on.
        after = transfer(a)
        assert after[0] >= before[0]
        assert after[1] >= before[1]


def transfer(site: WgSite) -> tuple[int, int]:
    """Bytes WireGuard received from and sent to its one peer."""
    (line,) = site.wg("show", site.interface, "transfer").splitlines()
    _, rx, tx = line.split("\t")
    return int(rx), int(tx)


# -- a direct path cut and restored: the tunnel moves to the relay and back ----------------


@pytest.mark.scenarios("wireguard-cgnat")
def test_a_cut_direct_path_moves_the_tunnel_to_the_relay_and_back_counting_lost_pings(
    lab: Lab,
) -> None:
    keepalive = ("--keepalive", "2")
    with wireguard_sites(lab, *relay_args(lab), *keepalive) as sites:
        a, b = sites
        for site in sites:  # relayed first (at once), then direct
            direct(site)
            settled(site, bridged=False)
        a.ping_until_answered(b)
        time.sleep(3.0)  # the relayed pair stands by, checked, before the cut
        # B's outer NAT drops UDP to and from A's public address: the direct
        # path dies, the relay (on its own address) lives.
        cut = UdpCut(lab, lab.site("b").router_roles[-1], str(lab.site("").public_address))
        pings = PingRun.start(lab, a.role, b.address)
        with cut:
            try:
                time.sleep(1.0)
                cut_at = cut.cut()
                for site in sites:
                    assert site.node is not None
                    site.node.wait(
                        lambda e: (
                            e["event"] == "endpoint_set"
                            and e["kind"] == "relay"
                            and when(e) >= cut_at
                        )
                    )
                a.ping_until_answered(b)  # over the relay
                restored_at = cut.restore()
                for site in sites:
                    assert site.node is not None
                    site.node.wait(
                        lambda e: (
                            e["event"] == "endpoint_set"
                            and e["kind"] != "relay"
                            and when(e) >= restored_at
                        ),
                        timeout=2 * LIVENESS,
                    )
                upgraded_at = time.time()
                time.sleep(2.0)
            finally:
                pings.stop()
    # The tunnel came back over the relay (answered before the restore, above).
    down = pings.lost_between(cut_at, restored_at)
    up = pings.lost_between(restored_at, upgraded_at + 2.0)
    print(f"pings lost (every 0.1 s): direct -> relay {down}, relay -> direct {up}")
    # Back on the direct path, without a new handshake to wait for: the last
    # pings all answered.
    assert pings.lost_between(upgraded_at + 0.5, upgraded_at + 2.0) == 0, pings.output[-2000:]
