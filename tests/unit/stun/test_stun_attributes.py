"""Each attribute natkit decodes: its wire value, its round trip, and the exact
error for every way a peer can get it wrong (RFC 8489 §14, RFC 5780 §7,
RFC 8656 §18, RFC 8445 §16)."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from stun_testlib import (
    ATTRIBUTE_STRATEGIES,
    RFC5769_TRANSACTION_ID,
    TXID,
    tlv,
    wire,
)

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.stun.attributes import (
    DECODERS,
    AddressAttribute,
    Attribute,
    ChangeRequest,
    ErrorCodeAttribute,
    FlagAttribute,
    IntegerAttribute,
    Padding,
    PasswordAlgorithm,
    PasswordAlgorithms,
    RawAttribute,
    ResponsePort,
    TextAttribute,
    UnknownAttributes,
    XorAddressAttribute,
)
from natkit.stun.codec import (
    DecodeFailure,
    Message,
    StunDecodeError,
    encode_message,
    parse_message,
)
from natkit.stun.constants import (
    AttributeType,
    ChangeFlags,
    ErrorCode,
    MessageClass,
    Method,
    PasswordAlgorithmId,
    attribute_name,
)

BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
V4 = Endpoint(ipaddress.IPv4Address("192.0.2.1"), 32853)
V6 = Endpoint(ipaddress.IPv6Address("2001:db8:1234:5678:11:2233:4455:6677"), 32853)


def roundtrip(attribute: Attribute, transaction_id: bytes = TXID) -> Message:
    message = Message(Method.BINDING, MessageClass.REQUEST, transaction_id, (attribute,))
    return parse_message(encode_message(message), allow_classic=True)


def value_on_the_wire(attribute: Attribute) -> bytes:
    """The bytes natkit writes for ``attribute`` (header, value, padding)."""
    message = Message(Method.BINDING, MessageClass.REQUEST, TXID, (attribute,))
    return encode_message(message)[20:]


def decode_error(attribute_type: int, value: bytes) -> StunDecodeError:
    """Parse a Binding request holding one attribute; return the error."""
    with pytest.raises(StunDecodeError) as caught:
        parse_message(wire(BINDING_REQUEST, tlv(attribute_type, value)))
    return caught.value


# --- every decoded type round-trips ----------------------------------------------

#: One example per type in DECODERS (checked below), IPv6 where it matters.
EXAMPLES: dict[int, Attribute] = {
    AttributeType.MAPPED_ADDRESS: AddressAttribute(AttributeType.MAPPED_ADDRESS, V4),
    AttributeType.SOURCE_ADDRESS: AddressAttribute(AttributeType.SOURCE_ADDRESS, V6),
    AttributeType.CHANGED_ADDRESS: AddressAttribute(AttributeType.CHANGED_ADDRESS, V4),
    AttributeType.RESPONSE_ORIGIN: AddressAttribute(AttributeType.RESPONSE_ORIGIN, V6),
    AttributeType.OTHER_ADDRESS: AddressAttribute(AttributeType.OTHER_ADDRESS, V4),
    AttributeType.ALTERNATE_SERVER: AddressAttribute(AttributeType.ALTERNATE_SERVER, V6),
    AttributeType.XOR_MAPPED_ADDRESS: XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, V6),
    AttributeType.XOR_MAPPED_ADDRESS_LEGACY: XorAddressAttribute(
        AttributeType.XOR_MAPPED_ADDRESS_LEGACY, V4
    ),
    AttributeType.XOR_PEER_ADDRESS: XorAddressAttribute(AttributeType.XOR_PEER_ADDRESS, V4),
    AttributeType.XOR_RELAYED_ADDRESS: XorAddressAttribute(AttributeType.XOR_RELAYED_ADDRESS, V6),
    AttributeType.CHANGE_REQUEST: ChangeRequest(ChangeFlags.CHANGE_IP | ChangeFlags.CHANGE_PORT),
    AttributeType.RESPONSE_PORT: ResponsePort(3478),
    AttributeType.PADDING: Padding.of_length(5),
    AttributeType.USERNAME: TextAttribute(AttributeType.USERNAME, "evtj:h6vY"),
    AttributeType.REALM: TextAttribute(AttributeType.REALM, "example.org"),
    AttributeType.NONCE: TextAttribute(AttributeType.NONCE, "f//499k954d6OL34oL9FSTvy64sA"),
    AttributeType.SOFTWARE: TextAttribute(AttributeType.SOFTWARE, "natkit ✓"),
    AttributeType.ALTERNATE_DOMAIN: TextAttribute(AttributeType.ALTERNATE_DOMAIN, "example.net"),
    AttributeType.ERROR_CODE: ErrorCodeAttribute(420, "Unknown Attribute"),
    AttributeType.UNKNOWN_ATTRIBUTES: UnknownAttributes((0x7F00, 0x0002, 0x0030)),
    AttributeType.PASSWORD_ALGORITHM: PasswordAlgorithm(PasswordAlgorithmId.SHA256),
    AttributeType.PASSWORD_ALGORITHMS: PasswordAlgorithms(
        (PasswordAlgorithm(PasswordAlgorithmId.SHA256), PasswordAlgorithm(0x8001, b"\x01\x02\x03"))
    ),
    AttributeType.USERHASH: RawAttribute(AttributeType.USERHASH, bytes(range(32))),
    AttributeType.RESERVATION_TOKEN: RawAttribute(AttributeType.RESERVATION_TOKEN, b"token!!!"),
    AttributeType.DATA: RawAttribute(AttributeType.DATA, b"\x00\x01\x02"),
    AttributeType.USE_CANDIDATE: FlagAttribute(AttributeType.USE_CANDIDATE),
    AttributeType.DONT_FRAGMENT: FlagAttribute(AttributeType.DONT_FRAGMENT),
    AttributeType.PRIORITY: IntegerAttribute(AttributeType.PRIORITY, 0x6E0001FF),
    AttributeType.LIFETIME: IntegerAttribute(AttributeType.LIFETIME, 600),
    AttributeType.CACHE_TIMEOUT: IntegerAttribute(AttributeType.CACHE_TIMEOUT, 2**32 - 1),
    AttributeType.ICE_CONTROLLED: IntegerAttribute(AttributeType.ICE_CONTROLLED, 2**64 - 1),
    AttributeType.ICE_CONTROLLING: IntegerAttribute(AttributeType.ICE_CONTROLLING, 1),
    AttributeType.CHANNEL_NUMBER: IntegerAttribute(AttributeType.CHANNEL_NUMBER, 0x4000),
    AttributeType.REQUESTED_TRANSPORT: IntegerAttribute(AttributeType.REQUESTED_TRANSPORT, 17),
    AttributeType.REQUESTED_ADDRESS_FAMILY: IntegerAttribute(
        AttributeType.REQUESTED_ADDRESS_FAMILY, 0x02
    ),
    AttributeType.EVEN_PORT: IntegerAttribute(AttributeType.EVEN_PORT, 1),
}


def test_examples_and_strategies_cover_every_decoder() -> None:
    """Every type natkit claims to understand is exercised here and in the
    property tests."""
    assert set(EXAMPLES) == set(DECODERS)
    assert set(ATTRIBUTE_STRATEGIES) == set(DECODERS)


@pytest.mark.parametrize(
    "attribute", list(EXAMPLES.values()), ids=[attribute_name(t) for t in EXAMPLES]
)
def test_attribute_roundtrips(attribute: Attribute) -> None:
    """Encoding then parsing gives the attribute back, with its type."""
    (parsed,) = roundtrip(attribute).attributes
    assert parsed == attribute
    assert type(parsed) is type(attribute)
    assert parsed.type == attribute.type


@pytest.mark.parametrize(
    "attribute", list(EXAMPLES.values()), ids=[attribute_name(t) for t in EXAMPLES]
)
def test_attribute_roundtrips_in_a_classic_message(attribute: Attribute) -> None:
    """RFC 3489 messages carry the same attributes; XOR-* use the 16-byte ID as key."""
    (parsed,) = roundtrip(attribute, transaction_id=bytes(range(16))).attributes
    assert parsed == attribute


# --- the wire values, written out by hand from the RFCs ---------------------------

WIRE_VALUES: list[tuple[Attribute, bytes]] = [
    # RFC 8489 §14.1: 0, family, port, address.
    (EXAMPLES[AttributeType.MAPPED_ADDRESS], bytes.fromhex("0001 0008 00 01 8055 c0000201")),
    # RFC 5780 §7.2: bit A (0x04) changes IP, bit B (0x02) changes port.
    (ChangeRequest(ChangeFlags.CHANGE_IP), bytes.fromhex("0003 0004 00000004")),
    (ChangeRequest(ChangeFlags.CHANGE_PORT), bytes.fromhex("0003 0004 00000002")),
    (ChangeRequest(ChangeFlags.NONE), bytes.fromhex("0003 0004 00000000")),
    # RFC 5780 §7.5: 16-bit port, 16 reserved bits.
    (ResponsePort(3478), bytes.fromhex("0027 0004 0d96 0000")),
    # RFC 5780 §7.6: padding is padded in turn.
    (Padding.of_length(5), bytes.fromhex("0026 0005 0000000000 000000")),
    # RFC 8489 §14.8: 21 reserved bits, class (3 bits), number (8 bits), reason.
    (ErrorCodeAttribute(420, "Unknown"), bytes.fromhex("0009 000b 0000 04 14") + b"Unknown\x00"),
    (ErrorCodeAttribute(699, ""), bytes.fromhex("0009 0004 0000 06 63")),
    # RFC 8489 §14.9: a list of 16-bit types, padded.
    (UnknownAttributes((0x1234, 0x5678)), bytes.fromhex("000a 0004 1234 5678")),
    (UnknownAttributes((0x1234,)), bytes.fromhex("000a 0002 1234 0000")),
    # RFC 8489 §14.12: algorithm, parameters length, parameters, padding.
    (PasswordAlgorithm(PasswordAlgorithmId.MD5), bytes.fromhex("001d 0004 0001 0000")),
    (PasswordAlgorithm(7, b"\xaa"), bytes.fromhex("001d 0008 0007 0001 aa000000")),
    # RFC 8656 §18.1: channel number in the top 16 bits.
    (EXAMPLES[AttributeType.CHANNEL_NUMBER], bytes.fromhex("000c 0004 4000 0000")),
    # RFC 8656 §18.7: protocol in the top byte (17 = UDP).
    (EXAMPLES[AttributeType.REQUESTED_TRANSPORT], bytes.fromhex("0019 0004 11 000000")),
    # RFC 8656 §18.8: family in the top byte.
    (EXAMPLES[AttributeType.REQUESTED_ADDRESS_FAMILY], bytes.fromhex("0017 0004 02 000000")),
    # RFC 8656 §18.4: one byte, R is its top bit, then padding.
    (IntegerAttribute(AttributeType.EVEN_PORT, 1), bytes.fromhex("0018 0001 80 000000")),
    (IntegerAttribute(AttributeType.EVEN_PORT, 0), bytes.fromhex("0018 0001 00 000000")),
    # RFC 8445 §16.1: 32-bit priority, 64-bit tie-breakers.
    (EXAMPLES[AttributeType.PRIORITY], bytes.fromhex("0024 0004 6e0001ff")),
    (EXAMPLES[AttributeType.ICE_CONTROLLING], bytes.fromhex("802a 0008 0000000000000001")),
    (EXAMPLES[AttributeType.USE_CANDIDATE], bytes.fromhex("0025 0000")),
    # RFC 8489 §14.3: UTF-8, padded.
    (TextAttribute(AttributeType.USERNAME, "é"), bytes.fromhex("0006 0002 c3a9 0000")),
]


@pytest.mark.parametrize(("attribute", "expected"), WIRE_VALUES)
def test_attribute_wire_format(attribute: Attribute, expected: bytes) -> None:
    """natkit writes each attribute as its RFC draws it, zero-padded to 4 bytes."""
    assert value_on_the_wire(attribute) == expected


# --- XOR-MAPPED-ADDRESS -----------------------------------------------------------


def test_xor_mapped_address_ipv4_is_xored_with_the_cookie() -> None:
    """RFC 8489 §14.2: X-Port = port ^ 0x2112, X-Address = address ^ 0x2112a442
    (192.0.2.1:32853 becomes a147 e112a643, as in RFC 5769 §2.2)."""
    value = bytes.fromhex("0001 a147 e112a643")
    message = parse_message(
        wire(BINDING_SUCCESS, tlv(0x0020, value), transaction_id=RFC5769_TRANSACTION_ID)
    )
    assert message.xor_mapped_address == V4
    reencoded = encode_message(
        Message(
            Method.BINDING,
            MessageClass.SUCCESS_RESPONSE,
            RFC5769_TRANSACTION_ID,
            (XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, V4),),
        )
    )
    assert reencoded[24:] == value


def test_xor_mapped_address_ipv6_is_xored_with_cookie_and_transaction_id() -> None:
    """RFC 8489 §14.2: the IPv6 address is XORed with cookie || transaction ID
    (the RFC 5769 §2.3 value)."""
    value = bytes.fromhex("0002 a147 0113a9faa5d3f179bc25f4b5bed2b9d9")
    message = parse_message(
        wire(BINDING_SUCCESS, tlv(0x0020, value), transaction_id=RFC5769_TRANSACTION_ID)
    )
    assert message.xor_mapped_address == V6
    other_id = parse_message(wire(BINDING_SUCCESS, tlv(0x0020, value)))
    assert other_id.xor_mapped_address != V6


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (bytes.fromhex("0001 a147 e112a643"), V4),
        (bytes.fromhex("0002 a147 0113a9faa5d3f179bc25f4b5bed2b9d9"), V6),
    ],
)
def test_legacy_xor_mapped_address_0x8020_is_read(value: bytes, expected: Endpoint) -> None:
    """Pre-RFC 5389 servers send XOR-MAPPED-ADDRESS as 0x8020 (comprehension-
    optional); ``xor_mapped_address`` reads it like 0x0020."""
    message = parse_message(
        wire(BINDING_SUCCESS, tlv(0x8020, value), transaction_id=RFC5769_TRANSACTION_ID)
    )
    assert message.attributes == (
        XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS_LEGACY, expected),
    )
    assert message.xor_mapped_address == expected
    assert message.reflexive_address == expected
    assert message.unknown_comprehension_required() == ()


def test_standard_xor_mapped_address_wins_over_legacy() -> None:
    """With both codes present, 0x0020 is the answer wherever it sits."""
    other = Endpoint(ipaddress.IPv4Address("198.51.100.7"), 9)
    message = Message(
        Method.BINDING,
        MessageClass.SUCCESS_RESPONSE,
        TXID,
        (
            XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS_LEGACY, other),
            XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, V4),
        ),
    )
    assert parse_message(encode_message(message)).xor_mapped_address == V4


def test_reflexive_address_falls_back_to_mapped_address() -> None:
    """RFC 8489 §14.1: MAPPED-ADDRESS, for RFC 3489 servers."""
    message = roundtrip(AddressAttribute(AttributeType.MAPPED_ADDRESS, V4))
    assert message.xor_mapped_address is None
    assert message.mapped_address == V4
    assert message.reflexive_address == V4


def test_rfc3489_names_read_as_rfc5780_addresses() -> None:
    """RFC 5780 §7.3/§7.4: OTHER-ADDRESS and RESPONSE-ORIGIN replace
    CHANGED-ADDRESS and SOURCE-ADDRESS; the accessors read either."""
    old = Message(
        Method.BINDING,
        MessageClass.SUCCESS_RESPONSE,
        TXID,
        (
            AddressAttribute(AttributeType.CHANGED_ADDRESS, V4),
            AddressAttribute(AttributeType.SOURCE_ADDRESS, V6),
        ),
    )
    parsed = parse_message(encode_message(old))
    assert parsed.other_address == V4
    assert parsed.response_origin == V6


# --- CHANGE-REQUEST, RESPONSE-PORT, PADDING, ERROR-CODE ---------------------------


@pytest.mark.parametrize("word", [0x00, 0x02, 0x04, 0x06])
def test_change_request_reads_as_change_flags(word: int) -> None:
    """RFC 5780 §7.2: ``change_request`` is a ChangeFlags, not a bare int."""
    message = parse_message(wire(BINDING_REQUEST, tlv(0x0003, struct.pack("!I", word))))
    flags = message.change_request
    assert isinstance(flags, ChangeFlags)
    assert flags == word
    assert (ChangeFlags.CHANGE_IP in flags) == bool(word & 0x04)
    assert (ChangeFlags.CHANGE_PORT in flags) == bool(word & 0x02)


def test_change_request_ignores_unused_bits() -> None:
    """RFC 5780 §7.2: bits other than A and B are unused."""
    message = parse_message(wire(BINDING_REQUEST, tlv(0x0003, bytes.fromhex("ffffffff"))))
    assert message.change_request == ChangeFlags.CHANGE_IP | ChangeFlags.CHANGE_PORT


def test_absent_attributes_read_as_none() -> None:
    message = parse_message(wire(BINDING_REQUEST))
    assert message.change_request is None
    assert message.response_port is None
    assert message.padding is None
    assert message.error_code is None
    assert message.unknown_attributes == ()
    assert message.xor_mapped_address is None
    assert message.other_address is None
    assert message.response_origin is None
    assert message.text(AttributeType.SOFTWARE) is None


def test_response_port_and_padding_accessors() -> None:
    """RFC 5780 §7.5, §7.6."""
    message = Message(
        Method.BINDING, MessageClass.REQUEST, TXID, (ResponsePort(40000), Padding(b"\x01" * 7))
    )
    parsed = parse_message(encode_message(message))
    assert parsed.response_port == 40000
    assert parsed.padding == Padding(b"\x01" * 7)
    assert repr(parsed.padding) == "Padding(<7 bytes>)"


def test_error_code_accessor() -> None:
    """RFC 8489 §14.8: class * 100 + number, and the reason phrase."""
    message = parse_message(wire(0x0111, tlv(0x0009, bytes.fromhex("00000414") + b"Unknown")))
    assert message.message_class == MessageClass.ERROR_RESPONSE
    assert message.error_code == ErrorCodeAttribute(ErrorCode.UNKNOWN_ATTRIBUTE, "Unknown")


def test_error_code_ignores_reserved_bits() -> None:
    """RFC 8489 §14.8: the 21 reserved bits are ignored on receipt."""
    message = parse_message(wire(0x0111, tlv(0x0009, bytes.fromhex("fffffc26") + b"x")))
    assert message.error_code == ErrorCodeAttribute(438, "x")


def test_unknown_attributes_accessor() -> None:
    message = roundtrip(UnknownAttributes((0x0002, 0x7FFF)))
    assert message.unknown_attributes == (0x0002, 0x7FFF)


# --- strict decoding: every malformed value and its error -------------------------

MALFORMED: list[tuple[int, bytes, str]] = [
    # Addresses (RFC 8489 §14.1, §14.2): length follows the family.
    (0x0001, b"\x00\x01\x00", "address value of 3 bytes"),
    (0x0001, bytes.fromhex("0001 0001") + bytes(16), "IPv4 address value of 20 bytes, want 8"),
    (0x802C, bytes.fromhex("0002 0001 01020304"), "IPv6 address value of 8 bytes, want 20"),
    (0x0001, bytes.fromhex("0003 0001 01020304"), "unknown address family 0x03"),
    (0x0020, bytes.fromhex("0000 0001 01020304"), "unknown address family 0x00"),
    (0x8020, bytes.fromhex("0002 0001 01020304"), "IPv6 address value of 8 bytes, want 20"),
    (0x0012, b"", "address value of 0 bytes"),
    # Overlong XOR-*-ADDRESS values: the XOR keystream is 18 bytes, the check
    # must still see every byte.
    (0x0020, bytes.fromhex("0002 0001") + bytes(20), "IPv6 address value of 24 bytes, want 20"),
    (0x0016, bytes.fromhex("0002 0001") + bytes(52), "IPv6 address value of 56 bytes, want 20"),
    (0x0020, bytes.fromhex("0001 0001") + bytes(20), "IPv4 address value of 24 bytes, want 8"),
    (0x8020, bytes.fromhex("0001 0001") + bytes(8), "IPv4 address value of 12 bytes, want 8"),
    # RFC 5780 §7.2, §7.5: four bytes exactly.
    (0x0003, b"\x00\x04", "value of 2 bytes, want 4"),
    (0x0027, bytes(8), "value of 8 bytes, want 4"),
    # RFC 8489 §14.3, §14.10, §14.11, §14.14: UTF-8 of at most 763 bytes.
    (0x0006, b"a" * 764, "764 bytes, limit 763"),
    (0x0014, b"a" * 764, "764 bytes, limit 763"),
    (0x0015, b"a" * 764, "764 bytes, limit 763"),
    (0x8022, b"a" * 764, "764 bytes, limit 763"),
    (0x0006, b"\xff", "not UTF-8"),
    (0x8022, b"caf\xc3", "not UTF-8"),
    (0x0014, b"\xed\xa0\x80", "not UTF-8"),  # an encoded surrogate
    # RFC 8489 §14.8: class 3-6, number 0-99, UTF-8 reason of at most 763 bytes.
    (0x0009, b"\x00\x00\x04", "value of 3 bytes, want at least 4"),
    (0x0009, bytes.fromhex("00000200"), "bad error code class 2 number 0"),
    (0x0009, bytes.fromhex("00000700"), "bad error code class 7 number 0"),
    (0x0009, bytes.fromhex("00000000"), "bad error code class 0 number 0"),
    (0x0009, bytes.fromhex("00000464"), "bad error code class 4 number 100"),
    (0x0009, bytes.fromhex("00000400") + b"\xfe", "reason phrase not UTF-8"),
    (0x0009, bytes.fromhex("00000400") + b"a" * 764, "reason phrase too long"),
    # RFC 8489 §14.9: a whole number of 16-bit types.
    (0x000A, b"\x00\x01\x00", "odd length 3"),
    # RFC 8445 §16.1, RFC 8656 §18: fixed widths.
    (0x0024, bytes(8), "value of 8 bytes, want 4"),
    (0x0024, bytes(2), "value of 2 bytes, want 4"),
    (0x000D, bytes(3), "value of 3 bytes, want 4"),
    (0x8027, b"", "value of 0 bytes, want 4"),
    (0x802A, bytes(4), "value of 4 bytes, want 8"),
    (0x8029, bytes(12), "value of 12 bytes, want 8"),
    (0x000C, bytes(2), "value of 2 bytes, want 4"),
    (0x0019, bytes(1), "value of 1 bytes, want 4"),
    (0x0017, bytes(8), "value of 8 bytes, want 4"),
    (0x0018, bytes(4), "value of 4 bytes, want 1"),
    (0x0025, bytes(4), "value of 4 bytes, want 0"),
    (0x001A, b"\x01", "value of 1 bytes, want 0"),
    (0x001E, bytes(31), "value of 31 bytes, want 32"),
    (0x0022, bytes(4), "value of 4 bytes, want 8"),
    # RFC 8489 §14.11, §14.12: algorithm entries.
    (0x001D, b"", "PASSWORD-ALGORITHM must hold exactly one algorithm"),
    (
        0x001D,
        bytes.fromhex("00010000 00020000"),
        "PASSWORD-ALGORITHM must hold exactly one algorithm",
    ),
    (0x001D, b"\x00\x01", "truncated password algorithm"),
    (0x001D, bytes.fromhex("0001 0008 00000000"), "password algorithm parameters overrun"),
    (0x8002, bytes.fromhex("00010000 0002"), "truncated password algorithm"),
    (0x8002, bytes.fromhex("00010000 0002 0001"), "password algorithm parameters overrun"),
]


@pytest.mark.parametrize(
    ("attribute_type", "value", "detail"),
    MALFORMED,
    ids=[f"{attribute_name(t)}-{d}" for t, _, d in MALFORMED],
)
def test_malformed_attribute_is_rejected(attribute_type: int, value: bytes, detail: str) -> None:
    """A known attribute whose value breaks its definition makes the whole
    message invalid; the error names the attribute, its offset and the rule."""
    error = decode_error(attribute_type, value)
    assert error.reason is DecodeFailure.BAD_ATTRIBUTE
    assert error.detail == f"{attribute_name(attribute_type)} at offset 20: {detail}"
    assert str(error) == f"attribute value is malformed: {error.detail}"


def test_malformed_attribute_error_names_its_offset() -> None:
    """The offset is where the attribute's header starts."""
    data = wire(
        BINDING_REQUEST,
        tlv(0x8022, b"fine"),
        tlv(0x0024, bytes(8)),
    )
    with pytest.raises(StunDecodeError, match=r"PRIORITY at offset 28: value of 8 bytes, want 4"):
        parse_message(data)


