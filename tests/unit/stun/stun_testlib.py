"""Shared by the STUN codec tests: RFC vectors, wire builders, hypothesis strategies.

The builders write bytes by hand from the RFC's layout (type, length, value,
padding), independently of natkit's encoder, so tests can feed the parser
messages the encoder would never produce.
"""

from __future__ import annotations

import ipaddress
import struct
import zlib
from pathlib import Path

from hypothesis import strategies as st

from natkit.endpoint import Endpoint
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
from natkit.stun.codec import Message
from natkit.stun.constants import (
    MAGIC_COOKIE_BYTES,
    AttributeType,
    ChangeFlags,
    MessageClass,
)

DATA = Path(__file__).parent / "data"

#: RFC 5769 §2.1-2.3 share this transaction ID and short-term password.
RFC5769_TRANSACTION_ID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
RFC5769_PASSWORD = "VOkJxbRl1RmTxUk/WvJxBt"
#: RFC 5769 §2.4 and RFC 8489 §B.1: long-term credentials, after SASLprep.
LONG_TERM_TRANSACTION_ID = bytes.fromhex("78ad3433c6ad72c029da412e")
LONG_TERM_USERNAME = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"  # "マトリックス"
LONG_TERM_PASSWORD = "TheMatrIX"
LONG_TERM_REALM = "example.org"

TXID = bytes.fromhex("0102030405060708090a0b0c")
CLASSIC_TXID = bytes.fromhex("a1a2a3a4a5a6a7a8a9aaabacadaeafb0")


def vector(name: str) -> bytes:
    """A byte fixture from ``data/`` (``name`` without ``.bin``)."""
    return (DATA / f"{name}.bin").read_bytes()


# --- wire builders -------------------------------------------------------------


def tlv(attribute_type: int, value: bytes, *, length: int | None = None, pad: bytes = b"") -> bytes:
    """One attribute: type, length (default: the value's), value, then padding
    (default: zero bytes up to the 4-byte boundary)."""
    if not pad:
        pad = b"\x00" * (-len(value) % 4)
    return (
        struct.pack("!HH", attribute_type, len(value) if length is None else length) + value + pad
    )


def wire(
    message_type: int,
    *attributes: bytes,
    transaction_id: bytes = TXID,
    cookie: bytes = MAGIC_COOKIE_BYTES,
    length: int | None = None,
) -> bytes:
    """A message header (length: default the body's) followed by ``attributes``.

    A 16-byte ``transaction_id`` makes an RFC 3489 header (pass ``cookie=b""``).
    """
    body = b"".join(attributes)
    size = len(body) if length is None else length
    return struct.pack("!HH", message_type, size) + cookie + transaction_id + body


def set_length(data: bytes, length: int) -> bytes:
    """``data`` with the header's length field replaced."""
    return data[:2] + struct.pack("!H", length) + data[4:]


def append(data: bytes, *attributes: bytes) -> bytes:
    """``data`` with attributes appended and the length field updated to match."""
    grown = data + b"".join(attributes)
    return set_length(grown, len(grown) - 20)


def with_fingerprint(data: bytes) -> bytes:
    """``data`` plus a FINGERPRINT computed as RFC 8489 §14.7 says: CRC-32 of
    the message so far (length field already counting the FINGERPRINT) XOR
    0x5354554e."""
    prefix = set_length(data, len(data) - 20 + 8)
    crc = (zlib.crc32(prefix) ^ 0x5354554E) & 0xFFFFFFFF
    return prefix + struct.pack("!HHI", AttributeType.FINGERPRINT, 4, crc)


# --- hypothesis strategies -------------------------------------------------------

ports = st.integers(0, 0xFFFF)
ipv4_endpoints = st.builds(Endpoint, st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address), ports)
ipv6_endpoints = st.builds(Endpoint, st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address), ports)
endpoints = ipv4_endpoints | ipv6_endpoints

