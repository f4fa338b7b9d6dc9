"""The rendezvous frame codec and the handshake proof."""

from __future__ import annotations

import contextlib
import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from natkit.errors import LocalProtocolError, RemoteProtocolError
from natkit.identity import PrivateKey, seal
from natkit.signal.auth import AUTH_LABEL, CHALLENGE_LENGTH, PROOF_LENGTH, prove, verify
from natkit.signal.frames import (
    FROM_CLIENT,
    FROM_SERVER,
    HEADER_LENGTH,
    ClientHello,
    Deliver,
    Error,
    ErrorCode,
    Frame,
    FrameDecoder,
    FrameError,
    FrameProblem,
    FrameType,
    Notice,
    NoticeReason,
    Ping,
    Pong,
    Send,
    ServerHello,
    Welcome,
    encode,
)

KEY = PrivateKey.generate()
PEER = PrivateKey.generate().public_key
CHALLENGE = bytes(range(32))

CLIENT_FRAMES: list[Frame] = [
    ClientHello(KEY.public_key, prove(KEY, PEER, CHALLENGE)),
    Send(PEER, b"sealed bytes"),
    Ping(b"12345678"),
]
SERVER_FRAMES: list[Frame] = [
    ServerHello(PEER, CHALLENGE),
    Welcome(4096, 25),
    Deliver(PEER, b"s"),
    Notice(PEER, NoticeReason.BUSY),
    Pong(b"abcdefgh"),
    Error(ErrorCode.REPLACED),
]


def decode_all(data: bytes, accept: frozenset[FrameType], max_sealed: int = 4096) -> list[Frame]:
    decoder = FrameDecoder(accept, max_sealed)
    decoder.feed(data)
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    return frames


@pytest.mark.parametrize(
    ("frames", "accept"), [(CLIENT_FRAMES, FROM_CLIENT), (SERVER_FRAMES, FROM_SERVER)]
)
def test_round_trip(frames: list[Frame], accept: frozenset[FrameType]) -> None:
    data = b"".join(encode(frame) for frame in frames)
    assert decode_all(data, accept) == frames


def test_byte_by_byte_feeding_gives_the_same_frames() -> None:
    data = b"".join(encode(frame) for frame in SERVER_FRAMES)
    decoder = FrameDecoder(FROM_SERVER, 4096)
    frames = []
    for byte in data:
        decoder.feed(bytes([byte]))
        while (frame := decoder.next_frame()) is not None:
            frames.append(frame)
    assert frames == SERVER_FRAMES
    assert decoder.buffered == 0


def test_exact_bytes_of_a_send_frame() -> None:
    assert encode(Send(PEER, b"xy")) == bytes([4, 0, 0, 34]) + PEER.raw + b"xy"
    assert encode(Error(ErrorCode.TOO_SLOW)) == bytes([9, 0, 0, 1, 6])


def header(frame_type: int, length: int, reserved: int = 0) -> bytes:
    return struct.pack("!BBH", frame_type, reserved, length)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (header(0, 0), FrameProblem.UNKNOWN_TYPE),
        (header(200, 5), FrameProblem.UNKNOWN_TYPE),
        (header(FrameType.SEND, 40, reserved=1), FrameProblem.RESERVED),
        (header(FrameType.DELIVER, 40), FrameProblem.WRONG_DIRECTION),
        (header(FrameType.PING, 9), FrameProblem.BAD_LENGTH),
        (header(FrameType.SEND, 32), FrameProblem.BAD_LENGTH),
        (header(FrameType.SEND, 32 + 4097), FrameProblem.TOO_LARGE),
        (header(FrameType.SEND, 0xFFFF), FrameProblem.TOO_LARGE),
    ],
)
def test_bad_headers_are_refused_before_any_body(data: bytes, problem: FrameProblem) -> None:
    # Only the header: the decoder must not wait for (buffer) a body first.
    decoder = FrameDecoder(FROM_CLIENT, 4096)
    decoder.feed(data)
    with pytest.raises(FrameError) as info:
        decoder.next_frame()
    assert info.value.problem is problem
    assert isinstance(info.value, RemoteProtocolError)


