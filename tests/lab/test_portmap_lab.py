"""Port mapping against the real miniupnpd in the lab (scenarios ``upnp``, ``upnp-igd1``).

Every test runs natkit inside the lab's client namespace (the mapper on a
thread that entered it, or the CLI under ``ip netns exec``), so PCP,
NAT-PMP and SSDP only ever reach the lab router. The router's nftables
chains are the ground truth: a mapping exists when miniupnpd wrote its
DNAT rule, and is gone when the rule is. After every test no rule may be
left (``no_leftover_mappings``); ``conftest.LabPool.close`` checks again
before the labs go down.

Gateway restarts: miniupnpd 2.3.1 multicasts one PCP ANNOUNCE when it starts
(from its LAN address, port 5351, to 224.0.0.1:5350, TTL 1; tcpdump in the
router's and the client's namespaces) and no NAT-PMP announcement: that one
it sends only when its external address may have changed (SIGUSR1), to
224.0.0.1 ports 5351 and 5350, together with a PCP ANNOUNCE whose epoch it
resets. The restart tests rely on that ANNOUNCE; one keeps the renewal-time
epoch check honest without it.
"""

from __future__ import annotations

import asyncio
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from natkit.aio.driver import open_udp_sockets
from natkit.aio.portmap import LeaseJournal, PortMapper
from natkit.aio.portmap.session import run_client
from natkit.endpoint import Endpoint
from natkit.lab import Lab
from natkit.portmap.events import (
    ExternalAddressFound,
    GatewayRestarted,
    MappingGranted,
    MappingRenewed,
    PortmapEvent,
)
from natkit.portmap.mapper import PortMapperConfig
from natkit.portmap.mapping import MappingProtocol
from natkit.portmap.pcp_client import PcpConfig
from natkit.portmap.pmp_client import PmpClient, PmpConfig
from natkit.portmap.report import ProbeStatus

T = TypeVar("T")

PROTOCOLS = {
    "pcp": MappingProtocol.PCP,
    "pmp": MappingProtocol.NAT_PMP,
    "upnp": MappingProtocol.UPNP_IGD,
}
CLI = [sys.executable, "-m", "natkit.cli.portmap"]


