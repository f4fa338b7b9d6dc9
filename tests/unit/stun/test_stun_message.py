"""Message-level rules: the header, framing, FINGERPRINT, MESSAGE-INTEGRITY(-SHA256),
RFC 3489 compatibility, demultiplexing (RFC 8489 §5, §6, §9, §14; RFC 7983)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
import zlib

import pytest
from stun_testlib import (
    CLASSIC_TXID,
    TXID,
    append,
    set_length,
    tlv,
    vector,
    wire,
    with_fingerprint,
)

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError, RemoteProtocolError
from natkit.stun.attributes import (
    AddressAttribute,
    Attribute,
    IntegerAttribute,
    RawAttribute,
    TextAttribute,
    XorAddressAttribute,
)
from natkit.stun.codec import (
    DecodeFailure,
    Message,
    StunDecodeError,
    binding_request,
    encode_message,
    is_stun,
    message_length,
    parse_message,
)
from natkit.stun.constants import (
    MAGIC_COOKIE_BYTES,
    AttributeType,
    MessageClass,
    Method,
    PasswordAlgorithmId,
)
from natkit.stun.integrity import (
    IntegrityError,
    long_term_key,
    opaque_string,
    short_term_key,
    verify_integrity,
)

BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
SOFTWARE = tlv(0x8022, b"natkit")
KEY = short_term_key("s3cret")
MAPPED = Endpoint(ipaddress.IPv4Address("203.0.113.9"), 40000)


def parse_error(data: bytes, *, allow_classic: bool = False) -> StunDecodeError:
    with pytest.raises(StunDecodeError) as caught:
        parse_message(data, allow_classic=allow_classic)
    return caught.value


def request(*attributes: Attribute) -> Message:
    return Message(Method.BINDING, MessageClass.REQUEST, TXID, attributes)


# --- the header (RFC 8489 §5) ---------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4, 19])
def test_shorter_than_a_header_is_truncated(size: int) -> None:
    """RFC 8489 §5: every message starts with a 20-byte header."""
    error = parse_error(wire(BINDING_REQUEST)[:size])
    assert error.reason is DecodeFailure.TRUNCATED
    assert str(error) == f"shorter than a STUN header: {size} bytes"


@pytest.mark.parametrize("first_byte", [0x40, 0x80, 0xC0])
def test_top_two_bits_must_be_zero(first_byte: int) -> None:
    """RFC 8489 §5: "The most significant 2 bits of every STUN message MUST be
    zeroes" (RTP, RTCP and ChannelData start otherwise)."""
    data = bytes([first_byte]) + wire(BINDING_REQUEST)[1:]
    error = parse_error(data)
    assert error.reason is DecodeFailure.NOT_STUN
    assert str(error) == "first two bits are not zero"
    assert not is_stun(data)


@pytest.mark.parametrize("length", [1, 2, 3, 5, 10])
def test_length_must_be_a_multiple_of_four(length: int) -> None:
    """RFC 8489 §5: attributes are padded, so the length's last 2 bits are zero."""
    data = set_length(wire(BINDING_REQUEST, SOFTWARE, SOFTWARE), length)
    error = parse_error(data)
    assert error.reason is DecodeFailure.MISALIGNED
    assert str(error) == f"length is not a multiple of 4: length {length}"
    assert not is_stun(data)


@pytest.mark.parametrize(("length", "body"), [(4, 12), (16, 12), (0, 12), (12, 16)])
def test_length_must_match_the_datagram(length: int, body: int) -> None:
    """RFC 8489 §6.3: the length field must match the UDP payload (no trailing
    bytes, no missing ones)."""
    data = set_length(wire(BINDING_REQUEST, SOFTWARE), length)
    if body > len(data) - 20:
        data += bytes(body - (len(data) - 20))
    error = parse_error(data)
    assert error.reason is DecodeFailure.BAD_LENGTH
    assert (
        str(error)
        == f"length field does not match the datagram: header says {length}, body has {body}"
    )
    assert not is_stun(data)


def test_magic_cookie_is_required() -> None:
    """RFC 8489 §6.3.1: without 0x2112a442 it is not an RFC 5389+ message."""
    data = wire(BINDING_REQUEST, cookie=b"\x21\x12\xa4\x43")
    error = parse_error(data)
    assert error.reason is DecodeFailure.WRONG_COOKIE
    assert str(error) == "magic cookie missing: 2112a443"
    assert not is_stun(data)


