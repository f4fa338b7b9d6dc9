"""``natkit connect`` through real kernel NAT (scenarios ``connect-*``).

The real command runs in the sites' namespaces as a user runs it (the key
files, rendezvous and STUN server ``natkit lab up`` names; see
``connect_nodes``), against the lab's own ``natkit rendezvous`` on
192.0.2.10:7000. What is checked, per issue 11:

* EIM/APDF ↔ EIM/APDF, EIM/ADF ↔ APDM, CGNAT ↔ EIM: ``--once`` on both
  sides exits 0 with a direct path, the same one seen from both ends;
* two peers on one LAN behind a NAT that hairpins: the LAN (host) path is
  chosen although the path through the NAT answers too;
* APDM ↔ APDM: no direct path is claimed; ``peer_unreachable`` says so;
* rebinding (``conntrack -F`` on a NAT while connected): both directions
  work again within two keepalive intervals;
* a drop rule on a NAT cuts the selected path: ``path_lost`` within the
  documented bound (keepalive interval + 2.5 s) and the other working pair
  (the client's second address) is selected;
* hostile input: forged checks at a running node (wrong integrity, unknown
  USERNAME, replayed request and response) are counted and never make a
  path; malformed frames at the rendezvous; a rendezvous that disappears
  and comes back: reconnection with backoff and the path re-established;
* interop with aioice's ``Connection`` (``connect_interop``), natkit
  controlling and controlled.

Each scenario's tests share one lab (``xdist_group``); NAT state is reset
before each test.
"""

from __future__ import annotations

import ipaddress
import time

import pytest
from connect_nodes import LIVENESS, Line, Node, agree, start_node, when

from natkit.lab import Lab

pytestmark = pytest.mark.lab

#: Sites and their client hosts.
A, B = "client", "client-b"


