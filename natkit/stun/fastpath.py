"""The plain Binding request, answered without building a :class:`Message`.

Almost every request a STUN server sees is a bare Binding request: a
20-byte header, maybe SOFTWARE, maybe FINGERPRINT. For those the answer of
:class:`~natkit.stun.server.StunServer` depends only on the transaction ID,
the client's address and the receiving socket, so it can be written with a
few byte operations instead of parsing into objects and encoding them back.

Contract: :meth:`PlainBinding.answer` returns exactly the bytes the full
path (``StunServer.handle``) would send back to the client on the same
socket, or ``None`` to decline; it never decides to drop anything. Whatever
it does not recognise (other attributes, other methods and classes, bad
lengths, a wrong FINGERPRINT, malformed SOFTWARE) is declined and the full
path applies every rule: malformed input unanswered and counted, 420, 400,
CHANGE-REQUEST, RESPONSE-PORT, PADDING. The property test
``tests/unit/stun/test_stun_fastpath.py`` checks the contract on generated
requests.

The fixed parts (RESPONSE-ORIGIN, OTHER-ADDRESS, SOFTWARE, and the RFC 3489
set) are encoded once per socket with the codec's own attribute encoders.
"""

from __future__ import annotations

import ipaddress
import zlib

from natkit.endpoint import Endpoint
from natkit.stun.attributes import MAX_TEXT, AddressAttribute, Attribute, TextAttribute
from natkit.stun.codec import encode_attributes
from natkit.stun.constants import (
    FINGERPRINT_XOR,
    HEADER_LENGTH,
    MAGIC_COOKIE_BYTES,
    AttributeType,
)

#: Message type and length of an attribute-free Binding request (RFC 8489 §5).
_BINDING_REQUEST = b"\x00\x01"
_EMPTY_BINDING_REQUEST = b"\x00\x01\x00\x00"
_BINDING_SUCCESS = b"\x01\x01"
_SOFTWARE = AttributeType.SOFTWARE.to_bytes(2, "big")
_FINGERPRINT = AttributeType.FINGERPRINT.to_bytes(2, "big")
_FINGERPRINT_HEADER = _FINGERPRINT + b"\x00\x04"
#: XOR-MAPPED-ADDRESS and MAPPED-ADDRESS headers plus reserved byte and family.
_XOR_MAPPED_V4 = bytes.fromhex("0020 0008 0001")
_XOR_MAPPED_V6 = bytes.fromhex("0020 0014 0002")
_MAPPED_V4 = bytes.fromhex("0001 0008 0001")
_MAPPED_V6 = bytes.fromhex("0001 0014 0002")
#: RFC 8489 §14.2: an IPv4 port and address are XORed with the cookie's
#: top 16 bits and the cookie, which for IPv4 is a constant.
_XOR_KEY_V4 = int.from_bytes(MAGIC_COOKIE_BYTES[:2] + MAGIC_COOKIE_BYTES, "big")
_V4_PEER = 6
_V6_PEER = 18


def packed_peer(endpoint: Endpoint) -> bytes:
    """The port and address in network order (6 or 18 bytes): the form
    :meth:`PlainBinding.answer` takes, as it sits in a ``sockaddr``."""
    return endpoint.port.to_bytes(2, "big") + endpoint.address.packed


def unpack_peer(peer: bytes) -> Endpoint:
    """The inverse of :func:`packed_peer`."""
    return Endpoint(ipaddress.ip_address(peer[2:]), int.from_bytes(peer[:2], "big"))


class PlainBinding:
    """Answers plain Binding requests received on one server socket."""

    __slots__ = ("_classic_tail", "_tail")

    def __init__(self, origin: Endpoint, other: Endpoint | None, software: str | None) -> None:
        # What StunServer._respond puts after the mapped addresses when there
        # is no CHANGE-REQUEST: the response leaves from the receiving socket.
        modern: list[Attribute] = [AddressAttribute(AttributeType.RESPONSE_ORIGIN, origin)]
        classic: list[Attribute] = [AddressAttribute(AttributeType.SOURCE_ADDRESS, origin)]
        if other is not None:
            modern.append(AddressAttribute(AttributeType.OTHER_ADDRESS, other))
            classic.append(AddressAttribute(AttributeType.CHANGED_ADDRESS, other))
        if software is not None:
            # StunServer._reply: SOFTWARE for RFC 5389+ clients only.
            modern.append(TextAttribute(AttributeType.SOFTWARE, software))
        # Plain addresses and text do not depend on the header: no key needed.
        self._tail = encode_attributes(tuple(modern), b"")
        self._classic_tail = encode_attributes(tuple(classic), b"")

    def answer(self, data: bytes, peer: bytes) -> bytes | None:
        """The success response to ``data`` from ``peer`` (see
        :func:`packed_peer`), or ``None`` when the full path must decide."""
        size = len(data)
        if size == HEADER_LENGTH:
            if data[:4] != _EMPTY_BINDING_REQUEST:
                return None
            fingerprint = False
        else:
            inert = _inert_attributes(data, size) if data[:2] == _BINDING_REQUEST else None
            if inert is None:
                return None
            fingerprint = inert
        key = data[4:20]
        classic = key[:4] != MAGIC_COOKIE_BYTES
        if len(peer) == _V4_PEER:
            mapped = _MAPPED_V4 + peer
            xor_mapped = _XOR_MAPPED_V4 + (int.from_bytes(peer, "big") ^ _XOR_KEY_V4).to_bytes(
                6, "big"
            )
        elif len(peer) == _V6_PEER:
            mapped = _MAPPED_V6 + peer
            xor_key = int.from_bytes(key[:2] + key, "big")
            xor_mapped = _XOR_MAPPED_V6 + (int.from_bytes(peer, "big") ^ xor_key).to_bytes(
                18, "big"
            )
        else:
            return None
        # Attribute order as in StunServer._respond.
        body = mapped + self._classic_tail if classic else xor_mapped + mapped + self._tail
        if not fingerprint:
            return _BINDING_SUCCESS + len(body).to_bytes(2, "big") + key + body
        head = _BINDING_SUCCESS + (len(body) + 8).to_bytes(2, "big") + key + body
        crc = (zlib.crc32(head) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
        return head + _FINGERPRINT_HEADER + crc.to_bytes(4, "big")


def _inert_attributes(data: bytes, size: int) -> bool | None:
    """For a well-formed message whose attributes are only SOFTWARE (valid,
    as the codec checks it) and a correct, final FINGERPRINT, the ones that
    do not change the answer: whether it ends with FINGERPRINT. Otherwise
    ``None``."""
    # A length that is not a multiple of 4 ends the walk below short of the end.
    if size < HEADER_LENGTH or int.from_bytes(data[2:4], "big") + HEADER_LENGTH != size:
        return None
    offset = HEADER_LENGTH
    while offset < size:
        if size - offset < 4:
            return None
        attribute_type = data[offset : offset + 2]
        length = int.from_bytes(data[offset + 2 : offset + 4], "big")
        end = offset + 4 + length
        following = end + (-length % 4)
        if following > size:
            return None
        if attribute_type == _SOFTWARE:
            if length > MAX_TEXT:
                return None
            try:
                data[offset + 4 : end].decode("utf-8")
            except UnicodeDecodeError:
                return None
        elif attribute_type == _FINGERPRINT:
            if following != size or length != 4:
                return None
            crc = (zlib.crc32(data[:offset]) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
            return True if int.from_bytes(data[offset + 4 : end], "big") == crc else None
        else:
            return None
        offset = following
    return False