PLAIN_ADDRESS_TYPES = (
    AttributeType.MAPPED_ADDRESS,
    AttributeType.SOURCE_ADDRESS,
    AttributeType.CHANGED_ADDRESS,
    AttributeType.RESPONSE_ORIGIN,
    AttributeType.OTHER_ADDRESS,
    AttributeType.ALTERNATE_SERVER,
)
XOR_ADDRESS_TYPES = (
    AttributeType.XOR_MAPPED_ADDRESS,
    AttributeType.XOR_MAPPED_ADDRESS_LEGACY,
    AttributeType.XOR_PEER_ADDRESS,
    AttributeType.XOR_RELAYED_ADDRESS,
)
TEXT_TYPES = (
    AttributeType.USERNAME,
    AttributeType.REALM,
    AttributeType.NONCE,
    AttributeType.SOFTWARE,
    AttributeType.ALTERNATE_DOMAIN,
)
#: Largest value of each integer attribute, from its layout in the RFCs.
INTEGER_MAXIMA = {
    AttributeType.PRIORITY: 2**32 - 1,  # RFC 8445 §16.1
    AttributeType.LIFETIME: 2**32 - 1,  # RFC 8656 §18.2
    AttributeType.CACHE_TIMEOUT: 2**32 - 1,  # RFC 5780 §7.7
    AttributeType.ICE_CONTROLLED: 2**64 - 1,  # RFC 8445 §16.1
    AttributeType.ICE_CONTROLLING: 2**64 - 1,
    AttributeType.CHANNEL_NUMBER: 0xFFFF,  # RFC 8656 §18.1: 16 bits + RFFU
    AttributeType.REQUESTED_TRANSPORT: 0xFF,  # RFC 8656 §18.7: 8 bits + RFFU
    AttributeType.REQUESTED_ADDRESS_FAMILY: 0xFF,  # RFC 8656 §18.8
    AttributeType.EVEN_PORT: 1,  # RFC 8656 §18.4: the R bit
}
FLAG_TYPES = (AttributeType.USE_CANDIDATE, AttributeType.DONT_FRAGMENT)
#: Handled by the message codec, never in ``Message.attributes``.
INTEGRITY_TYPES = frozenset(
    {
        AttributeType.MESSAGE_INTEGRITY,
        AttributeType.MESSAGE_INTEGRITY_SHA256,
        AttributeType.FINGERPRINT,
    }
)

# Short texts keep examples fast; the length limits have their own unit tests.
texts = st.text(max_size=24)
password_algorithms = st.builds(PasswordAlgorithm, st.integers(0, 0xFFFF), st.binary(max_size=9))

#: One strategy per attribute type natkit decodes (checked against DECODERS).
ATTRIBUTE_STRATEGIES: dict[int, st.SearchStrategy[Attribute]] = {
    **{t: st.builds(AddressAttribute, st.just(t), endpoints) for t in PLAIN_ADDRESS_TYPES},
    **{t: st.builds(XorAddressAttribute, st.just(t), endpoints) for t in XOR_ADDRESS_TYPES},
    **{t: st.builds(TextAttribute, st.just(t), texts) for t in TEXT_TYPES},
    **{
        t: st.builds(IntegerAttribute, st.just(t), st.integers(0, top))
        for t, top in INTEGER_MAXIMA.items()
    },
    **{t: st.just(FlagAttribute(t)) for t in FLAG_TYPES},
    AttributeType.CHANGE_REQUEST: st.builds(
        ChangeRequest,
        st.sampled_from(
            [
                ChangeFlags.NONE,
                ChangeFlags.CHANGE_IP,
                ChangeFlags.CHANGE_PORT,
                ChangeFlags.CHANGE_IP | ChangeFlags.CHANGE_PORT,
            ]
        ),
    ),
    AttributeType.RESPONSE_PORT: st.builds(ResponsePort, ports),
    AttributeType.PADDING: st.builds(Padding, st.binary(max_size=33)),
    AttributeType.ERROR_CODE: st.builds(ErrorCodeAttribute, st.integers(300, 699), texts),
    AttributeType.UNKNOWN_ATTRIBUTES: st.builds(
        UnknownAttributes, st.lists(st.integers(0, 0xFFFF), max_size=5).map(tuple)
    ),
    AttributeType.PASSWORD_ALGORITHM: password_algorithms,
    AttributeType.PASSWORD_ALGORITHMS: st.builds(
        PasswordAlgorithms, st.lists(password_algorithms, max_size=3).map(tuple)
    ),
    AttributeType.USERHASH: st.builds(
        RawAttribute, st.just(AttributeType.USERHASH), st.binary(min_size=32, max_size=32)
    ),
    AttributeType.RESERVATION_TOKEN: st.builds(
        RawAttribute, st.just(AttributeType.RESERVATION_TOKEN), st.binary(min_size=8, max_size=8)
    ),
    AttributeType.DATA: st.builds(
        RawAttribute, st.just(AttributeType.DATA), st.binary(max_size=40)
    ),
}

#: Attribute types natkit keeps as opaque RawAttribute (not decoded, not integrity).
undecoded_types = st.integers(0, 0xFFFF).filter(
    lambda t: t not in DECODERS and t not in INTEGRITY_TYPES
)
raw_attributes = st.builds(RawAttribute, undecoded_types, st.binary(max_size=24))
attributes = st.one_of(*ATTRIBUTE_STRATEGIES.values(), raw_attributes)

methods = st.integers(0, 0xFFF)
message_classes = st.sampled_from(MessageClass)
transaction_ids = st.binary(min_size=12, max_size=12)
#: RFC 3489 IDs; one starting with the cookie would read as RFC 5389 (§6 there).
classic_transaction_ids = st.binary(min_size=16, max_size=16).filter(
    lambda t: t[:4] != MAGIC_COOKIE_BYTES
)


def messages(
    transaction_id: st.SearchStrategy[bytes] = transaction_ids,
) -> st.SearchStrategy[Message]:
    return st.builds(
        Message,
        methods,
        message_classes,
        transaction_id,
        st.lists(attributes, max_size=6).map(tuple),
    )
