"""One rendezvous connection, client side, as a sans-IO core.

The driver (:mod:`natkit.aio.rendezvous_client`) opens a TCP connection,
makes a :class:`RendezvousClient` for it, feeds it what arrives
(:meth:`~RendezvousClient.receive`, :meth:`~RendezvousClient.eof`) and its
timer, writes what :meth:`~RendezvousClient.data_to_send` returns, and reads
its events. One core serves one connection; reconnecting (with backoff) is
the driver's job, with a new core.

Phases: ``HELLO`` (waiting for SERVER_HELLO) → ``AUTHENTICATING`` (proof
sent) → ``READY`` (WELCOME received: send and receive) → ``ENDED``. The whole
handshake must finish within ``handshake_timeout``. Once ready, the client
sends a PING every ``ping_interval`` (the server's, capped by the config),
so the server's idle timeout never fires, and ends the connection as
``SILENT`` when nothing at all arrived for ``ping_interval +
pong_timeout``: a server that vanished without a FIN is noticed that way.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from natkit.errors import LocalProtocolError
from natkit.identity import PrivateKey, PublicKey
from natkit.signal.auth import prove
from natkit.signal.channel import DownReason, Envelope, UndeliverableReason
from natkit.signal.frames import (
    FROM_SERVER,
    MAX_SEALED_FORMAT,
    PING_TOKEN_LENGTH,
    ClientHello,
    Deliver,
    Error,
    ErrorCode,
    Frame,
    FrameDecoder,
    FrameError,
    Notice,
    NoticeReason,
    Ping,
    Pong,
    Send,
    ServerHello,
    Welcome,
    encode,
)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Timeouts of one rendezvous connection."""

    #: Seconds from TCP connect to WELCOME.
    handshake_timeout: float = 10.0
    #: Longest PING interval used, whatever the server announces.
    max_ping_interval: float = 25.0
    #: Extra seconds of silence tolerated after a PING was due.
    pong_timeout: float = 10.0

    def __post_init__(self) -> None:
        if min(self.handshake_timeout, self.max_ping_interval, self.pong_timeout) <= 0:
            raise LocalProtocolError("client timeouts must be positive")


class ClientPhase(enum.Enum):
    HELLO = "hello"
    AUTHENTICATING = "authenticating"
    READY = "ready"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class Ready:
    """Authenticated: messages may flow."""

    max_sealed: int
    ping_interval: float


@dataclass(frozen=True, slots=True)
class Received:
    """A message for us."""

    envelope: Envelope


@dataclass(frozen=True, slots=True)
class NoticeReceived:
    """The server dropped a message of ours to ``recipient``."""

    recipient: PublicKey
    reason: UndeliverableReason


@dataclass(frozen=True, slots=True)
class Ended:
    """The connection is over; the driver closes it."""

    reason: DownReason
    detail: str
    #: The server's ERROR code, when it sent one.
    code: ErrorCode | None = None


ClientEvent = Ready | Received | NoticeReceived | Ended

_NOTICE = {
    NoticeReason.OFFLINE: UndeliverableReason.OFFLINE,
    NoticeReason.BUSY: UndeliverableReason.BUSY,
    NoticeReason.RATE_LIMITED: UndeliverableReason.RATE_LIMITED,
}


