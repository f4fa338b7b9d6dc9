"""The asyncio STUN server: UDP sockets through :class:`CoreRunner`, plus
STUN over TCP (RFC 8489 §6.2.2) on the same endpoints.

With ``workers`` > 0 UDP is served instead by that many worker processes
(:mod:`natkit.aio.stun_workers`: ``SO_REUSEPORT`` groups, the fast path,
batched system calls) and this process keeps TCP; :attr:`counters` then
adds up the workers' counts once :meth:`AsyncStunServer.close` collected
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools

from natkit.aio.driver import CoreRunner
from natkit.aio.stun_workers import WorkerError, WorkerPool
from natkit.endpoint import Endpoint
from natkit.stun.codec import message_length
from natkit.stun.constants import HEADER_LENGTH
from natkit.stun.server import ServerConfig, ServerCounters, StunServer, Transport

#: A TCP client that sends nothing for this long is disconnected.
TCP_IDLE_TIMEOUT = 30.0
#: Largest STUN message accepted over TCP (header length is 16 bits anyway).
TCP_MAX_MESSAGE = HEADER_LENGTH + 0xFFFF
#: Concurrent TCP connections before new ones are refused.
TCP_MAX_CONNECTIONS = 256


class AsyncStunServer:
    """Serve :class:`StunServer` on UDP and TCP until :meth:`close`."""

    def __init__(self, config: ServerConfig, *, tcp: bool = True, workers: int = 0) -> None:
        self.core = StunServer(config)
        self.config = config
        self.tcp = tcp
        #: UDP worker processes, or ``None`` when UDP is served in-process.
        self.pool = WorkerPool(config, workers) if workers > 0 else None
        #: Workers whose counters were lost (killed or crashed) at close.
        self.missing_workers: list[int] = []
        self._worker_counters = ServerCounters()
        self._runner: CoreRunner[None] | None = None
        self._tcp_servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def counters(self) -> dict[str, object]:
        """This process's counters plus those the workers reported at close."""
        total = ServerCounters()
        total.add(self.core.counters)
        total.add(self._worker_counters)
        return total.as_dict()

    async def start(self) -> None:
        """Listen; ``OSError`` when an endpoint cannot be bound,
        :class:`WorkerError` when a worker does not start (call :meth:`close`
        either way)."""
        if self.pool is not None:
            # The workers bind first: with port 0 TCP then takes the same port.
            self.config = await self.pool.start()
            self.core = StunServer(self.config)
        else:
            self._runner = CoreRunner(self.core, lambda event: None)
            await self._runner.bind(self.config.sockets)
        if self.tcp:
            for index, endpoint in enumerate(self.config.sockets):
                server = await asyncio.start_server(
                    functools.partial(self._serve_tcp, index=index),
                    host=str(endpoint.address),
                    port=endpoint.port,
                    reuse_address=True,
                )
                self._tcp_servers.append(server)

    async def wait_workers(self) -> WorkerError | None:
        """Return when a UDP worker ended on its own: ``None`` when it was
        asked to stop (SIGTERM), else the failure. Never without workers."""
        if self.pool is None:
            await asyncio.Event().wait()
        assert self.pool is not None
        return await self.pool.wait_ended()

    async def _serve_tcp(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            if len(self._connections) > TCP_MAX_CONNECTIONS:
                return
            remote = Endpoint.from_sockaddr(writer.get_extra_info("peername"))
            while True:
                header = await asyncio.wait_for(reader.readexactly(HEADER_LENGTH), TCP_IDLE_TIMEOUT)
                length = message_length(header)
                if length is None or header[0] & 0xC0 or length > TCP_MAX_MESSAGE:
                    return  # not STUN framing: nothing sensible to resynchronise on
                body = await asyncio.wait_for(
                    reader.readexactly(length - HEADER_LENGTH), TCP_IDLE_TIMEOUT
                )
                reply = self.core.handle(header + body, remote, index, Transport.TCP)
                if reply is not None:
                    writer.write(reply.data)
                    await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        """Stop serving (again is harmless); collects the workers' counters."""
        if self._runner is not None:
            self._runner.close()
        for server in self._tcp_servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        for server in self._tcp_servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._tcp_servers.clear()
        if self.pool is not None and self.pool.processes:
            counters, missing = await self.pool.close()
            self._worker_counters.add(counters)
            self.missing_workers.extend(missing)