# --- attribute framing (RFC 8489 §14) -------------------------------------------------


def test_attribute_running_past_the_end_is_an_overrun() -> None:
    """RFC 8489 §14: an attribute's value (plus padding) must fit the message."""
    data = wire(BINDING_REQUEST, tlv(0x8022, b"natkit", length=12))
    error = parse_error(data)
    assert error.reason is DecodeFailure.ATTRIBUTE_OVERRUN
    assert str(error) == (
        "attribute runs past the end of the message: SOFTWARE of 12 bytes at offset 20"
    )


def test_attribute_padding_running_past_the_end_is_an_overrun() -> None:
    """RFC 8489 §14: the padding counts; a 5-byte value needs 8 bytes of room."""
    data = wire(BINDING_REQUEST, SOFTWARE, struct.pack("!HH", 0x7F00, 5) + b"abcd")
    error = parse_error(data)
    assert error.reason is DecodeFailure.ATTRIBUTE_OVERRUN
    assert error.detail == "0x7f00 of 5 bytes at offset 32"


def test_padding_content_is_ignored() -> None:
    """RFC 8489 §14: "The padding bits MUST be ignored, and may be any value"."""
    zero = parse_message(wire(BINDING_REQUEST, tlv(0x8022, b"natkit!")))
    junk = parse_message(wire(BINDING_REQUEST, tlv(0x8022, b"natkit!", pad=b"\xff")))
    assert zero == junk


def test_message_without_attributes() -> None:
    message = parse_message(wire(BINDING_REQUEST))
    assert message.attributes == ()
    assert not message.has_fingerprint
    assert not message.has_message_integrity


# --- message type: method and class bits (RFC 8489 §5, Figure 3) -----------------------

MESSAGE_TYPES = [
    (Method.BINDING, MessageClass.REQUEST, 0x0001),
    (Method.BINDING, MessageClass.INDICATION, 0x0011),
    (Method.BINDING, MessageClass.SUCCESS_RESPONSE, 0x0101),
    (Method.BINDING, MessageClass.ERROR_RESPONSE, 0x0111),
    (Method.ALLOCATE, MessageClass.REQUEST, 0x0003),
    (Method.ALLOCATE, MessageClass.SUCCESS_RESPONSE, 0x0103),
    (Method.ALLOCATE, MessageClass.ERROR_RESPONSE, 0x0113),
    (Method.REFRESH, MessageClass.REQUEST, 0x0004),
    (Method.SEND, MessageClass.INDICATION, 0x0016),
    (Method.DATA, MessageClass.INDICATION, 0x0017),
    (Method.CREATE_PERMISSION, MessageClass.SUCCESS_RESPONSE, 0x0108),
    (Method.CHANNEL_BIND, MessageClass.ERROR_RESPONSE, 0x0119),
    # M4-M6 move up one bit (past C0), M7-M11 two bits (past C1).
    (0x010, MessageClass.REQUEST, 0x0020),
    (0x070, MessageClass.INDICATION, 0x00F0),
    (0x080, MessageClass.REQUEST, 0x0200),
    (0xF80, MessageClass.SUCCESS_RESPONSE, 0x3F00),
    (0xFFF, MessageClass.ERROR_RESPONSE, 0x3FFF),
    (0x000, MessageClass.REQUEST, 0x0000),
]


@pytest.mark.parametrize(("method", "message_class", "message_type"), MESSAGE_TYPES)
def test_method_and_class_bits_interleave(
    method: int, message_class: MessageClass, message_type: int
) -> None:
    """RFC 8489 §5: M11..M7 C1 M6..M4 C0 M3..M0, e.g. Binding success = 0x0101."""
    encoded = encode_message(Message(method, message_class, TXID))
    assert encoded[:2] == struct.pack("!H", message_type)
    parsed = parse_message(wire(message_type))
    assert parsed.method == method
    assert parsed.message_class is message_class


def test_binding_request_helper() -> None:
    message = binding_request(TXID, TextAttribute(AttributeType.SOFTWARE, "x"))
    assert encode_message(message)[:2] == b"\x00\x01"
    assert message.attributes == (TextAttribute(AttributeType.SOFTWARE, "x"),)


