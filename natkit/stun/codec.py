"""STUN messages: strict parsing and encoding (RFC 8489 §5, §14; RFC 3489).

Parsing checks, in order: the 20-byte header, the two zero bits, a length
that is a multiple of 4 and matches the datagram, the magic cookie (or, when
the caller allows it, an RFC 3489 header), each attribute's bounds and value,
and FINGERPRINT. Attributes after MESSAGE-INTEGRITY are ignored except
MESSAGE-INTEGRITY-SHA256 and FINGERPRINT (RFC 8489 §14.5); anything after
FINGERPRINT is an error. Every failure raises :class:`StunDecodeError` with
a :class:`DecodeFailure` reason.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from enum import Enum

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError, MalformedInput
from natkit.stun.attributes import (
    DECODERS,
    AddressAttribute,
    Attribute,
    AttributeValueError,
    ChangeRequest,
    ErrorCodeAttribute,
    Padding,
    RawAttribute,
    ResponsePort,
    TextAttribute,
    UnknownAttributes,
    XorAddressAttribute,
)
from natkit.stun.constants import (
    CLASSIC_TRANSACTION_ID_LENGTH,
    ERROR_REASONS,
    FINGERPRINT_XOR,
    HEADER_LENGTH,
    MAGIC_COOKIE_BYTES,
    TRANSACTION_ID_LENGTH,
    AttributeType,
    ChangeFlags,
    MessageClass,
    Method,
    attribute_name,
    is_comprehension_required,
)
from natkit.stun.integrity import hmac_sha1, hmac_sha256

_SHA1_LENGTH = 20


class DecodeFailure(Enum):
    """Why bytes were not accepted as a STUN message."""

    TRUNCATED = "shorter than a STUN header"
    NOT_STUN = "first two bits are not zero"
    BAD_LENGTH = "length field does not match the datagram"
    MISALIGNED = "length is not a multiple of 4"
    WRONG_COOKIE = "magic cookie missing"
    ATTRIBUTE_OVERRUN = "attribute runs past the end of the message"
    BAD_ATTRIBUTE = "attribute value is malformed"
    FINGERPRINT_MISMATCH = "FINGERPRINT does not match"
    AFTER_FINGERPRINT = "attribute after FINGERPRINT"


class StunDecodeError(MalformedInput[DecodeFailure]):
    """Bytes that are not a valid STUN message."""


@dataclass(frozen=True, slots=True)
class IntegrityInfo:
    """Where the integrity attributes sat in a parsed message, for verification."""

    raw: bytes
    sha1_offset: int | None = None
    sha1_digest: bytes = b""
    sha256_offset: int | None = None
    sha256_digest: bytes = b""
    fingerprint: bool = False
    #: Types that followed MESSAGE-INTEGRITY and were ignored (RFC 8489 §14.5).
    ignored: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Message:
    """One STUN message. ``transaction_id`` is 12 bytes (RFC 5389/8489) or
    16 bytes for an RFC 3489 message, whose header has no magic cookie.

    MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are not in
    ``attributes``: :func:`encode_message` computes them, and a parsed
    message keeps them in ``integrity`` (see :mod:`natkit.stun.integrity`).
    """

    method: int
    message_class: MessageClass
    transaction_id: bytes
    attributes: tuple[Attribute, ...] = ()
    integrity: IntegrityInfo | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.transaction_id) not in (TRANSACTION_ID_LENGTH, CLASSIC_TRANSACTION_ID_LENGTH):
            raise LocalProtocolError(f"transaction ID of {len(self.transaction_id)} bytes")
        if not 0 <= self.method <= 0xFFF:
            raise LocalProtocolError(f"method out of range: {self.method}")

    # -- identity -------------------------------------------------------------

    @property
    def is_classic(self) -> bool:
        """True for an RFC 3489 message (no magic cookie)."""
        return len(self.transaction_id) == CLASSIC_TRANSACTION_ID_LENGTH

    @property
    def header_key(self) -> bytes:
        """Bytes 4..20 of the header: the XOR key of XOR-*-ADDRESS attributes."""
        if self.is_classic:
            return self.transaction_id
        return MAGIC_COOKIE_BYTES + self.transaction_id

    @property
    def has_fingerprint(self) -> bool:
        return self.integrity is not None and self.integrity.fingerprint

    @property
    def has_message_integrity(self) -> bool:
        return self.integrity is not None and (
            self.integrity.sha1_offset is not None or self.integrity.sha256_offset is not None
        )

    # -- typed accessors (first occurrence wins, RFC 8489 §14) ---------------

    def find(self, attribute_type: int) -> Attribute | None:
        """The first attribute of ``attribute_type``, or ``None``."""
        for attribute in self.attributes:
            if attribute.type == attribute_type:
                return attribute
        return None

    def _endpoint(self, *types: AttributeType) -> Endpoint | None:
        for attribute_type in types:
            attribute = self.find(attribute_type)
            if isinstance(attribute, AddressAttribute | XorAddressAttribute):
                return attribute.endpoint
        return None

    @property
    def xor_mapped_address(self) -> Endpoint | None:
        """XOR-MAPPED-ADDRESS, accepting the pre-standard 0x8020 code."""
        return self._endpoint(
            AttributeType.XOR_MAPPED_ADDRESS, AttributeType.XOR_MAPPED_ADDRESS_LEGACY
        )

    @property
    def mapped_address(self) -> Endpoint | None:
        return self._endpoint(AttributeType.MAPPED_ADDRESS)

    @property
    def reflexive_address(self) -> Endpoint | None:
        """What the server saw: XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS (RFC 3489)."""
        return self.xor_mapped_address or self.mapped_address

    @property
    def other_address(self) -> Endpoint | None:
        """OTHER-ADDRESS, or its RFC 3489 name CHANGED-ADDRESS."""
        return self._endpoint(AttributeType.OTHER_ADDRESS, AttributeType.CHANGED_ADDRESS)

    @property
    def response_origin(self) -> Endpoint | None:
        """RESPONSE-ORIGIN, or its RFC 3489 name SOURCE-ADDRESS."""
        return self._endpoint(AttributeType.RESPONSE_ORIGIN, AttributeType.SOURCE_ADDRESS)

    @property
    def change_request(self) -> ChangeFlags | None:
        attribute = self.find(AttributeType.CHANGE_REQUEST)
        return attribute.flags if isinstance(attribute, ChangeRequest) else None

    @property
    def response_port(self) -> int | None:
        attribute = self.find(AttributeType.RESPONSE_PORT)
        return attribute.port if isinstance(attribute, ResponsePort) else None

    @property
    def padding(self) -> Padding | None:
        attribute = self.find(AttributeType.PADDING)
        return attribute if isinstance(attribute, Padding) else None

    @property
    def error_code(self) -> ErrorCodeAttribute | None:
        attribute = self.find(AttributeType.ERROR_CODE)
        return attribute if isinstance(attribute, ErrorCodeAttribute) else None

    @property
    def unknown_attributes(self) -> tuple[int, ...]:
        attribute = self.find(AttributeType.UNKNOWN_ATTRIBUTES)
        return attribute.types if isinstance(attribute, UnknownAttributes) else ()

    def text(self, attribute_type: AttributeType) -> str | None:
        """SOFTWARE, USERNAME, REALM, NONCE...: the text, or ``None``."""
        attribute = self.find(attribute_type)
        return attribute.text if isinstance(attribute, TextAttribute) else None

    def unknown_comprehension_required(
        self, understood: frozenset[int] | None = None
    ) -> tuple[int, ...]:
        """Comprehension-required types this agent does not understand.

        By default "understood" means natkit's codec decodes the type; a
        server narrows it to what it implements.
        """
        known = understood if understood is not None else frozenset(DECODERS)
        unknown = (a.type for a in self.attributes if is_comprehension_required(a.type))
        return tuple(dict.fromkeys(t for t in unknown if t not in known))

    def with_attributes(self, *attributes: Attribute) -> Message:
        """A copy with ``attributes`` appended."""
        return Message(
            self.method, self.message_class, self.transaction_id, self.attributes + attributes
        )

    def success(self, *attributes: Attribute) -> Message:
        """The success response to this request (RFC 8489 §6.3.1: same method
        and transaction ID)."""
        return Message(self.method, MessageClass.SUCCESS_RESPONSE, self.transaction_id, attributes)

    def error(self, code: int, *attributes: Attribute, reason: str = "") -> Message:
        """The error response ``code`` to this request (RFC 8489 §6.3.4),
        ERROR-CODE first; ``reason`` defaults to the code's registered phrase."""
        phrase = reason or ERROR_REASONS.get(code, f"error {code}")
        return Message(
            self.method,
            MessageClass.ERROR_RESPONSE,
            self.transaction_id,
            (ErrorCodeAttribute(code, phrase), *attributes),
        )