def in_client(lab: Lab, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on an event loop inside the client namespace."""
    return lab.call_in("client", lambda: asyncio.run(make()))


@pytest.fixture
def no_leftover_mappings(lab: Lab) -> Iterator[None]:
    yield
    assert lab.port_mappings() == (), lab.port_mapping_ruleset()
    assert lab.port_mapping_rule_count() == 0, lab.port_mapping_ruleset()


@pytest.fixture
def journal(tmp_path: Path) -> LeaseJournal:
    return LeaseJournal(tmp_path / "portmap.json")


def mapper_for(
    lab: Lab,
    port: int,
    protocol: MappingProtocol,
    journal: LeaseJournal,
    *,
    listen_announcements: bool = True,
) -> PortMapper:
    # Act on an announcement at once: there is one client here, not a LAN full.
    config = PortMapperConfig(
        protocols=(protocol,),
        pcp=PcpConfig(announce_delay=0.05),
        pmp=PmpConfig(announce_delay=0.05),
        probe_timeout=3.0,
        listen_announcements=listen_announcements,
    )
    return PortMapper(port, gateway=str(lab.gateway_address()), config=config, journal=journal)


async def let_gateway_age(lab: Lab) -> None:
    """Wait until the gateway has run 4 s. RFC 6887 §8.5 and RFC 6886 §3.6
    tolerate a second or two of epoch jitter, so a daemon restarted a moment
    after it started cannot be told apart: let it run a while first, as a
    real router has (every restart test restarts it again)."""
    epoch = await gateway_epoch(lab)
    await asyncio.sleep(max(0.0, 4.0 - epoch))


async def gateway_epoch(lab: Lab) -> int:
    """The gateway's NAT-PMP epoch, from a probe (a public address request)."""
    local = Endpoint(lab.client_addresses[0], 0)
    now = asyncio.get_running_loop().time()
    probe = PmpClient(Endpoint(lab.gateway_address(), 5351), Endpoint(local.address, 1), now,
                      start=False, probe=True)  # fmt: skip
    session = await run_client(probe, open_udp_sockets([local]))
    try:
        event = await session.next_event(5.0)
    finally:
        session.close()
    assert isinstance(event, ExternalAddressFound), event
    assert event.epoch is not None
    return event.epoch


async def until_recreated(mapper: PortMapper, timeout: float) -> list[PortmapEvent]:
    """The mapper's events up to the re-creation of its mapping."""
    events: list[PortmapEvent] = []
    while True:
        event = await mapper.next_event(timeout)
        events.append(event)
        if isinstance(event, MappingGranted) and event.recreated:
            return events


def send_from_internet(lab: Lab, target: tuple[str, int], payload: bytes) -> None:
    peer = lab.socket("peer")
    try:
        peer.sendto(payload, target)
    finally:
        peer.close()


def receive(sock: socket.socket, timeout: float = 2.0) -> bytes:
    sock.settimeout(timeout)
    return sock.recvfrom(2048)[0]


@pytest.mark.scenarios("upnp")
@pytest.mark.parametrize("name", list(PROTOCOLS))
@pytest.mark.usefixtures("no_leftover_mappings")
def test_inbound_udp_reaches_client_then_renewal_and_deletion(
    lab: Lab, journal: LeaseJournal, name: str
) -> None:
    protocol = PROTOCOLS[name]
    port = 41000 + list(PROTOCOLS).index(name)

    async def scenario() -> tuple[bytes, int, int, tuple[Any, ...], tuple[Any, ...]]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", port))
        try:
            async with mapper_for(lab, port, protocol, journal) as mapper:
                mapping = mapper.mapping
                assert mapping is not None
                assert mapping.protocol is protocol
                rules = lab.port_mappings()
                external = (str(mapping.external.address), mapping.external.port)
                # APDF masquerade: only the gateway's promise lets this in.
                await asyncio.to_thread(
                    send_from_internet, lab, external, b"hello " + name.encode()
                )
                data = await asyncio.to_thread(receive, sock)
                mapper.revalidate()
                while not isinstance(event := await mapper.next_event(5.0), MappingRenewed):
                    assert not isinstance(event, MappingGranted), event
                assert event.mapping.external == mapping.external
                assert journal.entries(), "a held mapping is journaled"
            after = lab.port_mappings()
            return data, mapping.external.port, event.mapping.external.port, rules, after
        finally:
            sock.close()

    data, first_port, renewed_port, rules, after = in_client(lab, scenario)
    assert data == b"hello " + name.encode()
    assert renewed_port == first_port
    assert [(r.external_port, r.internal.port) for r in rules] == [(first_port, port)]
    assert after == ()
    assert journal.entries() == []


@pytest.mark.scenarios("upnp-igd1")
@pytest.mark.usefixtures("no_leftover_mappings")
def test_igd_v1_maps_with_add_port_mapping(lab: Lab, journal: LeaseJournal) -> None:
    async def scenario() -> tuple[str, int]:
        async with mapper_for(lab, 41010, MappingProtocol.UPNP_IGD, journal) as mapper:
            assert mapper.result is not None
            result = mapper.result.result_for(MappingProtocol.UPNP_IGD)
            mapping = mapper.mapping
            assert mapping is not None
            return result.detail, len(lab.port_mappings())

    detail, rules = in_client(lab, scenario)
    assert detail.startswith("IGD:1 ")
    assert rules == 1


@pytest.mark.scenarios("upnp")
@pytest.mark.parametrize("name", ["pcp", "pmp"])
@pytest.mark.parametrize("state", ["kept", "lost"])
@pytest.mark.usefixtures("no_leftover_mappings")
def test_restart_announcement_recreates_the_mapping(
    lab: Lab, journal: LeaseJournal, name: str, state: str
) -> None:
    """The restarted miniupnpd's PCP ANNOUNCE (RFC 6887 §14.1.3) reaches the
    client's 224.0.0.1:5350 listener, and the mapping is re-created with the
    same external port within 3 s of the restart (the daemon's own start
    included): no renewal was due, none was asked for.

    NAT-PMP: miniupnpd announces the restart in PCP only; the NAT-PMP client
    renews on hearing it, and the answer's NAT-PMP epoch shows the restart
    (so the event still counts as announced). ``kept``: rules and lease file
    survive the restart, as miniupnpd keeps them (LAB.md). ``lost``: they were
    emptied while it was down, as on a router that loses its state; then
    only the re-created mapping forwards the port, and a packet from the
    internet sent afterwards reaches the client through it.
    """
    protocol = PROTOCOLS[name]
    port = 41020 + 2 * (name == "pmp") + (state == "lost")

    async def scenario() -> tuple[list[PortmapEvent], int, float, tuple[Any, ...], bytes]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", port))
        try:
            await let_gateway_age(lab)
            loop = asyncio.get_running_loop()
            async with mapper_for(lab, port, protocol, journal) as mapper:
                mapping = mapper.mapping
                assert mapping is not None
                restarted = loop.time()
                await asyncio.to_thread(lab.restart_gateway, clean=state == "lost")
                events = await until_recreated(mapper, 5.0)
                took = loop.time() - restarted
                rules = lab.port_mappings()
                external = (str(mapping.external.address), mapping.external.port)
                # A new peer socket: a new conntrack entry, so only a rule lets it in.
                await asyncio.to_thread(send_from_internet, lab, external, b"after restart")
                data = await asyncio.to_thread(receive, sock)
                return events, mapping.external.port, took, rules, data
        finally:
            sock.close()

    events, port_before, took, rules, data = in_client(lab, scenario)
    restarts = [e for e in events if isinstance(e, GatewayRestarted)]
    assert len(restarts) == 1, events
    assert restarts[0].announced, events
    assert restarts[0].epoch <= 2
    recreated = events[-1]
    assert isinstance(recreated, MappingGranted)
    assert recreated.mapping.external.port == port_before
    assert took < 3.0
    assert [(r.external_port, r.internal.port) for r in rules] == [(port_before, port)]
    assert data == b"after restart"


@pytest.mark.scenarios("upnp")
@pytest.mark.parametrize("name", ["pcp", "pmp"])
@pytest.mark.usefixtures("no_leftover_mappings")
def test_restart_unheard_is_found_by_the_next_renewal(
    lab: Lab, journal: LeaseJournal, name: str
) -> None:
    """Without the announcement (no listener: a host where another program
    holds port 5350; or the one ANNOUNCE miniupnpd sends was lost), the
    epoch of the next renewal shows the restart (RFC 6887 §8.5, RFC 6886
    §3.6), and the renewal itself re-creates the mapping. The renewal is
    brought forward here with ``revalidate()``."""
    protocol = PROTOCOLS[name]
    port = 41024 + (name == "pmp")

    async def scenario() -> tuple[list[PortmapEvent], int, int]:
        await let_gateway_age(lab)
        async with mapper_for(lab, port, protocol, journal, listen_announcements=False) as mapper:
            mapping = mapper.mapping
            assert mapping is not None
            await asyncio.to_thread(lab.restart_gateway)
            with pytest.raises(TimeoutError):
                await mapper.next_event(0.5)  # nothing heard: no event without a renewal
            mapper.revalidate()
            events = await until_recreated(mapper, 8.0)
            return events, mapping.external.port, len(lab.port_mappings())

    events, port_before, rules = in_client(lab, scenario)
    restarts = [e for e in events if isinstance(e, GatewayRestarted)]
    assert len(restarts) == 1, events
    assert not restarts[0].announced
    recreated = events[-1]
    assert isinstance(recreated, MappingGranted)
    assert recreated.mapping.external.port == port_before
    assert rules == 1


def _start_holder(lab: Lab, protocol: str, port: int, journal: Path) -> subprocess.Popen[str]:
    argv = [*CLI, "--protocol", protocol, "--port", str(port), "--journal", str(journal), "--json"]
    return lab.popen("client", argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _read_document(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The JSON result the holder prints before it starts renewing."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.rstrip() == "}":
            document: dict[str, Any] = json.loads("".join(lines))
            return document
    raise AssertionError(f"no JSON from the holder: {''.join(lines)!r}")


#: A UDP service that is not natkit: it owns the port, prints what it receives.
SERVICE = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind(('0.0.0.0', int(sys.argv[1])))\n"
    "s.settimeout(15)\n"
    "print('listening', flush=True)\n"
    "try:\n"
    "    print(s.recvfrom(2048)[0].decode(), flush=True)\n"
    "except TimeoutError:\n"
    "    print('nothing came', flush=True)\n"
)


@pytest.mark.scenarios("upnp")
@pytest.mark.parametrize("name", list(PROTOCOLS))
@pytest.mark.usefixtures("no_leftover_mappings")
def test_cli_maps_a_port_another_program_owns(lab: Lab, tmp_path: Path, name: str) -> None:
    """Issue 9 item 1: ``natkit portmap --port N`` forwards N to whatever
    listens there (WireGuard, a game server) without binding it itself: a
    plain UDP listener that holds N gets a datagram sent from the internet
    to the external port, and after SIGINT no rule is left on the router."""
    port = 41080 + list(PROTOCOLS).index(name)
    journal = tmp_path / "journal.json"
    service = lab.popen("client", [sys.executable, "-c", SERVICE, str(port)],
                        stdout=subprocess.PIPE, text=True)  # fmt: skip
    proc = None
    try:
        assert service.stdout is not None
        assert service.stdout.readline().strip() == "listening"
        proc = _start_holder(lab, name, port, journal)
        document = _read_document(proc)
        assert (document["protocol"], document["internal_port"]) == (PROTOCOLS[name].value, port)
        external = (document["external_address"], document["external_port"])
        send_from_internet(lab, external, f"to the service via {name}".encode())
        assert service.stdout.readline().strip() == f"to the service via {name}"
        rules = lab.port_mappings()
        assert [(r.external_port, r.internal.port) for r in rules] == [(external[1], port)]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 128 + signal.SIGINT
    finally:
        for child in (proc, service):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()
    assert lab.port_mappings() == ()
    assert lab.port_mapping_rule_count() == 0, lab.port_mapping_ruleset()
    assert not journal.exists()


@pytest.mark.scenarios("upnp")
@pytest.mark.parametrize("name", list(PROTOCOLS))
@pytest.mark.usefixtures("no_leftover_mappings")
def test_mapping_of_killed_run_is_released_by_next_run(lab: Lab, tmp_path: Path, name: str) -> None:
    journal = tmp_path / "journal.json"
    port = 41030 + list(PROTOCOLS).index(name)
    proc = _start_holder(lab, name, port, journal)
    try:
        document = _read_document(proc)
        assert document["protocol"] == PROTOCOLS[name].value
        assert [r.internal.port for r in lab.port_mappings()] == [port]
    finally:
        proc.kill()  # SIGKILL: no chance to release
        proc.wait(timeout=10)
    assert lab.port_mappings(), "a killed holder leaves its mapping behind"
    result = lab.client_exec([*CLI, "--release", "--journal", str(journal), "--json"], timeout=30)
    assert result.returncode == 0, result.stderr
    released = json.loads(result.stdout)["released"]
    assert [(r["protocol"], r["released"]) for r in released] == [(PROTOCOLS[name].value, True)]
    assert lab.port_mappings() == ()
    assert not journal.exists()


@pytest.mark.scenarios("upnp")
@pytest.mark.usefixtures("no_leftover_mappings")
def test_next_mapper_start_releases_what_a_killed_run_left(lab: Lab, tmp_path: Path) -> None:
    journal = tmp_path / "journal.json"
    proc = _start_holder(lab, "pcp", 41040, journal)
    try:
        _read_document(proc)
    finally:
        proc.kill()
        proc.wait(timeout=10)

    async def scenario() -> tuple[int, bool]:
        mapper = mapper_for(lab, 41041, MappingProtocol.PCP, LeaseJournal(journal))
        async with mapper:
            assert mapper.result is not None
            released = mapper.result.released
            ports = [r.internal.port for r in lab.port_mappings()]
            return len(released), ports == [41041] and all(r.released for r in released)

    count, clean = in_client(lab, scenario)
    assert count == 1
    assert clean


@pytest.mark.scenarios("upnp")
@pytest.mark.usefixtures("no_leftover_mappings")
def test_cli_holder_hears_the_restart_announcement(lab: Lab, tmp_path: Path) -> None:
    """``natkit portmap`` as a user runs it (its own process, default
    settings: a random wait of up to 5 s after the ANNOUNCE) re-creates its
    mapping after a gateway restart, well before any renewal is due."""
    in_client(lab, lambda: let_gateway_age(lab))
    proc = _start_holder(lab, "pcp", 41026, tmp_path / "journal.json")
    lines: queue.Queue[str] = queue.Queue()
    try:
        document = _read_document(proc)
        stdout = proc.stdout
        assert stdout is not None

        def pump() -> None:
            for line in stdout:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        lab.restart_gateway()
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while not events or events[-1]["event"] != "recreated":
            events.append(json.loads(lines.get(timeout=max(0.0, deadline - time.monotonic()))))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert [e["event"] for e in events] == ["restart", "recreated"]
    assert events[0]["detail"].startswith("gateway restarted (announced, epoch ")
    assert events[1]["detail"] == (
        f"re-created {document['external_address']}:{document['external_port']}"
    )


@pytest.mark.scenarios("upnp")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.usefixtures("no_leftover_mappings")
def test_cli_releases_on_signal(lab: Lab, tmp_path: Path, sig: signal.Signals) -> None:
    journal = tmp_path / "journal.json"
    proc = _start_holder(lab, "auto", 41050, journal)
    try:
        _read_document(proc)
        assert len(lab.port_mappings()) == 1
        proc.send_signal(sig)
        assert proc.wait(timeout=15) == 128 + int(sig)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert lab.port_mappings() == ()
    assert not journal.exists()


@pytest.mark.scenarios("upnp")
@pytest.mark.usefixtures("no_leftover_mappings")
def test_cli_auto_reports_every_protocol(lab: Lab, tmp_path: Path) -> None:
    stun = lab.stun_servers["natkit"].primary
    argv = [*CLI, "--once", "--json", "--port", "41060", "--journal", str(tmp_path / "j.json"),
            "--stun", str(stun)]  # fmt: skip
    result = lab.client_exec(argv, timeout=30)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["protocol"] == "pcp"
    assert document["internal_port"] == 41060
    assert document["external_address"] == str(lab.public_address)
    assert document["external_port"] == 41060
    assert document["lifetime"] > 0
    statuses = {name: p["status"] for name, p in document["protocols"].items()}
    assert statuses == {
        "pcp": ProbeStatus.MAPPED.value,
        "nat-pmp": ProbeStatus.AVAILABLE.value,
        "upnp-igd": ProbeStatus.AVAILABLE.value,
    }
    assert document["hint"] is None
    assert document["stun_mapped_address"] == str(lab.public_address)


@pytest.mark.scenarios("upnp")
@pytest.mark.usefixtures("no_leftover_mappings")
def test_cancelled_task_releases_its_mapping(lab: Lab, journal: LeaseJournal) -> None:
    async def scenario() -> tuple[int, int]:
        held = asyncio.Event()
        counts: list[int] = []

        async def holder() -> None:
            async with mapper_for(lab, 41070, MappingProtocol.PCP, journal):
                counts.append(len(lab.port_mappings()))
                held.set()
                await asyncio.sleep(3600)

        task = asyncio.get_running_loop().create_task(holder())
        await held.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return counts[0], len(lab.port_mappings())

    before, after = in_client(lab, scenario)
    assert (before, after) == (1, 0)