def once_pair(lab: Lab, first: str, second: str, *extra: str) -> tuple[Node, Node]:
    """Both ends with ``--once``, to exit status 0."""
    nodes = (
        start_node(lab, first, [second], "--once", "--timeout", "40", *extra),
        start_node(lab, second, [first], "--once", "--timeout", "40", *extra),
    )
    try:
        statuses = [node.finish(timeout=60) for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    assert statuses == [0, 0], [(n.lines[-3:], "".join(n.stderr)[-800:]) for n in nodes]
    return nodes


def selected(node: Node) -> Line:
    (line,) = node.events("path_selected")
    return line


@pytest.mark.scenarios("connect-eim", "connect-adf-apdm", "connect-cgnat")
def test_once_on_both_sides_finds_the_same_direct_path(lab: Lab) -> None:
    a, b = once_pair(lab, A, B)
    path_a, path_b = selected(a), selected(b)
    assert agree(path_a, path_b), (path_a, path_b)
    for path in (path_a, path_b):
        assert path["direct"] is True
        assert path["kind"] in {"srflx", "prflx"}
        assert path["rtt_ms"] > 0
        # The path runs between the two sites' public addresses.
        public = {str(site.public_address) for site in lab.sites}
        assert {path["local"].rpartition(":")[0], path["remote"].rpartition(":")[0]} == public
    assert a.lines[-1]["event"] == "stopped"


@pytest.mark.scenarios("connect-lan")
def test_two_peers_on_one_lan_take_the_lan_path(lab: Lab) -> None:
    a, b = once_pair(lab, A, "client2", "--pairs")
    lan = ipaddress.ip_network("192.168.1.0/24")
    for node in (a, b):
        path = selected(node)
        assert path["kind"] == "host"
        assert ipaddress.ip_address(path["remote"].rpartition(":")[0]) in lan
    assert agree(selected(a), selected(b))
    # The NAT hairpins: the pair through its public address answered too, and
    # (a few microseconds faster or not) it was not chosen.
    tables = [line for node in (a, b) for line in node.events("pairs")]
    through_nat = [
        pair
        for table in tables
        for pair in table["pairs"]
        if pair["remote"].startswith(f"{lab.public_address}:")
    ]
    assert any(pair["answers"] > 0 for pair in through_nat)
    assert not any(pair["selected"] for pair in through_nat)


@pytest.mark.scenarios("connect-apdm")
def test_two_symmetric_nats_claim_no_direct_path(lab: Lab) -> None:
    nodes = [
        start_node(lab, A, [B], "--once", "--timeout", "25", "--no-portmap"),
        start_node(lab, B, [A], "--once", "--timeout", "25", "--no-portmap"),
    ]
    try:
        statuses = [node.finish(timeout=60) for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    assert statuses == [1, 1]
    for node in nodes:
        assert node.events("path_selected") == []
        (unreachable, *_) = node.events("peer_unreachable")
        assert unreachable["reason"] == "checks_failed"
        assert unreachable["direct"] is False
        assert unreachable["detail"].startswith("no direct path")
        assert node.lines[-1]["reason"].startswith("no path to")


def running_pair(lab: Lab, *extra_a: str, extra_b: tuple[str, ...] = ()) -> tuple[Node, Node]:
    a = start_node(lab, A, [B], "--no-portmap", *extra_a)
    b = start_node(lab, B, [A], "--no-portmap", *extra_b)
    a.wait_event("path_selected")
    b.wait_event("path_selected")
    return a, b


def conntrack(lab: Lab, role: str, *args: str) -> str:
    return lab.exec(role, ["conntrack", *args], check=True, timeout=10).stdout


@pytest.mark.scenarios("connect-eim")
def test_rebinding_is_recovered_within_two_keepalive_intervals(lab: Lab) -> None:
    keepalive = 2.0
    a, b = running_pair(lab, "--keepalive", "2", extra_b=("--keepalive", "2"))
    try:
        port = int(a.lines[0]["sockets"][0].rpartition(":")[2])
        remote = selected_now(a)["remote"]
        lab.exec("nat", ["conntrack", "-F"], check=True, timeout=10)
        time.sleep(2 * keepalive)
        # The NAT holds the mapping again, and has seen traffic both ways on it.
        entries = conntrack(lab, "nat", "-L", "-p", "udp", "--orig-port-src", str(port))
        peer_address, _, peer_port = remote.rpartition(":")
        flow = [e for e in entries.splitlines() if f"dst={peer_address}" in e]
        assert any("ASSURED" in e and f"dport={peer_port}" in e for e in flow), entries
        for node in (a, b):
            changes = [e for e in node.lines if e["event"] in ("path_selected", "path_lost")]
            assert changes[-1]["event"] == "path_selected", changes
    finally:
        for node in (a, b):
            node.kill()


#: A table of its own for a test's drop rules, so the NAT's own table is untouched.
CUT_TABLE = "nk_cut"


def cut(lab: Lab, role: str, rule: str) -> None:
    """Drop forwarded packets matching ``rule`` on router ``role``."""
    ruleset = (
        f"table ip {CUT_TABLE} {{\n chain forward {{\n"
        f"  type filter hook forward priority filter - 10; policy accept;\n  {rule}\n }}\n}}\n"
    )
    lab.exec(role, ["nft", "-f", "-"], input=ruleset, check=True, timeout=10)


def uncut(lab: Lab, role: str) -> None:
    lab.exec(role, ["nft", "delete", "table", "ip", CUT_TABLE], timeout=10)


def selected_now(node: Node) -> Line:
    return node.events("path_selected")[-1]


@pytest.mark.scenarios("connect-eim")
def test_a_cut_path_is_lost_within_the_bound_and_the_other_pair_takes_over(lab: Lab) -> None:
    keepalive, loss_window = 2.0, 2.5  # --keepalive 2; 5 keepalives 0.5 s apart
    addresses = [str(a) for a in lab.client_addresses]
    local = [arg for address in addresses for arg in ("--local-address", address)]
    a, b = running_pair(lab, "--keepalive", "2", *local, extra_b=("--keepalive", "2"))
    try:
        assert a.lines[0]["loss_bound_s"] == keepalive + loss_window
        first = selected_now(a)
        base_address, _, base_port = str(first["base"]).rpartition(":")
        assert base_address in addresses
        other = next(x for x in addresses if x != base_address)
        cut(lab, "nat", f"ip saddr {base_address} udp sport {base_port} drop")
        cut_at = time.time()

        def lost(node: Node) -> float | None:
            found = [when(e) for e in node.events("path_lost") if when(e) >= cut_at]
            return min(found) if found else None

        # Whichever end's keepalives notice first reports the loss...
        deadline = time.monotonic() + LIVENESS
        while lost(a) is None and lost(b) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        first_loss = min(t for t in (lost(a), lost(b)) if t is not None)
        # ...within the bound (1 s of slack for two processes on a busy machine).
        assert first_loss - cut_at <= keepalive + loss_window + 1.0
        # ...and the other address's pair carries the path from then on, at both ends.
        replacement = a.wait(
            lambda e: (
                e["event"] == "path_selected"
                and when(e) >= cut_at
                and str(e["base"]).startswith(f"{other}:")
            )
        )
        b.wait(lambda e: e["event"] == "path_selected" and agree(replacement, e))
        assert replacement["local"] != first["local"]
    finally:
        for node in (a, b):
            node.kill()
        uncut(lab, "nat")
