"""Hostile input never crashes the classifier or the server (RFC 8489 §6.3:
drop what does not parse; a response for no transaction of ours is dropped)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from natkit.endpoint import Endpoint
from natkit.probe.classifier import ClassifierConfig, NatClassifier
from natkit.stun.attributes import XorAddressAttribute
from natkit.stun.codec import Message, binding_request, encode_message
from natkit.stun.constants import AttributeType, MessageClass, Method
from natkit.stun.server import ServerConfig, StunServer, Transport

SERVER = Endpoint.parse("203.0.113.10:3478")
STRANGER = Endpoint.parse("192.0.2.66:3478")
LOCAL = [Endpoint.parse(f"192.168.1.2:{40000 + i}") for i in range(8)]


def _classifier() -> NatClassifier:
    config = ClassifierConfig(allocation_sockets=4)
    return NatClassifier([SERVER], LOCAL[: config.sockets_needed], 0.0, config, random.Random(1))


def _sent_transaction_ids(core: NatClassifier) -> list[bytes]:
    return [d.data[8:20] for d in core.datagrams_to_send(0.0)]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([SERVER, STRANGER]), st.integers(0, 6))
def test_random_bytes_never_crash_the_classifier(
    data: bytes, source: Endpoint, socket: int
) -> None:
    core = _classifier()
    core.receive_datagram(data, source, socket, 0.001)
    core.handle_timer(0.002)
    assert core.report is None


def test_responses_to_unknown_transactions_and_from_strangers_change_nothing() -> None:
    core = _classifier()
    tids = _sent_transaction_ids(core)
    assert tids
    forged = Message(
        Method.BINDING,
        MessageClass.SUCCESS_RESPONSE,
        b"\x00" * 12,
        (XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, STRANGER),),
    )
    core.receive_datagram(encode_message(forged), SERVER, 0, 0.001)
    assert core.report is None
    assert core.get_timer() is not None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 3), st.sampled_from(list(Transport)))
def test_random_bytes_never_crash_the_server_and_junk_is_never_answered(
    data: bytes, socket: int, transport: Transport
) -> None:
    server = StunServer(ServerConfig.rfc5780("203.0.113.10", "203.0.113.11"))
    reply = server.handle(data, STRANGER, socket, transport)
    if reply is not None:
        # Only something that parsed as a request can have been answered.
        assert server.counters.answered == 1
        assert not sum(server.counters.malformed.values())


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_requests_never_crash_the_server(data: st.DataObject) -> None:
    request = bytearray(encode_message(binding_request(bytes(12)), fingerprint=True))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(request) - 1))
        request[index] ^= data.draw(st.integers(1, 255))
    server = StunServer(ServerConfig.rfc5780("203.0.113.10", "203.0.113.11"))
    server.receive_datagram(bytes(request), STRANGER, 0, 0.0)
    for datagram in server.datagrams_to_send(0.0):
        assert len(datagram.data) <= 20 + 4 * 12 + 8 + 4 + 12  # never an amplified reply