@pytest.mark.parametrize(
    ("method", "transaction_id", "text"),
    [
        (0x1000, TXID, "method out of range: 4096"),
        (-1, TXID, "method out of range: -1"),
        (1, bytes(11), "transaction ID of 11 bytes"),
        (1, bytes(13), "transaction ID of 13 bytes"),
    ],
)
def test_message_rejects_impossible_fields(method: int, transaction_id: bytes, text: str) -> None:
    """RFC 8489 §5: 12-bit methods, 96-bit IDs (128 bits for RFC 3489)."""
    with pytest.raises(LocalProtocolError, match=f"^{text}$"):
        Message(method, MessageClass.REQUEST, transaction_id)


# --- FINGERPRINT (RFC 8489 §14.7) -------------------------------------------------------


def test_fingerprint_written_by_natkit_matches_the_rfc_formula() -> None:
    """CRC-32 of the message up to FINGERPRINT, XOR 0x5354554e, with the
    length already counting the FINGERPRINT."""
    message = request(TextAttribute(AttributeType.SOFTWARE, "natkit"))
    assert encode_message(message, fingerprint=True) == with_fingerprint(encode_message(message))
    assert parse_message(encode_message(message, fingerprint=True)).has_fingerprint


@pytest.mark.parametrize("bit", [0, 7, 31])
def test_fingerprint_bit_flip_is_detected(bit: int) -> None:
    data = bytearray(with_fingerprint(wire(BINDING_REQUEST, SOFTWARE)))
    data[-1 - bit // 8] ^= 1 << (bit % 8)
    error = parse_error(bytes(data))
    assert error.reason is DecodeFailure.FINGERPRINT_MISMATCH
    assert str(error) == "FINGERPRINT does not match"


def test_fingerprint_detects_a_changed_body() -> None:
    data = bytearray(with_fingerprint(wire(BINDING_REQUEST, SOFTWARE)))
    data[25] ^= 0x20  # "natkit" -> "nAtkit"
    assert parse_error(bytes(data)).reason is DecodeFailure.FINGERPRINT_MISMATCH


def test_fingerprint_covers_the_transaction_id() -> None:
    data = bytearray(with_fingerprint(wire(BINDING_REQUEST, SOFTWARE)))
    data[19] ^= 1
    assert parse_error(bytes(data)).reason is DecodeFailure.FINGERPRINT_MISMATCH


@pytest.mark.parametrize("crc_matches_header", [True, False])
def test_nothing_may_follow_fingerprint(crc_matches_header: bool) -> None:
    """RFC 8489 §14.7: FINGERPRINT "MUST be the last attribute". That is the
    error reported, whether or not its CRC matches the header as received."""
    if crc_matches_header:
        prefix = set_length(wire(BINDING_REQUEST, SOFTWARE), len(SOFTWARE) + 8 + len(SOFTWARE))
        crc = (zlib.crc32(prefix) ^ 0x5354554E) & 0xFFFFFFFF
        data = prefix + struct.pack("!HHI", AttributeType.FINGERPRINT, 4, crc) + SOFTWARE
    else:
        data = append(with_fingerprint(wire(BINDING_REQUEST, SOFTWARE)), SOFTWARE)
    error = parse_error(data)
    assert error.reason is DecodeFailure.AFTER_FINGERPRINT
    assert str(error) == "attribute after FINGERPRINT: at offset 40"


def test_fingerprint_then_integrity_is_after_fingerprint() -> None:
    """RFC 8489 §14.5: MESSAGE-INTEGRITY precedes FINGERPRINT, never follows."""
    data = append(with_fingerprint(wire(BINDING_REQUEST)), tlv(0x0008, bytes(20)))
    assert parse_error(data).reason is DecodeFailure.AFTER_FINGERPRINT


# --- MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256 (RFC 8489 §9, §14.5, §14.6) ---------

MD5_KEY = long_term_key("user", "realm", "pass")
SHA256_KEY = long_term_key("user", "realm", "pass", PasswordAlgorithmId.SHA256)


@pytest.mark.parametrize(
    ("name", "sha1_key", "sha256_key"),
    [
        ("short-term SHA-1", KEY, None),
        ("long-term MD5 key, SHA-1", MD5_KEY, None),
        ("long-term SHA-256 key, SHA-256", None, SHA256_KEY),
        ("short-term, both", KEY, KEY),
    ],
)
@pytest.mark.parametrize("fingerprint", [False, True])
def test_integrity_verifies_with_the_right_key(
    name: str, sha1_key: bytes | None, sha256_key: bytes | None, fingerprint: bool
) -> None:
    """RFC 8489 §9.1.3, §9.2.4: the receiver recomputes the HMAC over the
    message up to the attribute, with the length pointing past it."""
    data = encode_message(
        request(TextAttribute(AttributeType.USERNAME, "user")),
        integrity_key=sha1_key,
        integrity_sha256_key=sha256_key,
        fingerprint=fingerprint,
    )
    message = parse_message(data)
    assert message.has_message_integrity
    assert message.has_fingerprint is fingerprint
    verify_integrity(message, sha256_key or sha1_key or b"")


@pytest.mark.parametrize(
    ("sha1_key", "sha256_key", "wrong", "text"),
    [
        (KEY, None, short_term_key("S3cret"), "MESSAGE-INTEGRITY does not match"),
        (MD5_KEY, None, long_term_key("user", "Realm", "pass"), "MESSAGE-INTEGRITY does not match"),
        (None, SHA256_KEY, MD5_KEY, "MESSAGE-INTEGRITY-SHA256 does not match"),
        (None, SHA256_KEY, b"", "MESSAGE-INTEGRITY-SHA256 does not match"),
    ],
)
def test_integrity_rejects_a_wrong_key(
    sha1_key: bytes | None, sha256_key: bytes | None, wrong: bytes, text: str
) -> None:
    data = encode_message(
        request(TextAttribute(AttributeType.USERNAME, "user")),
        integrity_key=sha1_key,
        integrity_sha256_key=sha256_key,
        fingerprint=True,
    )
    with pytest.raises(IntegrityError, match=f"^{text}$") as caught:
        verify_integrity(parse_message(data), wrong)
    assert isinstance(caught.value, RemoteProtocolError)


def test_integrity_detects_a_changed_body() -> None:
    """Without FINGERPRINT to catch it first, a changed byte fails the HMAC."""
    data = bytearray(
        encode_message(request(TextAttribute(AttributeType.USERNAME, "user")), integrity_key=KEY)
    )
    data[24] ^= 0x20
    with pytest.raises(IntegrityError, match=r"^MESSAGE-INTEGRITY does not match$"):
        verify_integrity(parse_message(bytes(data)), KEY)


def test_integrity_sha256_prevails_when_both_present() -> None:
    """RFC 8489 §14.6: with both, the agent checks MESSAGE-INTEGRITY-SHA256
    (whose HMAC also covers MESSAGE-INTEGRITY)."""
    data = encode_message(request(), integrity_key=b"sha1-key", integrity_sha256_key=SHA256_KEY)
    message = parse_message(data)
    assert message.integrity is not None
    assert message.integrity.sha1_offset == 20
    assert message.integrity.sha256_offset == 44
    verify_integrity(message, SHA256_KEY)
    with pytest.raises(IntegrityError, match="SHA256"):
        verify_integrity(message, b"sha1-key")


def test_truncated_integrity_sha256_verifies() -> None:
    """RFC 8489 §14.6: the HMAC-SHA256 may be truncated to 16..32 bytes (a
    multiple of 4); the receiver compares that many leading bytes."""
    body = tlv(0x0006, b"user")
    head = wire(BINDING_REQUEST, body)
    covered = set_length(head, len(head) - 20 + 4 + 16)
    digest = hmac.new(SHA256_KEY, covered, hashlib.sha256).digest()[:16]
    data = covered + tlv(0x001C, digest)
    message = parse_message(data)
    verify_integrity(message, SHA256_KEY)
    with pytest.raises(IntegrityError):
        verify_integrity(message, MD5_KEY)


def test_integrity_missing() -> None:
    with pytest.raises(IntegrityError, match=r"^no MESSAGE-INTEGRITY attribute$"):
        verify_integrity(parse_message(encode_message(request(), fingerprint=True)), KEY)


def test_integrity_needs_a_parsed_message() -> None:
    with pytest.raises(IntegrityError, match=r"^message was not parsed: nothing to verify$"):
        verify_integrity(request(), KEY)


def test_integrity_info_is_not_part_of_equality() -> None:
    """A parsed message equals the one that was encoded; where its integrity
    attributes sat is bookkeeping."""
    message = request(TextAttribute(AttributeType.SOFTWARE, "x"))
    assert parse_message(encode_message(message, integrity_key=KEY, fingerprint=True)) == message


# --- what follows MESSAGE-INTEGRITY (RFC 8489 §14.5, §14.6) ----------------------------


def test_attributes_after_integrity_are_ignored() -> None:
    """RFC 8489 §14.5: "agents MUST ignore all other attributes that follow
    MESSAGE-INTEGRITY", except MESSAGE-INTEGRITY-SHA256 and FINGERPRINT. They
    are not decoded (a malformed one is harmless) and are listed as ignored."""
    signed = encode_message(request(TextAttribute(AttributeType.SOFTWARE, "ok")), integrity_key=KEY)
    data = append(signed, tlv(0x0020, b"junk"), tlv(0x7F00, b""), tlv(0x8022, b"\xff"))
    message = parse_message(data)
    assert message.attributes == (TextAttribute(AttributeType.SOFTWARE, "ok"),)
    assert message.integrity is not None
    assert message.integrity.ignored == (0x0020, 0x7F00, 0x8022)
    assert message.unknown_comprehension_required() == ()
    verify_integrity(message, KEY)  # the HMAC covers only what precedes it


def test_integrity_sha256_and_fingerprint_after_integrity_are_honoured() -> None:
    data = encode_message(request(), integrity_key=KEY, integrity_sha256_key=KEY, fingerprint=True)
    message = parse_message(data)
    assert message.integrity is not None
    assert message.integrity.ignored == ()
    assert message.integrity.sha256_offset is not None
    assert message.has_fingerprint


def test_fingerprint_after_ignored_attributes_is_still_checked() -> None:
    signed = encode_message(request(), integrity_key=KEY)
    data = with_fingerprint(append(signed, SOFTWARE))
    message = parse_message(data)
    assert message.has_fingerprint
    assert message.integrity is not None
    assert message.integrity.ignored == (0x8022,)
    corrupt = bytearray(data)
    corrupt[-1] ^= 1
    assert parse_error(bytes(corrupt)).reason is DecodeFailure.FINGERPRINT_MISMATCH


def test_attributes_after_integrity_sha256_are_ignored() -> None:
    """RFC 8489 §14.6: only FINGERPRINT may follow MESSAGE-INTEGRITY-SHA256;
    a MESSAGE-INTEGRITY there is ignored too."""
    signed = encode_message(request(), integrity_sha256_key=SHA256_KEY)
    data = append(signed, tlv(0x0008, bytes(20)), SOFTWARE)
    message = parse_message(data)
    assert message.integrity is not None
    assert message.integrity.sha1_offset is None
    assert message.integrity.ignored == (0x0008, 0x8022)
    verify_integrity(message, SHA256_KEY)


def test_second_integrity_is_ignored() -> None:
    signed = encode_message(request(), integrity_key=KEY)
    data = append(signed, tlv(0x0008, bytes(20)))
    message = parse_message(data)
    assert message.integrity is not None
    assert message.integrity.sha1_offset == 20
    assert message.integrity.ignored == (0x0008,)
    verify_integrity(message, KEY)


# --- keys (RFC 8489 §9.1.1, §9.2.2, §18.5.1) -----------------------------------------


def test_long_term_keys_are_hashes_of_username_realm_password() -> None:
    material = b"user:realm:pass"
    assert hashlib.md5(material).digest() == MD5_KEY
    assert hashlib.sha256(material).digest() == SHA256_KEY
    assert len(MD5_KEY) == 16
    assert len(SHA256_KEY) == 32


def test_long_term_key_prepares_realm_and_password_with_opaque_string() -> None:
    """RFC 8489 §18.5.1: key = H(username ":" OpaqueString(realm) ":"
    OpaqueString(password)); OpaqueString maps non-ASCII spaces to U+0020 and
    normalises to NFC (RFC 8265 §4.2)."""
    plain = long_term_key("user", "my realm", "caf\u00e9 pass")
    assert long_term_key("user", "my\u00a0realm", "cafe\u0301\u2003pass") == plain
    for algorithm in PasswordAlgorithmId:
        assert long_term_key("user", "my\u3000realm", "caf\u00e9 pass", algorithm) == (
            long_term_key("user", "my realm", "caf\u00e9 pass", algorithm)
        )


def test_short_term_key_is_the_prepared_password() -> None:
    """RFC 8489 §9.1.1: key = OpaqueString(password)."""
    assert short_term_key("VOkJxbRl1RmTxUk/WvJxBt") == b"VOkJxbRl1RmTxUk/WvJxBt"
    assert short_term_key("e\u0301\u00a0") == "\u00e9 ".encode()
    assert opaque_string("\u2168") == "\u2168"  # no compatibility mapping


# --- RFC 3489 messages (RFC 8489 §12) ---------------------------------------------


def classic_response() -> bytes:
    """An RFC 3489 Binding response: no cookie, 16-byte ID, MAPPED-ADDRESS."""
    mapped = bytes.fromhex("0001 9c40 cb007109")  # 203.0.113.9:40000
    return wire(BINDING_SUCCESS, tlv(0x0001, mapped), transaction_id=CLASSIC_TXID, cookie=b"")


def test_classic_message_needs_allow_classic() -> None:
    """RFC 8489 §12: an RFC 3489 message has no magic cookie; natkit takes it
    only when asked to."""
    error = parse_error(classic_response())
    assert error.reason is DecodeFailure.WRONG_COOKIE
    assert str(error) == f"magic cookie missing: {CLASSIC_TXID[:4].hex()}"
    assert not is_stun(classic_response())


def test_classic_message_with_allow_classic() -> None:
    """The 16-byte transaction ID includes the four bytes where the cookie sits."""
    message = parse_message(classic_response(), allow_classic=True)
    assert message.is_classic
    assert message.transaction_id == CLASSIC_TXID
    assert message.header_key == CLASSIC_TXID
    assert message.message_class is MessageClass.SUCCESS_RESPONSE
    assert message.mapped_address == MAPPED
    assert message.reflexive_address == MAPPED
    assert encode_message(message) == classic_response()


def test_allow_classic_still_reads_modern_messages() -> None:
    """With the cookie in place, the ID is the 12 bytes after it."""
    message = parse_message(vector("rfc5769_ipv4_response"), allow_classic=True)
    assert not message.is_classic
    assert len(message.transaction_id) == 12
    assert message.header_key == MAGIC_COOKIE_BYTES + message.transaction_id


def test_classic_message_still_checks_framing() -> None:
    data = set_length(classic_response(), 4)
    assert parse_error(data, allow_classic=True).reason is DecodeFailure.BAD_LENGTH
    data = bytes([0x80]) + classic_response()[1:]
    assert parse_error(data, allow_classic=True).reason is DecodeFailure.NOT_STUN


def test_classic_message_encodes_without_cookie() -> None:
    message = Message(
        Method.BINDING,
        MessageClass.REQUEST,
        CLASSIC_TXID,
        (AddressAttribute(AttributeType.MAPPED_ADDRESS, MAPPED),),
    )
    data = encode_message(message)
    assert data[4:20] == CLASSIC_TXID
    assert parse_message(data, allow_classic=True) == message


# --- demultiplexing (RFC 7983, RFC 8489 §6.3) ---------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "rfc5769_sample_request",
        "rfc5769_ipv4_response",
        "rfc5769_ipv6_response",
        "rfc5769_long_term_request",
        "rfc8489_sha256_request",
    ],
)
def test_is_stun_accepts_valid_messages(name: str) -> None:
    assert is_stun(vector(name))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        wire(BINDING_REQUEST)[:19],
        bytes.fromhex("80 60 0001 00000000 12345678") + bytes(8),  # RTP version 2
        bytes.fromhex("16 fefd 0000 000000000000 0010") + bytes(16),  # DTLS handshake
        bytes.fromhex("4000 0004 61626364"),  # TURN ChannelData
        wire(BINDING_REQUEST, SOFTWARE) + b"\x00\x00\x00\x00",  # trailing bytes
        set_length(wire(BINDING_REQUEST, SOFTWARE), 2),
    ],
    ids=["empty", "short", "rtp", "dtls", "channel-data", "trailing", "misaligned"],
)
def test_is_stun_rejects_other_protocols(data: bytes) -> None:
    """RFC 7983 demultiplexing: the first byte, then the cookie and length."""
    assert not is_stun(data)


