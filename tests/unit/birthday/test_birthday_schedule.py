"""Send plans are plain data: table tests compare them whole."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

import pytest

from natkit.birthday.ports import PortRange
from natkit.birthday.schedule import (
    MAX_RATE,
    PlannedSend,
    RateWindow,
    SendPlan,
    max_sends_in_window,
    opener_plan,
    pacing_gap,
    spray_plan,
)
from natkit.birthday.wire import Kind
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError

HARD_IP = IPv4Address("203.0.113.7")
EASY = Endpoint.parse("198.51.100.9:40000")


def paced(start: float, rate: float, count: int) -> list[float]:
    """The send times a plan uses: each one gap after the last."""
    times, at = [], start
    for _ in range(count):
        times.append(at)
        at += pacing_gap(rate)
    return times


def test_pacing_gap_is_the_rate_plus_one_part_per_million() -> None:
    assert pacing_gap(100.0) == pytest.approx(0.01 * (1 + 1e-6), rel=1e-15)
    assert pacing_gap(MAX_RATE) > 1 / MAX_RATE
    for bad in (0.0, -1.0, MAX_RATE * 2, float("nan")):
        with pytest.raises(LocalProtocolError, match="rate must be in"):
            pacing_gap(bad)


@pytest.mark.parametrize(
    ("rate", "count", "seconds", "min_gap"),
    [
        (100.0, 100, 1.0, 0.005),  # a whole rate: that many in any second
        (250.0, 250, 1.0, 0.002),
        (100.5, 100, 100 / 100.5, 1 / 201),  # the long-run rate is kept
        (1.5, 1, 1 / 1.5, 1 / 3),
        (0.5, 1, 2.0, 1.0),  # below one a second: one per 1/rate
    ],
)
def test_rate_window(rate: float, count: int, seconds: float, min_gap: float) -> None:
    window = RateWindow.for_rate(rate)
    assert window.count == count
    assert window.seconds == pytest.approx(seconds, rel=2e-6)
    assert window.seconds > count / rate  # the 1 ppm margin
    assert window.min_gap == pytest.approx(min_gap, rel=2e-6)


def test_rate_window_next_allowed() -> None:
    window = RateWindow(count=3, seconds=1.0, min_gap=0.1)
    assert window.next_allowed([]) == float("-inf")
    assert window.next_allowed([5.0]) == pytest.approx(5.1)  # the gap
    assert window.next_allowed([5.0, 5.1, 5.2]) == pytest.approx(6.0)  # the window
    assert window.next_allowed([5.0, 5.7, 5.9]) == pytest.approx(6.0)
    assert window.next_allowed([4.0, 5.7, 5.95]) == pytest.approx(6.05)


def test_spray_plan_from_one_socket() -> None:
    t = paced(10.0, 2.0, 4)
    assert spray_plan(
        HARD_IP, PortRange(1000, 1009), 4, 2.0, random.Random(7), start=10.0
    ) == SendPlan(
        Kind.PROBE,
        HARD_IP,
        (
            PlannedSend(t[0], 0, 1005),
            PlannedSend(t[1], 0, 1002),
            PlannedSend(t[2], 0, 1006),
            PlannedSend(t[3], 0, 1009),
        ),
    )


def test_spray_plan_from_several_sockets_uses_each_socket_port_pair_once() -> None:
    t = paced(0.0, 100.0, 5)
    assert spray_plan(
        HARD_IP, PortRange(30000, 30002), 5, 100.0, random.Random(1), sockets=2
    ) == SendPlan(
        Kind.PROBE,
        HARD_IP,
        (
            PlannedSend(t[0], 0, 30001),
            PlannedSend(t[1], 1, 30001),
            PlannedSend(t[2], 0, 30000),
            PlannedSend(t[3], 1, 30002),
            PlannedSend(t[4], 1, 30000),
        ),
    )


def test_a_full_spray_tries_every_port_exactly_once() -> None:
    plan = spray_plan(HARD_IP, PortRange(1, 500), 500, 1000.0, random.Random(3))
    assert sorted(s.port for s in plan.sends) == list(range(1, 501))
    both = spray_plan(HARD_IP, PortRange(1, 50), 150, 1000.0, random.Random(3), sockets=3)
    assert len({(s.socket, s.port) for s in both.sends}) == 150


def test_the_same_rng_state_gives_the_same_plan() -> None:
    def make(seed: int) -> SendPlan:
        return spray_plan(HARD_IP, PortRange(), 300, 100.0, random.Random(seed))

    assert make(11) == make(11)
    assert make(11) != make(12)


def test_spray_plan_refuses_more_probes_than_pairs() -> None:
    with pytest.raises(LocalProtocolError, match="do not fit in 2 socket"):
        spray_plan(HARD_IP, PortRange(1, 10), 21, 100.0, random.Random(0), sockets=2)


def test_opener_plan_rounds_are_keepalive_apart() -> None:
    t = paced(5.0, 10.0, 3)
    u = paced(20.0, 10.0, 3)
    assert opener_plan(EASY, 3, 10.0, start=5.0, keepalive=15.0, rounds=2) == SendPlan(
        Kind.OPEN,
        EASY.address,
        (
            PlannedSend(t[0], 0, 40000),
            PlannedSend(t[1], 1, 40000),
            PlannedSend(t[2], 2, 40000),
            PlannedSend(u[0], 0, 40000),
            PlannedSend(u[1], 1, 40000),
            PlannedSend(u[2], 2, 40000),
        ),
    )


def test_opener_rounds_longer_than_the_keepalive_run_back_to_back() -> None:
    plan = opener_plan(EASY, 4, 1.0, keepalive=2.0, rounds=2)
    assert [s.at for s in plan.sends] == paced(0.0, 1.0, 8)
    assert plan.remote(0) == EASY


def test_plans_must_not_go_back_in_time_or_carry_acks() -> None:
    with pytest.raises(LocalProtocolError, match="back in time"):
        SendPlan(Kind.PROBE, HARD_IP, (PlannedSend(1.0, 0, 1), PlannedSend(0.5, 0, 2)))
    with pytest.raises(LocalProtocolError, match="never planned"):
        SendPlan(Kind.ACK, HARD_IP, ())


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ([], 0),
        ([0.0], 1),
        ([0.0, 0.5, 0.999], 3),
        ([0.0, 0.5, 1.0], 2),  # half-open: 1.0 starts the next second
        ([0.0, 0.1, 0.2, 1.15, 1.16], 3),
    ],
)
def test_max_sends_in_window(times: list[float], expected: int) -> None:
    assert max_sends_in_window(times) == expected


@pytest.mark.parametrize("rate", [1.0, 3.0, 7.0, 100.0, 999.0, MAX_RATE])
@pytest.mark.parametrize("start", [0.0, 12345.678, 9.9e6])
def test_a_plan_never_exceeds_its_rate_in_any_second(rate: float, start: float) -> None:
    # Even at clock values near 1e7 s, where float rounding is coarse.
    plan = spray_plan(HARD_IP, PortRange(), int(rate * 5), rate, random.Random(0), start=start)
    assert max_sends_in_window([s.at for s in plan.sends]) == int(rate)
