"""Splitting a TCP or TLS byte stream into TURN messages (RFC 8656 §11.5).

Over a stream the client and server exchange two kinds of message back to
back, told apart by their first two bits: STUN (``00``; RFC 8489 §6.2.2, the
20-byte header carries the body length) and ChannelData (``01``; padded to a
multiple of 4, §12.5). Anything else means the stream lost its framing, which
cannot be repaired: :class:`FramingError`, and the connection must go.
"""

from __future__ import annotations

from typing import NoReturn

from natkit.errors import RemoteProtocolError
from natkit.stun.constants import HEADER_LENGTH
from natkit.turn.channel_data import CHANNEL_DATA_HEADER, padded_length

#: Largest message the framer accepts: a STUN message's 16-bit length plus
#: its header (ChannelData, padded, is smaller).
MAX_FRAMED_MESSAGE = HEADER_LENGTH + 0xFFFF


class FramingError(RemoteProtocolError):
    """The stream does not start with a STUN or ChannelData message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StreamFramer:
    """Feed stream bytes in, get whole messages out (sans-IO, no copies kept
    beyond one partial message)."""

    def __init__(self, max_message: int = MAX_FRAMED_MESSAGE) -> None:
        self.max_message = max_message
        self._buffer = bytearray()
        self._broken: FramingError | None = None

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held back."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return the messages it completed, in order.

        Raises :class:`FramingError` (and keeps raising it) once the stream
        holds something that is neither STUN nor ChannelData, or a message
        larger than ``max_message``.
        """
        if self._broken is not None:
            raise self._broken
        self._buffer += data
        messages: list[bytes] = []
        while True:
            size = self._next_size()
            if size is None or len(self._buffer) < size:
                return messages
            messages.append(bytes(self._buffer[:size]))
            del self._buffer[:size]

    def _next_size(self) -> int | None:
        if len(self._buffer) < CHANNEL_DATA_HEADER:
            return None
        kind = self._buffer[0] & 0xC0
        length = int.from_bytes(self._buffer[2:4], "big")
        if kind == 0x40:
            size = padded_length(length)
        elif kind == 0x00:
            if length % 4:
                self._fail(f"STUN length {length} is not a multiple of 4")
            size = HEADER_LENGTH + length
        else:
            self._fail(f"first byte 0x{self._buffer[0]:02x} starts neither STUN nor ChannelData")
        if size > self.max_message:
            self._fail(f"message of {size} bytes exceeds {self.max_message}")
        return size

    def _fail(self, reason: str) -> NoReturn:
        self._broken = FramingError(reason)
        self._buffer.clear()
        raise self._broken
