"""``natkit connect`` with TURN relays, the ladder and "why relayed?" through real kernel NAT.

The real command runs in the sites' namespaces (``connect_nodes``), with the
lab's coturn (:mod:`natkit.lab.turn`: 203.0.113.30, a user and realm; TLS on
5349 with the lab's CA) and rendezvous. What is checked, per issue 12:

* UDP blocked at one site (``connect-udp-blocked``): the peers connect over
  TURN via TCP and via TLS, and "why relayed?" names the blocked UDP;
* APDM ↔ APDM, no port mapping (``connect-apdm``): relayed first, the reason
  printed; the first datagram of a steady stream (``--traffic``) crosses the
  relay after both peers signalled and while the direct checks still run
  (before they end in ``peer_unreachable``): ordering, not speed;
* both hard in 40000-40999 (``connect-birthday``): relayed first, birthday
  probing (``--port-range``) finds a direct path, the session upgrades;
* a direct path cut by a drop rule (``connect-eim``): traffic moves to the
  relay within the documented downgrade bound, and back to direct within the
  upgrade bound once the rule is gone; the datagrams lost in each switch are
  counted (and printed);
* miniupnpd on one of two APDM gateways (``connect-upnp``): without port
  mapping no direct path; with it, a direct path through the mapped port;
* hostile: wrong TURN credentials, coturn refusing with 486 (user quota) and
  508 (no relay port), coturn dying mid-session and coming back: clear
  ``relay`` lines, no crash, the relayed path back once the server is.

Every relayed ``path_selected`` must be followed by its ``why_relayed``
line (the issue's "printed for every relayed case"): :func:`explained`.
Each scenario's tests share one pooled lab (``xdist_group``); the TURN
servers are (re)started with default options before each test.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from connect_nodes import LIVENESS, Line, Node, agree, start_node, when

from natkit.ice.config import ConnectConfig
from natkit.lab import Lab
from natkit.lab import turn as lab_turn
from natkit.lab.cut import drop_forwarded, pass_forwarded
from natkit.lab.servers import natkit_cli_env
from natkit.lab.turn import LabTurnServer, TurnOptions

pytestmark = pytest.mark.lab

A, B = "client", "client-b"
#: --keepalive for the switching tests: downgrade bound min(2, 5) + 2.5 = 4.5 s.
KEEPALIVE = 2.0
#: The README's figure for it.
DOWNGRADE_BOUND = 4.5
#: Datagrams a second of the measuring stream.
RATE = 50
#: A busy 2-core machine runs two nodes, coturn and the NATs: slack on bounds.
SLACK = 1.5


@pytest.fixture
def turn(lab: Lab) -> LabTurnServer:
    """The lab's long-term-credential coturn, running with default options."""
    servers = lab.turn_servers
    alive = all(lab_turn.pid_key(name) in lab.record.pids for name in servers)
    if not servers or not alive or any(s.options != TurnOptions() for s in servers.values()):
        lab.start_turn()
    return lab.turn_servers["coturn"]


def relay_args(server: LabTurnServer, transport: str = "udp", *, password: str = "") -> list[str]:
    assert server.user is not None
    assert server.password is not None
    return [
        "--relay", server.uri(transport),
        "--relay-user", server.user,
        "--relay-password", password or server.password,
        "--tls-ca", str(server.ca_file),
    ]  # fmt: skip


def pair(
    lab: Lab, *extra: str, extra_a: tuple[str, ...] = (), extra_b: tuple[str, ...] = ()
) -> tuple[Node, Node]:
    return (
        start_node(lab, A, [B], "--no-portmap", *extra, *extra_a),
        start_node(lab, B, [A], "--no-portmap", *extra, *extra_b),
    )


def stop_all(*nodes: Node) -> None:
    for node in nodes:
        node.kill()


def relayed(line: Line) -> bool:
    return bool(line["event"] == "path_selected" and line["kind"] == "relay")


def explained(node: Node) -> None:
    """Every relayed path_selected is followed by a why_relayed line for its
    peer, whose reason is the path's own sentence."""
    lines = node.lines
    for index, line in enumerate(lines):
        if not relayed(line):
            continue
        why = next(
            (
                later
                for later in lines[index + 1 :]
                if later["event"] == "why_relayed" and later["peer"] == line["peer"]
            ),
            None,
        )
        assert why is not None, (node.role, line)
        assert why["relayed"] is True
        assert why["reason"]
        assert line["reason"]


