"""The mux core: helpers share the agent's sockets, demultiplexed without I/O."""

from __future__ import annotations

import random
from collections import deque

import pytest

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.ice import ConnectAgent
from natkit.ice.mux import ConnectMux, HelperEvent
from natkit.sansio import Datagram
from natkit.stun.codec import Message, binding_request, encode_message
from natkit.stun.constants import MessageClass, Method

LOCAL = Endpoint.parse("192.0.2.1:40000")
SERVER = Endpoint.parse("203.0.113.10:3478")
RELAY_SERVER = Endpoint.parse("203.0.113.30:3478")


class Helper:
    """A helper core that sends one request and records what it receives."""

    def __init__(self, tid: bytes, timer: float | None = None) -> None:
        self.outbox = [Datagram(encode_message(binding_request(tid)), SERVER)]
        self.received: list[bytes] = []
        self.timer = timer
        self.fired: list[float] = []
        self.events: deque[str] = deque(["started"])

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        self.received.append(data)
        self.events.append("received")

    def handle_timer(self, now: float) -> None:
        self.fired.append(now)
        self.timer = None

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self.outbox = self.outbox, []
        return out

    def get_timer(self) -> float | None:
        return self.timer

    def next_event(self) -> str | None:
        return self.events.popleft() if self.events else None


def answer(tid: bytes) -> bytes:
    return encode_message(Message(Method.BINDING, MessageClass.SUCCESS_RESPONSE, tid, ()))


def mux() -> ConnectMux:
    return ConnectMux(ConnectAgent("a", rng=random.Random(1), sockets=[LOCAL]))


def test_answers_to_a_helpers_requests_go_to_it_and_the_rest_to_the_agent() -> None:
    core = mux()
    helper = Helper(b"T" * 12)
    core.add_helper(helper, 0.0)
    assert [d.remote for d in core.datagrams_to_send(0.0)] == [SERVER]
    core.receive_datagram(answer(b"T" * 12), SERVER, 0, 0.1)
    core.receive_datagram(answer(b"U" * 12), SERVER, 0, 0.1)  # nobody's transaction
    assert helper.received == [answer(b"T" * 12)]
    assert core.agent.counters.unknown_transaction == 1
    events = []
    while (event := core.next_event()) is not None:
        events.append(event)
    assert events == [HelperEvent(helper, "started"), HelperEvent(helper, "received")]


def test_a_removed_helpers_late_answer_reaches_the_agent_and_is_counted() -> None:
    core = mux()
    helper = Helper(b"T" * 12)
    core.add_helper(helper, 0.0)
    core.datagrams_to_send(0.0)
    core.remove_helper(helper)
    core.receive_datagram(answer(b"T" * 12), SERVER, 0, 0.1)
    assert helper.received == []
    assert core.agent.counters.unknown_transaction == 1
    with pytest.raises(LocalProtocolError, match="not a helper"):
        core.remove_helper(helper)


def test_a_claimed_source_goes_to_its_helper_whatever_the_bytes() -> None:
    # A helper that alone talks to a server claims it (ChannelData, say, is not STUN).
    core = mux()
    helper = Helper(b"T" * 12)
    core.add_helper(helper, 0.0, sources=[RELAY_SERVER])
    core.receive_datagram(b"\x40\x00\x00\x04data", RELAY_SERVER, 0, 0.1)
    assert helper.received == [b"\x40\x00\x00\x04data"]
    assert core.agent.counters.not_stun == 0
    with pytest.raises(LocalProtocolError, match="claimed"):
        core.add_helper(Helper(b"V" * 12), 0.0, sources=[RELAY_SERVER])


def test_one_timer_for_all_and_only_due_cores_are_woken() -> None:
    core = mux()
    early, late = Helper(b"T" * 12, timer=1.0), Helper(b"U" * 12, timer=5.0)
    core.add_helper(early, 0.0)
    core.add_helper(late, 0.0)
    assert core.get_timer() == 1.0
    core.handle_timer(1.0)
    assert (early.fired, late.fired) == ([1.0], [])
    assert core.get_timer() == 5.0
