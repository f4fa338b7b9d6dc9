"""The virtual clock: ordering, run_until in both forms, idleness."""

from __future__ import annotations

import pytest

from natkit.simulations import EventLoop, SimulationError


def test_events_run_in_time_order_and_fifo_at_equal_times() -> None:
    loop = EventLoop()
    seen: list[tuple[float, str]] = []

    def note(tag: str) -> None:
        seen.append((loop.now, tag))

    loop.call_at(2.0, note, "c")
    loop.call_at(1.0, note, "a")
    loop.call_at(1.0, note, "b")  # same time as "a", scheduled later: runs later
    loop.call_later(0.5, note, "first")
    assert loop.run_until_idle()
    assert seen == [(0.5, "first"), (1.0, "a"), (1.0, "b"), (2.0, "c")]
    assert loop.processed == 4
    assert loop.now == 2.0  # idle leaves the clock at the last event


def test_run_until_time_is_inclusive_and_leaves_clock_at_target() -> None:
    loop = EventLoop()
    seen: list[float] = []
    for t in (1.0, 2.0, 3.0):
        loop.call_at(t, seen.append, t)
    assert loop.run_until(2.0) is True
    assert seen == [1.0, 2.0]
    assert loop.now == 2.0
    assert loop.next_time() == 3.0
    loop.run_until(2.5)
    assert loop.now == 2.5
    assert loop.pending == 1


def test_events_scheduled_by_events_run_in_the_same_pass() -> None:
    loop = EventLoop()
    seen: list[float] = []

    def chain(n: int) -> None:
        seen.append(loop.now)
        if n:
            loop.call_later(0.25, chain, n - 1)

    loop.call_at(0.0, chain, 3)
    loop.run_until(10.0)
    assert seen == [0.0, 0.25, 0.5, 0.75]


def test_run_until_predicate_stops_at_the_event_that_satisfies_it() -> None:
    loop = EventLoop()
    box: list[int] = []
    for t in (1.0, 2.0, 3.0):
        loop.call_at(t, box.append, int(t))
    assert loop.run_until(lambda: len(box) == 2, timeout=10.0) is True
    assert loop.now == 2.0
    assert box == [1, 2]


def test_run_until_predicate_true_at_once_runs_nothing() -> None:
    loop = EventLoop()
    loop.call_at(1.0, print, "never")
    assert loop.run_until(lambda: True, timeout=5.0) is True
    assert loop.now == 0.0
    assert loop.pending == 1


def test_run_until_predicate_times_out_with_clock_at_deadline() -> None:
    loop = EventLoop(start=100.0)
    box: list[int] = []
    loop.call_at(104.0, box.append, 1)
    loop.call_at(106.0, box.append, 2)
    assert loop.run_until(lambda: len(box) == 2, timeout=5.0) is False
    assert loop.now == 105.0
    assert box == [1]


def test_run_until_idle_reports_a_loop_that_never_idles() -> None:
    loop = EventLoop()

    def tick(_: None) -> None:
        loop.call_later(1.0, tick, None)

    loop.call_at(0.0, tick, None)
    assert loop.run_until_idle(limit=10.5) is False
    assert loop.now == 10.5
    assert loop.processed == 11


def test_misuse_raises() -> None:
    loop = EventLoop(start=5.0)
    with pytest.raises(SimulationError, match=r"cannot schedule at 4\.0, the clock is at 5\.0"):
        loop.call_at(4.0, print, None)
    with pytest.raises(SimulationError, match=r"cannot run until 1\.0"):
        loop.run_until(1.0)
    with pytest.raises(SimulationError, match="needs a timeout"):
        loop.run_until(lambda: False)  # type: ignore[call-overload]
    with pytest.raises(SimulationError, match="limit must be finite"):
        loop.run_until_idle(float("inf"))
