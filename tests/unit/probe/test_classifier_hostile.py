"""Hostile input never crashes the classifier or the server (RFC 8489 §6.3:
drop what does not parse; a response for no transaction of ours is dropped)."""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from natkit.endpoint import Endpoint
from natkit.probe.classifier import ClassifierConfig, NatClassifier, Role
from natkit.probe.hops import HopReply
from natkit.probe.report import (
    ClassificationReport,
    FilteringBehavior,
    MappingBehavior,
    ProbeName,
    RunStatus,
)
from natkit.probe.state import Phase
from natkit.sansio import ICMP_TIME_EXCEEDED, Datagram, IcmpError, IcmpKind, StreamResult
from natkit.stun.attributes import AddressAttribute, XorAddressAttribute
from natkit.stun.codec import Message, binding_request, encode_message
from natkit.stun.constants import AttributeType, MessageClass, Method
from natkit.stun.server import ServerConfig, StunServer, Transport

SERVER = Endpoint.parse("203.0.113.10:3478")
STRANGER = Endpoint.parse("192.0.2.66:3478")
MAPPED = Endpoint.parse("198.51.100.1:40000")
ROUTER = ipaddress.ip_address("192.168.1.1")
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


def _answer(tid: bytes, mapped: Endpoint, other: Endpoint | None = None) -> bytes:
    attributes: list[AddressAttribute | XorAddressAttribute] = [
        XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, mapped)
    ]
    if other is not None:
        attributes.append(AddressAttribute(AttributeType.OTHER_ADDRESS, other))
    return encode_message(
        Message(Method.BINDING, MessageClass.SUCCESS_RESPONSE, tid, tuple(attributes))
    )


@pytest.mark.parametrize("source", [SERVER, STRANGER])
def test_responses_to_unknown_transactions_and_from_strangers_change_nothing(
    source: Endpoint,
) -> None:
    core = _classifier()
    sent = core.datagrams_to_send(0.0)
    binding = sent[0]  # the MAPPING socket's Binding to the server
    assert (binding.socket, binding.remote) == (0, SERVER)
    core.receive_datagram(_answer(b"\x00" * 12, STRANGER), source, 0, 0.001)
    # Not used: no test was answered, so nothing was decided...
    assert core.phase is Phase.STARTING
    assert core.report is None
    # ...and the binding test is still waiting for its real answer.
    core.receive_datagram(_answer(binding.data[8:20], MAPPED), SERVER, 0, 0.002)
    assert core.phase is not Phase.STARTING
    core.handle_timer(core.config.timeout)
    report = core.report
    assert report is not None
    assert report.mapped_address == MAPPED
    seen = [a.mapped_address for o in report.observations for a in o.answers]
    assert STRANGER not in seen
    (first,) = [o for o in report.observations if o.test is ProbeName.BINDING]
    assert [a.source for a in first.answers] == [SERVER]


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


def _finish(core: NatClassifier) -> ClassificationReport:
    core.handle_timer(core.config.timeout)
    report = core.report
    assert report is not None
    return report


def test_our_own_request_reflected_back_is_not_an_answer() -> None:
    core = _classifier()
    binding = core.datagrams_to_send(0.0)[0]
    core.receive_datagram(binding.data, SERVER, 0, 0.001)  # a middlebox mirrors it
    assert core.phase is Phase.STARTING
    core.receive_datagram(_answer(binding.data[8:20], MAPPED), SERVER, 0, 0.002)
    (first,) = [o for o in _finish(core).observations if o.test is ProbeName.BINDING]
    assert [a.mapped_address for a in first.answers] == [MAPPED]


@pytest.mark.parametrize(("socket", "hairpins"), [(Role.MAPPING, True), (Role.HAIRPIN, False)])
def test_a_hairpinned_request_counts_only_on_the_socket_it_was_aimed_at(
    socket: int, hairpins: bool
) -> None:
    core = _classifier()
    binding = core.datagrams_to_send(0.0)[0]
    core.receive_datagram(_answer(binding.data[8:20], MAPPED), SERVER, 0, 0.001)
    (hairpin,) = [d for d in core.datagrams_to_send(0.001) if d.remote == MAPPED]
    assert hairpin.socket == Role.HAIRPIN
    # What the NAT delivers back: the request itself, from the mapped address.
    core.receive_datagram(hairpin.data, MAPPED, socket, 0.002)
    assert (_finish(core).hairpin is True) is hairpins


