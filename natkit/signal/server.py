"""The rendezvous server as a sans-IO core: connections, bytes and ``now``
in; bytes per connection, close requests and events out.

Theory of operation. The driver (:mod:`natkit.aio.rendezvous_server`) tells
the core when a TCP connection opens (:meth:`RendezvousServer.open`), what
arrives on it (:meth:`RendezvousServer.receive`) and when it goes away
(:meth:`RendezvousServer.lost`); after each call it collects, for every
connection in :meth:`RendezvousServer.take_dirty`, the bytes to write
(:meth:`RendezvousServer.data_to_send`) and whether to close it, plus the
events (:meth:`RendezvousServer.next_event`), and re-arms the one timer.

Rules, each with a counter:

1. A connection first gets SERVER_HELLO (a fresh ephemeral key and
   challenge) and must answer with a valid CLIENT_HELLO within
   ``auth_timeout`` (:mod:`natkit.signal.auth`), else it is closed. At most
   ``max_pending`` handshakes run at once, ``max_pending_per_source`` from
   one source address (FULL, SOURCE_BUSY): one host cannot take every slot.
2. A key has one connection: a second one that proves the same key takes
   over, and the first is closed with REPLACED (its client may have lost
   the old connection without noticing).
3. SEND relays the sealed bytes as DELIVER to the recipient's connection.
   Nothing is stored: a recipient that is not connected means the message is
   dropped (UNDELIVERABLE ``offline`` back to the sender, if there is room).
4. Every connection has an output queue bounded by ``queue_bytes``. The
   driver takes bytes from it only while the socket accepts them, so a
   client that does not read fills its queue; then messages to it are
   dropped (``busy``), and once the oldest queued frame has waited
   ``stall_timeout`` the client is disconnected (TOO_SLOW).
5. Each client has a token bucket (``rate`` frames per second, ``burst``):
   SEND frames over it are dropped (``rate-limited``), PINGs ignored.
6. Any malformed or unexpected frame closes that connection (ERROR
   PROTOCOL); a byte stream cannot be resynchronised. Input is buffered
   one frame at a time (:class:`~natkit.signal.frames.FrameDecoder`).
7. A client that sends no frame for ``idle_timeout`` (it is told to PING
   every ``ping_interval``) is disconnected: half-open connections and
   slow-loris senders end there.

The deadlines are checked by a sweep every ``sweep_interval`` seconds while
connections exist (so a timeout may run late by up to that much), which
keeps the timer O(1) whatever the number of clients. Drops are reported as
one :class:`MessagesDropped` event per sender and reason per sweep, so a
flood cannot flood the log.
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from natkit.errors import LocalProtocolError
from natkit.identity import KEY_LENGTH, PrivateKey, PublicKey
from natkit.signal.auth import CHALLENGE_LENGTH, verify
from natkit.signal.channel import MAX_SEALED
from natkit.signal.frames import (
    FROM_CLIENT,
    HEADER_LENGTH,
    MAX_SEALED_FORMAT,
    ClientHello,
    Deliver,
    Error,
    ErrorCode,
    Frame,
    FrameDecoder,
    FrameError,
    FrameProblem,
    Notice,
    NoticeReason,
    Ping,
    Pong,
    Send,
    ServerHello,
    Welcome,
    encode,
)

#: A connection's handle, given out by :meth:`RendezvousServer.open`.
ConnId = int
#: ``random_bytes(n)``: ``n`` unpredictable bytes (``os.urandom`` in production).
RandomBytes = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Limits of one rendezvous server (defaults suit thousands of nodes)."""

    #: Largest sealed message relayed (SEND/DELIVER), announced in WELCOME.
    max_sealed: int = MAX_SEALED
    #: Bytes one connection may have waiting to be written.
    queue_bytes: int = 256 * 1024
    #: Frames per second one client may send, sustained ...
    rate: float = 20.0
    #: ... and in a burst.
    burst: int = 200
    #: Seconds from connect to a valid CLIENT_HELLO.
    auth_timeout: float = 10.0
    #: Seconds between a client's PINGs, announced in WELCOME.
    ping_interval: int = 25
    #: Seconds without any frame from a client before it is disconnected.
    idle_timeout: float = 75.0
    #: Seconds the oldest queued frame may wait before the client is
    #: disconnected as not reading.
    stall_timeout: float = 30.0
    #: Authenticated clients at most; more are refused with FULL.
    max_clients: int = 10_000
    #: Connections still in the handshake at most ...
    max_pending: int = 256
    #: ... and from one source address (the driver's ``source``): without
    #: it one host could take every handshake slot (each for ``auth_timeout``).
    max_pending_per_source: int = 8
    #: How often deadlines are checked and drop counts reported.
    sweep_interval: float = 1.0
    #: Send UNDELIVERABLE notices back to senders.
    notify_undeliverable: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.max_sealed <= MAX_SEALED_FORMAT:
            raise LocalProtocolError(f"max_sealed must be in 1..{MAX_SEALED_FORMAT}")
        largest = HEADER_LENGTH + KEY_LENGTH + self.max_sealed
        if self.queue_bytes < largest:
            raise LocalProtocolError(f"queue_bytes must hold one largest frame ({largest})")
        if self.rate <= 0 or self.burst < 1:
            raise LocalProtocolError("rate and burst must be positive")
        if not 1 <= self.ping_interval <= 0xFFFF or self.idle_timeout <= self.ping_interval:
            raise LocalProtocolError("idle_timeout must be longer than ping_interval")
        for name in ("auth_timeout", "stall_timeout", "sweep_interval"):
            if getattr(self, name) <= 0:
                raise LocalProtocolError(f"{name} must be positive")
        if self.max_clients < 1 or self.max_pending < 1 or self.max_pending_per_source < 1:
            raise LocalProtocolError(
                "max_clients, max_pending and max_pending_per_source must be positive"
            )


