"""PortMapper against hostile gateways on loopback, plus the journal and
the hint. PCP/NAT-PMP servers here listen on
127.0.0.N (loopback); UPnP is never multicast (unicast to a loopback
responder only)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fake_upnp import ssdp_answer
from portmap_testlib import pcp_map_response, pmp_address_response

from natkit.aio.portmap import LeaseJournal, PortMapper
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.portmap.hint import HintReason, mapping_hint
from natkit.portmap.journal import JournalEntry
from natkit.portmap.mapper import PortMapperConfig
from natkit.portmap.mapping import LifetimeNote, MappingProtocol, TransportProtocol
from natkit.portmap.pcp_client import PcpClient, PcpConfig
from natkit.portmap.report import ProbeStatus
from natkit.portmap.timing import PcpRetransmission
from natkit.portmap.upnp_calls import UpnpConfig

Reply = Callable[[bytes], list[bytes]]


class Hostile(asyncio.DatagramProtocol):
    """Answers each request with what ``reply`` makes of it."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.transport: asyncio.DatagramTransport | None = None
        self.requests: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.requests.append(data)
        assert self.transport is not None
        for out in self.reply(data):
            self.transport.sendto(out, addr)


async def serve(reply: Reply, address: str) -> tuple[asyncio.DatagramTransport, Hostile]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: Hostile(reply), local_addr=(address, 0)
    )
    return transport, protocol


def pcp_reply(**fields: Any) -> Reply:
    def reply(data: bytes) -> list[bytes]:
        if data[0] != 2 or len(data) < 60:
            return []
        nonce = data[24:36]
        internal = struct.unpack("!H", data[40:42])[0]
        lifetime = struct.unpack("!I", data[4:8])[0]
        base: dict[str, Any] = {"nonce": nonce, "internal_port": internal,
                                "external_port": internal, "lifetime": lifetime or 0}  # fmt: skip
        base.update(fields)
        return [pcp_map_response(**base)]

    return reply


def mapper(address: str, port: int, tmp_path: Path, protocol: MappingProtocol) -> PortMapper:
    config = PortMapperConfig(
        protocols=(protocol,),
        probe_timeout=0.6,
        pcp=PcpConfig(retransmission=PcpRetransmission(irt=0.2)),
        listen_announcements=False,
        release_timeout=0.5,
    )
    return PortMapper(
        51820,
        gateway=Endpoint.parse(f"{address}:{port}"),
        local_address="127.0.0.1",
        config=config,
        journal=tmp_path / "j.json",
    )


async def test_pcp_grant_with_absurd_lifetime_is_capped(
    gateway_address: str, tmp_path: Path
) -> None:
    transport, _ = await serve(pcp_reply(lifetime=0xFFFFFFFF), gateway_address)
    try:
        pm = mapper(gateway_address, transport.get_extra_info("sockname")[1], tmp_path,
                    MappingProtocol.PCP)  # fmt: skip
        result = await pm.start()
        assert result.mapping is not None
        assert result.mapping.lifetime == 86400
        assert LifetimeNote.CAPPED in result.mapping.notes
        await pm.close()
    finally:
        transport.close()


@pytest.mark.parametrize(
    "hostile",
    [
        pcp_reply(nonce=b"\x00" * 12),  # wrong nonce
        pcp_reply(internal_port=1),  # someone else's mapping
        lambda data: [pcp_reply()(data)[0][:50]] if data[0] == 2 else [],  # truncated
        pcp_reply(version=3),  # wrong version, not an UNSUPP_VERSION answer
        lambda data: [os.urandom(64)],  # noise
    ],
    ids=["wrong-nonce", "wrong-port", "truncated", "wrong-version", "noise"],
)
async def test_pcp_hostile_replies_are_ignored(
    gateway_address: str, tmp_path: Path, hostile: Reply
) -> None:
    transport, server = await serve(hostile, gateway_address)
    try:
        pm = mapper(gateway_address, transport.get_extra_info("sockname")[1], tmp_path,
                    MappingProtocol.PCP)  # fmt: skip
        result = await pm.start()
        assert result.mapping is None
        assert result.result_for(MappingProtocol.PCP).status is ProbeStatus.NO_ANSWER
        assert server.requests
        await pm.close()
    finally:
        transport.close()


async def test_pcp_reply_from_wrong_source_is_ignored(gateway_address: str, tmp_path: Path) -> None:
    # The "gateway" is silent; a neighbour on another address answers.
    liar_transport, _ = await serve(lambda data: [], "127.0.0.1")
    silent, _ = await serve(lambda data: [], gateway_address)
    try:
        port = silent.get_extra_info("sockname")[1]
        pm = mapper(gateway_address, port, tmp_path, MappingProtocol.PCP)
        task = asyncio.get_running_loop().create_task(pm.start())
        await asyncio.sleep(0.1)
        assert pm.core is not None
        client = pm.core.client(MappingProtocol.PCP)
        assert isinstance(client, PcpClient)
        local = pm.local_endpoint
        assert local is not None
        forged = pcp_map_response(nonce=client.nonce, lifetime=7200)
        liar_transport.sendto(forged, local.sockaddr())
        result = await task
        assert result.mapping is None
        await pm.close()
    finally:
        liar_transport.close()
        silent.close()


