"""The asyncio STUN server's TCP limits, with loopback sockets: one source
address cannot hold every connection, and a silent one is closed."""

from __future__ import annotations

import asyncio
from typing import Any

from natkit.aio.stun_server import AsyncStunServer
from natkit.stun.codec import binding_request, encode_message, parse_message
from natkit.stun.constants import HEADER_LENGTH
from natkit.stun.server import ServerConfig

TID = b"\x07" * 12


async def _ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(encode_message(binding_request(TID)))
    header = await reader.readexactly(HEADER_LENGTH)
    body = await reader.readexactly(int.from_bytes(header[2:4], "big"))
    return parse_message(header + body).transaction_id


async def _closed(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(1), 5) == b""


async def test_one_source_gets_a_few_connections_and_a_silent_one_is_closed() -> None:
    # Before: one client could hold all 256 idle connections for 30 s each.
    server = AsyncStunServer(
        ServerConfig.basic("127.0.0.1", 0), tcp_per_source=2, tcp_idle_timeout=1.0
    )
    await server.start()
    endpoint = server.endpoints[0]
    opened: list[asyncio.StreamWriter] = []

    async def connect(source: str = "127.0.0.1") -> asyncio.StreamReader:
        reader, writer = await asyncio.open_connection(
            str(endpoint.address), endpoint.port, local_addr=(source, 0)
        )
        opened.append(writer)
        return reader

    try:
        first = await connect()
        assert await _ask(first, opened[-1]) == TID
        second = await connect()
        assert await _ask(second, opened[-1]) == TID
        assert await _closed(await connect())  # a third from 127.0.0.1: refused
        # Another source address is not held up by the first one's.
        other = await connect("127.0.0.2")
        assert await _ask(other, opened[-1]) == TID
        # Silent for longer than the idle timeout: closed (and counted).
        assert await _closed(first)
        assert await _closed(second)
        # Their slots are free again.
        again = await connect()
        assert await _ask(again, opened[-1]) == TID
    finally:
        for writer in opened:
            writer.close()
        await server.close()
    counters = server.counters
    assert counters["tcp_refused_source"] == 1
    assert counters["tcp_accepted"] == 4
    assert counters["tcp_idle_closed"] >= 2  # the first two; the others may end first
    assert counters["tcp_refused_full"] == 0


async def test_port_0_moves_on_when_the_udp_ports_tcp_twin_is_taken(monkeypatch: Any) -> None:
    # Port 0 gives a free UDP port; another program may hold that number for
    # TCP. The server then tries another port instead of failing to start.
    import socket  # noqa: PLC0415

    from natkit.aio import stun_server  # noqa: PLC0415

    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]
    real = stun_server.open_udp_sockets
    calls: list[int] = []

    def first_the_taken_port(endpoints: Any) -> list[socket.socket]:
        calls.append(len(calls))
        if len(calls) == 1:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", taken))
            return [udp]
        return real(endpoints)

    monkeypatch.setattr(stun_server, "open_udp_sockets", first_the_taken_port)
    server = AsyncStunServer(ServerConfig.basic("127.0.0.1", 0))
    try:
        await server.start()
        endpoint = server.endpoints[0]
        assert endpoint.port != taken
        assert len(calls) == 2
        reader, writer = await asyncio.open_connection(str(endpoint.address), endpoint.port)
        assert await _ask(reader, writer) == TID
        writer.close()
    finally:
        await server.close()
        holder.close()