class DisconnectReason(enum.Enum):
    """Why a connection ended."""

    CLOSED = "closed"  # the client closed it or it broke
    MALFORMED = "malformed"  # a bad frame (ERROR PROTOCOL)
    VERSION = "version"  # an unsupported protocol version
    AUTH_FAILED = "auth-failed"  # the proof did not verify
    AUTH_TIMEOUT = "auth-timeout"  # no CLIENT_HELLO in time
    IDLE = "idle"  # no frame in idle_timeout
    TOO_SLOW = "too-slow"  # not reading its queue
    REPLACED = "replaced"  # the key connected again elsewhere
    FULL = "full"  # too many clients or handshakes
    SOURCE_BUSY = "source-busy"  # too many handshakes from its source address
    SHUTDOWN = "shutdown"  # the server is stopping


_ERROR_CODES = {
    DisconnectReason.MALFORMED: ErrorCode.PROTOCOL,
    DisconnectReason.VERSION: ErrorCode.VERSION,
    DisconnectReason.AUTH_FAILED: ErrorCode.AUTH_FAILED,
    DisconnectReason.AUTH_TIMEOUT: ErrorCode.AUTH_TIMEOUT,
    DisconnectReason.IDLE: ErrorCode.IDLE,
    DisconnectReason.TOO_SLOW: ErrorCode.TOO_SLOW,
    DisconnectReason.REPLACED: ErrorCode.REPLACED,
    DisconnectReason.FULL: ErrorCode.FULL,
    DisconnectReason.SOURCE_BUSY: ErrorCode.FULL,
    DisconnectReason.SHUTDOWN: ErrorCode.SHUTDOWN,
}


class RelayDropReason(enum.Enum):
    """Why a message was not relayed."""

    OFFLINE = "offline"
    BUSY = "busy"
    RATE_LIMITED = "rate-limited"


_NOTICE = {
    RelayDropReason.OFFLINE: NoticeReason.OFFLINE,
    RelayDropReason.BUSY: NoticeReason.BUSY,
    RelayDropReason.RATE_LIMITED: NoticeReason.RATE_LIMITED,
}


@dataclass(frozen=True, slots=True)
class ClientConnected:
    """A client proved its key."""

    conn: ConnId
    key: PublicKey
    #: The driver's label for the peer (``IP:PORT``).
    remote: str


@dataclass(frozen=True, slots=True)
class ClientDisconnected:
    """A connection ended (authenticated or not)."""

    conn: ConnId
    #: ``None`` if it never authenticated.
    key: PublicKey | None
    remote: str
    reason: DisconnectReason
    #: Messages it sent that were relayed, received, and of its own dropped.
    relayed: int
    delivered: int
    dropped: int
    #: Seconds it was connected.
    duration: float


