"""The prober core, socket-free: it follows its plan, never beyond the
budget or the rate, ends at the first authentic answer, and shrugs off
anything hostile."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

import pytest
from birthday_testlib import OTHER_KEY, OTHER_SESSION, config, kinds, paced_times, packet
from hypothesis import given
from hypothesis import strategies as st

from natkit.birthday.events import (
    BirthdayDropReason,
    BirthdayEvent,
    ExhaustReason,
    PairFound,
    SearchExhausted,
    WinningPair,
)
from natkit.birthday.ports import PortRange
from natkit.birthday.prober import BirthdayProber
from natkit.birthday.schedule import SendPlan, max_sends_in_window, opener_plan, spray_plan
from natkit.birthday.wire import Kind, Side, parse_packet
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.sansio import Datagram

HARD_IP = IPv4Address("203.0.113.7")
EASY = Endpoint.parse("198.51.100.9:40000")
LOCAL = Endpoint.parse("192.168.1.2:4000")
RANGE = PortRange(20000, 29999)
START = 1000.0


@dataclass
class Run:
    """A socket-free driver: fires the core's timer, collects what it does."""

    core: BirthdayProber
    now: float = START
    sent: list[tuple[float, Datagram]] = field(default_factory=list)
    events: list[BirthdayEvent] = field(default_factory=list)

    def collect(self) -> None:
        self.sent += [(self.now, d) for d in self.core.datagrams_to_send(self.now)]
        while (event := self.core.next_event()) is not None:
            self.events.append(event)

    def timers(self, until: float, lateness: Callable[[], float] = lambda: 0.0) -> None:
        self.collect()
        for _ in range(1_000_000):
            deadline = self.core.get_timer()
            if deadline is None or deadline > until:
                return
            self.now = max(self.now, deadline + lateness())
            self.core.handle_timer(self.now)
            self.collect()
        raise AssertionError("the core keeps asking for timers")

    def receive(self, data: bytes, remote: Endpoint, socket: int = 0) -> None:
        self.core.receive_datagram(data, remote, socket, self.now)
        self.collect()


def sprayer(budget: int = 100, rate: float = 100.0, probes: int | None = None, **kw: object) -> Run:
    plan = spray_plan(
        HARD_IP, RANGE, budget if probes is None else probes, rate, random.Random(1), start=START
    )
    cfg = config(Side.B, budget=budget, rate=rate, peer_address=HARD_IP, **kw)
    return Run(BirthdayProber(cfg, [LOCAL], plan, START))


# -- following the plan, within budget and rate ---------------------------------------


def test_on_time_timers_reproduce_the_plan_exactly() -> None:
    run = sprayer(budget=50)
    run.timers(until=START + 100)
    assert [(at, d.remote, d.socket) for at, d in run.sent] == [
        (s.at, Endpoint(HARD_IP, s.port), s.socket) for s in run.core.plan.sends
    ]
    [event] = run.events
    assert isinstance(event, SearchExhausted)
    assert event.reason is ExhaustReason.BUDGET_SPENT
    assert event.at == run.sent[-1][0] + 2.0  # answer_timeout after the last probe
    assert run.core.get_timer() is None


def test_the_budget_cuts_a_longer_plan() -> None:
    run = sprayer(budget=30, probes=500)
    run.timers(until=START + 100)
    assert run.core.stats.probes_sent == 30
    assert len(run.sent) == 30


@pytest.mark.parametrize("seed", range(5))
def test_late_timers_never_make_a_burst(seed: int) -> None:
    # A driver whose timers fire up to 50 ms late (5 probe slots at 100/s):
    # the core still sends one probe per call, never two within half a gap.
    rng = random.Random(seed)
    run = sprayer(budget=400, rate=100.0)
    run.timers(until=START + 100, lateness=lambda: rng.uniform(0.0, 0.05))
    times = paced_times(run.sent)
    assert len(times) == 400
    assert max_sends_in_window(times) <= 100
    assert all(b - a >= 0.005 for a, b in itertools.pairwise(times))


