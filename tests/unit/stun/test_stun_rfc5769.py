"""The RFC 5769 test vectors (and RFC 8489 §B.1), byte for byte.

The fixtures in ``data/`` are the RFC's hex dumps. They check themselves:
their FINGERPRINT and MESSAGE-INTEGRITY values match the RFC's keys, so a
single mistyped byte would fail these tests.

RFC 5769 §2.1-2.3 pad SOFTWARE and USERNAME with 0x20 bytes on purpose
("padding bytes MAY be any value", RFC 8489 §14). natkit pads with zeros, so
re-encoding those three messages differs from the vector in exactly the
padding bytes and, as a consequence, in the MESSAGE-INTEGRITY and FINGERPRINT
values that cover them. For them we check that the parsed messages are equal
and that the bytes differ nowhere else. The two long-term-credential vectors
pad with zeros and round-trip byte for byte.
"""

from __future__ import annotations

import hashlib
import ipaddress

import pytest
from stun_testlib import (
    LONG_TERM_PASSWORD,
    LONG_TERM_REALM,
    LONG_TERM_TRANSACTION_ID,
    LONG_TERM_USERNAME,
    RFC5769_PASSWORD,
    RFC5769_TRANSACTION_ID,
    vector,
)

from natkit.endpoint import Endpoint
from natkit.stun.attributes import (
    IntegerAttribute,
    PasswordAlgorithm,
    RawAttribute,
    TextAttribute,
    XorAddressAttribute,
)
from natkit.stun.codec import Message, encode_message, parse_message
from natkit.stun.constants import AttributeType, MessageClass, Method, PasswordAlgorithmId
from natkit.stun.integrity import IntegrityError, long_term_key, short_term_key, verify_integrity

SHORT_TERM_KEY = short_term_key(RFC5769_PASSWORD)
MAPPED_PORT = 32853


def differing_offsets(a: bytes, b: bytes) -> set[int]:
    assert len(a) == len(b)
    return {i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y}


def test_sample_request() -> None:
    """RFC 5769 §2.1: Binding request with SOFTWARE, PRIORITY, ICE-CONTROLLED,
    USERNAME, MESSAGE-INTEGRITY (short-term) and FINGERPRINT."""
    data = vector("rfc5769_sample_request")
    message = parse_message(data)

    assert message.method == Method.BINDING
    assert message.message_class == MessageClass.REQUEST
    assert message.transaction_id == RFC5769_TRANSACTION_ID
    assert not message.is_classic
    assert message.attributes == (
        TextAttribute(AttributeType.SOFTWARE, "STUN test client"),
        IntegerAttribute(AttributeType.PRIORITY, 0x6E0001FF),
        IntegerAttribute(AttributeType.ICE_CONTROLLED, 0x932FF9B151263B36),
        TextAttribute(AttributeType.USERNAME, "evtj:h6vY"),
    )
    assert message.text(AttributeType.USERNAME) == "evtj:h6vY"
    assert message.has_message_integrity
    assert message.has_fingerprint
    assert message.integrity is not None
    assert message.integrity.sha1_offset == 76
    assert message.integrity.ignored == ()
    verify_integrity(message, SHORT_TERM_KEY)


def test_sample_ipv4_response() -> None:
    """RFC 5769 §2.2: Binding success with XOR-MAPPED-ADDRESS 192.0.2.1:32853."""
    message = parse_message(vector("rfc5769_ipv4_response"))

    assert message.method == Method.BINDING
    assert message.message_class == MessageClass.SUCCESS_RESPONSE
    assert message.transaction_id == RFC5769_TRANSACTION_ID
    mapped = Endpoint(ipaddress.IPv4Address("192.0.2.1"), MAPPED_PORT)
    assert message.attributes == (
        TextAttribute(AttributeType.SOFTWARE, "test vector"),
        XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, mapped),
    )
    assert message.xor_mapped_address == mapped
    assert message.reflexive_address == mapped
    assert message.has_fingerprint
    verify_integrity(message, SHORT_TERM_KEY)


