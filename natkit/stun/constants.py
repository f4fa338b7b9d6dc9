"""STUN numbers: message classes, methods, attribute types, error codes."""

from __future__ import annotations

from enum import IntEnum, IntFlag

MAGIC_COOKIE = 0x2112A442
MAGIC_COOKIE_BYTES = MAGIC_COOKIE.to_bytes(4, "big")
HEADER_LENGTH = 20
TRANSACTION_ID_LENGTH = 12
#: RFC 3489 messages have no cookie: their transaction ID is 16 bytes.
CLASSIC_TRANSACTION_ID_LENGTH = 16
FINGERPRINT_XOR = 0x5354554E


class MessageClass(IntEnum):
    """The two class bits of the message type (RFC 8489 §5)."""

    REQUEST = 0b00
    INDICATION = 0b01
    SUCCESS_RESPONSE = 0b10
    ERROR_RESPONSE = 0b11


class Method(IntEnum):
    """Methods natkit knows by name; others still parse as plain ints."""

    BINDING = 0x001
    ALLOCATE = 0x003
    REFRESH = 0x004
    SEND = 0x006
    DATA = 0x007
    CREATE_PERMISSION = 0x008
    CHANNEL_BIND = 0x009


class AttributeType(IntEnum):
    """Attribute types (IANA STUN registry). Below 0x8000: comprehension-required."""

    MAPPED_ADDRESS = 0x0001
    RESPONSE_ADDRESS = 0x0002  # RFC 3489 only; natkit never honours it
    CHANGE_REQUEST = 0x0003
    SOURCE_ADDRESS = 0x0004  # RFC 3489 name of RESPONSE-ORIGIN
    CHANGED_ADDRESS = 0x0005  # RFC 3489 name of OTHER-ADDRESS
    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    CHANNEL_NUMBER = 0x000C
    LIFETIME = 0x000D
    XOR_PEER_ADDRESS = 0x0012
    DATA = 0x0013
    REALM = 0x0014
    NONCE = 0x0015
    XOR_RELAYED_ADDRESS = 0x0016
    REQUESTED_ADDRESS_FAMILY = 0x0017
    EVEN_PORT = 0x0018
    REQUESTED_TRANSPORT = 0x0019
    DONT_FRAGMENT = 0x001A
    MESSAGE_INTEGRITY_SHA256 = 0x001C
    PASSWORD_ALGORITHM = 0x001D
    USERHASH = 0x001E
    XOR_MAPPED_ADDRESS = 0x0020
    RESERVATION_TOKEN = 0x0022
    PRIORITY = 0x0024
    USE_CANDIDATE = 0x0025
    PADDING = 0x0026
    RESPONSE_PORT = 0x0027
    PASSWORD_ALGORITHMS = 0x8002
    ALTERNATE_DOMAIN = 0x8003
    #: Pre-RFC 5389 drafts put XOR-MAPPED-ADDRESS here; some servers still send it.
    XOR_MAPPED_ADDRESS_LEGACY = 0x8020
    SOFTWARE = 0x8022
    ALTERNATE_SERVER = 0x8023
    CACHE_TIMEOUT = 0x8027
    FINGERPRINT = 0x8028
    ICE_CONTROLLED = 0x8029
    ICE_CONTROLLING = 0x802A
    RESPONSE_ORIGIN = 0x802B
    OTHER_ADDRESS = 0x802C


def is_comprehension_required(attribute_type: int) -> bool:
    """RFC 8489 §14: types 0x0000-0x7FFF must be understood or the request fails."""
    return attribute_type < 0x8000


def attribute_name(attribute_type: int) -> str:
    """Registry name for logs and errors (``0x1234`` when unknown)."""
    try:
        return AttributeType(attribute_type).name.replace("_", "-")
    except ValueError:
        return f"0x{attribute_type:04x}"


class ErrorCode(IntEnum):
    """ERROR-CODE values natkit sends or reacts to (RFC 8489 §14.8, RFC 8656)."""

    TRY_ALTERNATE = 300
    BAD_REQUEST = 400
    UNAUTHENTICATED = 401
    FORBIDDEN = 403
    UNKNOWN_ATTRIBUTE = 420
    ALLOCATION_MISMATCH = 437
    STALE_NONCE = 438
    ADDRESS_FAMILY_NOT_SUPPORTED = 440
    WRONG_CREDENTIALS = 441
    UNSUPPORTED_TRANSPORT_PROTOCOL = 442
    PEER_ADDRESS_FAMILY_MISMATCH = 443
    ALLOCATION_QUOTA_REACHED = 486
    #: RFC 8445 §7.3.1.1: both agents claim the same ICE role.
    ROLE_CONFLICT = 487
    SERVER_ERROR = 500
    INSUFFICIENT_CAPACITY = 508


#: Reason phrases natkit puts in its own error responses.
ERROR_REASONS: dict[int, str] = {
    ErrorCode.TRY_ALTERNATE: "Try Alternate",
    ErrorCode.BAD_REQUEST: "Bad Request",
    ErrorCode.UNAUTHENTICATED: "Unauthenticated",
    ErrorCode.FORBIDDEN: "Forbidden",
    ErrorCode.UNKNOWN_ATTRIBUTE: "Unknown Attribute",
    ErrorCode.STALE_NONCE: "Stale Nonce",
    ErrorCode.ROLE_CONFLICT: "Role Conflict",
    ErrorCode.SERVER_ERROR: "Server Error",
}


class ChangeFlags(IntFlag):
    """CHANGE-REQUEST flags (RFC 5780 §7.2): bit A changes the IP, bit B the port."""

    NONE = 0
    CHANGE_PORT = 0x02
    CHANGE_IP = 0x04


class PasswordAlgorithmId(IntEnum):
    """PASSWORD-ALGORITHM numbers (RFC 8489 §18.5)."""

    MD5 = 0x0001
    SHA256 = 0x0002