# --- the header --------------------------------------------------------------


def _encode_type(method: int, message_class: MessageClass) -> int:
    # Method bits M0-M11 are split around the class bits C0 (bit 4), C1 (bit 8).
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((message_class & 0b01) << 4)
        | ((message_class & 0b10) << 7)
    )


def _decode_type(message_type: int) -> tuple[int, MessageClass]:
    method = (
        (message_type & 0x000F) | ((message_type & 0x00E0) >> 1) | ((message_type & 0x3E00) >> 2)
    )
    message_class = MessageClass(((message_type >> 4) & 0b01) | ((message_type >> 7) & 0b10))
    return method, message_class


def is_stun(data: bytes) -> bool:
    """Cheap demultiplexing test: does ``data`` look like an RFC 5389+ STUN message?

    Checks the header only (two zero bits, cookie, aligned length matching
    the datagram); :func:`parse_message` does the full validation.
    """
    return (
        len(data) >= HEADER_LENGTH
        and data[0] & 0xC0 == 0
        and data[4:8] == MAGIC_COOKIE_BYTES
        and data[3] & 0x03 == 0
        and int.from_bytes(data[2:4], "big") + HEADER_LENGTH == len(data)
    )


def message_length(header: bytes) -> int | None:
    """For stream transports (RFC 8489 §6.2.2): the full size of the message
    whose header starts ``header``, or ``None`` if fewer than 4 bytes are in."""
    if len(header) < 4:
        return None
    return HEADER_LENGTH + int.from_bytes(header[2:4], "big")


