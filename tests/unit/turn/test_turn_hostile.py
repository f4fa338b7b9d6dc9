"""Hostile bytes and failing servers: the TURN core never crashes or storms."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from turn_fakes import PASSWORD, PEER, SERVER, USER, Harness

from natkit.stun.constants import Method
from natkit.turn import AllocationState, TurnClient
from natkit.turn.config import TurnConfig, TurnTransport
from natkit.turn.credentials import Credentials
from natkit.turn.events import AllocationFailed, AllocationLost, DataReceived, PermissionFailed
from natkit.turn.framing import FramingError, StreamFramer

DAY = 86_400.0


def _client(transport: TurnTransport = TurnTransport.UDP, **config: object) -> TurnClient:
    turn_config = TurnConfig(SERVER, Credentials(USER, PASSWORD), transport, **config)  # type: ignore[arg-type]
    return TurnClient(turn_config, rng=random.Random(3))


def _ready(transport: TurnTransport = TurnTransport.UDP) -> Harness:
    harness = Harness(_client(transport))
    harness.allocate()
    harness.client.bind(PEER, harness.now)
    harness.pump()
    return harness


def _server_messages(harness: Harness) -> list[bytes]:
    """Valid messages a server sends, as seeds for mutation."""
    server = harness.server
    return [
        server.channel_data(PEER, b"payload"),
        server.data_indication(PEER, b"payload"),
        *server.receive(harness.sent[0].data),
    ]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_datagrams_never_raise(data: bytes) -> None:
    harness = _ready()
    harness.deliver(data)
    assert harness.client.state is AllocationState.ALLOCATED


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_server_messages_never_raise(data: st.DataObject) -> None:
    harness = _ready()
    seed = data.draw(st.sampled_from(_server_messages(harness)))
    mutated = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(mutated) - 1))
        mutated[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    harness.deliver(bytes(mutated[:cut]))
    # A datagram cannot end the allocation: at worst it is dropped.
    assert harness.client.state is AllocationState.ALLOCATED
    for event in harness.of_type(DataReceived):
        assert event.peer == PEER


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_random_stream_bytes_end_in_data_or_a_protocol_error(chunks: list[bytes]) -> None:
    harness = _ready(TurnTransport.TCP)
    for chunk in chunks:
        harness.deliver(chunk)
    state = harness.client.state
    assert state in (AllocationState.ALLOCATED, AllocationState.FAILED)
    if state is AllocationState.FAILED:
        [lost] = harness.of_type(AllocationLost)
        assert lost.outcome.failure.value == "protocol-error"


@given(st.binary(max_size=70_000))
def test_the_framer_bounds_what_it_holds(data: bytes) -> None:
    framer = StreamFramer(max_message=1024)
    try:
        messages = framer.feed(data)
    except FramingError:
        return
    assert all(len(m) <= 1024 for m in messages)
    assert framer.buffered < 1024


# -- no storms: requests counted over a long virtual run ------------------------


def test_a_silent_server_costs_seven_datagrams_in_a_day() -> None:
    harness = Harness(_client())
    harness.blackhole = True
    harness.allocate()
    harness.run_until(DAY)
    assert len(harness.sent) == 7
    assert len(harness.of_type(AllocationFailed)) == 1


def test_a_server_failing_every_refresh_costs_a_bounded_number_of_requests() -> None:
    harness = Harness(_client(max_server_errors=2))
    harness.allocate()
    harness.server.errors[Method.REFRESH] = 500
    harness.server.errors[Method.BINDING] = 500
    harness.run_until(DAY)
    assert harness.server.requests[Method.REFRESH] == 3
    [lost] = harness.of_type(AllocationLost)
    assert lost.outcome.failure.value == "server-error"
    assert len(harness.sent) < 50


def test_sending_to_a_forbidden_peer_does_not_ask_per_datagram() -> None:
    harness = Harness(_client(refusal_hold=30.0, keepalive=None))
    harness.allocate()
    harness.server.errors[Method.CREATE_PERMISSION] = 403
    harness.server.errors[Method.CHANNEL_BIND] = 403
    # The caller keeps sending 100 datagrams a second for an hour.
    for tick in range(3600 * 10):
        harness.now = tick / 10
        for _ in range(10):
            harness.client.send(PEER, b"x", harness.now)
        harness.run_until(harness.now)
    # One CreatePermission per hold period: no more (no storm), and no fewer
    # (the address is tried again once the hold is over).
    asked = harness.server.requests[Method.CREATE_PERMISSION]
    assert 3600 / 30 - 2 <= asked <= 3600 / 30 + 1
    assert (
        len(harness.of_type(PermissionFailed)) == harness.server.requests[Method.CREATE_PERMISSION]
    )
    assert harness.client.state is AllocationState.ALLOCATED


def test_a_healthy_idle_allocation_over_a_day_sends_what_the_rfc_asks_and_no_more() -> None:
    harness = Harness(_client(keepalive=15.0))
    harness.allocate()
    harness.client.bind(PEER, harness.now)
    harness.run_until(DAY)
    requests = harness.server.requests
    assert requests[Method.REFRESH] == int(DAY // 540)
    assert requests[Method.CHANNEL_BIND] == int(DAY // 480) + 1
    assert requests[Method.BINDING] <= DAY / 15
    assert harness.client.state is AllocationState.ALLOCATED
