"""A strict, sans-IO STUN implementation (RFC 8489, RFC 5780, RFC 3489 compat).

``codec`` turns bytes into typed :class:`Message` objects and back;
``integrity`` derives keys and checks MESSAGE-INTEGRITY(-SHA256);
``transaction`` retransmits requests by RFC 8489 rules, driven by ``now``;
``server`` answers Binding requests, RFC 5780 style.
"""

from natkit.stun.attributes import (
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
    is_stun,
    parse_message,
)
from natkit.stun.constants import (
    MAGIC_COOKIE,
    AttributeType,
    ChangeFlags,
    ErrorCode,
    MessageClass,
    Method,
)

__all__ = [
    "MAGIC_COOKIE",
    "AddressAttribute",
    "Attribute",
    "AttributeType",
    "ChangeFlags",
    "ChangeRequest",
    "DecodeFailure",
    "ErrorCode",
    "ErrorCodeAttribute",
    "FlagAttribute",
    "IntegerAttribute",
    "Message",
    "MessageClass",
    "Method",
    "Padding",
    "PasswordAlgorithm",
    "PasswordAlgorithms",
    "RawAttribute",
    "ResponsePort",
    "StunDecodeError",
    "TextAttribute",
    "UnknownAttributes",
    "XorAddressAttribute",
    "encode_message",
    "is_stun",
    "parse_message",
]