async def test_nat_pmp_wrong_version_and_truncated(gateway_address: str, tmp_path: Path) -> None:
    def reply(data: bytes) -> list[bytes]:
        good = pmp_address_response(epoch=5)
        return [b"\x07" + good[1:], good[:7]]

    transport, _ = await serve(reply, gateway_address)
    try:
        pm = mapper(gateway_address, transport.get_extra_info("sockname")[1], tmp_path,
                    MappingProtocol.NAT_PMP)  # fmt: skip
        result = await pm.start()
        assert result.mapping is None
        assert result.result_for(MappingProtocol.NAT_PMP).status is ProbeStatus.NO_ANSWER
    finally:
        transport.close()


def test_journal_roundtrip_and_orphans(tmp_path: Path) -> None:
    journal = LeaseJournal(tmp_path / "state" / "portmap.json")
    mine = journal.add(JournalEntry("mine", MappingProtocol.PCP, TransportProtocol.UDP,
                                    Endpoint.parse("192.168.1.1:5351"),
                                    Endpoint.parse("192.168.1.2:51820"),
                                    nonce="00" * 12))  # fmt: skip
    journal.add(JournalEntry.from_dict({**mine.to_dict(), "id": "dead", "owner_pid": 999999999}))
    journal.update(mine.id, external=Endpoint.parse("198.51.100.1:51820"))
    entries = journal.entries()
    assert [e.id for e in entries] == [mine.id, "dead"]
    assert entries[0].external == Endpoint.parse("198.51.100.1:51820")
    assert [e.id for e in journal.orphans()] == ["dead"]
    journal.remove(mine.id)
    journal.remove("dead")
    assert not journal.path.exists()


def test_journal_survives_a_torn_file(tmp_path: Path) -> None:
    path = tmp_path / "portmap.json"
    path.write_text('{"leases": [{"id": ', encoding="utf-8")
    journal = LeaseJournal(path)
    assert journal.entries() == []
    assert journal.corrupt is not None
    assert journal.corrupt.kept_at == tmp_path / "portmap.json.corrupt"


@pytest.mark.parametrize(
    ("external", "stun", "reason"),
    [
        ("100.64.0.2", None, HintReason.CARRIER_GRADE_NAT),
        ("192.168.0.2", None, HintReason.PRIVATE_EXTERNAL),
        ("198.51.100.1", "203.0.113.9", HintReason.DOUBLE_NAT),
        ("198.51.100.1", "198.51.100.1", None),
        ("8.8.8.8", None, None),
    ],
)
def test_hint(external: str, stun: str | None, reason: HintReason | None) -> None:
    hint = mapping_hint(
        ipaddress.ip_address(external), None if stun is None else ipaddress.ip_address(stun)
    )
    assert (None if hint is None else hint.reason) is reason


async def test_a_named_gateway_is_the_only_igd_used(gateway_address: str, tmp_path: Path) -> None:
    # natkit portmap --gateway X: an IGD elsewhere on the LAN answers the
    # search first; it was only "not preferred", and was mapped on.
    other = "127.0.0.1" if gateway_address != "127.0.0.1" else "127.0.0.251"
    transport, igd = await serve(
        lambda data: [ssdp_answer(location=f"http://{other}:1/rootDesc.xml")], other
    )
    try:
        config = PortMapperConfig(
            protocols=(MappingProtocol.UPNP_IGD,),
            upnp=UpnpConfig(
                multicast=False,
                extra_targets=(Endpoint.from_sockaddr(transport.get_extra_info("sockname")),),
                discovery_timeout=0.5,
            ),
            listen_announcements=False,
            release_timeout=0.5,
        )
        port_mapper = PortMapper(
            51820, gateway=gateway_address, local_address="127.0.0.1", config=config
        )
        result = await port_mapper.start(wait_for_all=True)
        await port_mapper.close()
    finally:
        transport.close()
    assert igd.requests  # it was asked, and answered
    upnp = result.result_for(MappingProtocol.UPNP_IGD)
    assert (result.mapping, upnp.status) == (None, ProbeStatus.NO_ANSWER)
    assert upnp.detail == f"no UPnP IGD answered at {gateway_address} (ignored the IGD at {other})"


async def test_close_after_a_cancelled_start_leaves_no_unretrieved_exception(
    gateway_address: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Ctrl-C early in natkit connect: the mapper's start() is cancelled before
    # it waits for a result, then the node closes the mapper; asyncio logged
    # "Future exception was never retrieved: closed before a mapping was found".
    import gc  # noqa: PLC0415

    transport, _ = await serve(lambda data: [], gateway_address)  # a silent gateway
    try:
        for steps in range(4):  # cancelled at each of start()'s first awaits
            pm = mapper(gateway_address, transport.get_extra_info("sockname")[1], tmp_path,
                        MappingProtocol.PCP)  # fmt: skip
            starting = asyncio.create_task(pm.start())
            for _ in range(steps):
                await asyncio.sleep(0)
            starting.cancel()
            with pytest.raises((asyncio.CancelledError, LocalProtocolError)):
                await starting
            await pm.close()
            del starting, pm
            gc.collect()
            await asyncio.sleep(0)
    finally:
        transport.close()
    assert "never retrieved" not in caplog.text