@dataclass(frozen=True, slots=True)
class MessagesDropped:
    """``count`` messages from ``sender`` were dropped for ``reason`` (since
    the previous report for that sender and reason)."""

    sender: PublicKey
    reason: RelayDropReason
    count: int


ServerEvent = ClientConnected | ClientDisconnected | MessagesDropped


@dataclass(slots=True)
class ServerCounters:
    """Totals since start, for ``--json-line`` events, ``--stats`` and tests."""

    connections: int = 0
    authenticated: int = 0
    relayed: int = 0
    relayed_bytes: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    disconnects: Counter[str] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)
    notices_sent: int = 0
    notices_dropped: int = 0
    #: The most bytes any one connection had queued at once.
    queue_peak: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "connections": self.connections,
            "authenticated": self.authenticated,
            "relayed": self.relayed,
            "relayed_bytes": self.relayed_bytes,
            "dropped": dict(self.dropped),
            "disconnects": dict(self.disconnects),
            "malformed": dict(self.malformed),
            "notices_sent": self.notices_sent,
            "notices_dropped": self.notices_dropped,
            "queue_peak": self.queue_peak,
        }


@dataclass(slots=True)
class _Connection:
    conn: ConnId
    remote: str
    opened: float
    decoder: FrameDecoder
    ephemeral: PrivateKey
    challenge: bytes
    last_frame: float
    tokens: float
    tokens_at: float
    key: PublicKey | None = None
    #: Counted among the handshakes in progress (``max_pending``).
    pending: bool = False
    #: The source address the driver gave (``max_pending_per_source``).
    source: str | None = None
    #: Frames waiting to be written, with the time each was queued.
    out: deque[tuple[float, bytes]] = field(default_factory=deque)
    out_bytes: int = 0
    closing: bool = False
    relayed: int = 0
    delivered: int = 0
    dropped: int = 0
    unreported: Counter[RelayDropReason] = field(default_factory=Counter)