def why_saying(node: Node, text: str, timeout: float = LIVENESS) -> Line:
    return node.wait(lambda e: e["event"] == "why_relayed" and text in e["reason"], timeout)


def traffic(node: Node) -> Line:
    """The node's latest traffic line (one a second)."""
    return node.events("traffic")[-1]


def missing_at(node: Node, moment: float) -> int:
    """The node's ``missing`` count in its last traffic line before ``moment``."""
    before = [e for e in node.events("traffic") if when(e) <= moment]
    return before[-1]["missing"] if before else 0


# -- UDP blocked at one site -----------------------------------------------------------


@pytest.mark.scenarios("connect-udp-blocked")
@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_udp_blocked_at_one_site_connects_over_turn_and_says_so(
    lab: Lab, turn: LabTurnServer, transport: str
) -> None:
    a, b = pair(lab, *relay_args(turn, transport), "--traffic", "20")
    try:
        allocated = a.wait_event("relay", state="allocated")
        assert allocated["transport"] == transport
        assert allocated["relay"] == turn.uri(transport)
        for node in (a, b):
            node.wait(relayed)
        # The reports arrive after the first relayed path; the reason in
        # force names the cause at both ends.
        why_a = why_saying(a, "UDP blocked at this site")
        assert why_a["transport"] == transport
        assert why_a["reason"].endswith(f"relayed over {transport.upper()}")
        why_saying(b, "UDP blocked at the peer's site")
        # Data crosses the relay both ways.
        for node in (a, b):
            node.wait(lambda e: e["event"] == "traffic" and e["received"] >= 20)
        for node in (a, b):
            assert node.stop() == 143
            assert not [e for e in node.events("path_selected") if e["kind"] != "relay"]
            explained(node)
    finally:
        stop_all(a, b)


# -- two symmetric NATs: relay first, time to first packet -----------------------------


@pytest.mark.scenarios("connect-apdm")
def test_two_symmetric_nats_are_relayed_at_once_and_say_why(lab: Lab, turn: LabTurnServer) -> None:
    a, b = pair(lab, *relay_args(turn), "--traffic", str(RATE))
    try:
        first = {node.role: node.wait_event("data") for node in (a, b)}
        signalled = max(when(node.wait_event("peer_report")) for node in (a, b))
        for node in (a, b):
            data = first[node.role]
            # Ordering: both peers signalled (each has the other's announcement),
            # then the first datagram of the stream, over the relay, while the
            # direct checks still run (they fail ~10 s later: two APDM NATs).
            assert when(node.events("relay")[0]) <= when(data)
            assert signalled <= when(data)
            assert data["relayed"] is True
            assert data["pending_direct"] > 0
            path = node.events("path_selected")[0]
            assert path["kind"] == "relay"
            assert when(path) <= when(data)
            why_saying(node, "both sides APDM with random ports, no port mapping on either gateway")
        print(
            "first datagram, seconds after both signalled:",
            {role: round(when(line) - signalled, 4) for role, line in first.items()},
        )
        # The relayed path holds: three seconds of the stream, nothing lost,
        # no allocation lost (a relay asked to reach a peer's private host
        # candidate once made coturn drop them all).
        for node in (a, b):
            node.wait(lambda e: e["event"] == "traffic" and e["received"] >= 3 * RATE)
        for node in (a, b):
            assert node.events("path_lost") == []
            assert [e["state"] for e in node.events("relay")] == ["allocated"]
            assert traffic(node)["missing"] == 0
        for node in (a, b):
            assert node.stop() == 143
            assert not [e for e in node.events("path_selected") if e["kind"] != "relay"]
            explained(node)
    finally:
        stop_all(a, b)


# -- both hard, small port range: birthday probing, then the upgrade -------------------

#: Each side: 16 sockets, 3,000 probes at 500/s in 1,000 ports: 99.99 % (natkit
#: birthday plan --both-hard -k 16 --range 40000-40999 --probes 3000 --rate 500).
BIRTHDAY = (
    "--port-range", "40000-40999",
    "--birthday-ports", "16", "--birthday-probes", "3000", "--birthday-rate", "500",
)  # fmt: skip


