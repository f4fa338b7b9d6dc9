"""The asyncio driver against a tiny fake gateway on loopback.

The fake listens on 127.0.0.N:5351 (any 127/8 address is loopback on
Linux), so the real port 5351 of this machine's gateway is never touched;
discovery from the routing table is exercised with a route file that
points at the fake.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import os
import random
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import cast

import pytest
from portmap_testlib import FakeGateway

from natkit.aio.portmap import (
    MappingSession,
    PortMappingError,
    open_mapping,
    read_default_route,
    resolve_gateway,
)
from natkit.aio.portmap import sockets as aio_portmap
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.portmap.events import MappingDeleted
from natkit.portmap.mapping import MappingProtocol
from natkit.portmap.route import DefaultRoute


class FakeServer(asyncio.DatagramProtocol):
    def __init__(self, gateway: FakeGateway) -> None:
        self.gateway = gateway
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        loop = asyncio.get_running_loop()
        reply = self.gateway.handle(data, Endpoint.from_sockaddr(addr), loop.time())
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


@pytest.fixture
async def fake_gateway() -> AsyncIterator[FakeGateway]:
    loop = asyncio.get_running_loop()
    rng = random.Random()
    for _ in range(20):
        address = f"127.0.0.{rng.randint(2, 250)}"
        gateway = FakeGateway(Endpoint.parse(f"{address}:5351"), now=loop.time())
        try:
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(FakeServer, gateway), local_addr=(address, 5351)
            )
        except OSError:
            continue
        try:
            yield gateway
        finally:
            transport.close()
        return
    pytest.skip("no free 127.0.0.N:5351 for the fake gateway")


async def open_session(gateway: FakeGateway, protocol: MappingProtocol) -> MappingSession:
    return await open_mapping(
        protocol,
        51820,
        gateway=gateway.endpoint,
        local_address="127.0.0.1",
        rng=random.Random(5),
    )


async def test_pcp_mapping_over_loopback(fake_gateway: FakeGateway) -> None:
    session = await open_session(fake_gateway, MappingProtocol.PCP)
    try:
        mapping = await session.wait_for_mapping(timeout=5)
        assert mapping.protocol is MappingProtocol.PCP
        assert mapping.external == Endpoint(fake_gateway.external, 51820)
        assert mapping.internal == Endpoint.parse("127.0.0.1:51820")
        assert session.mapping == mapping
        deleted = await session.delete(timeout=5)
        assert deleted == MappingDeleted(mapping, confirmed=True)
    finally:
        await session.aclose()
    assert fake_gateway.counters["pcp_map"] == 1
    assert fake_gateway.counters["pcp_delete"] == 1
    assert not fake_gateway.leases


async def test_nat_pmp_mapping_over_loopback_deleted_on_exit(fake_gateway: FakeGateway) -> None:
    async with await open_session(fake_gateway, MappingProtocol.NAT_PMP) as session:
        mapping = await session.wait_for_mapping(timeout=5)
        assert mapping.protocol is MappingProtocol.NAT_PMP
        assert fake_gateway.leases
    # Leaving the block deleted the lease: nothing leaks.
    assert fake_gateway.counters["pmp_delete"] == 1
    assert not fake_gateway.leases


async def test_pcp_refused_by_a_nat_pmp_only_gateway(fake_gateway: FakeGateway) -> None:
    fake_gateway.pcp = False
    session = await open_session(fake_gateway, MappingProtocol.PCP)
    try:
        with pytest.raises(PortMappingError) as caught:
            await session.wait_for_mapping(timeout=5)
        assert caught.value.event.fall_back_to_nat_pmp
        assert str(caught.value) == "pcp: gateway speaks another version (result code 1)"
    finally:
        await session.aclose()
    fallback = await open_session(fake_gateway, MappingProtocol.NAT_PMP)
    try:
        assert (await fallback.wait_for_mapping(timeout=5)).protocol is MappingProtocol.NAT_PMP
    finally:
        await fallback.aclose()


async def test_gateway_found_in_the_routing_table(
    fake_gateway: FakeGateway, tmp_path: Path
) -> None:
    address = fake_gateway.endpoint.address
    assert isinstance(address, ipaddress.IPv4Address)
    hex_address = f"{int.from_bytes(address.packed, 'little'):08X}"
    table = tmp_path / "route"
    table.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
        f"lo\t00000000\t{hex_address}\t0003\t0\t0\t0\t00000000\n"
    )
    assert read_default_route(table) == DefaultRoute("lo", address, 0)
    session = await open_mapping(
        MappingProtocol.PCP, 51820, local_address="127.0.0.1", route_table=table
    )
    try:
        assert session.client.gateway == fake_gateway.endpoint
        await session.wait_for_mapping(timeout=5)
    finally:
        await session.aclose()


def loopback_listener(opened: list[ipaddress.IPv4Address]) -> Callable[..., socket.socket]:
    """Stands in for ``open_announcement_socket``: the real one joins
    224.0.0.1, and unit tests join no multicast group in the root namespace
    (the lab tests use the real one inside the client's namespace)."""

    def listener(local: ipaddress.IPv4Address) -> socket.socket:
        opened.append(local)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        return sock

    return listener


async def test_announcement_listener_is_socket_one(
    fake_gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[ipaddress.IPv4Address] = []
    monkeypatch.setattr(aio_portmap, "open_announcement_socket", loopback_listener(opened))
    session = await open_mapping(
        MappingProtocol.PCP,
        51820,
        gateway=fake_gateway.endpoint,
        local_address="127.0.0.1",
        listen_announcements=True,
    )
    try:
        await session.wait_for_mapping(timeout=5)
        assert session.hears_announcements
        assert session.announcement_error is None
        assert opened == [ipaddress.IPv4Address("127.0.0.1")]  # joined where requests leave
        assert len(session.runner.transports) == 2
    finally:
        await session.aclose()


async def test_announcement_listener_failure_is_reported_not_fatal(
    fake_gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program holding port 5350 without SO_REUSEADDR: the mapping
    still works (renewals find restarts), and the session says why it hears
    no announcements."""

    def taken(local: ipaddress.IPv4Address) -> socket.socket:
        raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))

    monkeypatch.setattr(aio_portmap, "open_announcement_socket", taken)
    session = await open_mapping(
        MappingProtocol.NAT_PMP,
        51820,
        gateway=fake_gateway.endpoint,
        local_address="127.0.0.1",
        listen_announcements=True,
    )
    try:
        await session.wait_for_mapping(timeout=5)
        assert not session.hears_announcements
        assert session.announcement_error == (
            "cannot listen on 224.0.0.1:5350: Address already in use"
        )
        assert len(session.runner.transports) == 1
    finally:
        await session.aclose()


def test_gateway_resolution_without_traffic(tmp_path: Path) -> None:
    assert resolve_gateway("192.0.2.1") == Endpoint.parse("192.0.2.1:5351")
    assert resolve_gateway(ipaddress.IPv4Address("192.0.2.1")).port == 5351
    assert resolve_gateway("192.0.2.1:15351").port == 15351
    empty = tmp_path / "route"
    empty.write_text("Iface\tDestination\tGateway\n")
    with pytest.raises(LocalProtocolError, match="no IPv4 default route"):
        resolve_gateway(None, empty)
    assert read_default_route(tmp_path / "missing") is None
