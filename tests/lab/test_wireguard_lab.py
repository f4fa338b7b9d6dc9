"""WireGuard (wireguard-go) across real kernel NATs, and natkit on its port.

One lab for the module (``wireguard-mesh``: three sites, each behind a
port-preserving masquerade with an input firewall, coturn on the
internet), wireguard-go on every site client (``natkit.lab.wireguard``):

* with endpoints set by hand through natkit's ``wg`` wrapper, every pair of
  the three sites pings through the tunnel (a full mesh, one interface and
  one listen port per node), and ``wg show dump`` from the real
  wireguard-go parses to what was configured;
* while wireguard-go owns port P, natkit's raw-socket port sends a STUN
  Binding request from P to coturn and reads the answer through its BPF
  filter; coturn saw the same external port as WireGuard's peers do
  (conntrack in the router), and the tunnel keeps working;
* the filter passes nothing but STUN addressed to P, IP options included,
  and two shared ports on two ports each get only their own (the stale-port
  trap of tailscale#13140);
* over IPv6 (the pooled ``dual-stack`` lab) the same, without an IP header.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LabPool

from natkit.aio.sharedsock import SharedUdpPort
from natkit.aio.wireguard import WireGuardControl
from natkit.endpoint import Endpoint, Family
from natkit.lab import CommandError, Lab
from natkit.lab.netns import namespace_pids, socket_in
from natkit.lab.wireguard import (
    DEFAULT_LISTEN_PORT,
    UAPI_DIR,
    WIREGUARD_MESH,
    WireGuardMesh,
)
from natkit.sansio import SansIOCore
from natkit.stun.client import StunClient
from natkit.stun.codec import binding_request
from natkit.stun.events import ClientEvent, ResponseReceived, TransactionTimedOut
from natkit.stun.transaction import RetransmissionPolicy
from natkit.wireguard.errors import InterfaceNameError, NoSuchInterfaceError
from natkit.wireguard.keys import WireGuardKey

pytestmark = pytest.mark.lab
in_wireguard_lab = pytest.mark.xdist_group("wireguard")

P = DEFAULT_LISTEN_PORT
SITES = ("", "b", "c")
QUICK = RetransmissionPolicy(rto=0.25, rc=4, rm=4)


@pytest.fixture(scope="module")
def mesh(lab_pool: LabPool) -> Iterator[WireGuardMesh]:
    """The module's lab with wireguard-go on every site, endpoints set by
    hand through natkit's wrapper, and keepalives on (so both NATs open)."""
    with Lab.up(WIREGUARD_MESH, servers=("coturn",)) as lab, WireGuardMesh.start(lab) as wg:
        wg.add_peers()

        async def set_endpoints() -> None:
            for here in SITES:
                for there in SITES:
                    if here != there:
                        await wg.node(here).control.set_endpoint(
                            wg.node(there).public_key, wg.public_endpoint(there)
                        )

        asyncio.run(set_endpoints())
        wg.set_keepalive(1)
        yield wg


def _ping_until_answered(mesh: WireGuardMesh, source: str, destination: str) -> None:
    """The first handshake may need a keepalive round (~1 s); then ping must pass."""
    deadline = time.monotonic() + 8
    while True:
        result = mesh.ping(source, destination, count=1, wait=1)
        if result.returncode == 0:
            return
        assert time.monotonic() < deadline, (
            f"no ping {source or 'main'} -> {destination or 'main'}: {result.stdout}"
            f"\n{mesh.node(source).log_tail()}"
        )


@in_wireguard_lab
def test_full_mesh_pings_through_two_nats(mesh: WireGuardMesh) -> None:
    for source in SITES:
        for destination in SITES:
            if source != destination:
                _ping_until_answered(mesh, source, destination)
    # Settled: three pings in a row, none lost, every pair.
    for source in SITES:
        for destination in SITES:
            if source != destination:
                result = mesh.ping(source, destination, count=3)
                assert result.returncode == 0, result.stdout
                assert " 0% packet loss" in result.stdout