def test_integrity_attributes_have_fixed_sizes() -> None:
    """RFC 8489 §14.5-14.7: MESSAGE-INTEGRITY is 20 bytes, -SHA256 16 to 32 in
    steps of 4, FINGERPRINT 4."""
    for attribute_type, value, detail in [
        (0x0008, bytes(19), "MESSAGE-INTEGRITY of 19 bytes"),
        (0x0008, bytes(32), "MESSAGE-INTEGRITY of 32 bytes"),
        (0x001C, bytes(12), "MESSAGE-INTEGRITY-SHA256 of 12 bytes"),
        (0x001C, bytes(18), "MESSAGE-INTEGRITY-SHA256 of 18 bytes"),
        (0x001C, bytes(36), "MESSAGE-INTEGRITY-SHA256 of 36 bytes"),
        (0x8028, bytes(8), "FINGERPRINT of 8 bytes"),
    ]:
        error = decode_error(attribute_type, value)
        assert error.reason is DecodeFailure.BAD_ATTRIBUTE
        assert error.detail == detail


# --- limits that must still parse ---------------------------------------------------


@pytest.mark.parametrize("attribute_type", [0x0006, 0x0014, 0x0015, 0x8022, 0x8003])
def test_text_of_763_bytes_parses(attribute_type: int) -> None:
    """RFC 8489 §14.3: senders stay under 509 bytes, but a receiver "MUST be
    able to parse a UTF-8-encoded sequence of 763 or fewer octets" (RFC 5389
    allowed 128 characters of up to 6 bytes). Same for REALM, NONCE, SOFTWARE."""
    text = "ü" * 381 + "a"  # 763 bytes of UTF-8
    message = parse_message(wire(BINDING_REQUEST, tlv(attribute_type, text.encode())))
    assert message.attributes == (TextAttribute(AttributeType(attribute_type), text),)


