"""``gather_candidates`` on real sockets, all on loopback.

Small STUN servers on 127.0.0.x answer after a configurable delay (or lie
about the mapped address); a TLS one uses a certificate made for the test;
the port mapper is a fake with its own delay. Interfaces and routes are
injected, so nothing depends on this machine's network; no name is ever
looked up and no DNS server is asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from natkit.aio.candidates import GatherOptions, gather_candidates
from natkit.aio.interfaces import open_gathering_sockets
from natkit.aio.stun_stream import stun_over_stream
from natkit.cli.candidates import render_human
from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError
from natkit.gather.candidates import (
    CandidateKind,
    CandidateTransport,
    PortMapObservation,
    PortMapStatus,
    ServerOutcome,
)
from natkit.gather.host import HostPolicy, InterfaceAddress
from natkit.gather.reflexive import GathererConfig
from natkit.nat64 import Nat64Status
from natkit.stun.attributes import XorAddressAttribute
from natkit.stun.codec import Message, binding_request, encode_message, parse_message
from natkit.stun.constants import AttributeType, MessageClass, Method
from natkit.stun.uri import parse_server

LOOPBACK = [InterfaceAddress("lo", ipaddress.ip_address("127.0.0.1"), 8)]
OPTIONS = GatherOptions(host=HostPolicy(include_loopback=True), nat64=False)


def loopback_routes(destination: IPAddress) -> IPAddress | None:
    return ipaddress.ip_address("127.0.0.1") if destination.version == 4 else None


def reply(data: bytes, mapped: Endpoint) -> bytes | None:
    try:
        request = parse_message(data)
    except ValueError:
        return None
    response = Message(
        Method.BINDING,
        MessageClass.SUCCESS_RESPONSE,
        request.transaction_id,
        (XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, mapped),),
    )
    return encode_message(response)


@dataclass
class LoopbackStun(asyncio.DatagramProtocol):
    """Answers Binding requests after ``delay``, with the true or a fixed mapped address."""

    delay: float = 0.0
    lie: Endpoint | None = None
    transport: asyncio.DatagramTransport | None = None
    received: int = 0
    #: Loop time of each request's arrival.
    arrivals: list[float] = field(default_factory=list)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        self.arrivals.append(asyncio.get_running_loop().time())
        answer = reply(data, self.lie or Endpoint.from_sockaddr(addr))
        if answer is not None:
            asyncio.get_running_loop().call_later(self.delay, self._send, answer, addr)

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    @property
    def endpoint(self) -> Endpoint:
        assert self.transport is not None
        return Endpoint.from_sockaddr(self.transport.get_extra_info("sockname"))


@dataclass
class Servers:
    started: list[Any] = field(default_factory=list)

    async def udp(self, host: str, *, delay: float = 0.0, lie: str | None = None) -> LoopbackStun:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: LoopbackStun(delay, None if lie is None else Endpoint.parse(lie)),
            local_addr=(host, 0),
        )
        self.started.append(transport)
        return protocol

    async def stream(self, host: str, context: ssl.SSLContext | None = None) -> Endpoint:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                data = await reader.readexactly(20)
                data += await reader.readexactly(int.from_bytes(data[2:4], "big"))
                answer = reply(data, Endpoint.from_sockaddr(writer.get_extra_info("peername")))
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, host, 0, ssl=context)
        self.started.append(server)
        return Endpoint.from_sockaddr(server.sockets[0].getsockname())


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    made = Servers()
    yield made
    for item in made.started:
        item.close()


@dataclass
class FakePortMapper:
    """A :class:`PortMapProvider` answering after ``delay``."""

    delay: float
    external: str = "198.51.100.1:40000"
    gateway_external: str = "198.51.100.1"
    asked: list[Endpoint] = field(default_factory=list)
    released: int = 0

    async def map_port(self, base: Endpoint) -> PortMapObservation:
        self.asked.append(base)
        await asyncio.sleep(self.delay)
        return PortMapObservation(
            PortMapStatus.MAPPED,
            external=Endpoint.parse(self.external),
            base=Endpoint(ipaddress.ip_address("127.0.0.1"), base.port),
            gateway_external=ipaddress.ip_address(self.gateway_external),
            protocol="pcp",
            elapsed=self.delay,
        )

    async def release(self) -> None:
        self.released += 1


async def gather(servers: list[str], **kwargs: Any) -> Any:
    options = kwargs.pop("options", OPTIONS)
    return await gather_candidates(
        servers, options, interfaces=LOOPBACK, source_for=loopback_routes, **kwargs
    )


async def test_every_server_is_asked_at_once(servers: Servers) -> None:
    delays = (0.05, 0.1, 0.2)
    stuns = [await servers.udp(f"127.0.0.{i + 1}", delay=d) for i, d in enumerate(delays)]
    report = await gather([str(s.endpoint) for s in stuns])
    # Every request was out before the fastest server answered: in parallel,
    # so the gathering costs the slowest server, not the sum (timing is
    # measured on the virtual clock in test_candidates_core and in
    # benchmarks/candidates.py, not asserted here).
    first = [s.arrivals[0] for s in stuns]
    assert max(first) < min(first) + min(delays)
    udp = [o for o in report.servers if o.transport is CandidateTransport.UDP]
    assert [o.outcome for o in udp] == [ServerOutcome.ANSWERED] * 3
    for observation, delay in zip(udp, delays, strict=True):
        assert observation.rtt is not None
        assert observation.rtt >= delay
    bases = {o.base for o in udp}
    assert len(bases) == 1  # one socket for every server


async def test_a_lying_server_is_reported_not_hidden(servers: Servers) -> None:
    honest = await servers.udp("127.0.0.1")
    liar = await servers.udp("127.0.0.2", lie="198.51.100.9:4444")
    report = await gather([str(honest.endpoint), str(liar.endpoint)])
    (srflx,) = report.of_kind(CandidateKind.SRFLX)
    assert str(srflx.address) == "198.51.100.9:4444"
    assert srflx.source == str(liar.endpoint)
    (disagreement,) = report.disagreements
    assert disagreement.kind.value == "address"
    assert report.layering.cgnat is True  # different public addresses from one socket


async def test_port_mapping_runs_beside_stun(servers: Servers) -> None:
    stun = await servers.udp("127.0.0.1", delay=0.05)
    mapper = FakePortMapper(delay=0.25)
    report = await gather([str(stun.endpoint)], port_mapper=mapper)
    (mapped,) = report.of_kind(CandidateKind.MAPPED)
    assert str(mapped.address) == "198.51.100.1:40000"
    assert mapped.source == "pcp"
    assert mapper.asked[0].port == report.of_kind(CandidateKind.HOST)[0].address.port
    assert mapper.released == 0  # the caller decides when the mapping goes
    assert report.port_mapping.status is PortMapStatus.MAPPED


async def test_tcp_is_asked_beside_udp_and_udp_silence_means_relay_only(
    servers: Servers,
) -> None:
    tcp = await servers.stream("127.0.0.1")
    # Nothing listens on UDP at that port: UDP "blocked", TCP answers.
    options = GatherOptions(
        host=HostPolicy(include_loopback=True),
        nat64=False,
        gatherer=GathererConfig(straggler_min_wait=0.2),
    )
    report = await gather([str(tcp)], options=options)
    assert report.udp_blocked is True
    assert report.relay_only
    (observation,) = [o for o in report.servers if o.transport is CandidateTransport.TCP]
    assert observation.outcome is ServerOutcome.ANSWERED


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for IP 127.0.0.1 (made here, never committed)."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=natkit-test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_stun_over_tls_is_verified(servers: Servers, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    endpoint = await servers.stream("127.0.0.1", context)
    options = GatherOptions(host=HostPolicy(include_loopback=True), nat64=False, tls_ca=str(cert))
    report = await gather([f"stuns:{endpoint}"], options=options)
    (observation,) = report.servers
    assert observation.transport is CandidateTransport.TLS
    assert observation.outcome is ServerOutcome.ANSWERED, observation.detail
    assert observation.base is not None
    assert observation.mapped == observation.base  # no NAT on loopback

    unverified = await gather([f"stuns:{endpoint}"])
    (refused,) = unverified.servers
    assert refused.outcome is ServerOutcome.UNREACHABLE
    # Which check failed is said, in the report and in the readable listing.
    assert refused.detail == "TLS failed: CERTIFICATE_VERIFY_FAILED (self-signed certificate)"
    assert f"\nNo answer   stuns:{endpoint} ({endpoint}): unreachable, {refused.detail}" in (
        render_human(unverified)
    )


async def test_stream_exchange_survives_refusals() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = Endpoint.from_sockaddr(probe.getsockname())
    request = encode_message(binding_request(b"\x01" * 12))
    answer = await stun_over_stream(closed, request, 1.0)
    assert answer.reply is None
    assert answer.detail.startswith("cannot connect")


async def test_given_sockets_stay_open_for_the_caller(servers: Servers) -> None:
    stun = await servers.udp("127.0.0.1")
    mine = open_gathering_sockets()
    try:
        port = mine[0].getsockname()[1]
        report = await gather([str(stun.endpoint)], sockets=mine)
        (host,) = report.of_kind(CandidateKind.HOST)
        assert host.address.port == port
        mine[0].sendto(b"still open", stun.endpoint.sockaddr())
    finally:
        for sock in mine:
            sock.close()


async def test_unreachable_family_is_a_note_not_a_crash(servers: Servers) -> None:
    report = await gather(["[2001:db8::1]:3478"])
    assert report.servers == ()
    assert "no IPv6 route to it" in report.reasons["notes"]
    assert report.nat64.status is Nat64Status.NOT_TESTED
    assert report.udp_blocked is None


def test_server_arguments() -> None:
    plain, uri = parse_server("stun.example.org"), parse_server("stun:stun.example.org:3478")
    assert (plain.host, plain.port, plain.tls) == (uri.host, uri.port, uri.tls)
    assert parse_server("stuns:203.0.113.20").port == 5349
    assert parse_server("[2001:db8::1]:3479").host == "2001:db8::1"
    assert parse_server("203.0.113.10").port == 3478
    for bad in ("", "stun:", "host:port", "a:b:c", "stun:host:70000"):
        with pytest.raises(LocalProtocolError):
            parse_server(bad)


def test_sockets_share_a_port() -> None:
    sockets = open_gathering_sockets()
    try:
        ports = {s.getsockname()[1] for s in sockets}
        families = {s.family for s in sockets}
        assert socket.AF_INET in families
        assert len(ports) == 1 or len(sockets) == 1
    finally:
        for sock in sockets:
            sock.close()
