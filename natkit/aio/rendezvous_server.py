"""``natkit rendezvous``'s asyncio side: TCP connections feeding the sans-IO
:class:`~natkit.signal.server.RendezvousServer`.

The core decides everything (who may send what, queues, timeouts); this
module moves bytes and keeps the socket buffers bounded. A connection's
bytes are taken from the core only while its transport is below its high
water mark (asyncio's ``pause_writing``/``resume_writing``), at most
:data:`PULL_BYTES` at a time, so the memory one client can make the server
hold is its core queue (``queue_bytes``) plus about ``WRITE_HIGH_WATER +
PULL_BYTES`` in the transport, whatever it does. A client that stops
reading therefore fills its core queue, where the core counts, drops and
eventually disconnects (rule 4 in :mod:`natkit.signal.server`); a connection
the core closes while its transport is paused is aborted, not flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from natkit.endpoint import Endpoint
from natkit.signal.server import (
    ConnId,
    RandomBytes,
    RendezvousServer,
    ServerConfig,
    ServerEvent,
)

#: asyncio transport buffer size above which the server stops writing to a client.
WRITE_HIGH_WATER = 64 * 1024
#: Bytes taken from the core per write.
PULL_BYTES = 64 * 1024
#: How long ``close()`` lets clients read their SHUTDOWN frame.
CLOSE_GRACE = 1.0


class _Connection(asyncio.Protocol):
    def __init__(self, server: AsyncRendezvousServer) -> None:
        self._server = server
        self.transport: asyncio.Transport | None = None
        self.conn: ConnId = 0
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        source: str | None = None
        try:
            peer = Endpoint.from_sockaddr(transport.get_extra_info("peername"))
            remote, source = str(peer), str(peer.address)
        except (TypeError, ValueError):
            remote = "?"
        self.conn = self._server.core.open(remote, self._server.now(), source)
        self._server.connections[self.conn] = self
        self._server.pump()

    def data_received(self, data: bytes) -> None:
        self._server.core.receive(self.conn, data, self._server.now())
        self._server.pump()

    def eof_received(self) -> bool:
        return False  # half-closed by the client: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.pop(self.conn, None)
        self._server.core.lost(self.conn, self._server.now())
        self._server.pump()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._server.flush(self.conn)
        self._server.pump()


class AsyncRendezvousServer:
    """Serve the rendezvous on one TCP endpoint until :meth:`close`."""

    def __init__(
        self,
        listen: Endpoint,
        config: ServerConfig | None = None,
        on_event: Callable[[ServerEvent], None] | None = None,
        random_bytes: RandomBytes = os.urandom,
    ) -> None:
        self.listen = listen
        self.core = RendezvousServer(config or ServerConfig(), random_bytes)
        self.on_event = on_event
        self.connections: dict[ConnId, _Connection] = {}
        self._loop = asyncio.get_running_loop()
        self._server: asyncio.Server | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        #: The endpoint actually bound (port 0 resolved).
        self.local_endpoint: Endpoint | None = None
        #: The most bytes any one transport buffered after a write: bounded
        #: by about ``WRITE_HIGH_WATER + PULL_BYTES``.
        self.transport_peak = 0

    def now(self) -> float:
        return self._loop.time()

    async def start(self) -> None:
        """Listen; raises ``OSError`` when the endpoint cannot be bound."""
        self._server = await self._loop.create_server(
            lambda: _Connection(self),
            host=str(self.listen.address),
            port=self.listen.port,
            reuse_address=True,
        )
        self.local_endpoint = Endpoint.from_sockaddr(self._server.sockets[0].getsockname())

    def flush(self, conn: ConnId) -> None:
        """Write what ``conn`` has queued while its transport takes it; close
        it if the core says so."""
        connection = self.connections.get(conn)
        if connection is None or connection.transport is None:
            return
        transport = connection.transport
        if self.core.wants_close(conn):
            if connection.paused:
                transport.abort()  # not reading: nothing more will get through
                return
            transport.write(self.core.data_to_send(conn))
            transport.close()  # after the buffered bytes are written
            return
        while not connection.paused and self.core.queued_bytes(conn):
            transport.write(self.core.data_to_send(conn, PULL_BYTES))
            self.transport_peak = max(self.transport_peak, transport.get_write_buffer_size())

    def pump(self) -> None:
        """After any input: write, close, report events, re-arm the timer."""
        for conn in self.core.take_dirty():
            self.flush(conn)
        while (event := self.core.next_event()) is not None:
            if self.on_event is not None:
                self.on_event(event)
        deadline = self.core.get_timer()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None if deadline is None else self._loop.call_at(deadline, self._fire)
            self._timer_at = deadline

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        self.core.handle_timer(self.now())
        self.pump()

    async def close(self) -> None:
        """Stop listening, say SHUTDOWN to every client, and close them."""
        if self._server is not None:
            self._server.close()
        self.core.shutdown(self.now())
        self.pump()
        deadline = self.now() + CLOSE_GRACE
        while self.connections and self.now() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.connections.values()):
            if connection.transport is not None:
                connection.transport.abort()
        await asyncio.sleep(0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