def test_bad_values_in_bodies() -> None:
    hello = bytearray(encode(CLIENT_FRAMES[0]))
    hello[HEADER_LENGTH] = 2  # version
    with pytest.raises(FrameError) as info:
        decode_all(bytes(hello), FROM_CLIENT)
    assert info.value.problem is FrameProblem.VERSION
    notice = bytearray(encode(Notice(PEER, NoticeReason.OFFLINE)))
    notice[-1] = 99
    with pytest.raises(FrameError) as info:
        decode_all(bytes(notice), FROM_SERVER)
    assert info.value.problem is FrameProblem.BAD_VALUE
    with pytest.raises(FrameError) as info:
        decode_all(header(FrameType.WELCOME, 4) + bytes(4), FROM_SERVER)
    assert info.value.problem is FrameProblem.BAD_VALUE
    with pytest.raises(FrameError) as info:
        decode_all(header(FrameType.ERROR, 1) + b"\x00", FROM_SERVER)
    assert info.value.problem is FrameProblem.BAD_VALUE


def test_a_broken_decoder_stays_broken() -> None:
    decoder = FrameDecoder(FROM_CLIENT, 4096)
    decoder.feed(header(99, 0) + encode(Ping(b"12345678")))
    with pytest.raises(FrameError):
        decoder.next_frame()
    decoder.feed(encode(Ping(b"12345678")))
    with pytest.raises(FrameError):
        decoder.next_frame()
    assert decoder.buffered == 0


def test_encode_refuses_impossible_frames() -> None:
    with pytest.raises(LocalProtocolError):
        encode(Send(PEER, b""))
    with pytest.raises(LocalProtocolError):
        encode(Send(PEER, bytes(100)), max_sealed=99)
    with pytest.raises(LocalProtocolError):
        encode(Ping(b"short"))
    with pytest.raises(LocalProtocolError):
        encode(ServerHello(PEER, b"short"))
    with pytest.raises(LocalProtocolError):
        encode(Welcome(0, 25))


@given(st.binary(max_size=2000), st.sampled_from([FROM_CLIENT, FROM_SERVER]))
def test_random_bytes_give_frames_or_frame_errors_only(
    data: bytes, accept: frozenset[FrameType]
) -> None:
    decoder = FrameDecoder(accept, 512)
    decoder.feed(data)
    try:
        while decoder.next_frame() is not None:
            pass
    except FrameError:
        pass
    # Never more buffered than one largest frame.
    assert decoder.buffered < HEADER_LENGTH + 32 + 512


@given(st.lists(st.sampled_from(SERVER_FRAMES), max_size=8), st.data())
def test_mutated_streams_never_raise_anything_else(
    frames: list[Frame], data: st.DataObject
) -> None:
    stream = bytearray(b"".join(encode(frame) for frame in frames))
    if stream:
        flips = data.draw(st.lists(st.integers(0, len(stream) - 1), max_size=4))
        for position in flips:
            stream[position] ^= 0xFF
    with contextlib.suppress(FrameError):
        decode_all(bytes(stream), FROM_SERVER)


def test_proof_verifies_only_for_the_key_holder_and_challenge() -> None:
    server = PrivateKey.generate()
    challenge = os.urandom(CHALLENGE_LENGTH)
    proof = prove(KEY, server.public_key, challenge)
    assert len(proof) == PROOF_LENGTH
    assert verify(server, KEY.public_key, challenge, proof)
    # Claiming another key with our proof fails.
    assert not verify(server, PEER, challenge, proof)
    # Another challenge (a new connection) fails.
    assert not verify(server, KEY.public_key, os.urandom(CHALLENGE_LENGTH), proof)
    # A proof made for another server key fails.
    other = PrivateKey.generate()
    assert not verify(other, KEY.public_key, challenge, proof)
    # A box of the right keys but another text fails (domain separation).
    assert not verify(server, KEY.public_key, challenge, seal(KEY, server.public_key, challenge))


def test_auth_label_starts_with_zero() -> None:
    assert AUTH_LABEL[0] == 0