@in_wireguard_lab
def test_dump_of_the_real_wireguard_go(mesh: WireGuardMesh) -> None:
    for site in SITES:
        _ping_until_answered(mesh, site, "b" if site != "b" else "c")
    for site in SITES:
        node = mesh.node(site)
        status = asyncio.run(node.control.status())
        assert status.name == "wg0"
        assert status.public_key == node.public_key
        assert (status.listen_port, status.fwmark) == (P, None)
        others = {mesh.node(s).public_key: s for s in SITES if s != site}
        assert {p.public_key for p in status.peers} == set(others)
        for peer in status.peers:
            other = mesh.node(others[peer.public_key])
            assert peer.endpoint == mesh.public_endpoint(other.site)
            assert [str(n) for n in peer.allowed_ips] == [f"{other.tunnel_address.ip}/32"]
            assert peer.persistent_keepalive == 1
            assert not peer.has_preshared_key
            assert peer.rx_bytes > 0
            assert peer.tx_bytes > 0
            assert peer.latest_handshake is not None
            assert abs(peer.latest_handshake - time.time()) < 300
        handshakes = asyncio.run(node.control.latest_handshakes())
        assert set(handshakes) == set(others)
        assert all(when is not None for when in handshakes.values())


@in_wireguard_lab
def test_wg_errors_against_the_real_tool(mesh: WireGuardMesh) -> None:
    node = mesh.node("")
    missing = WireGuardControl("wg9", command_prefix=node.command_prefix)
    with pytest.raises(NoSuchInterfaceError) as caught:
        asyncio.run(missing.status())
    assert caught.value.interface == "wg9"
    # Without the node's mount namespace the UAPI socket is not there.
    unreachable = WireGuardControl("wg0", command_prefix=("ip", "netns", "exec", node.namespace))
    with pytest.raises(NoSuchInterfaceError):
        asyncio.run(unreachable.latest_handshakes())
    # Each node's UAPI socket lives on its own tmpfs, never in the host's directory.
    assert Path(f"/proc/{node.pid}/root{UAPI_DIR}/wg0.sock").is_socket()
    assert not os.path.exists(f"{UAPI_DIR}/wg0.sock") or all(
        os.stat(f"{UAPI_DIR}/wg0.sock").st_ino
        != os.stat(f"/proc/{mesh.node(s).pid}/root{UAPI_DIR}/wg0.sock").st_ino
        for s in SITES
    )


# ----------------------------------------------------------- shared port


async def drive(core: SansIOCore[ClientEvent], port: SharedUdpPort) -> ClientEvent:
    """Run a sans-IO core on a datagram port until its first event: what
    ``CoreRunner.attach_port`` would do (see ``natkit.aio.sharedsock``)."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def flush() -> None:
        for datagram in core.datagrams_to_send(loop.time()):
            port.send(datagram.data, datagram.remote)

    def receive(data: bytes, remote: Endpoint) -> None:
        core.receive_datagram(data, remote, 0, loop.time())
        flush()
        wake.set()

    port.set_receiver(receive)
    flush()
    while (event := core.next_event()) is None:
        deadline = core.get_timer()
        assert deadline is not None, "the core stopped without an event"
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), max(0.0, deadline - loop.time()))
        if loop.time() >= deadline:
            core.handle_timer(loop.time())
            flush()
    return event


async def binding_via_shared_port(port: SharedUdpPort, server: Endpoint) -> Endpoint | None:
    """natkit's STUN client on the shared port: the reflexive address it learns."""
    client = StunClient(policy=QUICK)
    now = asyncio.get_running_loop().time()
    client.send_request(binding_request(client.new_transaction_id()), server, now)
    event = await drive(client, port)
    if isinstance(event, ResponseReceived):
        return event.response.reflexive_address
    assert isinstance(event, TransactionTimedOut), event
    return None


def open_shared(lab: Lab, role: str, port: int, family: Family = Family.IPV4) -> SharedUdpPort:
    """A shared port whose raw socket lives in ``role``'s namespace."""
    factory = functools.partial(socket_in, lab.namespace(role))
    return SharedUdpPort.open(port, family=family, socket_factory=factory)