def test_error_reason_of_763_bytes_parses() -> None:
    """RFC 8489 §14.8: the reason phrase may be 763 bytes when decoding."""
    data = wire(0x0111, tlv(0x0009, bytes.fromhex("00000500") + b"r" * 763))
    assert parse_message(data).error_code == ErrorCodeAttribute(500, "r" * 763)


def test_empty_values_that_are_legal() -> None:
    """Empty text, an empty UNKNOWN-ATTRIBUTES list, empty PADDING and DATA."""
    data = wire(
        BINDING_REQUEST,
        tlv(0x8022, b""),
        tlv(0x000A, b""),
        tlv(0x0026, b""),
        tlv(0x0013, b""),
        tlv(0x8002, b""),
    )
    assert parse_message(data).attributes == (
        TextAttribute(AttributeType.SOFTWARE, ""),
        UnknownAttributes(()),
        Padding(b""),
        RawAttribute(AttributeType.DATA, b""),
        PasswordAlgorithms(()),
    )


def test_password_algorithm_parameters_are_padded() -> None:
    """RFC 8489 §14.11: each algorithm's parameters are padded to 4 bytes."""
    value = bytes.fromhex("0002 0000  8001 0003 010203 00  0001 0000")
    message = parse_message(wire(0x0111, tlv(0x8002, value)))
    assert message.attributes == (
        PasswordAlgorithms(
            (
                PasswordAlgorithm(PasswordAlgorithmId.SHA256),
                PasswordAlgorithm(0x8001, b"\x01\x02\x03"),
                PasswordAlgorithm(PasswordAlgorithmId.MD5),
            )
        ),
    )


