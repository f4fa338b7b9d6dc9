"""Property-based tests of the STUN codec (in the spirit of tailscale's
``stun_fuzzer.go``).

1. Whatever bytes arrive, ``parse_message`` returns a Message or raises
   StunDecodeError: random bytes, random attribute soups behind a valid
   header, and mutations of valid messages (bit flips, truncation,
   extension, length-field edits), with and without ``allow_classic``.
2. Whatever it accepts, it accepts again after re-encoding (parse is stable).
3. Every message built from the attribute strategies round-trips
   encode -> parse -> equal, with and without integrity and FINGERPRINT.
"""

from __future__ import annotations

import contextlib
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stun_testlib import (
    ATTRIBUTE_STRATEGIES,
    TXID,
    classic_transaction_ids,
    messages,
    vector,
)

from natkit.stun.codec import Message, StunDecodeError, encode_message, parse_message
from natkit.stun.constants import MAGIC_COOKIE_BYTES, AttributeType, MessageClass, Method
from natkit.stun.integrity import IntegrityError, verify_integrity

FAST = settings(
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)
KEY = b"property-key"


def parse_or_reject(data: bytes, *, allow_classic: bool) -> Message | None:
    """The contract: a Message, or StunDecodeError and nothing else. An
    accepted message must survive re-encoding, and checking its integrity
    may only fail with IntegrityError."""
    try:
        message = parse_message(data, allow_classic=allow_classic)
    except StunDecodeError:
        return None
    assert parse_message(encode_message(message), allow_classic=allow_classic) == message
    with contextlib.suppress(IntegrityError):
        verify_integrity(message, KEY)
    return message


# --- 1a. random bytes -----------------------------------------------------------------


@FAST
@given(data=st.binary(max_size=120), allow_classic=st.booleans())
def test_random_bytes_parse_or_raise_decode_error(data: bytes, allow_classic: bool) -> None:
    parse_or_reject(data, allow_classic=allow_classic)


def header_and_body(body: bytes, cookie: bool) -> bytes:
    key = MAGIC_COOKIE_BYTES + TXID if cookie else bytes(range(16))
    return struct.pack("!HH", 0x0001, len(body)) + key + body


known_types = st.sampled_from([int(t) for t in AttributeType])


@st.composite
def attribute_soup(draw: st.DrawFn) -> bytes:
    """A valid header followed by TLVs of known (and some unknown) types with
    random values and lengths: the parser's attribute decoders see junk."""
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        attribute_type = draw(known_types | st.integers(0, 0xFFFF))
        value = draw(st.binary(max_size=40))
        claimed = draw(st.sampled_from([len(value)]) | st.integers(0, 48))
        parts.append(struct.pack("!HH", attribute_type, claimed) + value + bytes(-len(value) % 4))
    return header_and_body(b"".join(parts), cookie=draw(st.booleans()))


@FAST
@given(data=attribute_soup(), allow_classic=st.booleans())
def test_attribute_soup_parses_or_raises_decode_error(data: bytes, allow_classic: bool) -> None:
    parse_or_reject(data, allow_classic=allow_classic)


# --- 1b. mutations of valid messages --------------------------------------------------

SEEDS = [
    vector("rfc5769_sample_request"),
    vector("rfc5769_ipv4_response"),
    vector("rfc5769_ipv6_response"),
    vector("rfc5769_long_term_request"),
    vector("rfc8489_sha256_request"),
]


