"""The rendezvous as a :class:`~natkit.signal.channel.SignalChannel`: one
TCP connection to ``natkit rendezvous``, kept up for as long as the channel
is open.

Each connection runs a fresh sans-IO :class:`~natkit.signal.client.RendezvousClient`
(handshake with proof of key, pings, silence detection). When it ends for
any reason, the channel reports ``CONNECTING`` with the reason and the
delay, waits (:class:`~natkit.signal.backoff.Backoff`: exponential from 1 s,
jittered, capped at 5 minutes) and connects again, re-authenticating from
scratch. Its user hears every change (:meth:`subscribe`): a connect layer
re-announces itself to its peers on each ``UP``, since messages sent while
the channel was down may have been dropped.

The attempt counter behind the backoff starts again from 0 only after a
connection stayed up ``stable_after`` seconds, and never after
``REPLACED`` (:class:`~natkit.signal.backoff.Reconnects`).

While not connected, ``send`` keeps up to ``outbox_limit`` messages and
sends them after the next WELCOME; beyond that the oldest are dropped and
reported (``Undeliverable(NOT_CONNECTED)``). The clock, the sleep and the
RNG are injectable, so the backoff schedule is testable without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from natkit.aio.channel_base import DEFAULT_INBOX_LIMIT, ChannelBase
from natkit.identity import PrivateKey, PublicKey
from natkit.signal.backoff import STABLE_AFTER, Backoff, Reconnects
from natkit.signal.channel import (
    MAX_SEALED,
    ChannelState,
    DownReason,
    SignalChannel,
    UndeliverableReason,
)
from natkit.signal.client import (
    ClientConfig,
    ClientPhase,
    Ended,
    NoticeReceived,
    Ready,
    Received,
    RendezvousClient,
)

Sleep = Callable[[float], Awaitable[None]]
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
OpenConnection = Callable[[str, int], Awaitable[Streams]]

#: Messages kept while disconnected.
DEFAULT_OUTBOX = 64
#: Seconds for the TCP connection itself.
CONNECT_TIMEOUT = 10.0
#: Bytes waiting in the socket buffer above which a send is dropped (``BUSY``):
#: the server is not reading us, and memory must stay bounded here too.
MAX_UNSENT = 256 * 1024
_READ_SIZE = 64 * 1024


async def _open(host: str, port: int) -> Streams:
    return await asyncio.open_connection(host, port)


class AttemptPhase(enum.Enum):
    """Where the channel's current connection attempt is (:attr:`RendezvousChannel.phase`)."""

    #: Resolving the server's name and opening the TCP connection.
    CONNECTING = "connecting"
    #: Connected; the server has not sent its hello yet.
    HELLO = "hello"
    #: Our proof of key is sent; no welcome yet.
    AUTHENTICATING = "authenticating"
    #: Welcomed: the channel is up.
    UP = "up"
    #: Waiting (backoff) before the next attempt.
    WAITING = "waiting"
    #: Closed by its user.
    CLOSED = "closed"


@dataclass(slots=True)
class ChannelCounters:
    """What the channel did, for tests and status output."""

    attempts: int = 0
    connections: int = 0
    sent: int = 0
    received: int = 0
    outbox_dropped: int = 0
    unsent_dropped: int = 0