def test_sample_ipv6_response() -> None:
    """RFC 5769 §2.3: XOR-MAPPED-ADDRESS [2001:db8:1234:5678:11:2233:4455:6677]:32853,
    XORed with the cookie and the transaction ID (RFC 8489 §14.2)."""
    message = parse_message(vector("rfc5769_ipv6_response"))

    assert message.method == Method.BINDING
    assert message.message_class == MessageClass.SUCCESS_RESPONSE
    assert message.transaction_id == RFC5769_TRANSACTION_ID
    mapped = Endpoint(ipaddress.IPv6Address("2001:db8:1234:5678:11:2233:4455:6677"), MAPPED_PORT)
    assert message.attributes == (
        TextAttribute(AttributeType.SOFTWARE, "test vector"),
        XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, mapped),
    )
    assert message.xor_mapped_address == mapped
    assert message.has_fingerprint
    verify_integrity(message, SHORT_TERM_KEY)


def test_long_term_request() -> None:
    """RFC 5769 §2.4: USERNAME, NONCE, REALM, MESSAGE-INTEGRITY keyed with
    MD5(username:realm:password); no FINGERPRINT.

    The RFC gives the password before SASLprep ("The<U+00AD>M<U+00AA>tr<U+2168>")
    and after ("TheMatrIX"). RFC 8489 replaced SASLprep by OpaqueString, which
    does not map those characters, so the prepared form is what natkit takes.
    """
    message = parse_message(vector("rfc5769_long_term_request"))

    assert message.method == Method.BINDING
    assert message.message_class == MessageClass.REQUEST
    assert message.transaction_id == LONG_TERM_TRANSACTION_ID
    assert message.attributes == (
        TextAttribute(AttributeType.USERNAME, LONG_TERM_USERNAME),
        TextAttribute(AttributeType.NONCE, "f//499k954d6OL34oL9FSTvy64sA"),
        TextAttribute(AttributeType.REALM, LONG_TERM_REALM),
    )
    assert message.has_message_integrity
    assert not message.has_fingerprint
    key = long_term_key(LONG_TERM_USERNAME, LONG_TERM_REALM, LONG_TERM_PASSWORD)
    assert key == hashlib.md5(f"{LONG_TERM_USERNAME}:example.org:TheMatrIX".encode()).digest()
    verify_integrity(message, key)


def test_rfc8489_sha256_request() -> None:
    """RFC 8489 §B.1 as corrected by erratum 6268: USERHASH, NONCE, REALM,
    PASSWORD-ALGORITHM (SHA-256) and MESSAGE-INTEGRITY-SHA256 keyed with
    SHA-256(username:realm:password)."""
    message = parse_message(vector("rfc8489_sha256_request"))

    assert message.method == Method.BINDING
    assert message.message_class == MessageClass.REQUEST
    assert message.transaction_id == LONG_TERM_TRANSACTION_ID
    userhash = hashlib.sha256(f"{LONG_TERM_USERNAME}:{LONG_TERM_REALM}".encode()).digest()
    assert message.attributes == (
        RawAttribute(AttributeType.USERHASH, userhash),  # RFC 8489 §14.4
        TextAttribute(AttributeType.NONCE, "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA"),
        TextAttribute(AttributeType.REALM, LONG_TERM_REALM),
        PasswordAlgorithm(PasswordAlgorithmId.SHA256),
    )
    assert message.integrity is not None
    assert message.integrity.sha1_offset is None
    assert len(message.integrity.sha256_digest) == 32
    key = long_term_key(
        LONG_TERM_USERNAME, LONG_TERM_REALM, LONG_TERM_PASSWORD, PasswordAlgorithmId.SHA256
    )
    verify_integrity(message, key)


@pytest.mark.parametrize(
    "name",
    [
        "rfc5769_sample_request",
        "rfc5769_ipv4_response",
        "rfc5769_ipv6_response",
    ],
)
def test_short_term_vectors_reject_a_wrong_password(name: str) -> None:
    """RFC 8489 §9.1.3: a MESSAGE-INTEGRITY computed with another key fails."""
    message = parse_message(vector(name))
    with pytest.raises(IntegrityError, match=r"^MESSAGE-INTEGRITY does not match$"):
        verify_integrity(message, short_term_key(RFC5769_PASSWORD.lower()))


