"""Typed STUN attributes and their wire format.

Each attribute class knows its value bytes (``encode_value``); the decoders
in ``DECODERS`` are strict: a value of the wrong length, family or encoding
raises :class:`AttributeValueError`, which the message parser turns into a
``StunDecodeError`` naming the attribute. Types natkit does not decode stay
:class:`RawAttribute`, so a server can still answer them with a 420.

``header`` below is bytes 4..20 of the STUN header (magic cookie and
transaction ID): the XOR key for the XOR-*-ADDRESS family.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass

from natkit.endpoint import Endpoint, Family
from natkit.stun.constants import AttributeType, ChangeFlags

# Decoding limits from RFC 8489 §14 (in bytes of UTF-8). Senders stay under
# 509 bytes, but a receiver "MUST be able to parse" 763 for USERNAME too
# (§14.3, for RFC 5389 compatibility), as for REALM, NONCE and SOFTWARE.
MAX_USERNAME = 763
MAX_TEXT = 763
MAX_NONCE = 763


class AttributeValueError(ValueError):
    """A known attribute whose value does not follow its definition."""


@dataclass(frozen=True, slots=True)
class AddressAttribute:
    """MAPPED-ADDRESS, OTHER-ADDRESS, RESPONSE-ORIGIN, ALTERNATE-SERVER and the
    RFC 3489 SOURCE-/CHANGED-ADDRESS: a plain family/port/address triple."""

    type: AttributeType
    endpoint: Endpoint

    def encode_value(self, header: bytes) -> bytes:
        return _encode_address(self.endpoint)


@dataclass(frozen=True, slots=True)
class XorAddressAttribute:
    """XOR-MAPPED-ADDRESS (also at 0x8020), XOR-PEER- and XOR-RELAYED-ADDRESS."""

    type: AttributeType
    endpoint: Endpoint

    def encode_value(self, header: bytes) -> bytes:
        return _xor_address(_encode_address(self.endpoint), header)


@dataclass(frozen=True, slots=True)
class ChangeRequest:
    """CHANGE-REQUEST (RFC 5780 §7.2)."""

    flags: ChangeFlags

    type = AttributeType.CHANGE_REQUEST

    def encode_value(self, header: bytes) -> bytes:
        return struct.pack("!I", int(self.flags))


@dataclass(frozen=True, slots=True)
class ResponsePort:
    """RESPONSE-PORT (RFC 5780 §7.5): the port the response should go to."""

    port: int

    type = AttributeType.RESPONSE_PORT

    def encode_value(self, header: bytes) -> bytes:
        return struct.pack("!HH", self.port, 0)


@dataclass(frozen=True, slots=True)
class Padding:
    """PADDING (RFC 5780 §7.6): filler whose content does not matter."""

    data: bytes

    type = AttributeType.PADDING

    @classmethod
    def of_length(cls, length: int) -> Padding:
        return cls(b"\x00" * length)

    def encode_value(self, header: bytes) -> bytes:
        return self.data

    def __repr__(self) -> str:
        return f"Padding(<{len(self.data)} bytes>)"


@dataclass(frozen=True, slots=True)
class TextAttribute:
    """UTF-8 text: SOFTWARE, USERNAME, REALM, NONCE, ALTERNATE-DOMAIN."""

    type: AttributeType
    text: str

    def encode_value(self, header: bytes) -> bytes:
        return self.text.encode("utf-8")


@dataclass(frozen=True, slots=True)
class ErrorCodeAttribute:
    """ERROR-CODE (RFC 8489 §14.8): a code 300-699 and a reason phrase."""

    code: int
    reason: str

    type = AttributeType.ERROR_CODE

    def encode_value(self, header: bytes) -> bytes:
        if not 300 <= self.code <= 699:
            raise AttributeValueError(f"error code out of range: {self.code}")
        return struct.pack("!HBB", 0, self.code // 100, self.code % 100) + self.reason.encode()


@dataclass(frozen=True, slots=True)
class UnknownAttributes:
    """UNKNOWN-ATTRIBUTES (RFC 8489 §14.9): the types a 420 complains about."""

    types: tuple[int, ...]

    type = AttributeType.UNKNOWN_ATTRIBUTES

    def encode_value(self, header: bytes) -> bytes:
        return b"".join(struct.pack("!H", t) for t in self.types)


@dataclass(frozen=True, slots=True)
class IntegerAttribute:
    """A fixed-width unsigned integer: PRIORITY, LIFETIME, CACHE-TIMEOUT,
    ICE-CONTROLLED/-CONTROLLING (64 bit), CHANNEL-NUMBER, REQUESTED-TRANSPORT..."""

    type: AttributeType
    value: int

    def encode_value(self, header: bytes) -> bytes:
        width = INTEGER_WIDTHS[self.type]
        if width == 8:
            return struct.pack("!Q", self.value)
        return _pack_uint(self.type, self.value)


@dataclass(frozen=True, slots=True)
class FlagAttribute:
    """An attribute with an empty value: USE-CANDIDATE, DONT-FRAGMENT."""

    type: AttributeType

    def encode_value(self, header: bytes) -> bytes:
        return b""


@dataclass(frozen=True, slots=True)
class PasswordAlgorithm:
    """PASSWORD-ALGORITHM (RFC 8489 §14.12), also an entry of PASSWORD-ALGORITHMS."""

    algorithm: int
    parameters: bytes = b""

    type = AttributeType.PASSWORD_ALGORITHM

    def encode_value(self, header: bytes) -> bytes:
        body = struct.pack("!HH", self.algorithm, len(self.parameters)) + self.parameters
        return body + _pad(len(self.parameters))


@dataclass(frozen=True, slots=True)
class PasswordAlgorithms:
    """PASSWORD-ALGORITHMS (RFC 8489 §14.11): what a server accepts, in order."""

    algorithms: tuple[PasswordAlgorithm, ...]

    type = AttributeType.PASSWORD_ALGORITHMS

    def encode_value(self, header: bytes) -> bytes:
        return b"".join(a.encode_value(header) for a in self.algorithms)


@dataclass(frozen=True, slots=True)
class RawAttribute:
    """Any attribute natkit does not decode (or decodes only as bytes)."""

    type: int
    value: bytes

    def encode_value(self, header: bytes) -> bytes:
        return self.value


Attribute = (
    AddressAttribute
    | XorAddressAttribute
    | ChangeRequest
    | ResponsePort
    | Padding
    | TextAttribute
    | ErrorCodeAttribute
    | UnknownAttributes
    | IntegerAttribute
    | FlagAttribute
    | PasswordAlgorithm
    | PasswordAlgorithms
    | RawAttribute
)


# --- wire helpers -----------------------------------------------------------

INTEGER_WIDTHS: dict[int, int] = {
    AttributeType.PRIORITY: 4,
    AttributeType.LIFETIME: 4,
    AttributeType.CACHE_TIMEOUT: 4,
    AttributeType.ICE_CONTROLLED: 8,
    AttributeType.ICE_CONTROLLING: 8,
    AttributeType.CHANNEL_NUMBER: 4,
    AttributeType.REQUESTED_TRANSPORT: 4,
    AttributeType.REQUESTED_ADDRESS_FAMILY: 4,
    AttributeType.EVEN_PORT: 1,
}

# Which part of the 32-bit word carries the number: (shift, mask).
_UINT_LAYOUT: dict[int, tuple[int, int]] = {
    AttributeType.PRIORITY: (0, 0xFFFFFFFF),
    AttributeType.LIFETIME: (0, 0xFFFFFFFF),
    AttributeType.CACHE_TIMEOUT: (0, 0xFFFFFFFF),
    AttributeType.CHANNEL_NUMBER: (16, 0xFFFF),
    AttributeType.REQUESTED_TRANSPORT: (24, 0xFF),
    AttributeType.REQUESTED_ADDRESS_FAMILY: (24, 0xFF),
    AttributeType.EVEN_PORT: (7, 0x1),
}


def _pack_uint(attribute_type: int, value: int) -> bytes:
    shift, mask = _UINT_LAYOUT[attribute_type]
    if not 0 <= value <= mask:
        raise AttributeValueError(f"value out of range for 0x{attribute_type:04x}: {value}")
    if INTEGER_WIDTHS[attribute_type] == 1:
        return bytes([value << shift])
    return struct.pack("!I", value << shift)


def _pad(length: int) -> bytes:
    return b"\x00" * (-length % 4)


def _encode_address(endpoint: Endpoint) -> bytes:
    return struct.pack("!BBH", 0, endpoint.family, endpoint.port) + endpoint.address.packed


def _xor_address(value: bytes, header: bytes) -> bytes:
    # Port is XORed with the cookie's top 16 bits, the address with the cookie
    # (IPv4) or cookie + transaction ID (IPv6): one keystream covers both.
    # Bytes past the keystream are kept as they are, so the length check in
    # _decode_address still sees an overlong value.
    key = header[:2] + header
    body = value[2:]
    return value[:2] + bytes(a ^ b for a, b in zip(body, key, strict=False)) + body[len(key) :]


def _decode_address(value: bytes) -> Endpoint:
    if len(value) < 4:
        raise AttributeValueError(f"address value of {len(value)} bytes")
    family, port = value[1], struct.unpack_from("!H", value, 2)[0]
    if family == Family.IPV4:
        if len(value) != 8:
            raise AttributeValueError(f"IPv4 address value of {len(value)} bytes, want 8")
        return Endpoint(ipaddress.IPv4Address(value[4:8]), port)
    if family == Family.IPV6:
        if len(value) != 20:
            raise AttributeValueError(f"IPv6 address value of {len(value)} bytes, want 20")
        return Endpoint(ipaddress.IPv6Address(value[4:20]), port)
    raise AttributeValueError(f"unknown address family 0x{family:02x}")


def _decode_text(limit: int) -> Callable[[AttributeType, bytes, bytes], Attribute]:
    def decode(attribute_type: AttributeType, value: bytes, header: bytes) -> Attribute:
        if len(value) > limit:
            raise AttributeValueError(f"{len(value)} bytes, limit {limit}")
        try:
            return TextAttribute(attribute_type, value.decode("utf-8"))
        except UnicodeDecodeError:
            raise AttributeValueError("not UTF-8") from None

    return decode


def _decode_plain_address(attribute_type: AttributeType, value: bytes, header: bytes) -> Attribute:
    return AddressAttribute(attribute_type, _decode_address(value))


def _decode_xor_address(attribute_type: AttributeType, value: bytes, header: bytes) -> Attribute:
    return XorAddressAttribute(attribute_type, _decode_address(_xor_address(value, header)))


def _exact_length(value: bytes, length: int) -> None:
    if len(value) != length:
        raise AttributeValueError(f"value of {len(value)} bytes, want {length}")


def _decode_change_request(attribute_type: AttributeType, value: bytes, header: bytes) -> Attribute:
    _exact_length(value, 4)
    # Bits other than A and B are reserved: receivers ignore them.
    word = struct.unpack("!I", value)[0]
    return ChangeRequest(ChangeFlags(word & (ChangeFlags.CHANGE_IP | ChangeFlags.CHANGE_PORT)))


def _decode_response_port(attribute_type: AttributeType, value: bytes, header: bytes) -> Attribute:
    _exact_length(value, 4)
    return ResponsePort(struct.unpack_from("!H", value)[0])


def _decode_padding(attribute_type: AttributeType, value: bytes, header: bytes) -> Attribute:
    return Padding(value)


def _decode_error_code(attribute_type: AttributeType, value: bytes, header: bytes) -> Attribute:
    if len(value) < 4:
        raise AttributeValueError(f"value of {len(value)} bytes, want at least 4")
    error_class, number = value[2] & 0x07, value[3]
    if not 3 <= error_class <= 6 or number > 99:
        raise AttributeValueError(f"bad error code class {error_class} number {number}")
    if len(value) - 4 > MAX_TEXT:
        raise AttributeValueError("reason phrase too long")
    try:
        reason = value[4:].decode("utf-8")
    except UnicodeDecodeError:
        raise AttributeValueError("reason phrase not UTF-8") from None
    return ErrorCodeAttribute(error_class * 100 + number, reason)


def _decode_unknown_attributes(
    attribute_type: AttributeType, value: bytes, header: bytes
) -> Attribute:
    if len(value) % 2:
        raise AttributeValueError(f"odd length {len(value)}")
    return UnknownAttributes(struct.unpack(f"!{len(value) // 2}H", value))


def _decode_integer(attribute_type: AttributeType, value: bytes, header: bytes) -> Attribute:
    width = INTEGER_WIDTHS[attribute_type]
    if width == 8:
        _exact_length(value, 8)
        return IntegerAttribute(attribute_type, struct.unpack("!Q", value)[0])
    _exact_length(value, width)
    word = value[0] if width == 1 else struct.unpack("!I", value)[0]
    shift, mask = _UINT_LAYOUT[attribute_type]
    return IntegerAttribute(attribute_type, (word >> shift) & mask)


def _decode_flag(attribute_type: AttributeType, value: bytes, header: bytes) -> Attribute:
    _exact_length(value, 0)
    return FlagAttribute(attribute_type)


def _split_algorithms(value: bytes) -> tuple[PasswordAlgorithm, ...]:
    algorithms = []
    offset = 0
    while offset < len(value):
        if len(value) - offset < 4:
            raise AttributeValueError("truncated password algorithm")
        algorithm, length = struct.unpack_from("!HH", value, offset)
        end = offset + 4 + length
        if end > len(value):
            raise AttributeValueError("password algorithm parameters overrun")
        algorithms.append(PasswordAlgorithm(algorithm, value[offset + 4 : end]))
        offset = end + (-length % 4)
    return tuple(algorithms)


def _decode_password_algorithm(
    attribute_type: AttributeType, value: bytes, header: bytes
) -> Attribute:
    algorithms = _split_algorithms(value)
    if len(algorithms) != 1:
        raise AttributeValueError("PASSWORD-ALGORITHM must hold exactly one algorithm")
    return algorithms[0]


def _decode_password_algorithms(
    attribute_type: AttributeType, value: bytes, header: bytes
) -> Attribute:
    return PasswordAlgorithms(_split_algorithms(value))


def _decode_fixed_raw(length: int) -> Callable[[AttributeType, bytes, bytes], Attribute]:
    def decode(attribute_type: AttributeType, value: bytes, header: bytes) -> Attribute:
        _exact_length(value, length)
        return RawAttribute(attribute_type, value)

    return decode


def _decode_opaque(attribute_type: AttributeType, value: bytes, header: bytes) -> Attribute:
    return RawAttribute(attribute_type, value)


Decoder = Callable[[AttributeType, bytes, bytes], Attribute]

#: Every attribute type natkit understands (comprehends), with its decoder.
#: MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT are handled by the message codec.
DECODERS: dict[int, Decoder] = {
    AttributeType.MAPPED_ADDRESS: _decode_plain_address,
    AttributeType.SOURCE_ADDRESS: _decode_plain_address,
    AttributeType.CHANGED_ADDRESS: _decode_plain_address,
    AttributeType.RESPONSE_ORIGIN: _decode_plain_address,
    AttributeType.OTHER_ADDRESS: _decode_plain_address,
    AttributeType.ALTERNATE_SERVER: _decode_plain_address,
    AttributeType.XOR_MAPPED_ADDRESS: _decode_xor_address,
    AttributeType.XOR_MAPPED_ADDRESS_LEGACY: _decode_xor_address,
    AttributeType.XOR_PEER_ADDRESS: _decode_xor_address,
    AttributeType.XOR_RELAYED_ADDRESS: _decode_xor_address,
    AttributeType.CHANGE_REQUEST: _decode_change_request,
    AttributeType.RESPONSE_PORT: _decode_response_port,
    AttributeType.PADDING: _decode_padding,
    AttributeType.USERNAME: _decode_text(MAX_USERNAME),
    AttributeType.REALM: _decode_text(MAX_TEXT),
    AttributeType.NONCE: _decode_text(MAX_NONCE),
    AttributeType.SOFTWARE: _decode_text(MAX_TEXT),
    AttributeType.ALTERNATE_DOMAIN: _decode_text(MAX_TEXT),
    AttributeType.ERROR_CODE: _decode_error_code,
    AttributeType.UNKNOWN_ATTRIBUTES: _decode_unknown_attributes,
    AttributeType.PASSWORD_ALGORITHM: _decode_password_algorithm,
    AttributeType.PASSWORD_ALGORITHMS: _decode_password_algorithms,
    AttributeType.USERHASH: _decode_fixed_raw(32),
    AttributeType.RESERVATION_TOKEN: _decode_fixed_raw(8),
    AttributeType.DATA: _decode_opaque,
    AttributeType.USE_CANDIDATE: _decode_flag,
    AttributeType.DONT_FRAGMENT: _decode_flag,
    **dict.fromkeys(INTEGER_WIDTHS, _decode_integer),
}
