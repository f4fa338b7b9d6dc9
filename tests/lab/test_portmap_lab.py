"""Port mapping against the real miniupnpd in the lab (scenarios ``upnp``, ``upnp-igd1``).

Every test runs natkit inside the lab's client namespace (the mapper on a
thread that entered it, or the CLI under ``ip netns exec``), so PCP,
NAT-PMP and SSDP only ever reach the lab router. The router's nftables
chains are the ground truth: a mapping exists when miniupnpd wrote its
DNAT rule, and is gone when the rule is. After every test no rule may be
left (``no_leftover_mappings``); ``conftest.LabPool.close`` checks again
before the labs go down.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from natkit.endpoint import Endpoint
from natkit.lab import Lab
from natkit.portmap.discovery import probe_nat_pmp
from natkit.portmap.events import GatewayRestarted, MappingGranted, MappingRenewed
from natkit.portmap.journal import LeaseJournal
from natkit.portmap.mapper import PortMapper, PortMapperConfig, ProbeStatus
from natkit.portmap.mapping import MappingProtocol
from natkit.portmap.pcp_client import PcpConfig

T = TypeVar("T")

PROTOCOLS = {
    "pcp": MappingProtocol.PCP,
    "pmp": MappingProtocol.NAT_PMP,
    "upnp": MappingProtocol.UPNP_IGD,
}
CLI = [sys.executable, "-m", "cli.portmap"]


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


def mapper_for(lab: Lab, port: int, protocol: MappingProtocol, journal: LeaseJournal) -> PortMapper:
    config = PortMapperConfig(
        protocols=(protocol,), pcp=PcpConfig(announce_delay=0.05), probe_timeout=3.0
    )
    return PortMapper(port, gateway=str(lab.gateway_address()), config=config, journal=journal)


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
@pytest.mark.usefixtures("no_leftover_mappings")
def test_gateway_restart_is_detected_and_mapping_recreated(
    lab: Lab, journal: LeaseJournal, name: str
) -> None:
    protocol = PROTOCOLS[name]
    port = 41020 + (name == "pmp")

    async def scenario() -> tuple[list[object], int, int]:
        # RFC 6887 §8.5 / RFC 6886 §3.6 tolerate a second or two of epoch
        # jitter, so a daemon restarted a moment after it started cannot be
        # told apart: let it run a few seconds first, as a real router has.
        probe = await probe_nat_pmp(Endpoint(lab.gateway_address(), 5351), lab.client_addresses[0])
        assert probe.epoch is not None
        await asyncio.sleep(max(0.0, 4.0 - probe.epoch))
        async with mapper_for(lab, port, protocol, journal) as mapper:
            mapping = mapper.mapping
            assert mapping is not None
            await asyncio.to_thread(lab.restart_gateway)
            # The next renewal carries the new epoch (what a client sees
            # at its next scheduled renewal, brought forward).
            mapper.revalidate()
            events: list[object] = []
            while True:
                event = await mapper.next_event(8.0)
                events.append(event)
                if isinstance(event, MappingGranted) and event.recreated:
                    break
            return events, mapping.external.port, len(lab.port_mappings())

    events, port_before, rules = in_client(lab, scenario)
    assert any(isinstance(e, GatewayRestarted) for e in events), events
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
