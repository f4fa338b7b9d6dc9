"""Building, sharing and removing labs: nothing may be left behind, ever."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import select
import socket
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from natkit.cli.main import main as cli_main
from natkit.lab import (
    Lab,
    LabError,
    MappingBehavior,
    NatSpec,
    Scenario,
    ServerStartError,
    get_scenario,
    servers,
)
from natkit.lab import state as lab_state
from natkit.lab.nat import NAT_TABLE, SEQUENTIAL_BASE_PORT
from natkit.lab.netns import list_namespaces, namespace_pids, read_sysctl
from natkit.lab.plan import PEER_ADDRESSES
from natkit.lab.state import LabRecord

pytestmark = pytest.mark.lab

MakeLab = Callable[..., Lab]
#: Linux's SO_RCVBUFFORCE (not exported by the socket module): root may exceed rmem_max.
SO_RCVBUFFORCE = 33
PROJECT = Path(__file__).resolve().parents[2]


def lab_namespaces(run_id: str) -> list[str]:
    return [n for n in list_namespaces() if n.startswith(f"nk-{run_id}-")]


def assert_gone(run_id: str, pids: dict[str, int] | None = None) -> None:
    assert lab_namespaces(run_id) == []
    assert not lab_state.state_path(run_id).exists()
    assert not (lab_state.STATE_DIR / f"{run_id}.d").exists()
    for pid in (pids or {}).values():
        assert not _running(pid), f"pid {pid} survived teardown"


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def natkit_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "natkit.cli", "lab", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT,
    )


def unused_run_id() -> str:
    while True:
        run_id = secrets.token_hex(3)[:5]
        if not lab_namespaces(run_id) and not lab_state.state_path(run_id).exists():
            return run_id


def udp_roundtrip(lab: Lab) -> bool:
    """One datagram client -> peer host and back through the NAT."""
    with lab.socket("peer") as server, lab.socket("client") as client:
        server.bind((str(PEER_ADDRESSES[0]), 0))
        server.settimeout(2)
        client.settimeout(2)
        client.sendto(b"ping", server.getsockname())
        data, source = server.recvfrom(100)
        server.sendto(data, source)
        return client.recv(100) == b"ping"


# ------------------------------------------------------------------ teardown


@pytest.mark.usefixtures("lab_host")
def test_teardown_when_body_raises() -> None:
    seen: dict[str, object] = {}

    def body() -> None:
        with Lab.up("eim-apdf", servers=("coturn",)) as lab:
            seen.update(lab=lab, run_id=lab.run_id, pids=dict(lab.record.pids))
            assert len(lab_namespaces(lab.run_id)) == len(lab.namespaces)
            assert lab.record.pids
            assert all(_running(p) for p in lab.record.pids.values())
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        body()
    lab, run_id, pids = seen["lab"], seen["run_id"], seen["pids"]
    assert isinstance(lab, Lab)
    assert isinstance(run_id, str)
    assert isinstance(pids, dict)
    assert not lab.is_up
    assert_gone(run_id, pids)
    lab.down()  # idempotent


@pytest.mark.usefixtures("lab_host")
def test_failed_build_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that dies at start makes ``up`` raise, after removing everything."""
    monkeypatch.setattr(servers, "server_argv", lambda kind, workdir, **_: ["false"])
    run_id = unused_run_id()
    with pytest.raises(ServerStartError, match="exited with status 1"):
        Lab.up("cgnat", servers=("coturn",), run_id=run_id)
    assert_gone(run_id)


def test_down_cleans_killed_and_orphaned_labs(make_lab: MakeLab) -> None:
    """Labs of a SIGKILLed process, and namespaces without a state file, can be removed.

    One test on purpose: ``down --stale`` acts on every stale lab and orphan
    on the host, so a second test making such leftovers could race with it.
    """
    code = (
        "import os, signal\n"
        "from natkit.lab import Lab\n"
        "lab = Lab.up('eim-adf', servers=('coturn',))\n"
        "print(lab.run_id, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT,
    )
    assert proc.returncode == -9, proc.stderr
    killed = proc.stdout.strip()
    record = lab_state.load(killed)
    assert record.stale
    assert len(lab_namespaces(killed)) == len(record.namespaces)
    assert _running(record.pids["coturn"])

    orphan = make_lab("no-nat", servers=())
    lab_state.remove(orphan.run_id)  # as if the state file were lost

    listing = json.loads(natkit_cli("list", "--json").stdout)
    status = {lab["id"]: lab["status"] for lab in listing["labs"]}
    assert status[killed] == "stale"
    assert orphan.run_id not in status
    assert set(orphan.namespaces.values()) <= set(listing["orphaned_namespaces"])

    by_id = natkit_cli("down", orphan.run_id)
    assert by_id.returncode == 0, by_id.stderr
    assert lab_namespaces(orphan.run_id) == []
    again = natkit_cli("down", orphan.run_id)
    assert again.returncode == 1
    assert "no lab with id" in again.stderr

    stale = natkit_cli("down", "--stale")
    assert stale.returncode == 0, stale.stderr
    assert f"lab {killed} is down" in stale.stdout
    assert_gone(killed, record.pids)


