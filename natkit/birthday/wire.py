"""The birthday probe packet: one fixed 40-byte format, authenticated.

Layout (network byte order)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-------------------------------------------------------------+
    |                 magic "NKbp" (4E 4B 62 70)                  |
    +---------------+---------------+---------------+-------------+
    |  version = 1  |     kind      |     side      | reserved = 0|
    +---------------+---------------+---------------+-------------+
    |                   session id (8 bytes)                      |
    |                                                             |
    +-------------------------------------------------------------+
    |                   sequence number (uint32)                  |
    +-------------------------------------------------------------+
    |            echo: the PROBE's sequence (ACK), else 0         |
    +-------------------------------------------------------------+
    |   tag: HMAC-SHA256(key, bytes 0..23), first 16 bytes        |
    |                                                             |
    +-------------------------------------------------------------+

``kind`` is :class:`Kind`; ``side`` is the *sender's* :class:`Side`, so a
packet reflected back at its sender is recognisable. The tag covers every
header byte, so session, sequence, direction and kind are all bound to the
key, which only the two peers hold. Parsing is strict and checks, in order:
the length, the magic, the version, the tag (in constant time), then the
fields; anything else raises :class:`PacketError` naming a
:class:`PacketFailure`. The first byte, 'N' (0x4E), has its top bits at
01, so a probe is never mistaken for STUN (RFC 7983 §7).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import Enum, IntEnum

from natkit.errors import LocalProtocolError, MalformedInput

MAGIC = b"NKbp"
VERSION = 1
SESSION_LENGTH = 8
TAG_LENGTH = 16
MIN_KEY_LENGTH = 16
_HEADER = struct.Struct("!4sBBBB8sII")
HEADER_LENGTH = _HEADER.size  # 24
PACKET_LENGTH = HEADER_LENGTH + TAG_LENGTH  # 40
MAX_SEQUENCE = 0xFFFFFFFF


class Kind(IntEnum):
    """What a packet is for."""

    #: Hard side (one-hard mode): opens or refreshes a mapping toward the easy side.
    OPEN = 1
    #: Sprayed at a guessed port; whoever receives it has found the pair.
    PROBE = 2
    #: The answer to a PROBE, sent back on the path it came in by.
    ACK = 3


class Side(IntEnum):
    """The sender's label. The two peers take different sides, agreed out of
    band (the hard side is A in one-hard mode)."""

    A = 1
    B = 2

    @property
    def peer(self) -> Side:
        return Side.B if self is Side.A else Side.A


class BirthdayRole(Enum):
    """What a peer does in a search: the hard side opens mappings toward the
    easy side, the easy side sprays (with both sides hard, both spray and
    the roles only tell the two peers apart)."""

    HARD = "hard"
    EASY = "easy"

    @property
    def side(self) -> Side:
        """The packet label of this role (the hard side is A)."""
        return Side.A if self is BirthdayRole.HARD else Side.B


class PacketFailure(Enum):
    """Why bytes were not accepted as a probe packet."""

    LENGTH = "not 40 bytes"
    MAGIC = "magic is not NKbp"
    VERSION = "unknown version"
    TAG = "authenticator does not match"
    KIND = "unknown kind"
    SIDE = "unknown side"
    RESERVED = "reserved byte is not zero"
    ECHO = "echo set on a packet that is not an ACK"


class PacketError(MalformedInput[PacketFailure]):
    """Bytes that are not a valid, authentic probe packet."""


@dataclass(frozen=True, slots=True)
class Packet:
    """One probe packet, without its tag (:func:`encode_packet` adds it)."""

    kind: Kind
    #: The sender's side.
    side: Side
    session: bytes
    sequence: int
    #: For an ACK, the sequence number of the PROBE it answers; 0 otherwise.
    echo: int = 0

    def __post_init__(self) -> None:
        if len(self.session) != SESSION_LENGTH:
            raise LocalProtocolError(f"session id must be 8 bytes, got {len(self.session)}")
        for name, value in (("sequence", self.sequence), ("echo", self.echo)):
            if not 0 <= value <= MAX_SEQUENCE:
                raise LocalProtocolError(f"{name} out of range: {value}")
        if self.echo and self.kind is not Kind.ACK:
            raise LocalProtocolError(f"echo is only for ACKs, not {self.kind.name}")


def check_key(key: bytes) -> None:
    """Refuse keys too short to authenticate anything."""
    if len(key) < MIN_KEY_LENGTH:
        raise LocalProtocolError(f"key must be at least {MIN_KEY_LENGTH} bytes, got {len(key)}")


def _tag(key: bytes, header: bytes) -> bytes:
    return hmac.new(key, header, hashlib.sha256).digest()[:TAG_LENGTH]


def encode_packet(packet: Packet, key: bytes) -> bytes:
    """The 40 bytes of ``packet``, tagged with ``key``."""
    check_key(key)
    header = _HEADER.pack(
        MAGIC,
        VERSION,
        packet.kind,
        packet.side,
        0,
        packet.session,
        packet.sequence,
        packet.echo,
    )
    return header + _tag(key, header)


def is_probe_packet(data: bytes) -> bool:
    """Cheap demultiplexing test (length and magic); :func:`parse_packet` verifies."""
    return len(data) == PACKET_LENGTH and data[:4] == MAGIC


def parse_packet(data: bytes, key: bytes) -> Packet:
    """Parse and authenticate one packet (see the module docstring for the order)."""
    check_key(key)
    if len(data) != PACKET_LENGTH:
        raise PacketError(PacketFailure.LENGTH, f"{len(data)} bytes")
    magic, version, kind, side, reserved, session, sequence, echo = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise PacketError(PacketFailure.MAGIC, bytes(magic).hex())
    if version != VERSION:
        raise PacketError(PacketFailure.VERSION, str(version))
    # Authenticate before trusting any field beyond the framing.
    if not hmac.compare_digest(_tag(key, bytes(data[:HEADER_LENGTH])), bytes(data[HEADER_LENGTH:])):
        raise PacketError(PacketFailure.TAG)
    try:
        parsed_kind = Kind(kind)
    except ValueError:
        raise PacketError(PacketFailure.KIND, str(kind)) from None
    try:
        parsed_side = Side(side)
    except ValueError:
        raise PacketError(PacketFailure.SIDE, str(side)) from None
    if reserved:
        raise PacketError(PacketFailure.RESERVED, str(reserved))
    if echo and parsed_kind is not Kind.ACK:
        raise PacketError(PacketFailure.ECHO, parsed_kind.name)
    return Packet(parsed_kind, parsed_side, bytes(session), sequence, echo)
