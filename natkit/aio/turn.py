"""Run natkit's TURN client core (:mod:`natkit.turn`) on asyncio.

Over UDP the core runs on the shared UDP driver (:class:`natkit.aio.driver.
CoreRunner`: one socket, one timer, ICMP errors delivered); over TCP and TLS
on a connection whose bytes go to the core's ``receive_stream_data`` and
whose writes are the core's datagrams, in order. The same core serves all
three; nothing here knows TURN.

:class:`TurnRelay` is the small async API tests, benchmarks and later the
connect agent use::

    relay = TurnRelay(TurnConfig(server, credentials, TurnTransport.TLS), cafile=CA)
    relayed = await relay.allocate()          # raises TurnError, typed
    await relay.permit(peer)                  # or let send() ask for it
    relay.send(peer, b"hello")
    peer, data = await relay.receive()        # raises TurnError once lost
    await relay.close()                       # deallocates (LIFETIME 0)

Re-allocation after a loss is the caller's: an allocation that is gone gets
a new relayed address, which peers must be told about, so the adapter never
replaces one behind the caller's back (:attr:`TurnRelay.outcome` says why it
ended, and ``outcome.failure.retryable`` whether trying later makes sense).

TLS verifies the server's certificate (system CAs, or ``cafile``) against
``server_name`` or the server's address unless ``verify=False``. A handshake
that fails for another reason than the certificate is tried once more:
coturn's OpenSSL sometimes refuses the first ("no suitable signature
algorithm") and accepts the next (LAB.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket as socket_module
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from natkit.aio.dns import server_specs, system_lookup
from natkit.aio.driver import CoreRunner
from natkit.aio.stun_stream import tls_context
from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError, NatkitError
from natkit.sansio import Datagram
from natkit.stun.uri import Transport, parse_turn_server
from natkit.turn.client import TurnClient
from natkit.turn.config import TurnConfig, TurnTransport
from natkit.turn.credentials import Credentials
from natkit.turn.events import (
    AllocationCreated,
    AllocationFailed,
    AllocationLost,
    ChannelBindFailed,
    ChannelBound,
    DataReceived,
    Deallocated,
    Outcome,
    PermissionCreated,
    PermissionFailed,
    PingCompleted,
    TurnError,
    TurnEvent,
    TurnFailure,
)
from natkit.turn.messages import peer_address
from natkit.turn.state import AllocationState

#: Received datagrams held for :meth:`TurnRelay.receive`; more are dropped (counted).
RECEIVE_QUEUE = 4096
#: Bytes a stream may hold unsent before datagrams are dropped (counted), as
#: a UDP socket's full buffer would: relayed traffic is datagrams, not a stream.
STREAM_WRITE_LIMIT = 1 << 20
#: Seconds a TCP or TLS connection (handshake included) may take.
CONNECT_TIMEOUT = 10.0
_READ_SIZE = 65536
_TRANSPORTS = {
    Transport.UDP: TurnTransport.UDP,
    Transport.TCP: TurnTransport.TCP,
    Transport.TLS: TurnTransport.TLS,
}


@dataclass(frozen=True, slots=True)
class TurnServer:
    """A TURN server resolved to one address, and how to reach it."""

    endpoint: Endpoint
    transport: TurnTransport = TurnTransport.UDP
    #: The name a TLS certificate must carry (``None``: the address).
    server_name: str | None = None
    #: How the user named it (``turns:relay.example.org``).
    label: str = ""

    def __str__(self) -> str:
        return self.label or f"{self.transport.value}:{self.endpoint}"


async def resolve_turn_server(text: str) -> list[TurnServer]:
    """``turn:``/``turns:`` URIs (RFC 7065) to servers, one per address."""
    parsed = parse_turn_server(text)
    specs, why = await server_specs(parsed, system_lookup)
    if not specs:
        raise LocalProtocolError(why or f"cannot resolve {text!r}")
    assert parsed.transport is not None
    transport = _TRANSPORTS[parsed.transport]
    return [TurnServer(s.address, transport, s.server_name, text) for s in specs]


class _StreamRunner(CoreRunner[TurnEvent]):
    """The UDP driver's timer and event handling, writing to a stream instead."""

    def __init__(
        self,
        core: TurnClient,
        on_event: Callable[[TurnEvent], None],
        writer: asyncio.StreamWriter,
    ) -> None:
        super().__init__(core, on_event)
        self.writer = writer
        #: Datagrams dropped because the connection's buffer was full.
        self.dropped = 0

    def _send(self, datagram: Datagram) -> None:
        transport = self.writer.transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() > STREAM_WRITE_LIMIT:
            self.dropped += 1
            return
        self.writer.write(datagram.data)

    def close(self) -> None:
        super().close()
        self.writer.close()