# --- parsing -------------------------------------------------------------------


def parse_message(data: bytes, *, allow_classic: bool = False) -> Message:
    """Parse and validate one STUN message.

    ``allow_classic`` accepts RFC 3489 messages (no magic cookie): their
    16-byte transaction ID includes the four bytes where the cookie would be.
    """
    if len(data) < HEADER_LENGTH:
        raise StunDecodeError(DecodeFailure.TRUNCATED, f"{len(data)} bytes")
    message_type, length = struct.unpack_from("!HH", data)
    if message_type & 0xC000:
        raise StunDecodeError(DecodeFailure.NOT_STUN)
    if length % 4:
        raise StunDecodeError(DecodeFailure.MISALIGNED, f"length {length}")
    if length + HEADER_LENGTH != len(data):
        raise StunDecodeError(
            DecodeFailure.BAD_LENGTH, f"header says {length}, body has {len(data) - HEADER_LENGTH}"
        )
    if data[4:8] == MAGIC_COOKIE_BYTES:
        transaction_id = bytes(data[8:20])
    elif allow_classic:
        transaction_id = bytes(data[4:20])
    else:
        raise StunDecodeError(DecodeFailure.WRONG_COOKIE, data[4:8].hex())
    method, message_class = _decode_type(message_type)
    header_key = bytes(data[4:20])

    attributes: list[Attribute] = []
    ignored: list[int] = []
    sha1_offset: int | None = None
    sha1_digest = b""
    sha256_offset: int | None = None
    sha256_digest = b""
    fingerprint = False
    offset = HEADER_LENGTH
    while offset < len(data):
        if len(data) - offset < 4:
            raise StunDecodeError(DecodeFailure.ATTRIBUTE_OVERRUN, f"header at offset {offset}")
        attribute_type, value_length = struct.unpack_from("!HH", data, offset)
        value_start = offset + 4
        value_end = value_start + value_length
        next_offset = value_end + (-value_length % 4)
        if next_offset > len(data):
            raise StunDecodeError(
                DecodeFailure.ATTRIBUTE_OVERRUN,
                f"{attribute_name(attribute_type)} of {value_length} bytes at offset {offset}",
            )
        value = bytes(data[value_start:value_end])

        if attribute_type == AttributeType.FINGERPRINT:
            # Position first: the CRC of a FINGERPRINT that is not last is
            # meaningless, and "not last" is the error worth reporting.
            if next_offset != len(data):
                raise StunDecodeError(DecodeFailure.AFTER_FINGERPRINT, f"at offset {next_offset}")
            _check_fingerprint(data, offset, value)
            fingerprint = True
        elif attribute_type == AttributeType.MESSAGE_INTEGRITY_SHA256 and sha256_offset is None:
            if not 16 <= len(value) <= 32 or len(value) % 4:
                raise StunDecodeError(
                    DecodeFailure.BAD_ATTRIBUTE, f"MESSAGE-INTEGRITY-SHA256 of {len(value)} bytes"
                )
            sha256_offset, sha256_digest = offset, value
        elif sha256_offset is not None:
            ignored.append(attribute_type)  # only FINGERPRINT may follow
        elif attribute_type == AttributeType.MESSAGE_INTEGRITY and sha1_offset is None:
            if len(value) != _SHA1_LENGTH:
                raise StunDecodeError(
                    DecodeFailure.BAD_ATTRIBUTE, f"MESSAGE-INTEGRITY of {len(value)} bytes"
                )
            sha1_offset, sha1_digest = offset, value
        elif sha1_offset is not None:
            ignored.append(attribute_type)
        else:
            attributes.append(_decode_attribute(attribute_type, value, header_key, offset))
        offset = next_offset

    integrity = IntegrityInfo(
        raw=bytes(data),
        sha1_offset=sha1_offset,
        sha1_digest=sha1_digest,
        sha256_offset=sha256_offset,
        sha256_digest=sha256_digest,
        fingerprint=fingerprint,
        ignored=tuple(ignored),
    )
    return Message(method, message_class, transaction_id, tuple(attributes), integrity)


