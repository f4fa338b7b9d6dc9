"""The signal messages' codec: round trips, exact bytes, and hostile input.

Whatever bytes arrive (a broken or malicious peer, a garbled relay), decoding
either returns a message that re-encodes to the same meaning or raises
``SignalDecodeError`` with a reason; nothing else escapes.
"""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError, RemoteProtocolError
from natkit.ice.candidates import CandidateKind, CandidateTransport
from natkit.ice.signals import (
    MAX_CANDIDATES,
    MAX_SIGNAL,
    Acknowledgement,
    Announcement,
    CandidatesAdded,
    SignalCandidate,
    SignalDecodeError,
    SignalFailure,
    decode_signal,
    encode_signal,
)

ICE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
HOST = SignalCandidate(CandidateKind.HOST, Endpoint.parse("10.1.0.2:40000"), 2130706431, "1")
SRFLX = SignalCandidate(CandidateKind.SRFLX, Endpoint.parse("[2001:db8::1]:5"), 1694498815, "2")
ANNOUNCEMENT = Announcement(
    generation=7,
    ufrag="abcd",
    pwd="p" * 22,
    tie_breaker=2**63 + 5,
    candidates=(HOST, SRFLX),
    peer_generation=9,
    peer_candidates=3,
    report=b"\x00report",
)


def ice_text(low: int, high: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=ICE, min_size=low, max_size=high)


endpoints = st.builds(
    Endpoint,
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    st.integers(0, 65535),
)
candidates = st.builds(
    SignalCandidate,
    st.sampled_from(CandidateKind),
    endpoints,
    st.integers(1, 2**31 - 1),
    ice_text(1, 32),
    st.sampled_from(CandidateTransport),
)
candidate_lists = st.lists(candidates, max_size=12).map(tuple)
u32 = st.integers(0, 2**32 - 1)
messages = st.one_of(
    st.builds(
        Announcement,
        generation=u32,
        ufrag=ice_text(4, 64),
        pwd=ice_text(22, 64),
        tie_breaker=st.integers(0, 2**64 - 1),
        candidates=candidate_lists,
        peer_generation=st.none() | u32,
        peer_candidates=st.integers(0, 65535),
        report=st.binary(max_size=300),
    ),
    st.builds(
        CandidatesAdded,
        generation=u32,
        first_index=st.integers(0, 65535),
        candidates=st.lists(candidates, min_size=1, max_size=12).map(tuple),
    ),
    st.builds(
        Acknowledgement,
        generation=u32,
        peer_generation=st.none() | u32,
        peer_candidates=st.integers(0, 65535),
    ),
)


@given(messages)
def test_every_message_round_trips(message: object) -> None:
    assert isinstance(message, Announcement | CandidatesAdded | Acknowledgement)
    data = encode_signal(message)
    assert decode_signal(data) == message
    assert len(data) <= MAX_SIGNAL


def test_the_announcement_is_compact_and_keeps_its_password_out_of_repr() -> None:
    data = encode_signal(ANNOUNCEMENT)
    assert data.startswith(b"NKs\x01\x01")
    assert len(data) < 150
    assert "p" * 22 not in repr(ANNOUNCEMENT)
    assert decode_signal(data).pwd == "p" * 22  # type: ignore[union-attr]


def field(tag: int, value: bytes) -> bytes:
    return struct.pack("!BH", tag, len(value)) + value


ACK = b"NKs\x01\x03" + field(1, b"\x00\x00\x00\x07") + field(3, b"\x00\x02")


def test_an_acknowledgement_written_by_hand_decodes() -> None:
    assert decode_signal(ACK) == Acknowledgement(7, None, 2)


def test_unknown_fields_are_skipped_for_later_revisions() -> None:
    assert decode_signal(ACK + field(200, b"future")) == Acknowledgement(7, None, 2)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", SignalFailure.TRUNCATED),
        (b"NKs\x01", SignalFailure.TRUNCATED),
        (b"XYZ\x01\x03", SignalFailure.BAD_MAGIC),
        (b"NKs\x02\x03", SignalFailure.UNSUPPORTED_VERSION),
        (b"NKs\x01\x09", SignalFailure.UNKNOWN_TYPE),
        (ACK + b"\x01", SignalFailure.TRUNCATED),
        (ACK + b"\x01\x00\x09\x00", SignalFailure.TRUNCATED),
        (ACK + field(1, b"\x00\x00\x00\x08"), SignalFailure.DUPLICATE_FIELD),
        (b"NKs\x01\x03" + field(1, b"\x00\x00\x00\x07"), SignalFailure.MISSING_FIELD),
        (b"NKs\x01\x03" + field(1, b"\x07") + field(3, b"\x00\x02"), SignalFailure.BAD_FIELD),
        (b"NKs\x01\x03" + b"\x00" * MAX_SIGNAL, SignalFailure.TOO_LONG),
        (ACK + field(7, encode_signal(ANNOUNCEMENT)[-10:]), SignalFailure.BAD_FIELD),
    ],
    ids=[
        "empty",
        "short-header",
        "magic",
        "version",
        "type",
        "field-header",
        "field-overrun",
        "duplicate",
        "missing",
        "short-integer",
        "too-long",
        "junk-candidate",
    ],
)
def test_malformed_messages_raise_a_typed_error(data: bytes, reason: SignalFailure) -> None:
    with pytest.raises(SignalDecodeError) as raised:
        decode_signal(data)
    assert raised.value.reason is reason
    assert isinstance(raised.value, RemoteProtocolError)


