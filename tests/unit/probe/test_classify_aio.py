"""The classifier driver's own I/O: ``--server`` resolution and the TCP check.

The TCP check runs over the shared stream code (:mod:`natkit.aio.stun_stream`)
with staggered parallel connections; a loopback server that swallows its
first connection shows that a later attempt still answers in time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from natkit.aio.classify import TCP_ATTEMPT_DELAYS, resolve_server, tcp_check
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.stun.codec import Message, binding_request, encode_message, parse_message
from natkit.stun.constants import HEADER_LENGTH, MessageClass, Method

TID = b"\x07" * 12
REQUEST = encode_message(binding_request(TID))

Serve = Callable[[int], Awaitable[Endpoint]]


@pytest.fixture
async def tcp_stun() -> AsyncIterator[Serve]:
    """A TCP STUN server on loopback that ignores its first ``swallow`` connections."""
    servers: list[asyncio.Server] = []
    held: list[asyncio.StreamWriter] = []

    async def start(swallow: int) -> Endpoint:
        seen = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal seen
            seen += 1
            if seen <= swallow:
                held.append(writer)  # a lost SYN-ACK, as far as the client can tell
                return
            header = await reader.readexactly(HEADER_LENGTH)
            body = await reader.readexactly(int.from_bytes(header[2:4], "big"))
            request = parse_message(header + body)
            answer = Message(Method.BINDING, MessageClass.SUCCESS_RESPONSE, request.transaction_id)
            writer.write(encode_message(answer))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        return Endpoint.from_sockaddr(server.sockets[0].getsockname())

    yield start
    for writer in held:
        writer.close()
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_tcp_check_gets_the_reply(tcp_stun: Serve) -> None:
    server = await tcp_stun(0)
    answer = await tcp_check(server, REQUEST, 2.0)
    assert answer is not None
    assert answer.reply is not None
    assert parse_message(answer.reply).transaction_id == TID
    assert answer.rtt is not None


async def test_a_later_attempt_wins_when_the_first_hangs(tcp_stun: Serve) -> None:
    server = await tcp_stun(1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await tcp_check(server, REQUEST, 2.0)
    assert answer is not None
    assert TCP_ATTEMPT_DELAYS[1] <= loop.time() - started < 1.0


async def test_tcp_check_without_a_server_is_none() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = Endpoint.from_sockaddr(probe.getsockname())
    assert await tcp_check(closed, REQUEST, 2.0) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.10", "203.0.113.10:3478"),
        ("203.0.113.10:3479", "203.0.113.10:3479"),
        ("[2001:db8::1]:3479", "[2001:db8::1]:3479"),
        ("2001:db8::1", "[2001:db8::1]:3478"),
        ("stun:203.0.113.10", "203.0.113.10:3478"),
        ("stun:[2001:db8::1]:3479", "[2001:db8::1]:3479"),
    ],
)
async def test_server_literals(text: str, expected: str) -> None:
    assert str(await resolve_server(text)) == expected


async def test_server_names_use_the_system_resolver() -> None:
    endpoint = await resolve_server("localhost:3480")
    assert endpoint.port == 3480
    assert endpoint.address in (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stuns:203.0.113.10", "not TLS"),
        ("host:port", "bad server"),
        ("203.0.113.10:70000", "bad port"),
    ],
)
async def test_bad_servers(text: str, message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        await resolve_server(text)