@pytest.mark.scenarios("connect-birthday")
def test_birthday_probing_finds_a_direct_path_and_the_session_upgrades(
    lab: Lab, turn: LabTurnServer
) -> None:
    a, b = pair(lab, *relay_args(turn), *BIRTHDAY, "--traffic", "20")
    try:
        for node in (a, b):
            first = node.wait(lambda e: e["event"] == "path_selected")
            assert first["kind"] == "relay"
            # The ladder decided to try birthday probing, with the numbers.
            decided = node.wait(
                lambda e: (
                    e["event"] == "escalation" and e["step"] == "birthday" and e["action"] == "try"
                )
            )
            assert decided["birthday"]["port_range"] == "40000-40999"
            assert decided["birthday"]["mode"] == "both-hard"
        for node in (a, b):
            found = node.wait(lambda e: e["event"] == "birthday" and e["state"] == "finished")
            assert found["found"] is True, found
            upgraded = node.wait(lambda e: e["event"] == "path_selected" and e["kind"] != "relay")
            assert upgraded["reason"] == "direct: birthday probing found a path"
            assert upgraded["previous"]["kind"] == "relay"
            assert upgraded["remote"] == found["remote"] or upgraded["local"] == found["remote"]
        assert agree(a.events("path_selected")[-1], b.events("path_selected")[-1])
        # The stream moved to the direct path: direct datagrams arrive.
        for node in (a, b):
            relayed_so_far = traffic(node)["relayed"]
            node.wait(lambda e: e["event"] == "traffic" and e["received"] - e["relayed"] >= 20)
            assert traffic(node)["relayed"] >= relayed_so_far
        for node in (a, b):
            assert node.stop() == 143
            explained(node)
            print(f"{node.role}: missing {traffic(node)['missing']} across relay -> direct")
        # The sockets the search bound were given back (only the winner stays).
        (stats_free,) = [e for e in b.lines if e["event"] == "stopped"]
        assert stats_free["status"] == 143
    finally:
        stop_all(a, b)


# -- a direct path cut and restored: downgrade and upgrade -------------------------------


#: A table of the test's own for the drop rule (the NAT's table is untouched).
def cut(lab: Lab, role: str, rule: str) -> None:
    """Drop forwarded packets matching ``rule`` on router ``role``."""
    drop_forwarded(lab, role, [rule])


def uncut(lab: Lab, role: str) -> None:
    pass_forwarded(lab, role)


def selected_at(node: Node, after: float, test: Callable[[Line], bool]) -> Line:
    return node.wait(lambda e: e["event"] == "path_selected" and when(e) >= after and test(e))


@pytest.mark.scenarios("connect-eim")
def test_a_cut_direct_path_moves_to_the_relay_and_back_and_the_loss_is_counted(
    lab: Lab, turn: LabTurnServer
) -> None:
    config = ConnectConfig(keepalive_default=KEEPALIVE, keepalive_minimum=1.0)
    # Back to direct (the README's upgrade bound): at the loss every pair is
    # re-checked at once, the dead direct pair fails (its 2 transmissions
    # unanswered: RTO + Rm RTO = 2.5 s), and is re-checked 2 x recheck_min
    # (10 s) later, then 20, 40 ... s; a re-check that answers replaces the
    # relay after switch_confirmations samples confirm_interval apart (2 s).
    policy = config.check_policy
    first_recheck = policy.rto * (1 + policy.rm) + 2 * config.recheck_min
    hysteresis = (config.switch_confirmations - 1) * config.confirm_interval
    keepalive = ("--keepalive", str(KEEPALIVE))
    a, b = pair(lab, *relay_args(turn), *keepalive, "--traffic", str(RATE))
    try:
        # The README's downgrade bound with --keepalive 2: the direct path is
        # kept alive every min(2, 5) s while a relayed pair stands by, lost
        # after 5 keepalives 0.5 s apart go unanswered.
        downgrade_bound = a.wait_event("started")["downgrade_bound_s"]
        assert downgrade_bound == DOWNGRADE_BOUND
        direct = {
            n.role: n.wait(lambda e: e["event"] == "path_selected" and e["kind"] != "relay")
            for n in (a, b)
        }
        # The relayed pair stands by (checked, warm) before the cut.
        time.sleep(3.0)
        public_b = str(lab.site("b").public_address)
        cut(lab, "nat", f"ip daddr {public_b} meta l4proto udp drop")
        cut_at = time.time()
        # Whichever end's keepalives notice first reports the loss (the other
        # may just follow its nomination of the relayed pair).
        moved = {n.role: selected_at(n, cut_at, relayed) for n in (a, b)}
        first_loss = min(
            when(e) for n in (a, b) for e in n.events("path_lost") if when(e) >= cut_at
        )
        assert first_loss - cut_at <= downgrade_bound + SLACK
        assert max(when(e) for e in moved.values()) - cut_at <= downgrade_bound + SLACK
        why_saying(a, "the direct path was lost")
        # Datagrams lost in the downgrade: B's count of A's missing numbers
        # (A's side of the cut) and A's of B's, settled a second later.
        time.sleep(2.0)
        down = {n.role: traffic(n)["missing"] - missing_at(n, cut_at) for n in (a, b)}
        # Restore: back to direct within the upgrade bound.
        uncut(lab, "nat")
        restored_at = time.time()
        back = {n.role: selected_at(n, restored_at, lambda e: e["kind"] != "relay") for n in (a, b)}
        # Restored before the first re-check after the loss: taken back by it.
        assert restored_at - first_loss < first_recheck
        for role, line in back.items():
            assert when(line) - first_loss <= first_recheck + hysteresis + SLACK, (role, line)
            assert line["remote"] == direct[role]["remote"]
        time.sleep(2.0)
        up = {n.role: traffic(n)["missing"] - missing_at(n, restored_at) for n in (a, b)}
        upgraded = max(when(e) for e in back.values())
        print(
            f"downgrade: lost {first_loss - cut_at:.2f} s after the cut, datagrams lost {down};"
            f" upgrade {upgraded - restored_at:.2f} s after the restoration"
            f" ({upgraded - first_loss:.2f} s after the loss), datagrams lost {up} at {RATE}/s"
        )
        # What is lost in the downgrade is what was sent into the dead path
        # before the loss bound ran out, not more.
        assert max(down.values()) <= RATE * (downgrade_bound + SLACK)
        for node in (a, b):
            assert node.stop() == 143
            explained(node)
    finally:
        stop_all(a, b)
        uncut(lab, "nat")


