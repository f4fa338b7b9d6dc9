"""The asyncio STUN server: UDP sockets through :class:`CoreRunner`, plus
STUN over TCP (RFC 8489 §6.2.2) on the same endpoints.

With ``workers`` > 0 UDP is served instead by that many worker processes
(:mod:`natkit.aio.stun_workers`: ``SO_REUSEPORT`` groups, the fast path,
batched system calls) and this process keeps TCP; :attr:`counters` then
adds up the workers' counts once :meth:`AsyncStunServer.close` collected
them.

:func:`serve_stun` (``natkit.serve_stun``) runs one for the length of an
``async with`` block.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import socket
from collections import Counter
from collections.abc import AsyncIterator

from natkit.aio.driver import CoreRunner, local_endpoint, open_udp_sockets
from natkit.aio.stun_workers import WorkerError, WorkerPool
from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError
from natkit.stun.codec import message_length
from natkit.stun.constants import HEADER_LENGTH
from natkit.stun.server import ServerConfig, ServerCounters, StunServer, Transport

#: A TCP client that sends nothing for this long is disconnected.
TCP_IDLE_TIMEOUT = 30.0
#: Largest STUN message accepted over TCP (header length is 16 bits anyway).
TCP_MAX_MESSAGE = HEADER_LENGTH + 0xFFFF
#: Concurrent TCP connections before new ones are refused.
TCP_MAX_CONNECTIONS = 256
#: Concurrent TCP connections from one source address: a STUN client needs
#: one, a few share a NAT; without a cap one client could hold every slot.
TCP_MAX_PER_SOURCE = 8
#: How long :meth:`AsyncStunServer.close` waits for connections to end.
TCP_CLOSE_TIMEOUT = 2.0


#: The TCP counters :attr:`AsyncStunServer.counters` adds (``tcp_`` + name).
#: Ports tried when port 0 gives a UDP port whose TCP twin is taken.
_PORT_ATTEMPTS = 8

_TCP_COUNTERS = ("accepted", "refused_full", "refused_source", "idle_closed")


class AsyncStunServer:
    """Serve :class:`StunServer` on UDP and TCP until :meth:`close`."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        tcp: bool = True,
        workers: int = 0,
        tcp_per_source: int = TCP_MAX_PER_SOURCE,
        tcp_idle_timeout: float = TCP_IDLE_TIMEOUT,
    ) -> None:
        if tcp_per_source < 1 or not tcp_idle_timeout > 0:
            raise LocalProtocolError("tcp_per_source and tcp_idle_timeout must be positive")
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
        #: Open TCP connections: the task serving each, and its writer.
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self.tcp_per_source = tcp_per_source
        self.tcp_idle_timeout = tcp_idle_timeout
        #: Open TCP connections per source address.
        self._per_source: Counter[IPAddress] = Counter()
        #: TCP connections accepted, refused (server full; their source's
        #: cap reached), and closed for sending nothing in ``tcp_idle_timeout``.
        self.tcp_counters: Counter[str] = Counter()

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Where the server answers (UDP, and TCP on the same ports): the
        configured endpoints, with port 0 replaced by the port bound, once
        :meth:`start` returned."""
        return self.config.sockets

    @property
    def counters(self) -> dict[str, object]:
        """This process's counters plus those the workers reported at close."""
        total = ServerCounters()
        total.add(self.core.counters)
        total.add(self._worker_counters)
        tcp = {f"tcp_{name}": self.tcp_counters[name] for name in _TCP_COUNTERS}
        return {**total.as_dict(), **tcp}

    async def start(self) -> None:
        """Listen; ``OSError`` when an endpoint cannot be bound,
        :class:`WorkerError` when a worker does not start (call :meth:`close`
        either way)."""
        if self.pool is not None:
            # The workers bind first: with port 0 TCP then takes the same port.
            self.config = await self.pool.start()
            self.core = StunServer(self.config)
        else:
            sockets, listeners = self._bind_plain()
            try:
                # Port 0 (a plain server only): the core answers with the
                # port bound (RESPONSE-ORIGIN), and TCP takes the same one.
                self.config = ServerConfig(
                    tuple(local_endpoint(sock) for sock in sockets), self.config.software
                )
                self.core = StunServer(self.config)
                self._runner = CoreRunner(self.core, lambda event: None)
                await self._runner.attach(sockets)
            except BaseException:
                for sock in (*sockets, *listeners):
                    sock.close()
                raise
            for index, listener in enumerate(listeners):
                server = await asyncio.start_server(
                    functools.partial(self._serve_tcp, index=index), sock=listener
                )
                self._tcp_servers.append(server)
            return
        if self.tcp:
            for index, endpoint in enumerate(self.config.sockets):
                server = await asyncio.start_server(
                    functools.partial(self._serve_tcp, index=index),
                    host=str(endpoint.address),
                    port=endpoint.port,
                    reuse_address=True,
                )
                self._tcp_servers.append(server)

    def _bind_plain(self) -> tuple[list[socket.socket], list[socket.socket]]:
        """The UDP sockets and (with ``tcp``) TCP listeners on the same ports.

        With port 0 the kernel picks a free UDP port, which another program
        may hold for TCP: then both are closed and another port is tried.
        """
        wanted = self.config.sockets
        retry = any(endpoint.port == 0 for endpoint in wanted)
        for attempt in range(_PORT_ATTEMPTS):
            sockets = open_udp_sockets(wanted)
            listeners: list[socket.socket] = []
            try:
                if self.tcp:
                    listeners = [_tcp_listener(local_endpoint(sock)) for sock in sockets]
            except OSError as exc:
                for sock in (*sockets, *listeners):
                    sock.close()
                if not retry or exc.errno != errno.EADDRINUSE or attempt == _PORT_ATTEMPTS - 1:
                    raise
                continue
            return sockets, listeners
        raise AssertionError("unreachable")  # the last attempt returns or raises

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
            self._connections[task] = writer
        source: IPAddress | None = None
        try:
            remote = Endpoint.from_sockaddr(writer.get_extra_info("peername"))
            if len(self._connections) > TCP_MAX_CONNECTIONS:
                self.tcp_counters["refused_full"] += 1
                return
            if self._per_source[remote.address] >= self.tcp_per_source:
                self.tcp_counters["refused_source"] += 1
                return
            source = remote.address
            self._per_source[source] += 1
            self.tcp_counters["accepted"] += 1
            idle = self.tcp_idle_timeout
            while True:
                header = await asyncio.wait_for(reader.readexactly(HEADER_LENGTH), idle)
                length = message_length(header)
                if length is None or header[0] & 0xC0 or length > TCP_MAX_MESSAGE:
                    return  # not STUN framing: nothing sensible to resynchronise on
                body = await asyncio.wait_for(reader.readexactly(length - HEADER_LENGTH), idle)
                reply = self.core.handle(header + body, remote, index, Transport.TCP)
                if reply is not None:
                    writer.write(reply.data)
                    await writer.drain()
        except TimeoutError:
            self.tcp_counters["idle_closed"] += 1
            return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            if source is not None:
                self._per_source[source] -= 1
                if not self._per_source[source]:
                    del self._per_source[source]
            if task is not None:
                self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        """Stop serving (again is harmless); collects the workers' counters."""
        if self._runner is not None:
            self._runner.close()
        for server in self._tcp_servers:
            server.close()
        # Closed, not cancelled: the reader sees the end of the stream and
        # the task ends by itself. (Python 3.11's stream callback calls
        # ``task.exception()`` on a cancelled connection task, and the loop
        # logs the CancelledError with a traceback.)
        connections = list(self._connections.items())
        for _, writer in connections:
            writer.close()
        if connections:
            await asyncio.wait([task for task, _ in connections], timeout=TCP_CLOSE_TIMEOUT)
        for server in self._tcp_servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._tcp_servers.clear()
        if self.pool is not None and self.pool.processes:
            counters, missing = await self.pool.close()
            self._worker_counters.add(counters)
            self.missing_workers.extend(missing)


