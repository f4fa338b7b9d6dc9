"""natkit.aio.turn on real loopback sockets against the fake server (UDP and TCP).

The fake echoes what the client relays back as if the peer answered. The
real server (coturn, TLS included) is in tests/lab/test_turn_lab.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from turn_fakes import PASSWORD, PEER, RELAYED, USER, FakeTurnServer

from natkit.aio.turn import TurnRelay, TurnServer, server_rtt
from natkit.endpoint import Endpoint
from natkit.turn import AllocationState, Credentials, TurnConfig, TurnError, TurnFailure
from natkit.turn.config import TurnTransport
from natkit.turn.framing import StreamFramer


class _Echo:
    """Answers the fake's requests and echoes relayed data back."""

    def __init__(self, fake: FakeTurnServer) -> None:
        self.fake = fake

    def handle(self, message: bytes) -> list[bytes]:
        before = len(self.fake.relayed)
        answers = self.fake.receive(message)
        for peer, data, how in self.fake.relayed[before:]:
            if how == "channel":
                answers.append(self.fake.channel_data(peer, data))
            else:
                answers.append(self.fake.data_indication(peer, data))
        return answers


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, echo: _Echo) -> None:
        self.echo = echo
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.DatagramTransport) -> None:  # type: ignore[override]
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        for answer in self.echo.handle(data):
            self.transport.sendto(answer, addr)


@pytest.fixture
async def udp_server() -> AsyncIterator[tuple[Endpoint, FakeTurnServer]]:
    fake = FakeTurnServer()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _UdpServer(_Echo(fake)), local_addr=("127.0.0.1", 0)
    )
    yield Endpoint.from_sockaddr(transport.get_extra_info("sockname")), fake
    transport.close()


@pytest.fixture
async def tcp_server() -> AsyncIterator[tuple[Endpoint, FakeTurnServer]]:
    fake = FakeTurnServer(stream=True)
    echo = _Echo(fake)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = StreamFramer()
        while data := await reader.read(4096):
            for message in framer.feed(data):
                for answer in echo.handle(message):
                    writer.write(answer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield Endpoint.from_sockaddr(server.sockets[0].getsockname()), fake
    server.close()


def _config(server: Endpoint, transport: TurnTransport, password: str = PASSWORD) -> TurnConfig:
    return TurnConfig(server, Credentials(USER, password), transport)


async def _round_trip(relay: TurnRelay) -> None:
    assert await relay.allocate(timeout=5) == RELAYED
    await relay.permit(PEER, timeout=5)
    assert relay.send(PEER, b"one")  # an indication, then a channel is bound
    assert await asyncio.wait_for(relay.receive(), 5) == (PEER, b"one")
    await relay.bind(PEER, timeout=5)
    relay.send(PEER, b"two")
    assert await asyncio.wait_for(relay.receive(), 5) == (PEER, b"two")
    assert relay.rtt is not None


async def test_udp_allocate_relay_and_close(udp_server: tuple[Endpoint, FakeTurnServer]) -> None:
    server, fake = udp_server
    relay = TurnRelay(_config(server, TurnTransport.UDP))
    await _round_trip(relay)
    assert await relay.close() is True
    assert fake.refresh_lifetimes == [0]
    assert relay.state is AllocationState.CLOSED


async def test_tcp_allocate_relay_and_close(tcp_server: tuple[Endpoint, FakeTurnServer]) -> None:
    server, fake = tcp_server
    async with TurnRelay(_config(server, TurnTransport.TCP)) as relay:
        await _round_trip(relay)
    assert fake.refresh_lifetimes == [0]


async def test_wrong_password_raises_a_typed_error(
    udp_server: tuple[Endpoint, FakeTurnServer],
) -> None:
    server, _ = udp_server
    relay = TurnRelay(_config(server, TurnTransport.UDP, password="wrong"))
    with pytest.raises(TurnError) as caught:
        await relay.allocate(timeout=5)
    assert caught.value.failure is TurnFailure.UNAUTHORIZED
    assert caught.value.outcome.code == 401
    await relay.close()


async def test_refused_connection_is_a_clear_error(
    tcp_server: tuple[Endpoint, FakeTurnServer],
) -> None:
    server, _ = tcp_server
    closed = Endpoint(server.address, 1)  # nothing listens on port 1
    relay = TurnRelay(_config(closed, TurnTransport.TCP))
    with pytest.raises(TurnError) as caught:
        await relay.allocate(timeout=5)
    assert caught.value.failure is TurnFailure.CONNECTION_LOST
    assert "cannot connect" in caught.value.outcome.reason
    assert relay.state is AllocationState.FAILED


async def test_a_server_that_closes_the_stream_ends_receive(
    tcp_server: tuple[Endpoint, FakeTurnServer],
) -> None:
    server, _ = tcp_server
    relay = TurnRelay(_config(server, TurnTransport.TCP))
    await relay.allocate(timeout=5)
    relay.client.receive_stream_data(b"\xff\xff\xff\xff", relay._now())  # desync the stream
    relay._transmit()
    with pytest.raises(TurnError) as caught:
        await asyncio.wait_for(relay.receive(), 5)
    assert caught.value.failure is TurnFailure.PROTOCOL_ERROR
    await relay.close()


async def test_a_udp_server_that_dies_is_noticed_by_icmp() -> None:
    fake = FakeTurnServer()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _UdpServer(_Echo(fake)), local_addr=("127.0.0.1", 0)
    )
    server = Endpoint.from_sockaddr(transport.get_extra_info("sockname"))
    relay = TurnRelay(_config(server, TurnTransport.UDP))
    await relay.allocate(timeout=5)
    transport.close()  # the server process is gone: its port answers ICMP
    relay.send(PEER, b"into the void")
    outcome = await asyncio.wait_for(relay.wait_ended(), 10)
    assert outcome is not None
    assert outcome.failure is TurnFailure.SERVER_UNREACHABLE
    assert relay.client.counters.icmp_errors >= 3
    with pytest.raises(TurnError):
        await relay.receive()
    await relay.close()


async def test_server_rtt_over_udp_and_tcp(
    udp_server: tuple[Endpoint, FakeTurnServer], tcp_server: tuple[Endpoint, FakeTurnServer]
) -> None:
    for endpoint, transport in (
        (udp_server[0], TurnTransport.UDP),
        (tcp_server[0], TurnTransport.TCP),
    ):
        rtt = await server_rtt(TurnServer(endpoint, transport), count=2)
        assert rtt is not None
        assert rtt >= 0
    nobody = TurnServer(Endpoint(udp_server[0].address, 1), TurnTransport.TCP)
    assert await server_rtt(nobody, count=1, timeout=2) is None