# -- a port mapping makes two symmetric NATs direct --------------------------------------


@pytest.mark.scenarios("connect-upnp")
def test_a_mapped_port_makes_an_otherwise_impossible_pair_direct(lab: Lab) -> None:
    # Without the gateway's mapping: no direct path (both APDM).
    a, b = pair(lab)
    try:
        for node in (a, b):
            assert node.wait_event("peer_unreachable", timeout=60)["reason"] == "checks_failed"
            assert node.stop() == 143
    finally:
        stop_all(a, b)
    lab.reset_state()
    # With it (the client's router runs miniupnpd): direct through the mapped port.
    a = start_node(lab, A, [B], "--once", "--timeout", "40")
    b = start_node(lab, B, [A], "--no-portmap", "--once", "--timeout", "40")
    try:
        assert [node.finish(timeout=60) for node in (a, b)] == [0, 0]
        mapped = [c for e in a.events("candidates") for c in e["added"] if c["kind"] == "mapped"]
        assert mapped, a.events("candidates")
        path_a, path_b = a.events("path_selected")[-1], b.events("path_selected")[-1]
        assert agree(path_a, path_b)
        assert path_a["direct"] is True
        assert path_a["local_kind"] == "mapped"
        assert path_b["remote_kind"] == "mapped"
        assert path_a["local"] == mapped[0]["address"]
        for path in (path_a, path_b):
            assert path["reason"] == "direct through a mapped port"
        # The ladder said why: the port-mapping step is expected to work.
        step = a.wait(lambda e: e["event"] == "escalation" and e["step"] == "port_mapping")
        assert step["expect"] in {"works", "fails"}
        # The mapping is released on exit.
        assert lab.port_mapping_rule_count("nat") == 0
    finally:
        stop_all(a, b)


# -- hostile TURN servers ------------------------------------------------------------------


def no_traceback(node: Node) -> None:
    assert "Traceback" not in "".join(node.stderr), node.stderr


@pytest.mark.scenarios("connect-apdm")
def test_wrong_turn_credentials_are_a_clear_error_and_the_peer_relays(
    lab: Lab, turn: LabTurnServer
) -> None:
    a, b = pair(
        lab, extra_a=tuple(relay_args(turn, password="wrong")), extra_b=tuple(relay_args(turn))
    )
    try:
        refused = a.wait_event("relay", state="failed")
        assert refused["failure"] == "unauthorized"
        assert refused["code"] == 401
        assert refused["retry_in_s"] > 60  # a refusal is not hammered
        # B's allocation carries the path (A's side to B's relayed address).
        for node in (a, b):
            assert node.wait(lambda e: e["event"] == "path_selected")["kind"] == "relay"
        for node in (a, b):
            assert node.stop() == 143
            no_traceback(node)
            explained(node)
        assert not a.events("relay") or all(e["state"] != "allocated" for e in a.events("relay"))
    finally:
        stop_all(a, b)