class RendezvousClient:
    """The client end of one connection (see module docs)."""

    def __init__(self, key: PrivateKey, now: float, config: ClientConfig | None = None) -> None:
        self.key = key
        self.config = config or ClientConfig()
        self.phase = ClientPhase.HELLO
        # Until WELCOME says otherwise, accept the format's largest DELIVER.
        self._decoder = FrameDecoder(FROM_SERVER, MAX_SEALED_FORMAT)
        self._out = bytearray()
        self._events: deque[ClientEvent] = deque()
        self._deadline = now + self.config.handshake_timeout
        self._ping_interval = self.config.max_ping_interval
        self._next_ping: float | None = None
        self._pings = 0
        #: Largest sealed message the server accepts (known once ready).
        self.max_sealed = 0

    @property
    def ended(self) -> bool:
        return self.phase is ClientPhase.ENDED

    # -- inputs ---------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> None:
        if self.ended:
            return
        self._decoder.feed(data)
        while not self.ended:
            try:
                frame = self._decoder.next_frame()
            except FrameError as exc:
                self._end(DownReason.PROTOCOL, f"server sent a bad frame: {exc}")
                return
            if frame is None:
                return
            if self.phase is ClientPhase.READY:
                self._deadline = now + self._ping_interval + self.config.pong_timeout
            self._handle(frame, now)

    def eof(self, now: float) -> None:
        """The server closed the connection (or it broke)."""
        self._end(DownReason.LOST, "connection closed by the server")

    def handle_timer(self, now: float) -> None:
        if self.phase is ClientPhase.ENDED:
            return
        if now >= self._deadline:
            self._end(DownReason.SILENT, self._silence())
            return
        if self._next_ping is not None and now >= self._next_ping:
            self._pings += 1
            self._out += encode(Ping(self._pings.to_bytes(PING_TOKEN_LENGTH, "big")))
            self._next_ping = now + self._ping_interval

    def send(self, recipient: PublicKey, sealed: bytes) -> None:
        """Queue one message (only when ready)."""
        if self.phase is not ClientPhase.READY:
            raise LocalProtocolError(f"cannot send in phase {self.phase.value}")
        self._out += encode(Send(recipient, sealed), self.max_sealed)

    # -- outputs --------------------------------------------------------------

    def data_to_send(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def get_timer(self) -> float | None:
        if self.phase is ClientPhase.ENDED:
            return None
        if self._next_ping is None:
            return self._deadline
        return min(self._deadline, self._next_ping)

    def next_event(self) -> ClientEvent | None:
        return self._events.popleft() if self._events else None

    # -- internals ------------------------------------------------------------

    def _handle(self, frame: Frame, now: float) -> None:
        match frame:
            case Error(code):
                reason = DownReason.REPLACED if code is ErrorCode.REPLACED else DownReason.REFUSED
                self._end(reason, f"server closed the connection: {code.name.lower()}", code)
            case ServerHello(server_key, challenge) if self.phase is ClientPhase.HELLO:
                proof = prove(self.key, server_key, challenge)
                self._out += encode(ClientHello(self.key.public_key, proof))
                self.phase = ClientPhase.AUTHENTICATING
            case Welcome(max_sealed, ping_interval) if self.phase is ClientPhase.AUTHENTICATING:
                self.phase = ClientPhase.READY
                self.max_sealed = max_sealed
                self._decoder.max_sealed = max_sealed
                self._ping_interval = min(float(ping_interval), self.config.max_ping_interval)
                self._next_ping = now + self._ping_interval
                self._deadline = now + self._ping_interval + self.config.pong_timeout
                self._events.append(Ready(max_sealed, self._ping_interval))
            case Deliver(sender, sealed) if self.phase is ClientPhase.READY:
                self._events.append(Received(Envelope(sender, sealed)))
            case Notice(recipient, reason) if self.phase is ClientPhase.READY:
                self._events.append(NoticeReceived(recipient, _NOTICE[reason]))
            case Pong() if self.phase is ClientPhase.READY:
                pass  # any frame proves the server is alive; the deadline moved
            case _:
                name = type(frame).__name__
                self._end(DownReason.PROTOCOL, f"unexpected {name} in phase {self.phase.value}")

    def _silence(self) -> str:
        """What the server did not answer, in words (the user's only clue)."""
        limit = f"{self.config.handshake_timeout:g} s"
        if self.phase is ClientPhase.HELLO:
            # The server of a natkit rendezvous speaks first, at once.
            return f"handshake timed out: connected, but no hello from the server in {limit}"
        if self.phase is ClientPhase.AUTHENTICATING:
            return f"handshake timed out: no welcome in {limit} (our proof of key unanswered)"
        return "no answer to ping"

    def _end(self, reason: DownReason, detail: str, code: ErrorCode | None = None) -> None:
        if self.phase is ClientPhase.ENDED:
            return
        self.phase = ClientPhase.ENDED
        self._events.append(Ended(reason, detail, code))
