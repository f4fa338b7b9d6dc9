"""RFC 8489 §6.2.1 retransmission, driven by a fake clock (no sockets)."""

from __future__ import annotations

import random

import pytest

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.stun.attributes import ErrorCodeAttribute, XorAddressAttribute
from natkit.stun.client import StunClient
from natkit.stun.codec import Message, binding_request, encode_message
from natkit.stun.constants import AttributeType, MessageClass, Method
from natkit.stun.events import ResponseReceived, TransactionTimedOut
from natkit.stun.transaction import RetransmissionPolicy, RtoEstimator

SERVER = Endpoint.parse("203.0.113.10:3478")
MAPPED = Endpoint.parse("198.51.100.1:40000")


def _send_times(client: StunClient, tid: bytes, until: float) -> tuple[list[float], float | None]:
    """Run the client's timer until ``until``; return send times and the timeout time."""
    sent = [0.0] * len(client.datagrams_to_send(0.0))
    timed_out = None
    while (deadline := client.get_timer()) is not None and deadline <= until:
        client.handle_timer(deadline)
        sent += [deadline] * len(client.datagrams_to_send(deadline))
        while (event := client.next_event()) is not None:
            if isinstance(event, TransactionTimedOut) and event.transaction_id == tid:
                timed_out = deadline
    return sent, timed_out


def _success(tid: bytes) -> bytes:
    response = Message(
        Method.BINDING,
        MessageClass.SUCCESS_RESPONSE,
        tid,
        (XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, MAPPED),),
    )
    return encode_message(response)


def test_default_schedule_is_rfc8489_section_6_2_1() -> None:
    """With RTO 500 ms, Rc 7, Rm 16: sends at 0, 0.5, 1.5, 3.5, 7.5, 15.5,
    31.5 s and failure at 39.5 s."""
    client = StunClient(rng=random.Random(1))
    tid = client.send_request(binding_request(client.new_transaction_id()), SERVER, 0.0)
    sent, timed_out = _send_times(client, tid, until=100.0)
    assert sent == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert timed_out == pytest.approx(39.5)


def test_policy_give_up_after_matches_the_schedule() -> None:
    assert RetransmissionPolicy().give_up_after() == pytest.approx(39.5)
    assert RetransmissionPolicy(rto=0.1, rc=1, rm=1).give_up_after() == pytest.approx(0.1)


@pytest.mark.parametrize("policy", [{"rto": 0.0}, {"rc": 0}, {"rm": 0}])
def test_impossible_policies_are_refused(policy: dict[str, float]) -> None:
    with pytest.raises(LocalProtocolError):
        RetransmissionPolicy(**policy)  # type: ignore[arg-type]


def test_response_ends_the_transaction_and_measures_rtt() -> None:
    client = StunClient(rng=random.Random(2))
    tid = client.send_request(binding_request(client.new_transaction_id()), SERVER, 10.0)
    client.datagrams_to_send(10.0)
    client.receive_datagram(_success(tid), SERVER, 0, 10.25)
    event = client.next_event()
    assert isinstance(event, ResponseReceived)
    assert event.response.xor_mapped_address == MAPPED
    assert event.rtt == pytest.approx(0.25)
    assert event.transmissions == 1
    assert client.get_timer() is None
    assert client.rto_estimator.srtt == pytest.approx(0.25)


def test_karn_no_rtt_sample_from_a_retransmitted_request() -> None:
    client = StunClient(rng=random.Random(3))
    tid = client.send_request(binding_request(client.new_transaction_id()), SERVER, 0.0)
    client.handle_timer(0.5)  # second transmission
    client.receive_datagram(_success(tid), SERVER, 0, 0.6)
    event = client.next_event()
    assert isinstance(event, ResponseReceived)
    assert event.rtt is None
    assert event.elapsed == pytest.approx(0.6)
    assert client.rto_estimator.samples == 0