@pytest.mark.parametrize("seed", range(5))
def test_slightly_late_timers_keep_the_plan(seed: int) -> None:
    # Up to 4 ms late on a 10 ms plan (an epoll loop rounds waits to whole
    # milliseconds): each late send is caught up with at once. What the cap
    # cannot give back is one lateness per second of sending (the plan runs
    # at the cap, so a window of 100 sends never gets shorter), so four
    # seconds of probes end at most 4 x 4 ms after the plan, not 20 % later.
    rng = random.Random(seed)
    run = sprayer(budget=400, rate=100.0)
    run.timers(until=START + 100, lateness=lambda: rng.uniform(0.0, 0.004))
    times = paced_times(run.sent)
    planned = [send.at for send in run.core.plan.sends]
    assert len(times) == 400
    assert all(at >= plan for at, plan in zip(times, planned, strict=True))
    assert times[-1] <= planned[-1] + 4 * 0.004
    assert max_sends_in_window(times) <= 100


def test_one_stall_is_caught_up_within_the_cap() -> None:
    # The driver stalls 55 ms once (5.5 slots), then is on time: the core
    # sends at twice the rate until it is back on the plan. The stalled send
    # bounds the send 100 after it (a second of sends may not hold 101), so
    # the stall comes back once a second and is caught up with the same way.
    run = sprayer(budget=300, rate=100.0)
    stalls = iter([0.0] * 50 + [0.055])
    run.timers(until=START + 100, lateness=lambda: next(stalls, 0.0))
    times = paced_times(run.sent)
    planned = [send.at for send in run.core.plan.sends]
    behind_ms = [round((at - plan) * 1000, 3) for at, plan in zip(times, planned, strict=True)]
    closing_in = [55.0, 50.0, 45.0, 40.0, 35.0, 30.0, 25.0, 20.0, 15.0, 10.0, 5.0]
    for first in (51, 151, 251):
        assert behind_ms[first : first + 11] == closing_in
    assert sum(1 for ms in behind_ms if ms) == 3 * 11  # on the plan everywhere else
    assert max_sends_in_window(times) <= 100
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.005


def test_hammering_the_timer_sends_nothing_extra() -> None:
    run = sprayer(budget=100)
    run.collect()
    assert len(run.sent) == 1  # the first planned probe is due at once
    for _ in range(1000):
        run.core.handle_timer(START)  # same instant, again and again
        run.collect()
    run.now = START + 0.005  # and early
    run.core.handle_timer(run.now)
    run.collect()
    assert len(run.sent) == 1


def test_a_zero_budget_sprayer_sends_nothing_and_ends() -> None:
    run = sprayer(budget=0)
    run.timers(until=START + 10)
    assert run.sent == []
    [event] = run.events
    assert isinstance(event, SearchExhausted)
    assert event.reason is ExhaustReason.BUDGET_SPENT


def test_the_hard_side_sends_its_openers_and_ends_with_the_schedule() -> None:
    plan = opener_plan(EASY, 8, 100.0, start=START, keepalive=15.0, rounds=3)
    run = Run(BirthdayProber(config(Side.A, budget=0), [LOCAL] * 8, plan, START))
    run.timers(until=START + 100)
    assert [k for _, k in kinds(run.sent)] == [Kind.OPEN] * 24
    assert [d.socket for _, d in run.sent] == list(range(8)) * 3
    assert {d.remote for _, d in run.sent} == {EASY}
    [event] = run.events
    assert isinstance(event, SearchExhausted)
    assert event.reason is ExhaustReason.SCHEDULE_ENDED
    assert event.stats.opens_sent == 24


# -- hits ---------------------------------------------------------------------------------