class RendezvousServer:
    """Relays sealed messages between authenticated clients (see module docs)."""

    def __init__(self, config: ServerConfig, random_bytes: RandomBytes) -> None:
        self.config = config
        self._random = random_bytes
        self._connections: dict[ConnId, _Connection] = {}
        self._by_key: dict[PublicKey, _Connection] = {}
        self._next_id = 1
        self._pending = 0
        self._pending_by_source: Counter[str] = Counter()
        self._dirty: set[ConnId] = set()
        self._events: deque[ServerEvent] = deque()
        self._next_sweep: float | None = None
        self.counters = ServerCounters()

    # -- inputs ---------------------------------------------------------------

    def open(self, remote: str, now: float, source: str | None = None) -> ConnId:
        """A TCP connection was accepted; returns its handle. ``source``: its
        source address, to count handshakes per source (``None``: not counted)."""
        conn = self._next_id
        self._next_id += 1
        ephemeral = PrivateKey(self._random(KEY_LENGTH))
        connection = _Connection(
            conn=conn,
            remote=remote,
            opened=now,
            decoder=FrameDecoder(FROM_CLIENT, self.config.max_sealed),
            ephemeral=ephemeral,
            challenge=self._random(CHALLENGE_LENGTH),
            last_frame=now,
            tokens=float(self.config.burst),
            tokens_at=now,
        )
        self._connections[conn] = connection
        self.counters.connections += 1
        if self._next_sweep is None:
            self._next_sweep = now + self.config.sweep_interval
        if self._pending >= self.config.max_pending:
            self._close(connection, DisconnectReason.FULL, now)
            return conn
        if source is not None:
            if self._pending_by_source[source] >= self.config.max_pending_per_source:
                self._close(connection, DisconnectReason.SOURCE_BUSY, now)
                return conn
            self._pending_by_source[source] += 1
            connection.source = source
        self._pending += 1
        connection.pending = True
        self._queue(
            connection, encode(ServerHello(ephemeral.public_key, connection.challenge)), now
        )
        return conn

    def receive(self, conn: ConnId, data: bytes, now: float) -> None:
        """Bytes arrived on ``conn``."""
        connection = self._connections.get(conn)
        if connection is None or connection.closing:
            return
        connection.decoder.feed(data)
        while not connection.closing:
            try:
                frame = connection.decoder.next_frame()
            except FrameError as exc:
                self.counters.malformed[exc.problem.value] += 1
                reason = (
                    DisconnectReason.VERSION
                    if exc.problem is FrameProblem.VERSION
                    else DisconnectReason.MALFORMED
                )
                self._close(connection, reason, now)
                return
            if frame is None:
                return
            connection.last_frame = now
            self._handle(connection, frame, now)

    def lost(self, conn: ConnId, now: float) -> None:
        """The TCP connection is gone (closed by either side or broken)."""
        connection = self._connections.pop(conn, None)
        if connection is None:
            return
        self._dirty.discard(conn)
        if not connection.closing:
            self._forget(connection)
            self._report_drops(connection)
            self._disconnected(connection, DisconnectReason.CLOSED, now)

    def handle_timer(self, now: float) -> None:
        """Run the sweep if it is due."""
        if self._next_sweep is None or now < self._next_sweep:
            return
        config = self.config
        for connection in list(self._connections.values()):
            if connection.closing:
                continue
            self._report_drops(connection)
            if connection.key is None and now - connection.opened >= config.auth_timeout:
                self._close(connection, DisconnectReason.AUTH_TIMEOUT, now)
            elif connection.key is not None and now - connection.last_frame >= config.idle_timeout:
                self._close(connection, DisconnectReason.IDLE, now)
            elif connection.out and now - connection.out[0][0] >= config.stall_timeout:
                self._close(connection, DisconnectReason.TOO_SLOW, now)
        self._next_sweep = now + config.sweep_interval if self._connections else None

    def shutdown(self, now: float) -> None:
        """Say SHUTDOWN to every connection and close them all."""
        for connection in list(self._connections.values()):
            if not connection.closing:
                self._close(connection, DisconnectReason.SHUTDOWN, now)

    # -- outputs --------------------------------------------------------------

    def get_timer(self) -> float | None:
        return self._next_sweep

    def take_dirty(self) -> set[ConnId]:
        """Connections with bytes to write or to close, since the last call."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def data_to_send(self, conn: ConnId, max_bytes: int | None = None) -> bytes:
        """Take queued bytes for ``conn``: whole frames, at least one, at most
        ``max_bytes`` unless a single frame is larger."""
        connection = self._connections.get(conn)
        if connection is None:
            return b""
        chunks: list[bytes] = []
        taken = 0
        while connection.out:
            size = len(connection.out[0][1])
            if chunks and max_bytes is not None and taken + size > max_bytes:
                break
            chunks.append(connection.out.popleft()[1])
            taken += size
        connection.out_bytes -= taken
        return b"".join(chunks)

    def wants_close(self, conn: ConnId) -> bool:
        """Whether the driver should close ``conn`` once its bytes are written."""
        connection = self._connections.get(conn)
        return connection is not None and connection.closing

    def queued_bytes(self, conn: ConnId) -> int:
        connection = self._connections.get(conn)
        return 0 if connection is None else connection.out_bytes

    def next_event(self) -> ServerEvent | None:
        return self._events.popleft() if self._events else None

    @property
    def clients(self) -> int:
        """Authenticated clients connected now."""
        return len(self._by_key)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # -- internals ------------------------------------------------------------

    def _handle(self, connection: _Connection, frame: Frame, now: float) -> None:
        if connection.key is None:
            if isinstance(frame, ClientHello):
                self._authenticate(connection, frame, now)
            else:
                self.counters.malformed["before-hello"] += 1
                self._close(connection, DisconnectReason.MALFORMED, now)
            return
        if isinstance(frame, ClientHello):
            self.counters.malformed["second-hello"] += 1
            self._close(connection, DisconnectReason.MALFORMED, now)
            return
        allowed = self._take_token(connection, now)
        if isinstance(frame, Ping):
            if allowed:
                self._queue(connection, encode(Pong(frame.token)), now)
        elif isinstance(frame, Send):
            if allowed:
                self._relay(connection, frame, now)
            else:
                self._drop(connection, frame.recipient, RelayDropReason.RATE_LIMITED, now)

    def _authenticate(self, connection: _Connection, hello: ClientHello, now: float) -> None:
        if not verify(connection.ephemeral, hello.client_key, connection.challenge, hello.proof):
            self._close(connection, DisconnectReason.AUTH_FAILED, now)
            return
        previous = self._by_key.get(hello.client_key)
        if previous is None and len(self._by_key) >= self.config.max_clients:
            self._close(connection, DisconnectReason.FULL, now)
            return
        if previous is not None:
            self._close(previous, DisconnectReason.REPLACED, now)
        self._end_handshake(connection)
        connection.key = hello.client_key
        self._by_key[hello.client_key] = connection
        self.counters.authenticated += 1
        welcome = Welcome(self.config.max_sealed, self.config.ping_interval)
        self._queue(connection, encode(welcome), now)
        self._events.append(ClientConnected(connection.conn, hello.client_key, connection.remote))

    def _take_token(self, connection: _Connection, now: float) -> bool:
        config = self.config
        elapsed = max(0.0, now - connection.tokens_at)
        connection.tokens = min(float(config.burst), connection.tokens + elapsed * config.rate)
        connection.tokens_at = now
        if connection.tokens < 1.0:
            return False
        connection.tokens -= 1.0
        return True

    def _relay(self, sender: _Connection, send: Send, now: float) -> None:
        assert sender.key is not None
        target = self._by_key.get(send.recipient)
        if target is None:
            self._drop(sender, send.recipient, RelayDropReason.OFFLINE, now)
            return
        frame = encode(Deliver(sender.key, send.sealed), self.config.max_sealed)
        if not self._queue(target, frame, now):
            self._drop(sender, send.recipient, RelayDropReason.BUSY, now)
            return
        sender.relayed += 1
        target.delivered += 1
        self.counters.relayed += 1
        self.counters.relayed_bytes += len(send.sealed)

    def _drop(
        self, sender: _Connection, recipient: PublicKey, reason: RelayDropReason, now: float
    ) -> None:
        sender.dropped += 1
        sender.unreported[reason] += 1
        self.counters.dropped[reason.value] += 1
        if not self.config.notify_undeliverable:
            return
        if self._queue(sender, encode(Notice(recipient, _NOTICE[reason])), now):
            self.counters.notices_sent += 1
        else:
            self.counters.notices_dropped += 1

    def _queue(self, connection: _Connection, data: bytes, now: float) -> bool:
        """Queue ``data`` for writing unless the queue would overflow."""
        if connection.closing or connection.out_bytes + len(data) > self.config.queue_bytes:
            return False
        connection.out.append((now, data))
        connection.out_bytes += len(data)
        self.counters.queue_peak = max(self.counters.queue_peak, connection.out_bytes)
        self._dirty.add(connection.conn)
        return True

    def _close(self, connection: _Connection, reason: DisconnectReason, now: float) -> None:
        """Stop serving ``connection``: an ERROR frame, then the driver closes it."""
        if connection.closing:
            return
        # The ERROR frame is the last thing said; it may exceed the queue by
        # its 5 bytes (a full queue is one way to get here).
        error = encode(Error(_ERROR_CODES[reason]))
        connection.out.append((now, error))
        connection.out_bytes += len(error)
        connection.closing = True
        self._dirty.add(connection.conn)
        self._forget(connection)
        self._report_drops(connection)
        self._disconnected(connection, reason, now)

    def _end_handshake(self, connection: _Connection) -> None:
        """Take ``connection`` out of the handshake counts (its source's too):
        it authenticated, or it is gone."""
        if not connection.pending:
            return
        connection.pending = False
        self._pending -= 1
        if connection.source is not None:
            self._pending_by_source[connection.source] -= 1
            if not self._pending_by_source[connection.source]:
                del self._pending_by_source[connection.source]

    def _forget(self, connection: _Connection) -> None:
        """Take ``connection`` out of the handshake count and the routing table."""
        self._end_handshake(connection)
        if connection.key is not None and self._by_key.get(connection.key) is connection:
            del self._by_key[connection.key]

    def _report_drops(self, connection: _Connection) -> None:
        if connection.key is None:
            return
        for reason, count in sorted(connection.unreported.items(), key=lambda item: item[0].value):
            self._events.append(MessagesDropped(connection.key, reason, count))
        connection.unreported.clear()

    def _disconnected(self, connection: _Connection, reason: DisconnectReason, now: float) -> None:
        self.counters.disconnects[reason.value] += 1
        self._events.append(
            ClientDisconnected(
                conn=connection.conn,
                key=connection.key,
                remote=connection.remote,
                reason=reason,
                relayed=connection.relayed,
                delivered=connection.delivered,
                dropped=connection.dropped,
                duration=now - connection.opened,
            )
        )