def test_foreign_transaction_and_wrong_source_are_dropped_silently() -> None:
    client = StunClient(rng=random.Random(4))
    tid = client.send_request(binding_request(client.new_transaction_id()), SERVER, 0.0)
    client.receive_datagram(_success(b"x" * 12), SERVER, 0, 0.1)
    client.receive_datagram(_success(tid), Endpoint.parse("192.0.2.66:3478"), 0, 0.1)
    client.receive_datagram(b"\x00\x01garbage", SERVER, 0, 0.1)
    assert client.next_event() is None
    assert client.counters.unknown_transaction == 1
    assert client.counters.unexpected_source == 1
    assert client.counters.malformed == 1
    client.receive_datagram(_success(tid), SERVER, 0, 0.2)
    assert isinstance(client.next_event(), ResponseReceived)
    client.receive_datagram(_success(tid), SERVER, 0, 0.3)
    assert client.counters.late_or_duplicate == 1


def test_integrity_protected_request_requires_a_matching_response() -> None:
    client = StunClient(rng=random.Random(5))
    key = b"secret"
    tid = client.send_request(
        binding_request(client.new_transaction_id()), SERVER, 0.0, integrity_key=key
    )
    unsigned = _success(tid)
    client.receive_datagram(unsigned, SERVER, 0, 0.1)
    assert client.counters.bad_integrity == 1
    response = Message(Method.BINDING, MessageClass.SUCCESS_RESPONSE, tid)
    client.receive_datagram(encode_message(response, integrity_key=key), SERVER, 0, 0.2)
    assert isinstance(client.next_event(), ResponseReceived)


def _error(tid: bytes, code: int, key: bytes | None = None) -> bytes:
    response = Message(
        Method.ALLOCATE, MessageClass.ERROR_RESPONSE, tid, (ErrorCodeAttribute(code, "x"),)
    )
    return encode_message(response, integrity_key=key)


def test_unsigned_errors_are_accepted_only_for_the_codes_named() -> None:
    # RFC 8489 §9.2.5: 401 and 438 come before any integrity check; a signed
    # request's other errors must be signed, and a wrong signature is never
    # excused.
    client = StunClient(rng=random.Random(6))
    key = b"secret"
    request = Message(Method.ALLOCATE, MessageClass.REQUEST, client.new_transaction_id())
    tid = client.send_request(
        request, SERVER, 0.0, integrity_key=key, unsigned_errors=frozenset({401, 438})
    )
    client.receive_datagram(_error(tid, 486), SERVER, 0, 0.1)
    client.receive_datagram(_error(tid, 438, key=b"wrong"), SERVER, 0, 0.1)
    assert client.counters.bad_integrity == 2
    assert client.next_event() is None
    client.receive_datagram(_error(tid, 438), SERVER, 0, 0.2)
    event = client.next_event()
    assert isinstance(event, ResponseReceived)
    assert event.response.error_code == ErrorCodeAttribute(438, "x")


def test_adaptive_policy_starts_from_the_measured_rto() -> None:
    estimator = RtoEstimator(initial_rto=0.5, min_rto=0.05)
    estimator.update(0.02)
    client = StunClient(
        policy=RetransmissionPolicy(adaptive=True, rc=2, rm=1),
        rto_estimator=estimator,
        rng=random.Random(6),
    )
    tid = client.send_request(binding_request(client.new_transaction_id()), SERVER, 0.0)
    sent, timed_out = _send_times(client, tid, until=10.0)
    assert sent == [0.0, pytest.approx(0.06)]
    assert timed_out == pytest.approx(0.12)


def test_rto_estimator_follows_rfc6298() -> None:
    estimator = RtoEstimator(initial_rto=1.0, min_rto=0.0, granularity=0.0)
    assert estimator.rto == 1.0
    estimator.update(0.1)
    assert (estimator.srtt, estimator.rttvar) == (pytest.approx(0.1), pytest.approx(0.05))
    assert estimator.rto == pytest.approx(0.3)
    estimator.update(0.2)
    assert estimator.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.1)
    assert estimator.srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.2)


def test_only_requests_start_transactions() -> None:
    client = StunClient()
    indication = Message(Method.BINDING, MessageClass.INDICATION, b"i" * 12)
    with pytest.raises(LocalProtocolError):
        client.send_request(indication, SERVER, 0.0)