def conntrack_udp(lab: Lab, router: str, inside: str, port: int) -> list[dict[str, str]]:
    """The router's conntrack entries for UDP from ``inside``:``port``, as
    dicts: original tuple keys plain, reply tuple keys prefixed ``reply_``."""
    argv = ["conntrack", "-L", "-p", "udp", "--orig-src", inside, "--orig-port-src", str(port)]
    result = lab.exec(router, argv, check=True)
    entries = []
    for line in result.stdout.splitlines():
        fields = [f.split("=", 1) for f in line.split() if "=" in f]
        entry: dict[str, str] = {}
        for key, value in fields:
            entry[f"reply_{key}" if key in entry else key] = value
        entries.append(entry)
    return entries


@in_wireguard_lab
def test_stun_from_wireguards_port_through_the_nat(mesh: WireGuardMesh) -> None:
    lab = mesh.lab
    coturn = lab.stun_servers["coturn"].primary
    site = lab.site("")
    _ping_until_answered(mesh, "", "b")

    async def exchange() -> tuple[Endpoint | None, int, int]:
        port = open_shared(lab, site.client_role, P)
        try:
            mapped = await binding_via_shared_port(port, coturn)
            # WireGuard's own traffic on P while natkit's raw socket is open:
            # the kernel filter must keep every one of its packets out.
            pinged = await asyncio.to_thread(mesh.ping, "", "b", count=5)
            return mapped, pinged.returncode, port.counters.rejected
        finally:
            port.close()

    mapped, ping_status, rejected = asyncio.run(exchange())
    # The NAT mapped natkit's datagram to WireGuard's external endpoint.
    assert mapped == Endpoint(site.public_address, P)
    assert ping_status == 0
    assert rejected == 0
    # One external port for all of P's flows: WireGuard's to its two peers
    # and natkit's to coturn (plain masquerade reuses the mapping, LAB.md).
    entries = conntrack_udp(lab, site.router_roles[-1], str(site.client_addresses[0]), P)
    destinations = {e["dst"] for e in entries}
    assert {str(coturn.address), str(lab.site("b").public_address)} <= destinations
    assert {e["reply_dport"] for e in entries} == {str(P)}
    # WireGuard still owns its socket and still works afterwards.
    sockets = lab.exec(site.client_role, ["ss", "-uanpH", f"sport = :{P}"], check=True).stdout
    assert sockets.count("wireguard-go") == 2  # IPv4 and IPv6
    _ping_until_answered(mesh, "b", "")
    before = asyncio.run(mesh.node("").control.status()).peer(mesh.node("b").public_key)
    assert mesh.ping("", "b", count=2).returncode == 0
    after = asyncio.run(mesh.node("").control.status()).peer(mesh.node("b").public_key)
    assert before is not None
    assert after is not None
    assert after.rx_bytes > before.rx_bytes


