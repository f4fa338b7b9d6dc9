"""The classifier's RTT estimates (natkit.probe.rtt): a stall is forgotten,
a slow route is not."""

from __future__ import annotations

import ipaddress

import pytest

from natkit.probe.rtt import PathRtt

PRIMARY = ipaddress.ip_address("203.0.113.10")
ALTERNATE = ipaddress.ip_address("203.0.113.11")


def test_nothing_known_before_the_first_sample() -> None:
    rtt = PathRtt(memory=0.1)
    assert (rtt.current, rtt.current_max, rtt.typical, rtt.route_excess) == (None, None, None, 0)


def test_a_stall_is_forgotten_once_later_attempts_are_answered() -> None:
    rtt = PathRtt(memory=0.1)
    for i in range(5):  # the first burst, answered after a 0.5 s stall
        rtt.add(0.001 * i, 0.5 - 0.001 * i, PRIMARY)
    assert rtt.current == pytest.approx(0.498)
    rtt.add(0.5, 0.002, PRIMARY)  # sent after the stall: more than `memory` newer
    assert rtt.current == 0.002
    assert rtt.current_max == 0.002
    for i in range(6):
        rtt.add(0.51 + 0.01 * i, 0.002, PRIMARY)
    assert rtt.typical == 0.002  # one stalled burst does not make the run's RTT


def test_recent_samples_are_all_kept_within_memory() -> None:
    rtt = PathRtt(memory=0.1)
    rtt.add(0.0, 0.030, PRIMARY)
    rtt.add(0.05, 0.010, PRIMARY)
    rtt.add(0.09, 0.020, PRIMARY)
    assert rtt.current == 0.020
    assert rtt.current_max == 0.030


def test_a_stall_on_every_route_cancels_out_of_the_route_excess() -> None:
    rtt = PathRtt(memory=0.1)
    rtt.add(0.000, 0.900, PRIMARY)
    rtt.add(0.001, 0.899, ALTERNATE)
    rtt.add(0.002, 0.898, PRIMARY)
    assert rtt.route_excess == pytest.approx(0.0, abs=0.002)


def test_a_slow_route_keeps_its_excess_however_the_primary_recovers() -> None:
    rtt = PathRtt(memory=0.1)
    rtt.add(0.000, 0.010, PRIMARY)
    rtt.add(0.001, 0.060, ALTERNATE)  # 50 ms farther away
    for i in range(20):
        rtt.add(1.0 + 0.01 * i, 0.010, PRIMARY)
    assert rtt.route_excess == pytest.approx(0.050)
    # A later, faster measurement of that route lowers it (its best case counts).
    rtt.add(1.3, 0.020, ALTERNATE)
    assert rtt.route_excess == pytest.approx(0.010)
