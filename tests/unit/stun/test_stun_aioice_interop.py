"""Interop with ``aioice.stun`` (0.13), the oracle for the attributes both
codecs support: encode with one, parse with the other, compare.

aioice keys attributes by name (duplicates collapse) and stores plain values;
the tables below say how each natkit attribute looks there. aioice's own
gaps (STYLE.md) stay out: it knows no RESPONSE-PORT, PADDING, UNKNOWN-
ATTRIBUTES, MESSAGE-INTEGRITY-SHA256 or 0x8020, and only the methods in its
``Method`` enum.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest
from aioice import stun as aioice_stun
from hypothesis import given, settings
from hypothesis import strategies as st
from stun_testlib import ATTRIBUTE_STRATEGIES, RFC5769_PASSWORD, transaction_ids, vector

from natkit.endpoint import Endpoint
from natkit.stun.attributes import (
    AddressAttribute,
    Attribute,
    ChangeRequest,
    ErrorCodeAttribute,
    FlagAttribute,
    IntegerAttribute,
    RawAttribute,
    TextAttribute,
    XorAddressAttribute,
)
from natkit.stun.codec import Message, encode_message, parse_message
from natkit.stun.constants import AttributeType, ChangeFlags, MessageClass, Method
from natkit.stun.integrity import IntegrityError, short_term_key, verify_integrity

KEY = short_term_key("interop-password")

CLASSES = {
    MessageClass.REQUEST: aioice_stun.Class.REQUEST,
    MessageClass.INDICATION: aioice_stun.Class.INDICATION,
    MessageClass.SUCCESS_RESPONSE: aioice_stun.Class.RESPONSE,
    MessageClass.ERROR_RESPONSE: aioice_stun.Class.ERROR,
}
#: Methods aioice can parse (it raises ValueError on others).
METHODS = [m for m in Method if m.value in {x.value for x in aioice_stun.Method}]


def address(attribute: Attribute) -> tuple[str, int]:
    assert isinstance(attribute, AddressAttribute | XorAddressAttribute)
    return (str(attribute.endpoint.address), attribute.endpoint.port)


def integer(attribute: Attribute) -> int:
    assert isinstance(attribute, IntegerAttribute)
    return attribute.value


def text(attribute: Attribute) -> str:
    assert isinstance(attribute, TextAttribute)
    return attribute.text


#: natkit attribute type -> (aioice name, natkit attribute -> aioice value).
AIOICE_VIEW: dict[int, tuple[str, Callable[[Attribute], Any]]] = {
    AttributeType.MAPPED_ADDRESS: ("MAPPED-ADDRESS", address),
    AttributeType.SOURCE_ADDRESS: ("SOURCE-ADDRESS", address),
    AttributeType.CHANGED_ADDRESS: ("CHANGED-ADDRESS", address),
    AttributeType.RESPONSE_ORIGIN: ("RESPONSE-ORIGIN", address),
    AttributeType.OTHER_ADDRESS: ("OTHER-ADDRESS", address),
    AttributeType.XOR_MAPPED_ADDRESS: ("XOR-MAPPED-ADDRESS", address),
    AttributeType.XOR_PEER_ADDRESS: ("XOR-PEER-ADDRESS", address),
    AttributeType.XOR_RELAYED_ADDRESS: ("XOR-RELAYED-ADDRESS", address),
    AttributeType.CHANGE_REQUEST: (
        "CHANGE-REQUEST",
        lambda a: int(a.flags) if isinstance(a, ChangeRequest) else None,
    ),
    AttributeType.USERNAME: ("USERNAME", text),
    AttributeType.REALM: ("REALM", text),
    AttributeType.SOFTWARE: ("SOFTWARE", text),
    # aioice keeps NONCE as bytes.
    AttributeType.NONCE: ("NONCE", lambda a: text(a).encode()),
    AttributeType.ERROR_CODE: (
        "ERROR-CODE",
        lambda a: (a.code, a.reason) if isinstance(a, ErrorCodeAttribute) else None,
    ),
    AttributeType.DATA: ("DATA", lambda a: a.value if isinstance(a, RawAttribute) else None),
    AttributeType.PRIORITY: ("PRIORITY", integer),
    AttributeType.LIFETIME: ("LIFETIME", integer),
    AttributeType.CHANNEL_NUMBER: ("CHANNEL-NUMBER", integer),
    # aioice reads the whole 32-bit word: protocol << 24 (RFC 8656 §18.7).
    AttributeType.REQUESTED_TRANSPORT: ("REQUESTED-TRANSPORT", lambda a: integer(a) << 24),
    AttributeType.ICE_CONTROLLED: ("ICE-CONTROLLED", integer),
    AttributeType.ICE_CONTROLLING: ("ICE-CONTROLLING", integer),
    AttributeType.USE_CANDIDATE: ("USE-CANDIDATE", lambda a: None),
}
SHARED_TYPES = sorted(AIOICE_VIEW)


def aioice_view(attributes: tuple[Attribute, ...]) -> dict[str, Any]:
    view = {}
    for attribute in attributes:
        name, convert = AIOICE_VIEW[attribute.type]
        view[name] = convert(attribute)
    return view


@st.composite
def shared_messages(draw: st.DrawFn) -> Message:
    """Messages of shared attributes, each type at most once (aioice's dict)."""
    types = draw(st.lists(st.sampled_from(SHARED_TYPES), unique=True, max_size=8))
    attributes = tuple(draw(ATTRIBUTE_STRATEGIES[t]) for t in types)
    return Message(
        draw(st.sampled_from(METHODS)),
        draw(st.sampled_from(list(MessageClass))),
        draw(transaction_ids),
        attributes,
    )


INTEROP = settings(deadline=None, max_examples=100)


# --- natkit encodes, aioice parses ------------------------------------------------


@INTEROP
@given(message=shared_messages(), protect=st.booleans())
def test_aioice_reads_what_natkit_writes(message: Message, protect: bool) -> None:
    data = encode_message(message, integrity_key=KEY if protect else None, fingerprint=protect)

    parsed = aioice_stun.parse_message(data)  # checks FINGERPRINT when present

    assert parsed.message_method == message.method
    assert parsed.message_class == CLASSES[message.message_class]
    assert parsed.transaction_id == message.transaction_id
    expected = aioice_view(message.attributes)
    if protect:
        assert set(parsed.attributes) - set(expected) == {"MESSAGE-INTEGRITY", "FINGERPRINT"}
        assert parsed.check_message_integrity(KEY)
        assert not parsed.check_message_integrity(b"other key")
        del parsed.attributes["MESSAGE-INTEGRITY"], parsed.attributes["FINGERPRINT"]
    assert parsed.attributes == expected


def test_aioice_reads_a_natkit_binding_response() -> None:
    """The everyday case, spelled out: XOR-MAPPED-ADDRESS over IPv6, signed."""
    mapped = Endpoint(ipaddress.IPv6Address("2001:db8::1"), 54321)
    message = Message(
        Method.BINDING,
        MessageClass.SUCCESS_RESPONSE,
        bytes(range(12)),
        (
            XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, mapped),
            TextAttribute(AttributeType.SOFTWARE, "natkit"),
        ),
    )
    parsed = aioice_stun.parse_message(encode_message(message, integrity_key=KEY, fingerprint=True))
    assert parsed.message_class == aioice_stun.Class.RESPONSE
    assert parsed.attributes["XOR-MAPPED-ADDRESS"] == ("2001:db8::1", 54321)
    assert parsed.attributes["SOFTWARE"] == "natkit"
    assert parsed.check_message_integrity(KEY)


