"""The TXT strings of message and instance records: round trips, limits,
and strict parsing of whatever the zone hands back."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from natkit.directory.errors import RecordError, RecordProblem
from natkit.directory.records import (
    MAX_ENCODED,
    MAX_RECORD_WIRE,
    MAX_SEQ,
    MAX_STRING,
    MAX_WINDOW,
    MessageRecord,
    check_window,
    instance_strings,
    message_strings,
    parse_instance_strings,
    parse_message_strings,
)
from natkit.signal.channel import MAX_SEALED

STREAM = "0123456789abcdef"
sealed_messages = st.binary(min_size=1, max_size=MAX_SEALED)


@given(sealed_messages, st.integers(1, MAX_SEQ))
def test_message_record_round_trips(sealed: bytes, seq: int) -> None:
    record = MessageRecord(STREAM, seq, sealed)
    strings = message_strings(record)
    assert all(len(s) <= MAX_STRING for s in strings)
    assert parse_message_strings(strings) == record


@pytest.mark.parametrize(
    ("size", "chunks"),
    [(1, 1), (189, 1), (190, 2), (381, 2), (382, 3), (MAX_SEALED, 22)],
)
def test_data_is_cut_at_255_characters(size: int, chunks: int) -> None:
    # 190 bytes are 256 base64 characters: one full string and one of 1.
    strings = message_strings(MessageRecord(STREAM, 1, b"x" * size))
    data = strings[3:]
    assert len(data) == chunks
    assert all(len(s) == MAX_STRING for s in data[:-1])
    assert b"".join(data) == base64.b64encode(b"x" * size)


def test_the_largest_window_fits_one_dns_message() -> None:
    largest = MessageRecord(STREAM, MAX_SEQ, b"\xff" * MAX_SEALED)
    wire = sum(1 + len(s) for s in message_strings(largest)) + 12
    assert wire == MAX_RECORD_WIRE
    assert MAX_WINDOW == 10
    assert MAX_WINDOW * MAX_RECORD_WIRE <= 65_535 - 5_000


def test_message_record_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError, match=r"sealed message is 1\.\.4096"):
        MessageRecord(STREAM, 1, b"")
    with pytest.raises(ValueError, match=r"sealed message is 1\.\.4096"):
        MessageRecord(STREAM, 1, b"x" * (MAX_SEALED + 1))
    with pytest.raises(ValueError, match="seq out of range"):
        MessageRecord(STREAM, 0, b"x")
    with pytest.raises(ValueError, match="stream id"):
        MessageRecord("0123456789ABCDEF", 1, b"x")


GOOD = message_strings(MessageRecord(STREAM, 7, b"sealed bytes"))


def _with(index: int, value: bytes) -> list[bytes]:
    strings = list(GOOD)
    strings[index] = value
    return strings


@pytest.mark.parametrize(
    ("strings", "problem"),
    [
        ([], RecordProblem.VERSION),
        ([b"txtvers=2", *GOOD[1:]], RecordProblem.VERSION),
        ([GOOD[1], GOOD[0], *GOOD[2:]], RecordProblem.VERSION),
        (GOOD[:1], RecordProblem.STREAM),
        (_with(1, b"stream=0123456789ABCDEF"), RecordProblem.STREAM),
        (_with(1, b"stream=0123456789abcde"), RecordProblem.STREAM),
        (_with(1, b"stream=0123456789abcdef0"), RecordProblem.STREAM),
        (GOOD[:2], RecordProblem.SEQUENCE),
        (_with(2, b"seq=0"), RecordProblem.SEQUENCE),
        (_with(2, b"seq=07"), RecordProblem.SEQUENCE),
        (_with(2, b"seq=-7"), RecordProblem.SEQUENCE),
        (_with(2, b"seq= 7"), RecordProblem.SEQUENCE),
        (_with(2, b"seq=9223372036854775808"), RecordProblem.SEQUENCE),
        (_with(2, b"seq=99999999999999999999"), RecordProblem.SEQUENCE),
        (GOOD[:3], RecordProblem.CHUNKING),
        ([*GOOD, b""], RecordProblem.CHUNKING),
        ([*GOOD[:3], b"c2Vh", b"bGVk"], RecordProblem.CHUNKING),  # first string short
        (_with(3, b"c2VhbGVk*GJ5dGVz"), RecordProblem.ENCODING),
        (_with(3, b"c2VhbGVkIGJ5dGVz="), RecordProblem.ENCODING),
        (_with(3, b"c2VhbGVkIGJ5dGV="), RecordProblem.ENCODING),  # stray bits
        (_with(3, b"===="), RecordProblem.ENCODING),
        ([*GOOD[:3], *([b"A" * 255] * 22)], RecordProblem.TOO_LARGE),
    ],
)
def test_malformed_message_records_are_refused(
    strings: list[bytes], problem: RecordProblem
) -> None:
    with pytest.raises(RecordError) as caught:
        parse_message_strings(strings)
    assert caught.value.problem is problem


def test_the_largest_message_parses_and_one_more_byte_does_not() -> None:
    largest = message_strings(MessageRecord(STREAM, 1, b"\x00" * MAX_SEALED))
    assert len(b"".join(largest[3:])) == MAX_ENCODED
    parse_message_strings(largest)
    one_more = base64.b64encode(b"\x00" * (MAX_SEALED + 1))
    strings = [*largest[:3], *(one_more[i : i + 255] for i in range(0, len(one_more), 255))]
    with pytest.raises(RecordError) as caught:
        parse_message_strings(strings)
    assert caught.value.problem is RecordProblem.TOO_LARGE


@given(st.lists(st.binary(max_size=MAX_STRING), max_size=30))
def test_any_strings_parse_or_raise_record_error(strings: list[bytes]) -> None:
    try:
        record = parse_message_strings(strings)
    except RecordError:
        return
    assert message_strings(record) == tuple(strings)


@given(st.data())
def test_mutated_records_parse_only_as_what_they_say(data: st.DataObject) -> None:
    """Flip, cut or extend one string of a valid record: it is refused, or it
    parses to exactly the record its strings spell (a canonical encoding)."""
    sealed = data.draw(sealed_messages)
    strings = list(message_strings(MessageRecord(STREAM, 3, sealed)))
    index = data.draw(st.integers(0, len(strings) - 1))
    mutation = data.draw(st.sampled_from(["flip", "cut", "extend", "drop"]))
    target = strings[index]
    if mutation == "flip" and target:
        at = data.draw(st.integers(0, len(target) - 1))
        target = (
            target[:at] + bytes([target[at] ^ data.draw(st.integers(1, 255))]) + target[at + 1 :]
        )
    elif mutation == "cut":
        target = target[: data.draw(st.integers(0, len(target)))]
    elif mutation == "extend":
        target = target + data.draw(st.binary(min_size=1, max_size=4))
    strings = (
        strings[:index] + strings[index + 1 :]
        if mutation == "drop"
        else _replace(strings, index, target)
    )
    try:
        record = parse_message_strings(strings)
    except RecordError:
        return
    assert message_strings(record) == tuple(strings)


def _replace(strings: list[bytes], index: int, value: bytes) -> list[bytes]:
    return [*strings[:index], value, *strings[index + 1 :]]


def test_a_window_is_one_stream_without_repeats() -> None:
    a = [MessageRecord(STREAM, seq, b"m") for seq in (3, 1, 2)]
    assert [r.seq for r in check_window(a)] == [1, 2, 3]
    other = MessageRecord("fedcba9876543210", 4, b"m")
    for bad in ([*a, other], [*a, MessageRecord(STREAM, 2, b"other")]):
        with pytest.raises(RecordError) as caught:
            check_window(bad)
        assert caught.value.problem is RecordProblem.WINDOW
    too_many = [MessageRecord(STREAM, seq, b"m") for seq in range(1, MAX_WINDOW + 2)]
    with pytest.raises(RecordError):
        check_window(too_many)
    assert len(check_window(too_many[:-1])) == MAX_WINDOW


KEY = bytes(range(32))


def test_instance_record_round_trips_and_ignores_unknown_keys() -> None:
    strings = instance_strings(KEY)
    assert strings == (b"txtvers=1", b"pub=" + base64.b64encode(KEY))
    assert parse_instance_strings(strings, KEY) == KEY
    assert parse_instance_strings([*strings, b"allowed=10.0.0.1/32"], KEY) == KEY


@pytest.mark.parametrize(
    ("strings", "problem"),
    [
        ([b"pub=" + base64.b64encode(KEY)], RecordProblem.VERSION),
        ([b"txtvers=1"], RecordProblem.KEY),
        ([b"txtvers=1", b"pub=" + base64.b64encode(KEY)] * 2, RecordProblem.KEY),
        ([b"txtvers=1", b"pub=abc"], RecordProblem.KEY),
        ([b"txtvers=1", b"pub=" + base64.b64encode(bytes(32))], RecordProblem.KEY),
    ],
)
def test_bad_instance_records_are_refused(strings: list[bytes], problem: RecordProblem) -> None:
    with pytest.raises(RecordError) as caught:
        parse_instance_strings(strings, KEY)
    assert caught.value.problem is problem
