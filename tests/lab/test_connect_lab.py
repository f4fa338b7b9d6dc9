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

import contextlib
import ipaddress
import json
import secrets
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from connect_nodes import LIVENESS, STUN, Line, Node, agree, start_node, when

from natkit.lab import Lab
from natkit.lab.cut import drop_forwarded, pass_forwarded
from natkit.lab.netns import socket_in
from natkit.lab.rendezvous import RENDEZVOUS
from natkit.lab.servers import natkit_cli_env
from natkit.stun.attributes import TextAttribute
from natkit.stun.codec import Message, encode_message, is_stun, parse_message
from natkit.stun.constants import AttributeType, MessageClass, Method

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
    nodes = [start_node(lab, A, ["client2"], "--pairs"), start_node(lab, "client2", [A], "--pairs")]
    lan = ipaddress.ip_network("192.168.1.0/24")
    try:
        # The LAN pair is chosen at once, or (its first answer slowed by ARP on
        # a loaded host) takes over from the pair through the NAT within the
        # hysteresis: 3 samples 1 s apart.
        paths = [
            node.wait(lambda e: e["event"] == "path_selected" and e["kind"] == "host", timeout=20)
            for node in nodes
        ]
        for path in paths:
            assert ipaddress.ip_address(path["remote"].rpartition(":")[0]) in lan
        assert agree(*paths)
        # The NAT hairpins: the pair through its public address answered too,
        # and (a few microseconds faster or not) it does not stay selected.
        time.sleep(1.0)
        for node in nodes:
            assert node.stop() == 143
        assert [selected_last(node)["kind"] for node in nodes] == ["host", "host"]
        tables = [line["pairs"] for node in nodes for line in node.events("pairs")]
        through_nat = [
            pair
            for table in tables
            for pair in table
            if pair["remote"].startswith(f"{lab.public_address}:")
        ]
        assert any(pair["answers"] > 0 for pair in through_nat)
        for node in nodes:  # the table printed at exit
            final = node.events("pairs")[-1]["pairs"]
            assert not any(
                pair["selected"]
                for pair in final
                if pair["remote"].startswith(f"{lab.public_address}:")
            )
    finally:
        for node in nodes:
            node.kill()


def selected_last(node: Node) -> Line:
    return node.events("path_selected")[-1]


@pytest.mark.scenarios("connect-apdm")
def test_two_symmetric_nats_claim_no_direct_path(lab: Lab) -> None:
    nodes = [start_node(lab, A, [B], "--no-portmap"), start_node(lab, B, [A], "--no-portmap")]
    try:
        for node in nodes:
            # Every pair checked, none answered (about 10 s of retransmissions).
            unreachable = node.wait_event("peer_unreachable", timeout=60)
            assert unreachable["reason"] == "checks_failed"
            assert unreachable["direct"] is False
            assert unreachable["detail"].startswith("no direct path")
            assert unreachable["pairs"] >= 1
        for node in nodes:
            assert node.stop() == 143
            assert node.events("path_selected") == []
    finally:
        for node in nodes:
            node.kill()


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
        # The NAT holds the mapping again, and has seen traffic both ways on it
        # (an entry without a reply is listed [UNREPLIED]; [ASSURED] needs 2 s more).
        entries = conntrack(lab, "nat", "-L", "-p", "udp", "--orig-port-src", str(port))
        peer_address, _, peer_port = remote.rpartition(":")
        flow = [
            e
            for e in entries.splitlines()
            if f"dst={peer_address}" in e and f"dport={peer_port}" in e
        ]
        assert flow, entries
        assert all("UNREPLIED" not in e for e in flow), entries
        for node in (a, b):
            changes = [e for e in node.lines if e["event"] in ("path_selected", "path_lost")]
            assert changes[-1]["event"] == "path_selected", changes
    finally:
        for node in (a, b):
            node.kill()


#: A table of its own for a test's drop rules, so the NAT's own table is untouched.
def cut(lab: Lab, role: str, rule: str) -> None:
    """Drop forwarded packets matching ``rule`` on router ``role``."""
    drop_forwarded(lab, role, [rule])


def uncut(lab: Lab, role: str) -> None:
    pass_forwarded(lab, role)


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