def announcement_with(**fields: bytes) -> bytes:
    """An announcement written by hand, fields overridable by tag name."""
    parts = {
        "generation": field(1, b"\x00\x00\x00\x01"),
        "ufrag": field(4, b"abcd"),
        "pwd": field(5, b"p" * 22),
        "tie": field(6, b"\x00" * 8),
        "count": field(3, b"\x00\x00"),
    }
    parts.update(fields)
    return b"NKs\x01\x01" + b"".join(parts.values())


def candidate_value(
    *,
    kind: int = 1,
    transport: int = 1,
    family: int = 1,
    address: bytes = b"\x0a\x00\x00\x01",
    foundation: bytes = b"f",
    priority: int = 1,
) -> bytes:
    return struct.pack("!BBIHB", kind, transport, priority, 9, family) + address + foundation


@pytest.mark.parametrize(
    "fields",
    [
        {"ufrag": field(4, b"ab")},  # shorter than 4
        {"ufrag": field(4, b"ab:cd")},  # not an ice-char
        {"pwd": field(5, b"\xff" * 22)},  # not ASCII
        {"pwd": field(5, b"p" * 21)},
        {"c": field(7, candidate_value(kind=99))},
        {"c": field(7, candidate_value(transport=0))},
        {"c": field(7, candidate_value(family=3))},
        {"c": field(7, candidate_value(family=2))},  # IPv6 family, 4 address bytes
        {"c": field(7, candidate_value(foundation=b""))},
        {"c": field(7, candidate_value(foundation=b"x" * 33))},
        {"c": field(7, candidate_value(priority=0))},
        {"c": field(7, b"\x01")},
        {"report": field(9, b"r" * 5000)},
    ],
)
def test_announcements_with_bad_values_are_refused(fields: dict[str, bytes]) -> None:
    with pytest.raises(SignalDecodeError) as raised:
        decode_signal(announcement_with(**fields))
    assert raised.value.reason is SignalFailure.BAD_FIELD


def test_more_candidates_than_allowed_are_refused() -> None:
    many = b"".join(field(7, candidate_value()) for _ in range(MAX_CANDIDATES + 1))
    with pytest.raises(SignalDecodeError) as raised:
        decode_signal(announcement_with(c=many))
    assert raised.value.reason is SignalFailure.TOO_MANY_CANDIDATES


def test_an_acknowledgement_with_candidates_is_refused() -> None:
    with pytest.raises(SignalDecodeError):
        decode_signal(ACK + field(7, candidate_value()))


@settings(max_examples=400)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    with contextlib.suppress(SignalDecodeError):
        decode_signal(data)


@settings(max_examples=400)
@given(messages, st.data())
def test_mutated_messages_never_raise_anything_else(message: object, data: st.DataObject) -> None:
    assert isinstance(message, Announcement | CandidatesAdded | Acknowledgement)
    raw = bytearray(encode_signal(message))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut])):
        try:
            decoded = decode_signal(candidate)
        except SignalDecodeError:
            continue
        assert decode_signal(encode_signal(decoded)) == decoded


@pytest.mark.parametrize(
    "build",
    [
        lambda: Announcement(1, "abc", "p" * 22, 0),
        lambda: Announcement(1, "abcd", "p" * 22, -1),
        lambda: Announcement(2**32, "abcd", "p" * 22, 0),
        lambda: Announcement(1, "abcd", "p" * 22, 0, report=b"r" * 5000),
        lambda: CandidatesAdded(1, 0, ()),
        lambda: Acknowledgement(1, None, 70000),
        lambda: SignalCandidate(CandidateKind.HOST, Endpoint.parse("1.2.3.4:5"), 0, "f"),
        lambda: SignalCandidate(CandidateKind.HOST, Endpoint.parse("1.2.3.4:5"), 1, "f f"),
    ],
)
def test_building_an_impossible_message_is_the_callers_error(build: object) -> None:
    with pytest.raises(LocalProtocolError):
        build()  # type: ignore[operator]