# --- aioice encodes, natkit parses and verifies -------------------------------------


def to_aioice(message: Message) -> aioice_stun.Message:
    return aioice_stun.Message(
        message_method=aioice_stun.Method(message.method),
        message_class=CLASSES[message.message_class],
        transaction_id=message.transaction_id,
        attributes=aioice_view(message.attributes),
    )


@INTEROP
@given(message=shared_messages())
def test_natkit_reads_what_aioice_writes(message: Message) -> None:
    assert parse_message(bytes(to_aioice(message))) == message


@INTEROP
@given(message=shared_messages())
def test_natkit_verifies_aioice_integrity_and_fingerprint(message: Message) -> None:
    """aioice's add_message_integrity appends MESSAGE-INTEGRITY and FINGERPRINT."""
    theirs = to_aioice(message)
    theirs.add_message_integrity(KEY)

    parsed = parse_message(bytes(theirs))

    assert parsed == message
    assert parsed.has_fingerprint
    verify_integrity(parsed, KEY)
    with pytest.raises(IntegrityError):
        verify_integrity(parsed, b"other key")


@INTEROP
@given(message=shared_messages())
def test_natkit_verifies_aioice_fingerprint_alone(message: Message) -> None:
    theirs = to_aioice(message)
    theirs.add_fingerprint()
    data = bytes(theirs)
    parsed = parse_message(data)
    assert parsed == message
    assert parsed.has_fingerprint
    assert not parsed.has_message_integrity
    # Byte for byte the same as natkit's own encoding.
    assert encode_message(message, fingerprint=True) == data


def test_natkit_and_aioice_agree_byte_for_byte_with_integrity() -> None:
    """Same message, same key: identical datagrams, hashes included."""
    message = Message(
        Method.BINDING,
        MessageClass.REQUEST,
        bytes(range(12)),
        (
            TextAttribute(AttributeType.USERNAME, "evtj:h6vY"),
            IntegerAttribute(AttributeType.PRIORITY, 0x6E0001FF),
            IntegerAttribute(AttributeType.ICE_CONTROLLING, 0x932FF9B151263B36),
            FlagAttribute(AttributeType.USE_CANDIDATE),
            ChangeRequest(ChangeFlags.CHANGE_IP),
        ),
    )
    theirs = to_aioice(message)
    theirs.add_message_integrity(KEY)
    assert encode_message(message, integrity_key=KEY, fingerprint=True) == bytes(theirs)


@pytest.mark.parametrize(
    "name", ["rfc5769_sample_request", "rfc5769_ipv4_response", "rfc5769_ipv6_response"]
)
def test_both_read_the_rfc5769_vectors_alike(name: str) -> None:
    """The oracle agrees with natkit on the RFC's own bytes."""
    data = vector(name)
    ours = parse_message(data)
    theirs = aioice_stun.parse_message(data)
    assert theirs.check_message_integrity(RFC5769_PASSWORD.encode())
    del theirs.attributes["MESSAGE-INTEGRITY"], theirs.attributes["FINGERPRINT"]
    assert theirs.attributes == aioice_view(ours.attributes)