def test_is_stun_checks_only_the_header() -> None:
    """A cheap test: a malformed attribute is for ``parse_message`` to find."""
    data = wire(BINDING_REQUEST, tlv(0x0024, bytes(8)))
    assert is_stun(data)
    assert parse_error(data).reason is DecodeFailure.BAD_ATTRIBUTE


def test_message_length_for_stream_framing() -> None:
    """RFC 8489 §6.2.2: over TCP, the length field delimits messages."""
    data = vector("rfc5769_sample_request")
    assert message_length(data[:3]) is None
    assert message_length(data[:4]) == len(data)


# --- comprehension-required attributes (RFC 8489 §7.3.1) -------------------------------


def test_unknown_comprehension_required_lists_each_unknown_type_once() -> None:
    """RFC 8489 §7.3.1: unknown types below 0x8000 make a request fail with 420
    listing them; unknown types from 0x8000 up are ignored."""
    data = wire(
        BINDING_REQUEST,
        tlv(0x7F01, b""),
        tlv(0xC001, b""),  # comprehension-optional
        tlv(0x0002, bytes(8)),  # RFC 3489 RESPONSE-ADDRESS: natkit never honours it
        tlv(0x7F01, b"again"),
        SOFTWARE,
        tlv(0x0024, bytes(4)),
    )
    message = parse_message(data)
    assert message.unknown_comprehension_required() == (0x7F01, 0x0002)