# ------------------------------------------------------------ coexistence


def test_two_labs_at_once(make_lab: MakeLab) -> None:
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: make_lab("eim-apdf", servers=()), range(2))
    assert first.run_id != second.run_id
    assert not set(first.namespaces.values()) & set(second.namespaces.values())
    # Identical addresses, separate worlds: both work at the same time.
    assert udp_roundtrip(first)
    assert udp_roundtrip(second)
    first.down()
    assert lab_namespaces(first.run_id) == []
    assert udp_roundtrip(second)


def test_explicit_run_id_is_reserved(make_lab: MakeLab) -> None:
    lab = make_lab("no-nat", servers=())
    with pytest.raises(LabError, match="already in use"):
        Lab.up("no-nat", servers=(), run_id=lab.run_id)
    assert lab_namespaces(lab.run_id)  # the failed attempt did not remove the first lab


# ------------------------------------------------------------------- knobs


def _send_and_count(
    sender: socket.socket, receiver: socket.socket, target: tuple[str, int], count: int
) -> int:
    """Send ``count`` numbered datagrams; how many distinct ones arrive."""
    received: set[bytes] = set()
    for i in range(count):
        sender.sendto(i.to_bytes(4, "big"), target)
    while select.select([receiver], [], [], 0.3)[0]:
        received.add(receiver.recv(16))
    return len(received)


@pytest.mark.scenarios("eim-apdf", "no-nat")
def test_loss_knob(lab: Lab) -> None:
    count, percent = 2000, 30.0
    with lab.socket("peer") as server, lab.socket("client") as client:
        for sock in (server, client):
            # 2000 queued datagrams must not overflow the receive buffer.
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        server.bind((str(PEER_ADDRESSES[0]), 0))
        client.bind((str(lab.client_addresses[0]), 0))
        server.settimeout(2)
        client.sendto(b"open", server.getsockname())
        _, mapped = server.recvfrom(16)

        lab.set_loss(percent)
        try:
            assert lab.loss_percent == percent
            assert lab_state.load(lab.run_id).loss_percent == percent
            upstream = _send_and_count(client, server, server.getsockname(), count)
            downstream = _send_and_count(server, client, mapped, count)
        finally:
            lab.set_loss(0)
        # 30 % each way; binomial sd is ~1 % of 2000, so +-5 % is far outside chance.
        for got in (upstream, downstream):
            assert abs(100 * (1 - got / count) - percent) < 5, (upstream, downstream)
        assert _send_and_count(client, server, server.getsockname(), 500) == 500
        assert _send_and_count(server, client, mapped, 500) == 500


@pytest.mark.scenarios("apdm-sequential")
def test_reset_state_restarts_allocation(lab: Lab) -> None:
    def external_port() -> int:
        with lab.socket("peer") as server, lab.socket("client") as client:
            server.bind((str(PEER_ADDRESSES[0]), 0))
            server.settimeout(2)
            client.sendto(b"x", server.getsockname())
            return int(server.recvfrom(16)[1][1])

    assert [external_port() for _ in range(3)] == [SEQUENTIAL_BASE_PORT + i for i in range(3)]
    conntrack = lab.exec("nat", ["conntrack", "-L", "-p", "udp"], check=True)
    assert conntrack.stdout.count("dport=") >= 3
    lab.reset_state()
    assert lab.exec("nat", ["conntrack", "-L", "-p", "udp"], check=True).stdout == ""
    assert external_port() == SEQUENTIAL_BASE_PORT


@pytest.mark.scenarios("eim-eif")
def test_reset_state_flushes_dynamic_maps(lab: Lab) -> None:
    assert udp_roundtrip(lab)
    listing = ["nft", "list", "map", "ip", NAT_TABLE, "ext2int"]
    assert "elements" in lab.exec("nat", listing, check=True).stdout
    lab.reset_state()
    assert "elements" not in lab.exec("nat", listing, check=True).stdout