@st.composite
def valid_messages(draw: st.DrawFn) -> bytes:
    """An RFC vector, or a generated message encoded with random protection."""
    if draw(st.booleans()):
        return draw(st.sampled_from(SEEDS))
    message = draw(messages())
    return encode_message(
        message,
        integrity_key=draw(st.none() | st.just(KEY)),
        integrity_sha256_key=draw(st.none() | st.just(KEY)),
        fingerprint=draw(st.booleans()),
    )


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(valid_messages()))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "extend", "length", "attribute-length"]))
        if kind == "flip" and data:
            index = draw(st.integers(0, len(data) - 1))
            data[index] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif kind == "extend":
            data += draw(st.binary(min_size=1, max_size=12))
        elif kind == "length" and len(data) >= 4:
            # Sometimes a consistent length, so the parser gets past framing.
            length = draw(st.sampled_from([len(data) - 20]) | st.integers(0, 0xFFFF))
            data[2:4] = struct.pack("!H", max(length, 0) & 0xFFFF)
        elif kind == "attribute-length" and len(data) >= 24:
            # An attribute header sits at some multiple of 4 past the header.
            offset = 20 + 4 * draw(st.integers(0, (len(data) - 24) // 4))
            data[offset + 2 : offset + 4] = struct.pack("!H", draw(st.integers(0, 0xFFFF)))
    return bytes(data)


@FAST
@given(data=mutated(), allow_classic=st.booleans())
def test_mutated_messages_parse_or_raise_decode_error(data: bytes, allow_classic: bool) -> None:
    parse_or_reject(data, allow_classic=allow_classic)


@FAST
@given(data=valid_messages(), index=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_fingerprint_catches_single_bit_flips(data: bytes, index: int, bit: int) -> None:
    """RFC 8489 §14.7: CRC-32 detects any single-bit error, so after one
    flipped bit no message that still ends in a FINGERPRINT is accepted. (A
    flip can hide the FINGERPRINT instead: in its type field, or in a length
    that makes the attribute before it swallow it; such a message parses as
    one without FINGERPRINT, as the wire then says.)"""
    if not parse_message(data).has_fingerprint:
        return
    corrupt = bytearray(data)
    corrupt[index % len(data)] ^= 1 << bit
    accepted = parse_or_reject(bytes(corrupt), allow_classic=False)
    assert accepted is None or not accepted.has_fingerprint


# --- 3. round trips -----------------------------------------------------------------


@FAST
@given(message=messages())
def test_messages_roundtrip(message: Message) -> None:
    assert parse_message(encode_message(message)) == message


@FAST
@given(message=messages(), sha1=st.booleans(), sha256=st.booleans(), fingerprint=st.booleans())
def test_messages_roundtrip_with_integrity_and_fingerprint(
    message: Message, sha1: bool, sha256: bool, fingerprint: bool
) -> None:
    data = encode_message(
        message,
        integrity_key=KEY if sha1 else None,
        integrity_sha256_key=KEY if sha256 else None,
        fingerprint=fingerprint,
    )
    parsed = parse_message(data)
    assert parsed == message
    assert parsed.has_fingerprint is fingerprint
    assert parsed.has_message_integrity is (sha1 or sha256)
    assert parsed.integrity is not None
    assert parsed.integrity.ignored == ()
    if sha1 or sha256:
        verify_integrity(parsed, KEY)
    # Byte-stable: natkit's encoding of what it parsed is what it sent.
    again = encode_message(
        parsed,
        integrity_key=KEY if sha1 else None,
        integrity_sha256_key=KEY if sha256 else None,
        fingerprint=fingerprint,
    )
    assert again == data


@FAST
@given(message=messages(classic_transaction_ids), fingerprint=st.booleans())
def test_classic_messages_roundtrip_with_allow_classic(message: Message, fingerprint: bool) -> None:
    data = encode_message(message, fingerprint=fingerprint)
    parsed = parse_message(data, allow_classic=True)
    assert parsed == message
    assert parsed.is_classic


@FAST
@given(data=st.data())
def test_every_attribute_type_roundtrips_alone(data: st.DataObject) -> None:
    """Each decoded type, drawn from its own strategy, in a message by itself."""
    attribute_type = data.draw(st.sampled_from(sorted(ATTRIBUTE_STRATEGIES)))
    attribute = data.draw(ATTRIBUTE_STRATEGIES[attribute_type])
    message = Message(Method.BINDING, MessageClass.REQUEST, TXID, (attribute,))
    (parsed,) = parse_message(encode_message(message, fingerprint=True)).attributes
    assert parsed == attribute
    assert parsed.type == attribute_type