@pytest.mark.scenarios("connect-apdm")
@pytest.mark.parametrize(
    ("options", "failure", "code"),
    [
        (TurnOptions(user_quota=1), "quota-reached", 486),
        (TurnOptions(relay_ports=(50000, 50000)), "insufficient-capacity", 508),
    ],
    ids=["486", "508"],
)
def test_a_server_that_refuses_with_486_or_508_is_retried_and_the_other_allocation_serves(
    lab: Lab, turn: LabTurnServer, options: TurnOptions, failure: str, code: int
) -> None:
    lab.start_turn(options)  # one allocation at a time: the second node is refused
    a = start_node(lab, A, [B], "--no-portmap", *relay_args(turn))
    try:
        a.wait_event("relay", state="allocated")
        b = start_node(lab, B, [A], "--no-portmap", *relay_args(turn))
        try:
            refused = b.wait_event("relay", state="failed")
            assert (refused["failure"], refused["code"]) == (failure, code)
            assert 0 < refused["retry_in_s"] <= 60  # retryable: backoff, not the 5 min hold
            for node in (a, b):
                assert node.wait(lambda e: e["event"] == "path_selected")["kind"] == "relay"
            assert b.stop() == 143
            no_traceback(b)
            explained(b)
        finally:
            b.kill()
        assert a.stop() == 143
        no_traceback(a)
    finally:
        a.kill()
        lab.start_turn()


@pytest.mark.scenarios("connect-apdm")
def test_a_turn_server_that_dies_mid_session_is_noticed_and_the_relay_comes_back(
    lab: Lab, turn: LabTurnServer
) -> None:
    keepalive = ("--keepalive", str(KEEPALIVE))
    a, b = pair(lab, *relay_args(turn), *keepalive, "--traffic", "20")
    try:
        for node in (a, b):
            node.wait(relayed)
        lab.stop_turn("coturn")
        stopped_at = time.time()

        def relay_lines(state: str, since: float) -> list[Line]:
            return [
                e
                for n in (a, b)
                for e in n.events("relay")
                if e["state"] == state and when(e) >= since
            ]

        try:
            # The relayed path dies with the allocations, both ends notice...
            for node in (a, b):
                node.wait(lambda e: e["event"] == "path_lost" and when(e) >= stopped_at, 40)
            # ...and a node whose allocation carried it learns it is gone.
            deadline = time.monotonic() + LIVENESS
            while not relay_lines("lost", stopped_at) and time.monotonic() < deadline:
                time.sleep(0.1)
            lost = relay_lines("lost", stopped_at)
            assert lost, [n.events("relay") for n in (a, b)]
            assert lost[0]["failure"] in {"server-unreachable", "timeout", "allocation-mismatch"}
        finally:
            lab.start_turn()
        back_at = time.time()
        # Recovery: a new allocation where one was lost, and a relayed path at both ends.
        deadline = time.monotonic() + 2 * LIVENESS
        while not relay_lines("allocated", back_at) and time.monotonic() < deadline:
            time.sleep(0.1)
        again = relay_lines("allocated", back_at)
        assert {e["relay"] for e in again} == {turn.uri("udp")}, [n.events("relay") for n in (a, b)]
        for node in (a, b):
            node.wait(lambda e: relayed(e) and when(e) >= back_at, timeout=60)
        received = traffic(b)["received"]
        b.wait(lambda e: e["event"] == "traffic" and e["received"] > received + 20)
        for node in (a, b):
            assert node.proc.poll() is None
            assert node.stop() == 143
            no_traceback(node)
            explained(node)
    finally:
        stop_all(a, b)


@pytest.mark.scenarios("connect-udp-blocked")
def test_the_commands_lab_up_prints_relay_a_udp_blocked_site(lab: Lab, turn: LabTurnServer) -> None:
    from natkit.cli.lab import lab_summary  # noqa: PLC0415

    commands = lab_summary(lab)["connect_commands"]
    assert "--relay turns:203.0.113.30:5349" in commands[0]  # UDP blocked: TLS
    assert "--relay 'turn:203.0.113.30:3478?transport=udp'" in commands[1]
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
    for output in outputs:
        lines = [json.loads(line) for line in output.splitlines()]
        (path,) = [line for line in lines if line["event"] == "path_selected"]
        assert path["kind"] == "relay"
        assert [line for line in lines if line["event"] == "why_relayed"]