def test_long_term_vectors_reject_a_wrong_password() -> None:
    """RFC 8489 §9.2.4: the key depends on the password, case included."""
    md5 = parse_message(vector("rfc5769_long_term_request"))
    with pytest.raises(IntegrityError):
        verify_integrity(md5, long_term_key(LONG_TERM_USERNAME, LONG_TERM_REALM, "thematrix"))
    sha256 = parse_message(vector("rfc8489_sha256_request"))
    with pytest.raises(IntegrityError, match=r"^MESSAGE-INTEGRITY-SHA256 does not match$"):
        # The MD5 key of the same credentials is the wrong key here.
        verify_integrity(sha256, long_term_key(LONG_TERM_USERNAME, LONG_TERM_REALM, "TheMatrIX"))


# (vector, 0x20 padding offsets, MESSAGE-INTEGRITY value, FINGERPRINT value)
SPACE_PADDED = [
    ("rfc5769_sample_request", range(73, 76), range(80, 100), range(104, 108)),
    ("rfc5769_ipv4_response", range(35, 36), range(52, 72), range(76, 80)),
    ("rfc5769_ipv6_response", range(35, 36), range(64, 84), range(88, 92)),
]


@pytest.mark.parametrize(("name", "padding", "integrity", "fingerprint"), SPACE_PADDED)
def test_space_padded_vectors_reencode_equal_but_for_padding(
    name: str, padding: range, integrity: range, fingerprint: range
) -> None:
    """RFC 8489 §14: padding content is ignored; natkit writes zeros. The
    re-encoding parses to an equal message, verifies with the same key, and
    differs from the vector only in the padding and in the two hashes."""
    data = vector(name)
    assert all(data[i] == 0x20 for i in padding)
    message = parse_message(data)

    again = encode_message(message, integrity_key=SHORT_TERM_KEY, fingerprint=True)

    assert parse_message(again) == message
    verify_integrity(parse_message(again), SHORT_TERM_KEY)
    assert all(again[i] == 0 for i in padding)
    # Before MESSAGE-INTEGRITY, the padding is the only difference...
    head = integrity.start - 4
    assert differing_offsets(data[:head], again[:head]) == set(padding)
    # ...and after it, only the hash values (which cover that padding).
    assert differing_offsets(data, again) <= set(padding) | set(integrity) | set(fingerprint)
    for hashed in (integrity, fingerprint):  # their headers are unchanged
        header = slice(hashed.start - 4, hashed.start)
        assert data[header] == again[header]


def test_long_term_request_roundtrips_byte_for_byte() -> None:
    """RFC 5769 §2.4 pads with zeros: re-encoding with the key gives the vector."""
    data = vector("rfc5769_long_term_request")
    key = long_term_key(LONG_TERM_USERNAME, LONG_TERM_REALM, LONG_TERM_PASSWORD)
    assert encode_message(parse_message(data), integrity_key=key) == data


def test_sha256_request_roundtrips_byte_for_byte() -> None:
    """RFC 8489 §B.1 (erratum 6268): re-encoding with the SHA-256 key gives the vector."""
    data = vector("rfc8489_sha256_request")
    key = long_term_key(
        LONG_TERM_USERNAME, LONG_TERM_REALM, LONG_TERM_PASSWORD, PasswordAlgorithmId.SHA256
    )
    assert encode_message(parse_message(data), integrity_sha256_key=key) == data


def test_sample_request_built_from_scratch() -> None:
    """RFC 5769 §2.1 from typed attributes: equal to the vector once its 0x20
    padding is replaced by zeros (and the hashes recomputed over that)."""
    message = Message(
        Method.BINDING,
        MessageClass.REQUEST,
        RFC5769_TRANSACTION_ID,
        (
            TextAttribute(AttributeType.SOFTWARE, "STUN test client"),
            IntegerAttribute(AttributeType.PRIORITY, 0x6E0001FF),
            IntegerAttribute(AttributeType.ICE_CONTROLLED, 0x932FF9B151263B36),
            TextAttribute(AttributeType.USERNAME, "evtj:h6vY"),
        ),
    )
    data = vector("rfc5769_sample_request")
    encoded = encode_message(message, integrity_key=SHORT_TERM_KEY, fingerprint=True)
    assert encoded[:73] == data[:73]
    assert encoded[73:76] == b"\x00\x00\x00"
    assert encoded[76:80] == data[76:80]  # MESSAGE-INTEGRITY type and length
    assert parse_message(encoded) == parse_message(data)
