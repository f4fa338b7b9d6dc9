"""The rendezvous wire format: typed, length-prefixed frames over TCP.

Every frame is a 4-byte header and a body::

    0      1      2             4
    +------+------+-------------+------------------+
    | type | 0x00 | body length | body ...         |
    +------+------+-------------+------------------+

``type`` is a :class:`FrameType`, the second byte is reserved (must be 0),
the length is big-endian and counts the body only. Each type has an exact
body length, or for SEND/DELIVER a bounded one, and the decoder checks it
from the header alone: a frame of the wrong type for its direction, an
unknown type or a length that cannot be right is refused before any of its
body is buffered, so one connection never holds more than one frame's worth
of input. Everything refused is a :class:`FrameError` (a
``RemoteProtocolError``); the connection is then closed, since a byte
stream cannot be resynchronised.

Bodies (all integers big-endian; keys are raw X25519 public keys)::

    SERVER_HELLO   version u8 | server key [32] | challenge [32]
    CLIENT_HELLO   version u8 | client key [32] | proof [PROOF_LENGTH]
    WELCOME        max sealed u16 | ping interval (s) u16
    SEND           recipient [32] | sealed [1 .. max sealed]
    DELIVER        sender [32] | sealed [1 .. max sealed]
    UNDELIVERABLE  recipient [32] | reason u8
    PING, PONG     token [8]
    ERROR          code u8

The handshake and its proof are in :mod:`natkit.signal.auth`.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from natkit.errors import LocalProtocolError, RemoteProtocolError
from natkit.identity import KEY_LENGTH, PublicKey
from natkit.signal.auth import CHALLENGE_LENGTH, PROOF_LENGTH

#: The protocol version both hellos carry.
VERSION = 1
_HEADER = struct.Struct("!BBH")
HEADER_LENGTH = _HEADER.size
#: The format's own ceiling for a body (16-bit length).
MAX_BODY = 0xFFFF
#: The largest sealed message the format can carry in SEND or DELIVER.
MAX_SEALED_FORMAT = MAX_BODY - KEY_LENGTH
PING_TOKEN_LENGTH = 8


class FrameType(enum.IntEnum):
    """What a frame is; the direction is fixed per type."""

    SERVER_HELLO = 1  # server → client, first frame
    CLIENT_HELLO = 2  # client → server, answers SERVER_HELLO
    WELCOME = 3  # server → client: authenticated
    SEND = 4  # client → server
    DELIVER = 5  # server → client
    UNDELIVERABLE = 6  # server → client: a SEND was dropped
    PING = 7  # client → server
    PONG = 8  # server → client
    ERROR = 9  # server → client, then the server closes


#: What each side may receive.
FROM_CLIENT = frozenset({FrameType.CLIENT_HELLO, FrameType.SEND, FrameType.PING})
FROM_SERVER = frozenset(FrameType) - FROM_CLIENT


class ErrorCode(enum.IntEnum):
    """Why the server is closing the connection (ERROR frame)."""

    PROTOCOL = 1  # a malformed or unexpected frame
    VERSION = 2  # a protocol version the server does not speak
    AUTH_FAILED = 3  # the proof did not open to the challenge
    AUTH_TIMEOUT = 4  # no CLIENT_HELLO in time
    IDLE = 5  # no frame (not even PING) in time
    TOO_SLOW = 6  # not reading: frames waited too long in the queue
    REPLACED = 7  # the same key authenticated on another connection
    FULL = 8  # too many connections
    SHUTDOWN = 9  # the server is stopping


class NoticeReason(enum.IntEnum):
    """Why a SEND was dropped (UNDELIVERABLE frame)."""

    OFFLINE = 1  # no client with that key is connected
    BUSY = 2  # the recipient's queue is full
    RATE_LIMITED = 3  # the sender is over its rate


class FrameProblem(enum.Enum):
    """What is wrong with a frame."""

    RESERVED = "reserved byte not zero"
    UNKNOWN_TYPE = "unknown frame type"
    WRONG_DIRECTION = "frame type not sent in this direction"
    BAD_LENGTH = "body length wrong for the type"
    TOO_LARGE = "sealed message over the limit"
    BAD_VALUE = "field value out of range"
    VERSION = "unsupported protocol version"


class FrameError(RemoteProtocolError):
    """The peer sent a frame that breaks the format."""

    def __init__(self, problem: FrameProblem, frame_type: int | None, detail: str = "") -> None:
        where = f" (type {frame_type})" if frame_type is not None else ""
        super().__init__(f"{problem.value}{where}{': ' + detail if detail else ''}")
        self.problem = problem
        self.frame_type = frame_type
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ServerHello:
    server_key: PublicKey  # ephemeral, one per connection
    challenge: bytes
    version: int = VERSION


@dataclass(frozen=True, slots=True)
class ClientHello:
    client_key: PublicKey
    proof: bytes
    version: int = VERSION


@dataclass(frozen=True, slots=True)
class Welcome:
    max_sealed: int
    ping_interval: int


@dataclass(frozen=True, slots=True)
class Send:
    recipient: PublicKey
    sealed: bytes


@dataclass(frozen=True, slots=True)
class Deliver:
    sender: PublicKey
    sealed: bytes


@dataclass(frozen=True, slots=True)
class Notice:
    """UNDELIVERABLE: a message to ``recipient`` was dropped."""

    recipient: PublicKey
    reason: NoticeReason


@dataclass(frozen=True, slots=True)
class Ping:
    token: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    token: bytes


@dataclass(frozen=True, slots=True)
class Error:
    code: ErrorCode


Frame = ServerHello | ClientHello | Welcome | Send | Deliver | Notice | Ping | Pong | Error

_HELLO_LENGTH = 1 + KEY_LENGTH + CHALLENGE_LENGTH
_CLIENT_HELLO_LENGTH = 1 + KEY_LENGTH + PROOF_LENGTH
#: Exact body lengths of the fixed-size types.
_FIXED = {
    FrameType.SERVER_HELLO: _HELLO_LENGTH,
    FrameType.CLIENT_HELLO: _CLIENT_HELLO_LENGTH,
    FrameType.WELCOME: 4,
    FrameType.UNDELIVERABLE: KEY_LENGTH + 1,
    FrameType.PING: PING_TOKEN_LENGTH,
    FrameType.PONG: PING_TOKEN_LENGTH,
    FrameType.ERROR: 1,
}


def _frame(frame_type: FrameType, body: bytes) -> bytes:
    return _HEADER.pack(frame_type, 0, len(body)) + body


def _check_sealed(sealed: bytes, limit: int) -> None:
    if not 1 <= len(sealed) <= limit:
        raise LocalProtocolError(f"sealed message of {len(sealed)} bytes (1..{limit} allowed)")


def encode(frame: Frame, max_sealed: int = MAX_SEALED_FORMAT) -> bytes:
    """The bytes of one frame; :class:`LocalProtocolError` for impossible fields."""
    match frame:
        case ServerHello(key, challenge, version):
            if len(challenge) != CHALLENGE_LENGTH:
                raise LocalProtocolError(f"a challenge is {CHALLENGE_LENGTH} bytes")
            return _frame(FrameType.SERVER_HELLO, bytes([version]) + key.raw + challenge)
        case ClientHello(key, proof, version):
            if len(proof) != PROOF_LENGTH:
                raise LocalProtocolError(f"a proof is {PROOF_LENGTH} bytes")
            return _frame(FrameType.CLIENT_HELLO, bytes([version]) + key.raw + proof)
        case Welcome(limit, interval):
            if not 1 <= limit <= MAX_SEALED_FORMAT or not 1 <= interval <= 0xFFFF:
                raise LocalProtocolError(f"welcome limits out of range: {frame}")
            return _frame(FrameType.WELCOME, struct.pack("!HH", limit, interval))
        case Send(recipient, sealed):
            _check_sealed(sealed, max_sealed)
            return _frame(FrameType.SEND, recipient.raw + sealed)
        case Deliver(sender, sealed):
            _check_sealed(sealed, max_sealed)
            return _frame(FrameType.DELIVER, sender.raw + sealed)
        case Notice(recipient, reason):
            return _frame(FrameType.UNDELIVERABLE, recipient.raw + bytes([reason]))
        case Ping(token) | Pong(token):
            if len(token) != PING_TOKEN_LENGTH:
                raise LocalProtocolError(f"a ping token is {PING_TOKEN_LENGTH} bytes")
            kind = FrameType.PING if isinstance(frame, Ping) else FrameType.PONG
            return _frame(kind, token)
        case Error(code):
            return _frame(FrameType.ERROR, bytes([code]))
    raise LocalProtocolError(f"not a frame: {frame!r}")  # pragma: no cover


def _enum(kind: type[enum.IntEnum], value: int, frame_type: FrameType) -> enum.IntEnum:
    try:
        return kind(value)
    except ValueError:
        raise FrameError(FrameProblem.BAD_VALUE, frame_type, f"{kind.__name__} {value}") from None


def decode_body(frame_type: FrameType, body: bytes) -> Frame:
    """One frame from its type and complete body (lengths already checked)."""
    match frame_type:
        case FrameType.SERVER_HELLO | FrameType.CLIENT_HELLO:
            if body[0] != VERSION:
                raise FrameError(FrameProblem.VERSION, frame_type, f"version {body[0]}")
            key = PublicKey(body[1 : 1 + KEY_LENGTH])
            rest = body[1 + KEY_LENGTH :]
            if frame_type is FrameType.SERVER_HELLO:
                return ServerHello(key, rest)
            return ClientHello(key, rest)
        case FrameType.WELCOME:
            max_sealed, ping_interval = struct.unpack("!HH", body)
            if not 1 <= max_sealed <= MAX_SEALED_FORMAT or ping_interval == 0:
                raise FrameError(FrameProblem.BAD_VALUE, frame_type, "limits out of range")
            return Welcome(max_sealed, ping_interval)
        case FrameType.SEND:
            return Send(PublicKey(body[:KEY_LENGTH]), body[KEY_LENGTH:])
        case FrameType.DELIVER:
            return Deliver(PublicKey(body[:KEY_LENGTH]), body[KEY_LENGTH:])
        case FrameType.UNDELIVERABLE:
            reason = _enum(NoticeReason, body[KEY_LENGTH], frame_type)
            return Notice(PublicKey(body[:KEY_LENGTH]), NoticeReason(reason))
        case FrameType.PING:
            return Ping(body)
        case FrameType.PONG:
            return Pong(body)
        case FrameType.ERROR:
            return Error(ErrorCode(_enum(ErrorCode, body[0], frame_type)))
    raise FrameError(FrameProblem.UNKNOWN_TYPE, frame_type)  # pragma: no cover


class FrameDecoder:
    """Incremental decoder for one direction of one connection.

    ``feed`` bytes as they arrive, then call :meth:`next_frame` until it
    returns ``None``. After a :class:`FrameError` the decoder stays broken
    (every later call raises the same error): the stream has no frame
    boundaries left to trust.
    """

    def __init__(self, accept: frozenset[FrameType], max_sealed: int) -> None:
        if not 1 <= max_sealed <= MAX_SEALED_FORMAT:
            raise LocalProtocolError(f"max_sealed must be in 1..{MAX_SEALED_FORMAT}")
        self.accept = accept
        #: SEND/DELIVER bodies above ``KEY_LENGTH + max_sealed`` are refused.
        self.max_sealed = max_sealed
        self._buffer = bytearray()
        self._error: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held: at most one frame's header and body."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        if self._error is None:
            self._buffer += data

    def _check_header(self, frame_type_value: int, reserved: int, length: int) -> FrameType:
        try:
            frame_type = FrameType(frame_type_value)
        except ValueError:
            raise FrameError(FrameProblem.UNKNOWN_TYPE, frame_type_value) from None
        if reserved:
            raise FrameError(FrameProblem.RESERVED, frame_type_value)
        if frame_type not in self.accept:
            raise FrameError(FrameProblem.WRONG_DIRECTION, frame_type_value)
        fixed = _FIXED.get(frame_type)
        if fixed is not None and length != fixed:
            raise FrameError(FrameProblem.BAD_LENGTH, frame_type_value, f"{length} != {fixed}")
        if fixed is None:
            if length <= KEY_LENGTH:
                raise FrameError(FrameProblem.BAD_LENGTH, frame_type_value, "no message")
            if length - KEY_LENGTH > self.max_sealed:
                raise FrameError(
                    FrameProblem.TOO_LARGE,
                    frame_type_value,
                    f"{length - KEY_LENGTH} > {self.max_sealed} bytes",
                )
        return frame_type

    def next_frame(self) -> Frame | None:
        """The next complete frame, ``None`` when more bytes are needed."""
        if self._error is not None:
            raise self._error
        try:
            if len(self._buffer) < HEADER_LENGTH:
                return None
            type_value, reserved, length = _HEADER.unpack_from(self._buffer)
            frame_type = self._check_header(type_value, reserved, length)
            end = HEADER_LENGTH + length
            if len(self._buffer) < end:
                return None
            body = bytes(self._buffer[HEADER_LENGTH:end])
            del self._buffer[:end]
            return decode_body(frame_type, body)
        except FrameError as exc:
            self._error = exc
            self._buffer.clear()
            raise