@pytest.mark.parametrize("right_transaction", [True, False])
def test_a_tcp_reply_to_another_transaction_is_no_tcp_answer(right_transaction: bool) -> None:
    core = _classifier()
    (request,) = core.stream_requests()
    tid = request.payload[8:20] if right_transaction else b"\x01" * 12
    core.stream_answered(request.id, StreamResult(_answer(tid, MAPPED)), 0.01)
    report = _finish(core)
    assert (report.status is RunStatus.UDP_BLOCKED) is right_transaction
    assert (report.tcp_mapped_address == MAPPED) is right_transaction


@pytest.mark.parametrize(
    ("other", "tested"),
    [
        (Endpoint.parse("203.0.113.11:3479"), True),
        # A server bound to an IPv4 and an IPv6 address (natkit stun-server
        # refuses that now): the alternate can never answer this IPv4 socket,
        # and its silence to filtering test II read as ADF.
        (Endpoint.parse("[2001:db8::11]:3479"), False),
    ],
)
def test_an_other_address_of_another_family_is_no_alternate(other: Endpoint, tested: bool) -> None:
    core = _classifier()
    binding = core.datagrams_to_send(0.0)[0]
    core.receive_datagram(_answer(binding.data[8:20], MAPPED, other), SERVER, 0, 0.001)
    sent = core.datagrams_to_send(0.001)
    assert any(d.remote.address == other.address for d in sent) is tested
    report = _finish(core)
    (server,) = report.servers
    assert (server.other_address, server.rfc5780) == (other, tested)
    if not tested:
        assert report.filtering is FilteringBehavior.UNKNOWN
        assert report.reasons["filtering"] == (
            "no server offered a usable RFC 5780 OTHER-ADDRESS"
            f" ({SERVER}'s {other} is another address family)"
        )
        assert report.mapping is MappingBehavior.UNKNOWN
        tests = {o.test for o in report.observations}
        assert not tests & {ProbeName.FILTERING_CHANGE_IP_PORT, ProbeName.MAPPING_ALT_ADDRESS}


def _hop_datagram(core: NatClassifier) -> Datagram:
    (first,) = [d for d in core.datagrams_to_send(0.0) if d.ttl == 1]
    return first


@pytest.mark.parametrize(
    ("about", "quote", "counts"),
    [
        ("server", "hop", True),
        ("stranger", "hop", False),  # an error about a datagram to somewhere else
        ("server", "other", False),  # quoting another transaction of that socket
    ],
)
def test_only_icmp_errors_about_a_hop_attempt_name_a_router(
    about: str, quote: str, counts: bool
) -> None:
    core = _classifier()
    hop = _hop_datagram(core)
    other = encode_message(binding_request(b"\x02" * 12))
    error = IcmpError(
        kind=IcmpKind.TIME_EXCEEDED,
        offender=ROUTER,
        destination=SERVER if about == "server" else STRANGER,
        icmp_type=ICMP_TIME_EXCEEDED,
        icmp_code=0,
        quoted=hop.data if quote == "hop" else other,
    )
    core.receive_icmp_error(error, hop.socket, 0.001)
    path = _finish(core).path
    assert path is not None
    first = path[0]
    assert first.ttl == 1
    if counts:
        assert (first.reply, first.address) == (HopReply.TIME_EXCEEDED, ROUTER)
    else:
        assert first.reply is HopReply.NONE


def test_a_hop_attempt_mirrored_back_is_not_the_server_answering() -> None:
    core = _classifier()
    hop = _hop_datagram(core)
    core.receive_datagram(hop.data, SERVER, hop.socket, 0.001)
    path = _finish(core).path
    assert path is not None
    assert path[0].reply is HopReply.NONE