def test_a_probe_from_the_peer_is_answered_and_ends_the_run() -> None:
    plan = opener_plan(EASY, 4, 100.0, start=START, rounds=2)
    run = Run(BirthdayProber(config(Side.A, budget=0, ack_copies=3), [LOCAL] * 4, plan, START))
    run.timers(until=START + 0.025)  # three openers out
    run.receive(packet(Kind.PROBE, Side.B, sequence=77), EASY, socket=2)
    acks = run.sent[-3:]
    assert [parse_packet(d.data, bytes(range(32))).echo for _, d in acks] == [77, 77, 77]
    assert {(d.socket, d.remote) for _, d in acks} == {(2, EASY)}
    [event] = run.events
    assert event == PairFound(WinningPair(2, LOCAL, EASY), Kind.PROBE, run.now, event.stats)
    assert event.stats.acks_sent == 3
    # Over: no timer, nothing more sent, later packets are late.
    assert run.core.get_timer() is None
    run.receive(packet(Kind.PROBE, Side.B, sequence=78), EASY, socket=2)
    assert len(run.sent) == 3 + 3
    assert run.core.stats.dropped == {BirthdayDropReason.LATE: 1}


def test_an_ack_of_our_probe_ends_the_run() -> None:
    run = sprayer(budget=100)
    run.timers(until=START + 0.1)
    _, probe = run.sent[4]
    sequence = parse_packet(probe.data, bytes(range(32))).sequence
    run.receive(packet(Kind.ACK, Side.A, sequence=900, echo=sequence), probe.remote)
    [event] = run.events
    assert isinstance(event, PairFound)
    assert event.via is Kind.ACK
    assert event.pair == WinningPair(0, LOCAL, probe.remote)
    assert run.core.get_timer() is None


def test_an_opener_that_arrives_is_probed_once_next() -> None:
    run = sprayer(budget=3, probes=3)
    run.collect()  # plan probe 1 at START
    hard = Endpoint(HARD_IP, 23456)
    for sequence in (1, 2, 3):  # keepalives: the same source again and again
        run.receive(packet(Kind.OPEN, Side.A, sequence=sequence), hard)
    run.timers(until=START + 100)
    remotes = [d.remote for _, d in run.sent]
    assert remotes[1] == hard  # the shortcut jumps the queue, paced like the rest
    assert remotes.count(hard) == 1
    assert len(remotes) == 3  # and it came out of the budget


def test_the_hard_side_takes_no_shortcuts() -> None:
    plan = opener_plan(EASY, 1, 100.0, start=START)
    run = Run(BirthdayProber(config(Side.A, budget=0), [LOCAL], plan, START))
    run.receive(packet(Kind.OPEN, Side.B), EASY)
    run.timers(until=START + 100)
    assert [k for _, k in kinds(run.sent)] == [Kind.OPEN]


# -- hostile input -------------------------------------------------------------------


def probe_sequence(run: Run, index: int) -> tuple[int, Endpoint]:
    _, datagram = run.sent[index]
    return parse_packet(datagram.data, bytes(range(32))).sequence, datagram.remote