class RendezvousChannel(ChannelBase):
    """A :class:`SignalChannel` through a ``natkit rendezvous`` server."""

    def __init__(
        self,
        host: str,
        port: int,
        key: PrivateKey,
        *,
        config: ClientConfig | None = None,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] | None = None,
        open_connection: OpenConnection = _open,
        connect_timeout: float = CONNECT_TIMEOUT,
        stable_after: float = STABLE_AFTER,
        outbox_limit: int = DEFAULT_OUTBOX,
        inbox_limit: int = DEFAULT_INBOX_LIMIT,
    ) -> None:
        super().__init__(inbox_limit=inbox_limit)
        self.host = host
        self.port = port
        self.key = key
        self.config = config or ClientConfig()
        self.backoff = backoff or Backoff()
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._clock = clock or asyncio.get_running_loop().time
        self._open = open_connection
        self.connect_timeout = connect_timeout
        self.stable_after = stable_after
        self._outbox: deque[tuple[PublicKey, bytes]] = deque()
        self._outbox_limit = outbox_limit
        self._core: RendezvousClient | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        self._phase = AttemptPhase.CONNECTING
        self._phase_since = self._clock()
        self.counters = ChannelCounters()
        #: Every delay the backoff chose, in order (for status and tests).
        self.delays: list[float] = []

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Start connecting (in the background); idempotent."""
        if self._task is None and self._state is not ChannelState.CLOSED:
            self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def phase(self) -> AttemptPhase:
        """Where the current attempt is: why the channel is not up *yet*,
        before any attempt ended with a reason (a server that accepts the
        connection and never says hello ends only after the handshake timeout)."""
        core = self._core
        hello = self._phase is AttemptPhase.HELLO
        if hello and core is not None and core.phase is ClientPhase.AUTHENTICATING:
            return AttemptPhase.AUTHENTICATING
        return self._phase

    def phase_age(self) -> float:
        """Seconds since the current attempt reached :attr:`phase` (for
        ``AUTHENTICATING``: since the connection was made)."""
        return self._clock() - self._phase_since

    def _enter(self, phase: AttemptPhase) -> None:
        self._phase, self._phase_since = phase, self._clock()

    async def wait_up(self) -> None:
        """Return once the channel is ``UP`` (at once if it is)."""
        await self._up.wait()

    async def close(self) -> None:
        if self._state is ChannelState.CLOSED:
            return
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._up.clear()
        self._enter(AttemptPhase.CLOSED)
        self._set_state(ChannelState.CLOSED, DownReason.CLOSED)

    # -- SignalChannel --------------------------------------------------------

    async def send(self, recipient: PublicKey, sealed: bytes) -> None:
        core = self._core
        ready = core is not None and core.phase is ClientPhase.READY
        limit = core.max_sealed if core is not None and ready else MAX_SEALED
        self._check_send(sealed, limit)
        if core is None or not ready:
            if len(self._outbox) >= self._outbox_limit:
                dropped, _ = self._outbox.popleft()
                self.counters.outbox_dropped += 1
                self._undeliverable(dropped, UndeliverableReason.NOT_CONNECTED)
            self._outbox.append((recipient, sealed))
            return
        writer = self._writer
        if writer is not None and writer.transport.get_write_buffer_size() > MAX_UNSENT:
            self.counters.unsent_dropped += 1
            self._undeliverable(recipient, UndeliverableReason.BUSY)
            return
        core.send(recipient, sealed)
        self.counters.sent += 1
        self._flush(core)

    # -- the connection loop --------------------------------------------------

    async def _run(self) -> None:
        reconnects = Reconnects(self.backoff, self.stable_after)
        while True:
            try:
                reason, detail, up_for = await self._connect_once()
            except Exception as exc:  # a bug here must not end reconnecting for good
                asyncio.get_running_loop().call_exception_handler(
                    {"message": "rendezvous channel: unexpected error", "exception": exc}
                )
                reason, detail, up_for = DownReason.PROTOCOL, f"internal error: {exc!r}", None
            delay = reconnects.next_delay(reason, up_for, self._rng)
            self.delays.append(delay)
            self._enter(AttemptPhase.WAITING)
            self._set_state(ChannelState.CONNECTING, reason, detail, retry_in=delay)
            await self._sleep(delay)

    async def _connect_once(self) -> tuple[DownReason, str, float | None]:
        """One connection, from TCP connect to its end: why it ended, and how
        long it was up (``None`` if it never was)."""
        self.counters.attempts += 1
        self._enter(AttemptPhase.CONNECTING)
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the
        # result and loses a cancel that arrives as its future completes
        # (python/cpython#86296), so close() could wait for ever.
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await self._open(self.host, self.port)
        except socket.gaierror as exc:
            # Name the name: "Name or service not known" alone hides which one.
            return DownReason.UNREACHABLE, f"cannot resolve {self.host!r}: {_describe(exc)}", None
        except (OSError, TimeoutError) as exc:
            return DownReason.UNREACHABLE, _describe(exc), None
        self._enter(AttemptPhase.HELLO)
        core = RendezvousClient(self.key, self._clock(), self.config)
        self._core, self._writer = core, writer
        up_since: float | None = None
        try:
            while True:
                self._flush(core)
                while (event := core.next_event()) is not None:
                    match event:
                        case Ready():
                            up_since = self._clock()
                            self._became_ready(core)
                        case Received(envelope):
                            self.counters.received += 1
                            self._deliver(envelope)
                        case NoticeReceived(recipient, reason):
                            self._undeliverable(recipient, reason)
                        case Ended(reason, detail):
                            return reason, detail, _since(up_since, self._clock())
                deadline = core.get_timer()
                timeout = None if deadline is None else max(0.0, deadline - self._clock())
                try:
                    async with asyncio.timeout(timeout):
                        data = await reader.read(_READ_SIZE)
                except TimeoutError:
                    core.handle_timer(self._clock())
                    continue
                if data:
                    core.receive(data, self._clock())
                else:
                    core.eof(self._clock())
        except OSError as exc:
            return DownReason.LOST, _describe(exc), _since(up_since, self._clock())
        finally:
            self._core = self._writer = None
            self._up.clear()
            writer.close()

    def _became_ready(self, core: RendezvousClient) -> None:
        self.counters.connections += 1
        self._enter(AttemptPhase.UP)
        # Flush what waited, oldest first, within the server's limit.
        while self._outbox:
            recipient, sealed = self._outbox.popleft()
            if len(sealed) <= core.max_sealed:
                core.send(recipient, sealed)
                self.counters.sent += 1
            else:
                self._undeliverable(recipient, UndeliverableReason.NOT_CONNECTED)
        self._flush(core)
        self._up.set()
        self._set_state(ChannelState.UP)

    def _flush(self, core: RendezvousClient) -> None:
        data = core.data_to_send()
        if data and self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)


def _since(start: float | None, now: float) -> float | None:
    return None if start is None else now - start


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _conforms(channel: RendezvousChannel) -> SignalChannel:
    return channel  # mypy checks that RendezvousChannel is a SignalChannel
