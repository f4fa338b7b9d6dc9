"""ChannelData messages (RFC 8656 §12.4, §12.5): a 4-byte header, then data.

The header is the channel number (0x4000-0x4FFF, §12: the first two bits are
``01``, which tells ChannelData from STUN's ``00``) and the data length. Over
UDP the datagram ends with the data (padding to 4 bytes is allowed, §12.5);
over TCP and TLS the message is always padded to a multiple of 4 so the next
one starts aligned (§12.5), which is what :mod:`natkit.turn.framing` relies on.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from natkit.errors import LocalProtocolError, RemoteProtocolError

#: RFC 8656 §12: the channel numbers a client may bind.
MIN_CHANNEL = 0x4000
MAX_CHANNEL = 0x4FFF
CHANNEL_DATA_HEADER = 4
#: The 16-bit length field bounds the data.
MAX_CHANNEL_DATA = 0xFFFF


class ChannelDataError(RemoteProtocolError):
    """Bytes that claim to be ChannelData and are not (``reason`` says why)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ChannelData:
    """One ChannelData message."""

    channel: int
    data: bytes

    def __repr__(self) -> str:
        return f"ChannelData(0x{self.channel:04x}, <{len(self.data)} bytes>)"


def is_channel_data(data: bytes) -> bool:
    """Cheap demultiplexing test (RFC 8656 §12: first two bits ``01``)."""
    return len(data) >= 1 and data[0] & 0xC0 == 0x40


def valid_channel(channel: int) -> bool:
    return MIN_CHANNEL <= channel <= MAX_CHANNEL


def padded_length(length: int) -> int:
    """The size of a ChannelData message with ``length`` data bytes over a stream."""
    return CHANNEL_DATA_HEADER + length + (-length % 4)


def encode_channel_data(channel: int, data: bytes, *, pad: bool = False) -> bytes:
    """ChannelData for ``channel``; ``pad`` to 4 bytes (TCP and TLS, §12.5)."""
    if not valid_channel(channel):
        raise LocalProtocolError(f"channel number 0x{channel:04x} outside 0x4000-0x4FFF")
    if len(data) > MAX_CHANNEL_DATA:
        raise LocalProtocolError(f"ChannelData of {len(data)} bytes exceeds {MAX_CHANNEL_DATA}")
    header = struct.pack("!HH", channel, len(data))
    return header + data + (b"\x00" * (-len(data) % 4) if pad else b"")


def parse_channel_data(message: bytes) -> ChannelData:
    """Parse one ChannelData message (a UDP datagram or one framed from a stream).

    Up to three bytes of padding may follow the data; anything else is an
    error, as is a channel number outside RFC 8656's range (0x5000-0x7FFF
    are reserved).
    """
    if len(message) < CHANNEL_DATA_HEADER:
        raise ChannelDataError(f"{len(message)} bytes: shorter than a ChannelData header")
    channel, length = struct.unpack_from("!HH", message)
    if not valid_channel(channel):
        raise ChannelDataError(f"channel number 0x{channel:04x} outside 0x4000-0x4FFF")
    extra = len(message) - CHANNEL_DATA_HEADER - length
    if extra < 0:
        raise ChannelDataError(f"length {length} runs past the {len(message)}-byte message")
    if extra > 3:
        raise ChannelDataError(f"{extra} bytes after the data (at most 3 of padding)")
    return ChannelData(channel, bytes(message[CHANNEL_DATA_HEADER : CHANNEL_DATA_HEADER + length]))