class TurnRelay:
    """One allocation on one server, on asyncio (see the module doc).

    ``sock``: an unconnected socket to use (a lab namespace's, say): UDP for
    ``TurnTransport.UDP``, else TCP; by default one is made. It belongs to
    the relay from then on. ``on_event`` sees every event of the core.
    """

    def __init__(
        self,
        config: TurnConfig,
        *,
        server_name: str | None = None,
        cafile: str | None = None,
        verify: bool = True,
        sock: socket_module.socket | None = None,
        on_event: Callable[[TurnEvent], None] | None = None,
        queue_limit: int = RECEIVE_QUEUE,
    ) -> None:
        if config.socket != 0:
            raise LocalProtocolError("a TurnRelay runs its core on socket 0")
        self.config = config
        self.client = TurnClient(config)
        self.server_name = server_name
        self.cafile = cafile
        self.verify = verify
        self.on_event = on_event
        #: Datagrams dropped because :meth:`receive` was not called fast enough.
        self.receive_overflow = 0
        #: TLS handshakes tried again after a failure (see the module doc).
        self.tls_retries = 0
        self._sock = sock
        self._queue: asyncio.Queue[tuple[Endpoint, bytes]] = asyncio.Queue(queue_limit)
        self._runner: CoreRunner[TurnEvent] | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiters: dict[object, asyncio.Future[object]] = {}
        self._ended = asyncio.Event()
        self.local: Endpoint | None = None

    # -- state ----------------------------------------------------------------

    @property
    def relayed(self) -> Endpoint | None:
        return self.client.relayed

    @property
    def mapped(self) -> Endpoint | None:
        return self.client.mapped

    @property
    def state(self) -> AllocationState:
        return self.client.state

    @property
    def outcome(self) -> Outcome | None:
        """Why the allocation failed or was lost (``None``: it lives, or closed cleanly)."""
        return self.client.outcome

    @property
    def rtt(self) -> float | None:
        """Smoothed round-trip time to the server (RFC 6298), once answered."""
        return self.client.srtt

    @property
    def stream_drops(self) -> int:
        runner = self._runner
        return runner.dropped if isinstance(runner, _StreamRunner) else 0

    # -- the API --------------------------------------------------------------

    async def allocate(self, timeout: float | None = None) -> Endpoint:
        """Connect, allocate, and return the relayed address.

        Raises :class:`TurnError` (``failure`` says why) when the server
        refuses or cannot be reached, and ``TimeoutError`` after ``timeout``.
        """
        async with asyncio.timeout(timeout):
            await self._ensure_connected()
            waiter = self._waiter("allocated")
            self.client.allocate(self._now())
            self._transmit()
            await waiter
        relayed = self.client.relayed
        assert relayed is not None
        return relayed

    async def ping(self, timeout: float | None = None) -> float | None:
        """One Binding round trip to the server, in seconds (``None``: no
        unambiguous answer); connects first if needed, allocates nothing."""
        async with asyncio.timeout(timeout):
            await self._ensure_connected()
            waiter = self._waiter("ping")
            self.client.ping(self._now())
            self._transmit()
            rtt = await waiter
        return rtt if isinstance(rtt, float) else None

    async def permit(self, peer: Endpoint | IPAddress, timeout: float | None = None) -> None:
        """Install a permission for ``peer``'s address; raises :class:`TurnError`
        if refused (the allocation lives on)."""
        address = peer_address(peer)
        if self.client.has_permission(address):
            return
        waiter = self._waiter(("permission", address))
        now = self._now()
        self.client.permit(address, now)
        self._transmit()
        refusal = self.client.refusal(address, now)
        if refusal is not None:
            self._settle(("permission", address), error=refusal)
        async with asyncio.timeout(timeout):
            await waiter

    async def bind(self, peer: Endpoint, timeout: float | None = None) -> int:
        """Bind a channel to ``peer`` and return its number."""
        existing = self.client.channel_for(peer)
        if existing is not None:
            return existing
        waiter = self._waiter(("channel", peer))
        number = self.client.bind(peer, self._now())
        self._transmit()
        async with asyncio.timeout(timeout):
            await waiter
        return number

    def send(self, peer: Endpoint, data: bytes) -> bool:
        """Relay one datagram to ``peer`` (no delivery promised, as with UDP)."""
        sent = self.client.send(peer, data, self._now())
        self._transmit()
        return sent

    async def receive(self) -> tuple[Endpoint, bytes]:
        """The next datagram from a peer; raises :class:`TurnError` once the
        allocation is lost (datagrams already received come first)."""
        if not self._queue.empty():
            return self._queue.get_nowait()
        if self._ended.is_set():
            raise self._error()
        get = asyncio.ensure_future(self._queue.get())
        ended = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait((get, ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if not get.done():
                get.cancel()
        if get.done() and not get.cancelled():
            return get.result()
        raise self._error()

    async def wait_ended(self) -> Outcome | None:
        """Until the allocation fails, is lost or is closed; its outcome."""
        await self._ended.wait()
        return self.outcome

    async def close(self, timeout: float | None = None) -> bool:
        """Deallocate (Refresh with LIFETIME 0) and close the connection.

        Returns whether the server confirmed; never raises for what the
        server does. Bounded by the core's ``close_timeout``.
        """
        confirmed = False
        if self._runner is not None and not self.client.state.terminal:
            waiter = self._waiter("closed")
            self.client.close(self._now())
            self._transmit()
            with contextlib.suppress(TimeoutError, TurnError):
                async with asyncio.timeout(timeout or self.config.close_timeout + 1.0):
                    confirmed = bool(await waiter)
        self._shutdown()
        return confirmed

    async def __aenter__(self) -> TurnRelay:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- transport ----------------------------------------------------------

    async def _ensure_connected(self) -> None:
        if self._runner is None:
            await self._connect()

    async def _connect(self) -> None:
        if self.config.transport is TurnTransport.UDP:
            sock = self._sock or _udp_socket(self.config.server)
            self._sock = None
            runner: CoreRunner[TurnEvent] = CoreRunner(self.client, self._dispatch)
            self._runner = runner
            try:
                await runner.attach([sock])
            except BaseException:
                sock.close()
                raise
            self.local = runner.local_endpoints[0]
            return
        reader, writer = await self._open_stream()
        self.local = Endpoint.from_sockaddr(writer.get_extra_info("sockname"))
        stream_runner = _StreamRunner(self.client, self._dispatch, writer)
        self._runner = stream_runner
        self._reader_task = asyncio.create_task(self._read(reader))

    async def _open_stream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        tls = None
        if self.config.transport is TurnTransport.TLS:
            tls = tls_context(self.cafile, verify=self.verify)
        sock, self._sock = self._sock, None
        try:
            stream = await open_turn_stream(
                self.config.server, tls, server_name=self.server_name, sock=sock
            )
        except TurnStreamError as exc:
            self.tls_retries += exc.tls_retries
            self._fail(TurnFailure.CONNECTION_LOST, exc.detail)
        self.tls_retries += stream.tls_retries
        return stream.reader, stream.writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        detail = "the server closed the connection"
        try:
            while data := await reader.read(_READ_SIZE):
                self.client.receive_stream_data(data, self._now())
                self._transmit()
        except (OSError, ssl.SSLError) as exc:
            detail = f"connection failed: {exc}"
        if self._runner is not None and not self.client.state.terminal:
            self.client.connection_lost(self._now(), detail)
            self._transmit()

    def _fail(self, failure: TurnFailure, reason: str) -> NoReturn:
        """No connection: the core learns it (AllocationFailed), the caller too."""
        self.client.connection_lost(self._now(), reason)
        while (event := self.client.next_event()) is not None:
            self._dispatch(event)
        raise TurnError(self.outcome or Outcome(failure, None, reason), self.config.server)

    # -- core plumbing --------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _transmit(self) -> None:
        if self._runner is not None:
            self._runner.transmit()

    def _waiter(self, key: object) -> asyncio.Future[object]:
        future = self._waiters.get(key)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._waiters[key] = future
        return future

    def _settle(self, key: object, result: object = None, error: Outcome | None = None) -> None:
        future = self._waiters.pop(key, None)
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(TurnError(error, self.config.server))
        else:
            future.set_result(result)

    def _dispatch(self, event: TurnEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)
        if isinstance(event, DataReceived):
            try:
                self._queue.put_nowait((event.peer, event.data))
            except asyncio.QueueFull:
                self.receive_overflow += 1
        elif isinstance(event, AllocationCreated):
            self._settle("allocated", event.relayed)
        elif isinstance(event, PermissionCreated):
            self._settle(("permission", event.peer))
        elif isinstance(event, PermissionFailed):
            self._settle(("permission", event.peer), error=event.outcome)
        elif isinstance(event, ChannelBound):
            self._settle(("channel", event.peer), event.channel)
        elif isinstance(event, ChannelBindFailed):
            self._settle(("channel", event.peer), error=event.outcome)
        elif isinstance(event, PingCompleted):
            self._settle("ping", event.rtt)
        elif isinstance(event, AllocationFailed | AllocationLost | Deallocated):
            self._ended_with(event)

    def _ended_with(self, event: AllocationFailed | AllocationLost | Deallocated) -> None:
        self._ended.set()
        if isinstance(event, Deallocated):
            self._settle("closed", event.confirmed)
            outcome = Outcome(TurnFailure.CONNECTION_LOST, None, "the allocation was closed")
        else:
            outcome = event.outcome
        # Everyone still waiting learns why.
        for key in list(self._waiters):
            self._settle(key, error=outcome)
        if not isinstance(event, Deallocated):
            # Nothing more will come: free the socket or connection now.
            asyncio.get_running_loop().call_soon(self._shutdown)

    def _error(self) -> TurnError:
        outcome = self.outcome or Outcome(
            TurnFailure.CONNECTION_LOST, None, f"the allocation is {self.client.state.value}"
        )
        return TurnError(outcome, self.config.server)

    def _shutdown(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            self._reader_task = None
        if self._runner is not None:
            self._runner.close()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._ended.set()


def _udp_socket(server: Endpoint) -> socket_module.socket:
    family = socket_module.AF_INET6 if server.address.version == 6 else socket_module.AF_INET
    sock = socket_module.socket(family, socket_module.SOCK_DGRAM)
    sock.bind(("::" if family == socket_module.AF_INET6 else "0.0.0.0", 0))
    return sock


def _tcp_socket(server: Endpoint) -> socket_module.socket:
    family = socket_module.AF_INET6 if server.address.version == 6 else socket_module.AF_INET
    return socket_module.socket(family, socket_module.SOCK_STREAM)


class TurnStreamError(NatkitError):
    """No TCP or TLS connection to a TURN server (``detail`` says why)."""

    def __init__(self, server: Endpoint, detail: str, tls_retries: int = 0) -> None:
        super().__init__(f"TURN ({server}): {detail}")
        self.server = server
        self.detail = detail
        #: Handshakes tried again before giving up.
        self.tls_retries = tls_retries


@dataclass(frozen=True, slots=True)
class TurnStream:
    """An open connection to a TURN server."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    #: Handshakes that failed once and were tried again (see the module doc).
    tls_retries: int = 0


async def open_turn_stream(
    server: Endpoint,
    tls: ssl.SSLContext | None,
    *,
    server_name: str | None = None,
    sock: socket_module.socket | None = None,
    timeout: float = CONNECT_TIMEOUT,
) -> TurnStream:
    """Connect to ``server`` over TCP, then TLS with ``tls`` (checked against
    ``server_name``, else the address); ``sock``: an unconnected TCP socket to
    use for the first attempt. A handshake that fails for another reason
    than the certificate is tried once more (coturn, LAB.md). Raises
    :class:`TurnStreamError` saying why, and nothing is left open then."""
    attempts = 2 if tls is not None else 1
    retries = 0
    detail = ""
    for attempt in range(attempts):
        first, sock = sock, None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await _connect_once(server, first, tls, server_name)
            return TurnStream(reader, writer, retries)
        except ssl.SSLCertVerificationError as exc:
            raise TurnStreamError(server, f"TLS certificate refused: {exc}", retries) from None
        except ssl.SSLError as exc:
            detail = f"TLS failed: {exc.reason or exc}"
            if attempt + 1 < attempts:
                retries += 1
        except TimeoutError:
            raise TurnStreamError(server, f"no connection in {timeout:g} s", retries) from None
        except OSError as exc:
            raise TurnStreamError(
                server, f"cannot connect: {exc.strerror or exc}", retries
            ) from None
    raise TurnStreamError(server, detail, retries)


async def _connect_once(
    server: Endpoint,
    sock: socket_module.socket | None,
    tls: ssl.SSLContext | None,
    server_name: str | None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    if sock is None:
        sock = _tcp_socket(server)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, server.sockaddr())
        name = (server_name or str(server.address)) if tls is not None else None
        return await asyncio.open_connection(sock=sock, ssl=tls, server_hostname=name)
    except BaseException:
        sock.close()
        raise


async def server_rtt(
    server: TurnServer,
    *,
    count: int = 3,
    timeout: float = 5.0,
    cafile: str | None = None,
    verify: bool = True,
    sock: socket_module.socket | None = None,
) -> float | None:
    """The smallest of ``count`` Binding round trips to ``server`` over its
    transport (a TCP/TLS connection is made once), or ``None`` if it never
    answered: how to pick the nearest of several servers. Allocates nothing."""
    config = TurnConfig(server.endpoint, None, server.transport)
    relay = TurnRelay(
        config, server_name=server.server_name, cafile=cafile, verify=verify, sock=sock
    )
    samples: list[float] = []
    try:
        async with asyncio.timeout(timeout):
            for _ in range(count):
                rtt = await relay.ping()
                if rtt is not None:
                    samples.append(rtt)
    except (TimeoutError, TurnError):
        pass
    finally:
        relay._shutdown()
    return min(samples) if samples else None


async def allocate_relay(
    server: TurnServer,
    credentials: Credentials | None,
    *,
    cafile: str | None = None,
    verify: bool = True,
    sock: socket_module.socket | None = None,
    timeout: float | None = None,
    **config: object,
) -> TurnRelay:
    """A :class:`TurnRelay` on ``server``, allocated (``config``: more
    :class:`TurnConfig` fields). Closes everything if allocation fails."""
    turn_config = TurnConfig(
        server.endpoint,
        credentials,
        server.transport,
        **config,  # type: ignore[arg-type]
    )
    relay = TurnRelay(
        turn_config, server_name=server.server_name, cafile=cafile, verify=verify, sock=sock
    )
    try:
        await relay.allocate(timeout)
    except BaseException:
        relay._shutdown()
        raise
    return relay


__all__ = [
    "TurnRelay",
    "TurnServer",
    "TurnStream",
    "TurnStreamError",
    "allocate_relay",
    "open_turn_stream",
    "resolve_turn_server",
    "server_rtt",
]