def sniff_stun(lab: Lab, role: str, port: int, timeout: float = LIVENESS) -> tuple[bytes, bytes]:
    """A Binding request and a Binding success response arriving at ``port``
    in ``role``'s namespace, as an on-path attacker would capture them
    (a raw UDP socket sees every datagram the host receives)."""
    sniffer = socket_in(lab.namespace(role), socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    sniffer.settimeout(1.0)
    request = response = b""
    deadline = time.monotonic() + timeout
    try:
        while not (request and response) and time.monotonic() < deadline:
            try:
                packet = sniffer.recv(65535)
            except TimeoutError:
                continue
            header = (packet[0] & 0x0F) * 4
            if int.from_bytes(packet[header + 2 : header + 4], "big") != port:
                continue
            payload = packet[header + 8 :]
            if not is_stun(payload):
                continue
            message = parse_message(payload)
            if message.method != Method.BINDING:
                continue
            if message.message_class is MessageClass.REQUEST and not request:
                request = payload
            elif message.message_class is MessageClass.SUCCESS_RESPONSE and not response:
                response = payload
    finally:
        sniffer.close()
    assert request, "no check captured"
    assert response, "no answer captured"
    return request, response


def forged_check(captured: bytes, *, username: str | None = None, key: bytes) -> bytes:
    """A check like ``captured`` (same USERNAME, role, PRIORITY unless told),
    a fresh transaction, MESSAGE-INTEGRITY made with ``key``."""
    original = parse_message(captured)
    attributes = [
        a
        for a in original.attributes
        if a.type not in (AttributeType.MESSAGE_INTEGRITY, AttributeType.FINGERPRINT)
    ]
    if username is not None:
        attributes = [a for a in attributes if a.type != AttributeType.USERNAME]
        attributes.insert(0, TextAttribute(AttributeType.USERNAME, username))
    message = Message(
        Method.BINDING, MessageClass.REQUEST, secrets.token_bytes(12), tuple(attributes)
    )
    return encode_message(message, integrity_key=key, fingerprint=True)


@pytest.mark.scenarios("connect-eim")
def test_forged_checks_are_counted_and_never_make_a_path(lab: Lab) -> None:
    a, b = running_pair(lab, "--keepalive", "1", "--stats", "--pairs", extra_b=("--keepalive", "1"))
    try:
        port = int(a.lines[0]["sockets"][0].rpartition(":")[2])
        request, response = sniff_stun(lab, A, port)
        username = parse_message(request).find(AttributeType.USERNAME)
        assert isinstance(username, TextAttribute)
        # The attacker sits on the client's LAN: its own socket, the node's address.
        attacker = lab.socket(A)
        attacker.bind(("192.168.1.3", 0))
        attacker.settimeout(0.2)
        target = (str(lab.client_addresses[0]), port)
        rounds = 5
        for _ in range(rounds):
            attacker.sendto(forged_check(request, key=secrets.token_bytes(20)), target)
            attacker.sendto(forged_check(request, username="nobody:here", key=b"k"), target)
            attacker.sendto(response, target)  # an answer replayed: its check is over
            attacker.sendto(request, target)  # a check replayed, from elsewhere
            time.sleep(0.1)
        answers = 0
        with contextlib.suppress(TimeoutError):
            while True:
                attacker.recv(2048)
                answers += 1
        attacker.close()
        assert answers >= 1  # the replayed genuine check was answered
        time.sleep(2.0)  # the node's triggered checks toward the attacker go unanswered
        assert a.stop() == 143
        (stats,) = a.events("stats")
        checks = stats["checks"]
        assert checks["bad_integrity"] >= rounds
        assert checks["unknown_username"] >= rounds
        assert checks["late_response"] + checks["unknown_transaction"] >= rounds
        # The replayed check (genuine integrity) was answered, and taught a
        # peer-reflexive candidate whose checks the attacker cannot answer:
        # no path ever leads to the attacker.
        attacker_host = "192.168.1.3"
        assert not [
            e for e in a.events("path_selected") if e["remote"].startswith(f"{attacker_host}:")
        ]
        (*_, table) = a.events("pairs")
        toward = [p for p in table["pairs"] if p["remote"].startswith(f"{attacker_host}:")]
        assert toward, table  # the replayed check taught a peer-reflexive candidate...
        assert all(not p["selected"] and p["answers"] == 0 for p in toward)  # ...never answered
        assert a.events("path_lost") == []
    finally:
        for node in (a, b):
            node.kill()


def junk_at_the_rendezvous(lab: Lab, role: str, junk: bytes) -> bytes:
    """Send ``junk`` to the lab's rendezvous from ``role``; what came back
    before the server closed the connection."""
    conn = lab.socket(role, socket.AF_INET, socket.SOCK_STREAM)
    conn.settimeout(LIVENESS)
    received = b""
    try:
        conn.connect((str(RENDEZVOUS.address), RENDEZVOUS.port))
        conn.sendall(junk)
        while chunk := conn.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    finally:
        conn.close()
    return received


@pytest.mark.scenarios("connect-eim")
def test_malformed_frames_leave_the_rendezvous_serving(lab: Lab) -> None:
    a = start_node(lab, A, [B], "--no-portmap")
    try:
        a.wait_event("signalling", state="up")
        junk = [
            b"\xff" * 64,  # no such frame type
            b"\x02\x00\xff\xff" + b"x" * 32,  # a CLIENT_HELLO claiming 65535 bytes
            b"\x07\x00\x00\x03abc",  # a PING of the wrong length
        ]
        for each in junk:
            junk_at_the_rendezvous(lab, "peer", each)
        log = lab.record.workdir / "rendezvous.log"
        reasons = [
            json.loads(line).get("reason")
            for line in log.read_text().splitlines()
            if '"event":"disconnected"' in line
        ]
        assert reasons.count("malformed") + reasons.count("version") >= len(junk), reasons
        # Still serving: a node started now connects through it.
        b = start_node(lab, B, [A], "--no-portmap", "--once", "--timeout", "30")
        assert b.finish(timeout=60) == 0
        assert a.proc.poll() is None
        assert [e["state"] for e in a.events("signalling")] == ["up"]  # never disturbed
    finally:
        a.kill()


@pytest.mark.scenarios("connect-eim")
def test_a_rendezvous_that_comes_back_is_reconnected_with_backoff(lab: Lab) -> None:
    a, b = running_pair(lab)
    try:
        lab.stop_rendezvous()
        a.wait(lambda e: e["event"] == "signalling" and e["state"] == "connecting")
        # B restarts meanwhile: its new session can only be announced once the
        # rendezvous is back.
        assert b.stop() == 143
        b = start_node(lab, B, [A], "--no-portmap")
        time.sleep(4.0)
        retries = [e["retry_in_s"] for e in b.events("signalling") if e["retry_in_s"]]
        assert len(retries) >= 2
        assert retries == sorted(retries)  # backoff: 0.5-1 s, 1-2 s, 2-4 s, ...
        assert b.events("path_selected") == []
        lab.start_rendezvous()
        for node in (a, b):
            node.wait(
                lambda e: (
                    e["event"] == "signalling"
                    and e["state"] == "up"
                    and e["previous_state"] == "connecting"
                )
            )
        # Both re-announced on reconnection: the path is re-established.
        new_b = b.wait_event("path_selected")
        new_a = a.wait(lambda e: e["event"] == "path_selected" and agree(e, new_b))
        assert new_a["direct"] is True
        for node in (a, b):
            assert node.proc.poll() is None
            assert node.stop() == 143
    finally:
        for node in (a, b):
            node.kill()
        if lab.rendezvous is None:
            lab.start_rendezvous()


INTEROP = Path(__file__).with_name("connect_interop.py")


def interop_end(lab: Lab, role: str, side: str, controlling: bool) -> subprocess.Popen[str]:
    flag = "--controlling" if controlling else "--controlled"
    argv = [sys.executable, str(INTEROP), side, flag, "--stun", STUN]
    return lab.popen(
        role,
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=natkit_cli_env(),
    )


def read_json(proc: subprocess.Popen[str]) -> Line:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else "no output"
    return dict(json.loads(line))


@pytest.mark.parametrize(
    "natkit_controls", [True, False], ids=["natkit-controlling", "aioice-controlling"]
)
@pytest.mark.scenarios("connect-eim")
def test_natkit_and_aioice_connect_through_the_nats(lab: Lab, natkit_controls: bool) -> None:
    ours = interop_end(lab, A, "natkit", natkit_controls)
    theirs = interop_end(lab, B, "aioice", not natkit_controls)
    try:
        offers = read_json(ours), read_json(theirs)
        for proc, offer in zip((theirs, ours), offers, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(offer) + "\n")
            proc.stdin.flush()
        natkit_path, aioice_path = read_json(ours), read_json(theirs)
        # Both ends nominated the same pair: natkit's side of it is what aioice
        # sends to, and aioice's socket is behind the public address natkit uses.
        assert natkit_path["remote"].startswith(f"{lab.site('b').public_address}:")
        assert aioice_path["remote"] == natkit_path["local"]
        assert natkit_path["remote"].rpartition(":")[2] == aioice_path["local"].rpartition(":")[2]
        assert natkit_path["kind"] in {"srflx", "prflx"}
    finally:
        for proc in (ours, theirs):
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in (ours, theirs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.scenarios("connect-eim")
def test_the_commands_lab_up_prints_connect_the_two_sites(lab: Lab) -> None:
    from natkit.cli.lab import lab_summary, render_up  # noqa: PLC0415

    summary = lab_summary(lab)
    assert summary["rendezvous"] == "192.0.2.10:7000"
    assert set(summary["node_keys"]) == {A, B}
    text = render_up(summary)
    commands = summary["connect_commands"]
    assert len(commands) == 2
    assert all(f"  {command}" in text for command in commands)
    # Run them as printed (``natkit`` being this checkout's), with --once.
    procs = []
    for command in commands:
        argv = shlex.split(command)
        at = argv.index("natkit")
        argv[at : at + 1] = [sys.executable, "-m", "natkit.cli"]
        argv += ["--once", "--timeout", "30", "--json-line"]
        procs.append(
            subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=natkit_cli_env())
        )
    outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    paths = [
        next(line for line in map(json.loads, out.splitlines()) if line["event"] == "path_selected")
        for out in outputs
    ]
    assert agree(*paths)
