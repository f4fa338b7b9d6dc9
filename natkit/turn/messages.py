"""TURN requests and indications on natkit's STUN codec (RFC 8656 §7-§11).

Pure builders and readers; the client state machine (:mod:`natkit.turn.client`)
adds authentication (USERNAME, REALM, NONCE, MESSAGE-INTEGRITY) when it sends.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from natkit.endpoint import Endpoint, Family, IPAddress
from natkit.errors import RemoteProtocolError
from natkit.stun.attributes import (
    Attribute,
    IntegerAttribute,
    RawAttribute,
    TextAttribute,
    XorAddressAttribute,
)
from natkit.stun.codec import Message, encode_message
from natkit.stun.constants import AttributeType, MessageClass, Method

#: REQUESTED-TRANSPORT's protocol number for UDP relaying (RFC 8656 §14.7).
UDP_PROTOCOL = 17


class TurnProtocolError(RemoteProtocolError):
    """A TURN message that parses as STUN but misses what RFC 8656 requires."""


@dataclass(frozen=True, slots=True)
class AllocateResult:
    """What a successful Allocate response grants (RFC 8656 §7.3)."""

    relayed: Endpoint
    mapped: Endpoint | None
    lifetime: int


def allocate_attributes(
    lifetime: int, family: Family | None = None, software: str | None = None
) -> tuple[Attribute, ...]:
    """REQUESTED-TRANSPORT (UDP), LIFETIME and, if given, REQUESTED-ADDRESS-FAMILY."""
    attributes: list[Attribute] = [
        IntegerAttribute(AttributeType.REQUESTED_TRANSPORT, UDP_PROTOCOL),
        IntegerAttribute(AttributeType.LIFETIME, lifetime),
    ]
    if family is not None:
        attributes.append(IntegerAttribute(AttributeType.REQUESTED_ADDRESS_FAMILY, family))
    if software:
        attributes.append(TextAttribute(AttributeType.SOFTWARE, software))
    return tuple(attributes)


def refresh_attributes(lifetime: int) -> tuple[Attribute, ...]:
    """A Refresh's LIFETIME (0 deletes the allocation, RFC 8656 §8)."""
    return (IntegerAttribute(AttributeType.LIFETIME, lifetime),)


def permission_attributes(peer: IPAddress) -> tuple[Attribute, ...]:
    """CreatePermission for one address: the port is ignored (RFC 8656 §9)."""
    return (XorAddressAttribute(AttributeType.XOR_PEER_ADDRESS, Endpoint(peer, 0)),)


def channel_bind_attributes(channel: int, peer: Endpoint) -> tuple[Attribute, ...]:
    return (
        IntegerAttribute(AttributeType.CHANNEL_NUMBER, channel),
        XorAddressAttribute(AttributeType.XOR_PEER_ADDRESS, peer),
    )


def send_indication(transaction_id: bytes, peer: Endpoint, data: bytes) -> bytes:
    """An encoded Send indication carrying ``data`` to ``peer`` (RFC 8656 §11.1)."""
    return _indication(Method.SEND, transaction_id, peer, data)


def data_indication(transaction_id: bytes, peer: Endpoint, data: bytes) -> bytes:
    """An encoded Data indication (what a server sends; for tests and fakes)."""
    return _indication(Method.DATA, transaction_id, peer, data)


def _indication(method: Method, transaction_id: bytes, peer: Endpoint, data: bytes) -> bytes:
    attributes = (
        XorAddressAttribute(AttributeType.XOR_PEER_ADDRESS, peer),
        RawAttribute(AttributeType.DATA, data),
    )
    return encode_message(Message(method, MessageClass.INDICATION, transaction_id, attributes))


def read_data_indication(message: Message) -> tuple[Endpoint, bytes]:
    """The peer and data of a Data indication (RFC 8656 §11.4)."""
    peer = message.find(AttributeType.XOR_PEER_ADDRESS)
    data = message.find(AttributeType.DATA)
    if not isinstance(peer, XorAddressAttribute):
        raise TurnProtocolError("Data indication without XOR-PEER-ADDRESS")
    if not isinstance(data, RawAttribute):
        raise TurnProtocolError("Data indication without DATA")
    return peer.endpoint, data.value


def read_lifetime(message: Message) -> int | None:
    attribute = message.find(AttributeType.LIFETIME)
    return attribute.value if isinstance(attribute, IntegerAttribute) else None


def read_allocate_success(message: Message) -> AllocateResult:
    """The relayed address, mapped address and lifetime of an Allocate success."""
    relayed = message.find(AttributeType.XOR_RELAYED_ADDRESS)
    if not isinstance(relayed, XorAddressAttribute):
        raise TurnProtocolError("Allocate success without XOR-RELAYED-ADDRESS")
    lifetime = read_lifetime(message)
    if lifetime is None or lifetime < 1:
        raise TurnProtocolError(f"Allocate success with LIFETIME {lifetime}")
    if relayed.endpoint.port == 0 or relayed.endpoint.address.is_unspecified:
        raise TurnProtocolError(f"Allocate success relaying at {relayed.endpoint}")
    return AllocateResult(relayed.endpoint, message.xor_mapped_address, lifetime)


def peer_address(peer: IPAddress | Endpoint | str) -> IPAddress:
    """An address for a permission from an address, an endpoint or text."""
    if isinstance(peer, Endpoint):
        return peer.address
    if isinstance(peer, str):
        return ipaddress.ip_address(peer)
    return peer
