"""The probe packet: its exact bytes, and a strict parser that names every
reason it refuses something."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import struct

import pytest
from birthday_testlib import KEY, OTHER_KEY, SESSION
from hypothesis import given
from hypothesis import strategies as st

from natkit.birthday.wire import (
    PACKET_LENGTH,
    Kind,
    Packet,
    PacketError,
    PacketFailure,
    Side,
    encode_packet,
    is_probe_packet,
    parse_packet,
)
from natkit.errors import LocalProtocolError, RemoteProtocolError

ACK = Packet(Kind.ACK, Side.B, SESSION, sequence=7, echo=0x01020304)


def wire(header: bytes, key: bytes = KEY) -> bytes:
    """Tag a hand-built header the way the format says (independently of the encoder)."""
    return header + hmac.new(key, header, hashlib.sha256).digest()[:16]


ACK_BYTES = wire(
    b"NKbp"  # magic
    + b"\x01\x03\x02\x00"  # version 1, kind ACK, side B, reserved
    + SESSION
    + b"\x00\x00\x00\x07"  # sequence
    + b"\x01\x02\x03\x04"  # echo
)


def test_the_encoding_is_the_documented_layout() -> None:
    assert encode_packet(ACK, KEY) == ACK_BYTES
    assert len(ACK_BYTES) == PACKET_LENGTH == 40


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("side", list(Side))
def test_round_trip(kind: Kind, side: Side) -> None:
    original = Packet(kind, side, SESSION, 0xFFFFFFFF, 5 if kind is Kind.ACK else 0)
    assert parse_packet(encode_packet(original, KEY), KEY) == original


def header_with(**fields: int | bytes) -> bytes:
    values: dict[str, int | bytes] = {
        "magic": b"NKbp",
        "version": 1,
        "kind": 2,
        "side": 1,
        "reserved": 0,
        "session": SESSION,
        "sequence": 1,
        "echo": 0,
        **fields,
    }
    return struct.pack("!4sBBBB8sII", *values.values())


@pytest.mark.parametrize(
    ("data", "reason", "message"),
    [
        (b"", PacketFailure.LENGTH, "not 40 bytes: 0 bytes"),
        (ACK_BYTES[:-1], PacketFailure.LENGTH, "not 40 bytes: 39 bytes"),
        (ACK_BYTES + b"\x00", PacketFailure.LENGTH, "not 40 bytes: 41 bytes"),
        (wire(header_with(magic=b"NKbq")), PacketFailure.MAGIC, "magic is not NKbp: 4e4b6271"),
        (wire(header_with(version=2)), PacketFailure.VERSION, "unknown version: 2"),
        (wire(header_with(), OTHER_KEY), PacketFailure.TAG, "authenticator does not match"),
        (wire(header_with(kind=0)), PacketFailure.KIND, "unknown kind: 0"),
        (wire(header_with(kind=4)), PacketFailure.KIND, "unknown kind: 4"),
        (wire(header_with(side=3)), PacketFailure.SIDE, "unknown side: 3"),
        (wire(header_with(reserved=1)), PacketFailure.RESERVED, "reserved byte is not zero: 1"),
        (
            wire(header_with(echo=9)),
            PacketFailure.ECHO,
            "echo set on a packet that is not an ACK: PROBE",
        ),
    ],
)
def test_strict_parsing_names_the_failure(data: bytes, reason: PacketFailure, message: str) -> None:
    with pytest.raises(PacketError) as caught:
        parse_packet(data, KEY)
    assert caught.value.reason is reason
    assert str(caught.value) == message
    assert isinstance(caught.value, RemoteProtocolError)


@pytest.mark.parametrize("bit", range(PACKET_LENGTH * 8))
def test_every_single_bit_flip_is_refused(bit: int) -> None:
    flipped = bytearray(ACK_BYTES)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(PacketError):
        parse_packet(bytes(flipped), KEY)


def test_the_tag_is_checked_before_the_fields() -> None:
    # A forged packet with a bad kind is "unauthenticated", not "unknown kind":
    # nothing past the framing is interpreted before the tag verifies.
    forged = header_with(kind=9) + b"\x00" * 16
    with pytest.raises(PacketError) as caught:
        parse_packet(forged, KEY)
    assert caught.value.reason is PacketFailure.TAG


@given(st.binary(max_size=80))
def test_arbitrary_bytes_only_ever_raise_packet_error(data: bytes) -> None:
    with contextlib.suppress(PacketError):
        parse_packet(data, KEY)


@given(st.binary(min_size=24, max_size=24))
def test_arbitrary_headers_with_a_wrong_tag_never_parse(header: bytes) -> None:
    with pytest.raises(PacketError):
        parse_packet(header + b"\x00" * 16, KEY)


def test_demultiplexing() -> None:
    assert is_probe_packet(ACK_BYTES)
    assert not is_probe_packet(ACK_BYTES[:-1])
    # Never STUN: STUN's first two bits are zero, 'N' is 0b01001110.
    assert ACK_BYTES[0] & 0xC0 != 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Packet(Kind.PROBE, Side.A, b"short", 1), "session id must be 8 bytes"),
        (lambda: Packet(Kind.PROBE, Side.A, SESSION, -1), "sequence out of range"),
        (lambda: Packet(Kind.PROBE, Side.A, SESSION, 2**32), "sequence out of range"),
        (lambda: Packet(Kind.PROBE, Side.A, SESSION, 1, echo=1), "echo is only for ACKs"),
        (lambda: encode_packet(ACK, b"short key"), "key must be at least 16 bytes"),
        (lambda: parse_packet(ACK_BYTES, b""), "key must be at least 16 bytes"),
    ],
)
def test_local_misuse_is_a_local_error(make: object, message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        make()  # type: ignore[operator]


def test_sides_know_their_peer() -> None:
    assert Side.A.peer is Side.B
    assert Side.B.peer is Side.A