def test_udp_timeout_knob(make_lab: MakeLab) -> None:
    base = get_scenario("eim-apdf")
    custom = Scenario(
        "eim-apdf-short-timeout",
        "eim-apdf whose UDP mappings expire after 5 s",
        (NatSpec(MappingBehavior.EIM, udp_timeout_s=5),),
        base.expected,
    )
    lab = make_lab(custom, servers=())
    assert read_sysctl(lab.namespace("nat"), "net.netfilter.nf_conntrack_udp_timeout") == "5"
    assert read_sysctl(lab.namespace("client"), "net.ipv6.conf.default.accept_dad") == "0"
    assert read_sysctl(lab.namespace("inet"), "net.bridge.bridge-nf-call-iptables") == "0"


# --------------------------------------------------------------------- CLI


@pytest.mark.usefixtures("lab_host")
def test_cli_up_list_down() -> None:
    up = natkit_cli("up", "eim-eif", "--json", "--no-coturn", "--no-natkit-server", "--loss", "1")
    assert up.returncode == 0, up.stderr
    summary = json.loads(up.stdout)
    run_id = summary["id"]
    try:
        assert summary["scenario"] == "eim-eif"
        assert summary["expected"]["filtering"] == "EIF"
        assert summary["loss_percent"] == 1.0
        assert summary["stun_servers"] == {}
        assert sorted(summary["namespaces"].values()) == lab_namespaces(run_id)
        # No server to try a natkit command against: the example still runs.
        assert summary["tls_certificate"] is None
        assert summary["gateways"] == []
        assert summary["example_command"] == (
            f"ip netns exec {summary['client_namespace']} ip -brief address"
        )
        record: LabRecord = lab_state.load(run_id)
        assert record.detached
        assert not record.stale
        listing = natkit_cli("list")
        assert f"{run_id}  eim-eif" in listing.stdout
        assert "detached" in listing.stdout
        assert "apdm-sequential" in listing.stdout
        attached = Lab.attach(run_id)
        assert attached.client_namespace == summary["client_namespace"]
    finally:
        down = natkit_cli("down", run_id)
    assert down.returncode == 0, down.stderr
    assert_gone(run_id)


def test_cli_usage_errors() -> None:
    assert natkit_cli("down").returncode == 64
    bad = natkit_cli("up", "no-such-scenario")
    assert bad.returncode == 64
    assert "invalid choice" in bad.stderr


@pytest.mark.parametrize("argv", [["up", "eim-apdf"], ["down", "--all"]])
def test_cli_needs_root(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli_main(["lab", *argv]) == 1
    err = capsys.readouterr().err
    assert "needs root" in err
    assert "sudo" in err


def test_lab_pids_are_in_lab_namespaces(make_lab: MakeLab) -> None:
    lab = make_lab("eim-apdf", servers=("coturn",))
    coturn_pid = lab.record.pids["coturn"]
    assert coturn_pid in namespace_pids(lab.namespace("coturn"))
    assert lab.server_log("coturn").exists()
    assert servers.stun_answers(lab.client_namespace, lab.stun_servers["coturn"].all(), timeout=1.0)


@pytest.mark.scenarios("eim-apdf")
def test_in_process_access(lab: Lab) -> None:
    """Sockets and calls inside lab namespaces, from this process; root untouched."""
    assert lab.call_in("nat", lambda: Path("/proc/sys/net/ipv4/ip_forward").read_text()) == "1\n"
    assert (
        lab.call_in("nat", lambda: Path("/proc/sys/net/ipv4/conf/all/send_redirects").read_text())
        == "0\n"
    )
    root_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    assert " nk-" not in root_links.stdout
    routes = lab.exec("client", ["ip", "route"], check=True).stdout
    assert "default via 192.168.1.1 dev nk-eth0" in routes

    async def echo_once() -> bytes:
        loop = asyncio.get_running_loop()
        received: asyncio.Future[bytes] = loop.create_future()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
                received.set_result(data)

        server = lab.socket("peer")
        server.bind((str(PEER_ADDRESSES[1]), 0))
        server.settimeout(2)
        client = lab.socket("client")
        transport, _ = await loop.create_datagram_endpoint(Client, sock=client)
        try:
            transport.sendto(b"hello", server.getsockname())
            data, source = await loop.run_in_executor(None, server.recvfrom, 100)
            server.sendto(data.upper(), source)
            return await asyncio.wait_for(received, 2)
        finally:
            transport.close()
            server.close()

    assert asyncio.run(echo_once()) == b"HELLO"
