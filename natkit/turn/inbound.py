"""What bytes from a TURN server are: the demultiplexing step, pure.

A server sends three things (RFC 8656): STUN responses to our requests, Data
indications (a peer's datagram with its address, §11.4) and ChannelData (a
peer's datagram on a bound channel, §12.6). The first two bits tell
ChannelData from STUN (§12); anything that parses as neither is junk.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from natkit.endpoint import Endpoint
from natkit.stun.codec import Message, StunDecodeError, parse_message
from natkit.stun.constants import MessageClass, Method
from natkit.turn.channel_data import ChannelData, ChannelDataError, is_channel_data
from natkit.turn.channel_data import parse_channel_data as _parse_channel_data
from natkit.turn.messages import TurnProtocolError, read_data_indication


class Junk(Enum):
    """Why bytes from the server were not used."""

    #: Neither valid STUN nor valid ChannelData.
    MALFORMED = "malformed"
    #: Valid STUN, but a request or an indication other than Data.
    UNEXPECTED = "unexpected"


@dataclass(frozen=True, slots=True)
class PeerData:
    """A Data indication's content."""

    peer: Endpoint
    data: bytes


Inbound = Message | ChannelData | PeerData | Junk


def classify(data: bytes) -> Inbound:
    """A response (``Message``), ``ChannelData``, a Data indication
    (``PeerData``), or the reason it is none of them."""
    if is_channel_data(data):
        try:
            return _parse_channel_data(data)
        except ChannelDataError:
            return Junk.MALFORMED
    try:
        message = parse_message(data)
    except StunDecodeError:
        return Junk.MALFORMED
    if message.message_class in (MessageClass.SUCCESS_RESPONSE, MessageClass.ERROR_RESPONSE):
        return message
    if message.message_class is not MessageClass.INDICATION or message.method != Method.DATA:
        return Junk.UNEXPECTED
    try:
        peer, payload = read_data_indication(message)
    except TurnProtocolError:
        return Junk.MALFORMED
    return PeerData(peer, payload)