HOSTILE: list[tuple[str, Callable[[Run], tuple[bytes, Endpoint, int]], BirthdayDropReason]] = [
    ("empty", lambda r: (b"", Endpoint(HARD_IP, 1), 0), BirthdayDropReason.MALFORMED),
    (
        "junk",
        lambda r: (b"GET / HTTP/1.1\r\n\r\n", Endpoint(HARD_IP, 1), 0),
        BirthdayDropReason.MALFORMED,
    ),
    (
        "truncated",
        lambda r: (packet(Kind.PROBE, Side.A)[:39], Endpoint(HARD_IP, 1), 0),
        BirthdayDropReason.MALFORMED,
    ),
    (
        "forged",
        lambda r: (packet(Kind.PROBE, Side.A, key=OTHER_KEY), Endpoint(HARD_IP, 1), 0),
        BirthdayDropReason.UNAUTHENTICATED,
    ),
    (
        "other session",
        lambda r: (packet(Kind.PROBE, Side.A, session=OTHER_SESSION), Endpoint(HARD_IP, 1), 0),
        BirthdayDropReason.WRONG_SESSION,
    ),
    (
        "our own probe reflected",
        lambda r: (r.sent[0][1].data, Endpoint(HARD_IP, 1), 0),
        BirthdayDropReason.REFLECTED,
    ),
    (
        "a stranger's address",
        lambda r: (packet(Kind.PROBE, Side.A), Endpoint.parse("192.0.2.66:1"), 0),
        BirthdayDropReason.WRONG_SOURCE,
    ),
    (
        "ack of nothing we sent",
        lambda r: (packet(Kind.ACK, Side.A, echo=424242), Endpoint(HARD_IP, 1), 0),
        BirthdayDropReason.UNMATCHED_ACK,
    ),
    (
        "ack from another port than the probe went to",
        lambda r: (
            packet(Kind.ACK, Side.A, echo=probe_sequence(r, -1)[0]),
            Endpoint(HARD_IP, probe_sequence(r, -1)[1].port ^ 1),
            0,
        ),
        BirthdayDropReason.UNMATCHED_ACK,
    ),
    (
        "ack after the answer timeout",
        lambda r: (
            packet(Kind.ACK, Side.A, echo=probe_sequence(r, 0)[0]),
            probe_sequence(r, 0)[1],
            0,
        ),
        BirthdayDropReason.UNMATCHED_ACK,
    ),
]


@pytest.mark.parametrize(("name", "make", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_datagrams_are_dropped_and_counted(
    name: str, make: Callable[[Run], tuple[bytes, Endpoint, int]], reason: BirthdayDropReason
) -> None:
    run = sprayer(budget=1000)
    run.timers(until=START + 3.0)  # 300 probes out; the first ones are 3 s old
    sent_before = len(run.sent)
    data, remote, socket = make(run)
    run.receive(data, remote, socket)
    assert run.events == []
    assert len(run.sent) == sent_before  # no reply to anything hostile
    assert run.core.stats.dropped == {reason: 1}
    run.timers(until=START + 100)  # and the search carries on to its end
    assert run.core.stats.probes_sent == 1000


@given(st.lists(st.binary(max_size=64), max_size=20))
def test_no_datagram_makes_the_core_raise(datagrams: list[bytes]) -> None:
    run = sprayer(budget=10)
    for data in datagrams:
        run.receive(data, Endpoint(HARD_IP, 20000))
    assert run.core.stats.received == len(datagrams)
    assert run.core.stats.dropped_total == len(datagrams)


# -- misuse ---------------------------------------------------------------------------


def test_construction_is_checked() -> None:
    plan = opener_plan(EASY, 4, 100.0)
    with pytest.raises(LocalProtocolError, match="plan uses 4 sockets, 2 given"):
        BirthdayProber(config(Side.A), [LOCAL] * 2, plan, 0.0)
    with pytest.raises(LocalProtocolError, match="at least one socket"):
        BirthdayProber(config(Side.A), [], SendPlan(Kind.OPEN, HARD_IP, ()), 0.0)
    run = sprayer()
    with pytest.raises(LocalProtocolError, match="no socket 1"):
        run.core.receive_datagram(b"", EASY, 1, START)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"key": b"short"}, "key must be at least 16 bytes"),
        ({"session": b"1234567"}, "session id must be 8 bytes"),
        ({"rate": 0.0}, "rate must be in"),
        ({"rate": 5000.0}, "rate must be in"),
        ({"budget": -1}, "negative budget"),
        ({"ack_copies": 0}, "ack_copies"),
        ({"answer_timeout": float("nan")}, "answer_timeout"),
    ],
)
def test_config_is_checked(changes: dict[str, object], message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        config(Side.A, **changes)