def test_unknown_comprehension_required_with_a_narrower_agent() -> None:
    """A server passes what it implements; known-to-natkit is not enough."""
    message = parse_message(
        wire(BINDING_REQUEST, tlv(0x0006, b"user"), tlv(0x0024, bytes(4)), tlv(0x7F01, b""))
    )
    assert message.unknown_comprehension_required() == (0x7F01,)
    understood = frozenset({AttributeType.PRIORITY, 0x7F01})
    assert message.unknown_comprehension_required(understood) == (AttributeType.USERNAME,)
    assert message.unknown_comprehension_required(frozenset()) == (0x0006, 0x0024, 0x7F01)


def test_unknown_comprehension_required_empty_for_known_attributes() -> None:
    assert parse_message(vector("rfc5769_sample_request")).unknown_comprehension_required() == ()


# --- duplicates (RFC 8489 §14: first wins) --------------------------------------------


def test_duplicate_attributes_are_kept_and_the_first_wins() -> None:
    """RFC 8489 §14: "only the first occurrence needs to be processed"."""
    first = Endpoint(ipaddress.IPv4Address("192.0.2.1"), 1)
    second = Endpoint(ipaddress.IPv4Address("192.0.2.2"), 2)
    message = Message(
        Method.BINDING,
        MessageClass.SUCCESS_RESPONSE,
        TXID,
        (
            XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, first),
            TextAttribute(AttributeType.SOFTWARE, "one"),
            XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, second),
            TextAttribute(AttributeType.SOFTWARE, "two"),
            IntegerAttribute(AttributeType.PRIORITY, 1),
            IntegerAttribute(AttributeType.PRIORITY, 2),
        ),
    )
    parsed = parse_message(encode_message(message))
    assert parsed.attributes == message.attributes
    assert parsed.xor_mapped_address == first
    assert parsed.text(AttributeType.SOFTWARE) == "one"
    assert parsed.find(AttributeType.PRIORITY) == IntegerAttribute(AttributeType.PRIORITY, 1)
    assert parsed.find(0x7F00) is None


def test_with_attributes_appends() -> None:
    message = request(RawAttribute(0x7F00, b"")).with_attributes(
        TextAttribute(AttributeType.SOFTWARE, "x")
    )
    assert message.attributes == (
        RawAttribute(0x7F00, b""),
        TextAttribute(AttributeType.SOFTWARE, "x"),
    )
    assert message.transaction_id == TXID


def test_message_too_long_to_encode() -> None:
    """RFC 8489 §5: the length field is 16 bits."""
    message = request(*[RawAttribute(AttributeType.DATA, bytes(60000))] * 2)
    with pytest.raises(LocalProtocolError, match="too long"):
        encode_message(message)
