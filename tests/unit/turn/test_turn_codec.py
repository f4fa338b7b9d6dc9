"""ChannelData, stream framing, REST API credentials and TURN message readers."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.stun.attributes import IntegerAttribute, XorAddressAttribute
from natkit.stun.codec import Message, encode_message, parse_message
from natkit.stun.constants import AttributeType, MessageClass, Method
from natkit.turn.channel_data import (
    ChannelData,
    ChannelDataError,
    encode_channel_data,
    is_channel_data,
    parse_channel_data,
)
from natkit.turn.credentials import rest_credentials, rest_expiry
from natkit.turn.framing import FramingError, StreamFramer
from natkit.turn.messages import (
    TurnProtocolError,
    data_indication,
    read_allocate_success,
    read_data_indication,
    send_indication,
)

PEER = Endpoint.parse("192.0.2.10:7000")
TID = bytes(range(12))


def test_channel_data_round_trip_with_and_without_padding() -> None:
    assert encode_channel_data(0x4001, b"abcde") == b"\x40\x01\x00\x05abcde"
    padded = encode_channel_data(0x4001, b"abcde", pad=True)
    assert padded == b"\x40\x01\x00\x05abcde\x00\x00\x00"
    assert parse_channel_data(padded) == ChannelData(0x4001, b"abcde")
    assert is_channel_data(padded)
    assert not is_channel_data(encode_message(Message(Method.BINDING, MessageClass.REQUEST, TID)))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x40\x00\x00", "shorter than a ChannelData header"),
        (b"\x50\x00\x00\x00", "outside 0x4000-0x4FFF"),
        (b"\x40\x00\x00\x05abc", "runs past"),
        (b"\x40\x00\x00\x01a\x00\x00\x00\x00", "at most 3 of padding"),
    ],
)
def test_bad_channel_data_names_the_problem(data: bytes, reason: str) -> None:
    with pytest.raises(ChannelDataError, match=reason):
        parse_channel_data(data)


def test_channel_numbers_outside_the_rfc_range_are_refused_locally() -> None:
    with pytest.raises(LocalProtocolError):
        encode_channel_data(0x3FFF, b"")
    with pytest.raises(LocalProtocolError):
        encode_channel_data(0x5000, b"")


def test_framer_splits_stun_and_padded_channel_data() -> None:
    stun = encode_message(Message(Method.BINDING, MessageClass.REQUEST, TID))
    channel = encode_channel_data(0x4000, b"xyz", pad=True)
    stream = stun + channel + stun
    framer = StreamFramer()
    assert framer.feed(stream[:10]) == []
    assert framer.feed(stream[10:25]) == [stun]
    assert framer.feed(stream[25:]) == [channel, stun]
    assert framer.buffered == 0


def test_framer_refuses_garbage_for_good() -> None:
    framer = StreamFramer()
    with pytest.raises(FramingError, match="neither STUN nor ChannelData"):
        framer.feed(b"\x80\x00\x00\x00")
    with pytest.raises(FramingError):
        framer.feed(encode_channel_data(0x4000, b"", pad=True))
    with pytest.raises(FramingError, match="exceeds"):
        StreamFramer(max_message=100).feed(b"\x40\x00\x01\x00")


def test_rest_credentials_follow_coturns_use_auth_secret() -> None:
    creds = rest_credentials("labsecret", 1_796_425_421, "alice")
    assert creds.username == "1796425421:alice"
    # Computed here with hmac/hashlib directly, independently of natkit's helper.
    digest = hmac.new(b"labsecret", b"1796425421:alice", hashlib.sha1).digest()
    assert creds.password == base64.b64encode(digest).decode()
    assert rest_credentials(b"s", 5).username == "5"
    assert rest_expiry(creds.username) == 1_796_425_421
    assert rest_expiry("natkit") is None
    assert "labsecret" not in repr(creds)
    assert creds.password not in repr(creds)
    with pytest.raises(LocalProtocolError):
        rest_credentials("s", 5, "a:b")


def test_send_and_data_indications_carry_peer_and_data() -> None:
    sent = parse_message(send_indication(TID, PEER, b"hello"))
    assert (sent.method, sent.message_class) == (Method.SEND, MessageClass.INDICATION)
    assert read_data_indication(parse_message(data_indication(TID, PEER, b"hi"))) == (PEER, b"hi")
    empty = Message(Method.DATA, MessageClass.INDICATION, TID)
    with pytest.raises(TurnProtocolError, match="XOR-PEER-ADDRESS"):
        read_data_indication(empty)


def test_allocate_success_needs_a_relayed_address_and_a_lifetime() -> None:
    relayed = XorAddressAttribute(AttributeType.XOR_RELAYED_ADDRESS, PEER)
    lifetime = IntegerAttribute(AttributeType.LIFETIME, 600)
    ok = Message(Method.ALLOCATE, MessageClass.SUCCESS_RESPONSE, TID, (relayed, lifetime))
    assert read_allocate_success(ok).relayed == PEER
    with pytest.raises(TurnProtocolError, match="XOR-RELAYED-ADDRESS"):
        read_allocate_success(Message(Method.ALLOCATE, MessageClass.SUCCESS_RESPONSE, TID))
    with pytest.raises(TurnProtocolError, match="LIFETIME"):
        read_allocate_success(
            Message(Method.ALLOCATE, MessageClass.SUCCESS_RESPONSE, TID, (relayed,))
        )