def _tcp_listener(endpoint: Endpoint) -> socket.socket:
    """A listening TCP socket on ``endpoint`` (``SO_REUSEADDR``: a restart
    finds the port free while old connections linger in TIME_WAIT)."""
    family = socket.AF_INET if endpoint.address.version == 4 else socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:  # as asyncio's start_server: IPv6 only
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(endpoint.sockaddr())
        sock.listen(100)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.asynccontextmanager
async def serve_stun(
    address: str = "0.0.0.0",
    alternate: str | None = None,
    *,
    port: int = 3478,
    alt_port: int = 3479,
    software: str | None = None,
    tcp: bool = True,
    workers: int = 0,
) -> AsyncIterator[AsyncStunServer]:
    """Serve STUN on ``address:port`` (UDP and TCP) until the block ends.

    With ``alternate`` it is an RFC 5780 server on two addresses x two
    ports (``port`` and ``alt_port``), answering CHANGE-REQUEST and
    reporting OTHER-ADDRESS, as the classifier's behaviour tests need;
    without, a plain RFC 8489 server (``port=0``: any free port, read it
    from :attr:`AsyncStunServer.endpoints`). ``workers`` > 0 serves UDP from
    that many processes (``natkit stun-server``'s default is one per CPU).
    Raises ``OSError`` when an endpoint cannot be bound,
    :class:`~natkit.errors.LocalProtocolError` for an impossible layout.
    """
    if alternate is None:
        config = ServerConfig.basic(address, port, software)
    else:
        config = ServerConfig.rfc5780(address, alternate, port, alt_port, software)
    server = AsyncStunServer(config, tcp=tcp, workers=workers)
    try:
        await server.start()
        yield server
    finally:
        await server.close()