@in_wireguard_lab
def test_filter_passes_only_stun_for_its_port(mesh: WireGuardMesh) -> None:
    """Sent over the client's loopback, so only the client's own kernel
    decides what each raw socket gets."""
    lab = mesh.lab
    role = lab.site("").client_role

    def stun(tag: bytes) -> bytes:
        """A Binding request whose transaction ID is ``tag`` repeated."""
        return bytes.fromhex("000100002112a442") + tag * 12

    async def scenario() -> tuple[list[bytes], list[bytes], int, int]:
        got_p: list[bytes] = []
        got_q: list[bytes] = []
        done = asyncio.Event()
        port_p = open_shared(lab, role, P)
        port_q = open_shared(lab, role, P + 1)  # an old port, say (tailscale#13140)
        port_p.set_receiver(lambda data, _remote: (got_p.append(data), done.set()))
        port_q.set_receiver(lambda data, _remote: got_q.append(data))
        sender = socket_in(lab.namespace(role))
        with_options = socket_in(lab.namespace(role))
        # NOP, NOP, NOP, end of list: a 24-byte IP header.
        with_options.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, b"\x01\x01\x01\x00")
        try:
            loopback = "127.0.0.1"
            sender.sendto(b"\x04\x00\x00\x00" + os.urandom(28), (loopback, P))  # WG-like
            sender.sendto(stun(b"n")[:4] + b"\x00" * 16, (loopback, P))  # no cookie
            sender.sendto(b"\x00\x01\x00\x00\x21\x12", (loopback, P))  # too short
            sender.sendto(b"\x40" + stun(b"t")[1:], (loopback, P))  # top bits not STUN's
            sender.sendto(stun(b"Q"), (loopback, P + 1))  # for the other port
            with_options.sendto(stun(b"O"), (loopback, P))
            await asyncio.sleep(0.05)
            sender.sendto(stun(b"L"), (loopback, P))  # the last one
            async with asyncio.timeout(5):
                while len(got_p) < 2:
                    done.clear()
                    await done.wait()
            await asyncio.sleep(0.05)
            return got_p, got_q, port_p.counters.rejected, port_q.counters.rejected
        finally:
            port_p.close()
            port_q.close()
            sender.close()
            with_options.close()

    got_p, got_q, rejected_p, rejected_q = asyncio.run(scenario())
    # Delivered: the one with IP options, then the last one.
    assert got_p == [stun(b"O"), stun(b"L")]
    assert got_q == [stun(b"Q")]
    # Only the wrong top bits reached Python (the kernel filter checks port
    # and cookie, not those bits); everything else the kernel kept out.
    assert (rejected_p, rejected_q) == (1, 0)


@pytest.mark.scenarios("dual-stack")
def test_shared_port_over_ipv6(lab: Lab) -> None:
    """IPv6 raw sockets see no IP header: the filter counts from the UDP
    header, the kernel fills the checksum (IPV6_CHECKSUM)."""
    coturn = lab.stun_servers["coturn"].ipv6
    assert coturn is not None
    (client_v6,) = lab.client_addresses_v6
    role = lab.site("").client_role
    with WireGuardMesh.start(lab) as mesh:

        async def exchange() -> tuple[Endpoint | None, list[bytes], int]:
            port = open_shared(lab, role, P, Family.IPV6)
            got: list[bytes] = []
            sender = socket_in(lab.namespace(role), socket.AF_INET6)
            try:
                mapped = await binding_via_shared_port(port, coturn)
                port.set_receiver(lambda data, _remote: got.append(data))
                sender.sendto(b"\x01\x00\x00\x00" + os.urandom(28), ("::1", P))
                sender.sendto(bytes.fromhex("000100002112a442") + b"x" * 12, ("::1", P + 1))
                sender.sendto(bytes.fromhex("000100002112a442") + b"y" * 12, ("::1", P))
                async with asyncio.timeout(5):
                    while not got:
                        await asyncio.sleep(0.01)
                return mapped, got, port.counters.rejected
            finally:
                port.close()
                sender.close()

        mapped, got, rejected = asyncio.run(exchange())
        assert mapped == Endpoint(client_v6, P)
        assert got == [bytes.fromhex("000100002112a442") + b"y" * 12]
        assert rejected == 0
        assert mesh.node("").process.poll() is None


# ------------------------------------------------------------ lifecycle


@in_wireguard_lab
def test_a_failed_start_leaves_nothing(mesh: WireGuardMesh) -> None:
    lab = mesh.lab
    role = lab.site("c").client_role

    def wireguard_pids() -> set[int]:
        found = set()
        for pid in namespace_pids(lab.namespace(role)):
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if comm == "wireguard-go":
                found.add(pid)
        return found

    before = wireguard_pids()
    keys = set(lab.record.workdir.glob("*.key"))
    with pytest.raises(InterfaceNameError):
        WireGuardMesh.start(lab, ["c"], interface="-h")
    # The port is wg0's: configuring it fails after wireguard-go started.
    with pytest.raises(CommandError, match="in use"):
        WireGuardMesh.start(lab, ["c"], interface="wg1", listen_port=P)
    assert wireguard_pids() == before
    assert set(lab.record.workdir.glob("*.key")) == keys
    assert WireGuardKey.parse(str(mesh.node("c").public_key)) == mesh.node("c").public_key