def _decode_attribute(
    attribute_type: int, value: bytes, header_key: bytes, offset: int
) -> Attribute:
    decoder = DECODERS.get(attribute_type)
    if decoder is None:
        return RawAttribute(attribute_type, value)
    try:
        return decoder(AttributeType(attribute_type), value, header_key)
    except AttributeValueError as exc:
        raise StunDecodeError(
            DecodeFailure.BAD_ATTRIBUTE,
            f"{attribute_name(attribute_type)} at offset {offset}: {exc}",
        ) from None


def _check_fingerprint(data: bytes, offset: int, value: bytes) -> None:
    if len(value) != 4:
        raise StunDecodeError(DecodeFailure.BAD_ATTRIBUTE, f"FINGERPRINT of {len(value)} bytes")
    # FINGERPRINT covers the message up to itself, with the header length
    # counting it (which it already does: the caller checked it is last).
    expected = _crc(data[:offset])
    if int.from_bytes(value, "big") != expected:
        raise StunDecodeError(DecodeFailure.FINGERPRINT_MISMATCH)


def _crc(prefix: bytes) -> int:
    return (zlib.crc32(prefix) ^ FINGERPRINT_XOR) & 0xFFFFFFFF


# --- encoding ------------------------------------------------------------------


def encode_attributes(attributes: tuple[Attribute, ...], header_key: bytes) -> bytes:
    """The attribute section: type, length, value, zero padding to 4 bytes."""
    parts = []
    for attribute in attributes:
        try:
            value = attribute.encode_value(header_key)
        except (AttributeValueError, struct.error) as exc:
            # A value that does not fit its field is the caller's mistake.
            raise LocalProtocolError(f"{attribute_name(attribute.type)}: {exc}") from exc
        if len(value) > 0xFFFF:
            raise LocalProtocolError(f"{attribute_name(attribute.type)} too long")
        parts.append(
            struct.pack("!HH", attribute.type, len(value)) + value + b"\x00" * (-len(value) % 4)
        )
    return b"".join(parts)


def encode_message(
    message: Message,
    *,
    integrity_key: bytes | None = None,
    integrity_sha256_key: bytes | None = None,
    fingerprint: bool = False,
) -> bytes:
    """Serialise ``message``, appending MESSAGE-INTEGRITY (HMAC-SHA1 with
    ``integrity_key``), MESSAGE-INTEGRITY-SHA256 and FINGERPRINT on request,
    in the order RFC 8489 §14.5-14.7 fixes."""
    header_key = message.header_key
    body = bytearray(encode_attributes(message.attributes, header_key))
    message_type = _encode_type(message.method, message.message_class)

    def header(extra: int) -> bytes:
        length = len(body) + extra
        if length > 0xFFFF:
            raise LocalProtocolError(f"message of {length} bytes is too long")
        return struct.pack("!HH", message_type, length) + header_key

    if integrity_key is not None:
        digest = hmac_sha1(integrity_key, header(4 + _SHA1_LENGTH) + bytes(body))
        body += struct.pack("!HH", AttributeType.MESSAGE_INTEGRITY, _SHA1_LENGTH) + digest
    if integrity_sha256_key is not None:
        digest = hmac_sha256(integrity_sha256_key, header(4 + 32) + bytes(body))
        body += struct.pack("!HH", AttributeType.MESSAGE_INTEGRITY_SHA256, 32) + digest
    if fingerprint:
        crc = _crc(header(8) + bytes(body))
        body += struct.pack("!HHI", AttributeType.FINGERPRINT, 4, crc)
    return header(0) + bytes(body)


def binding_request(transaction_id: bytes, *attributes: Attribute) -> Message:
    """A Binding request with the given transaction ID and attributes."""
    return Message(Method.BINDING, MessageClass.REQUEST, transaction_id, attributes)