def test_unknown_attribute_types_stay_raw() -> None:
    """RFC 8489 §14: types natkit does not decode are kept, undecoded, so a
    server can list them in a 420 (comprehension-required) or ignore them."""
    data = wire(BINDING_REQUEST, tlv(0x7F00, b"abc"), tlv(0xC000, b""), tlv(0x0002, bytes(8)))
    assert parse_message(data).attributes == (
        RawAttribute(0x7F00, b"abc"),
        RawAttribute(0xC000, b""),
        RawAttribute(AttributeType.RESPONSE_ADDRESS, bytes(8)),
    )


# --- encoding refuses what cannot be encoded ---------------------------------------

UNENCODABLE: list[tuple[Attribute, str]] = [
    (ErrorCodeAttribute(299, ""), "ERROR-CODE: error code out of range: 299"),
    (ErrorCodeAttribute(700, ""), "ERROR-CODE: error code out of range: 700"),
    (
        IntegerAttribute(AttributeType.CHANNEL_NUMBER, 0x10000),
        "CHANNEL-NUMBER: value out of range for 0x000c: 65536",
    ),
    (IntegerAttribute(AttributeType.EVEN_PORT, 2), "EVEN-PORT: value out of range for 0x0018: 2"),
    (IntegerAttribute(AttributeType.PRIORITY, -1), "PRIORITY: value out of range for 0x0024: -1"),
    (IntegerAttribute(AttributeType.ICE_CONTROLLING, 2**64), "ICE-CONTROLLING: "),
    (UnknownAttributes((0x10000,)), "UNKNOWN-ATTRIBUTES: "),
    (PasswordAlgorithm(0x10000), "PASSWORD-ALGORITHM: "),
    (RawAttribute(AttributeType.DATA, bytes(0x10000)), "DATA too long"),
]


@pytest.mark.parametrize(("attribute", "text"), UNENCODABLE)
def test_unencodable_attribute_is_a_local_error(attribute: Attribute, text: str) -> None:
    """A value that does not fit its field is the caller's mistake
    (LocalProtocolError), never a bare ValueError or struct.error."""
    message = Message(Method.BINDING, MessageClass.REQUEST, TXID, (attribute,))
    with pytest.raises(LocalProtocolError) as caught:
        encode_message(message)
    assert str(caught.value).startswith(text)
