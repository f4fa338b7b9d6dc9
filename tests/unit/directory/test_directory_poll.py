"""The poll schedule on a fake clock: interval, rate cap, backoff."""

from __future__ import annotations

import itertools
from collections.abc import Hashable
from typing import TypeVar

import pytest

from natkit.directory.poll import (
    MIN_POLL_INTERVAL,
    PollConfig,
    PollSchedule,
    backoff_delay,
)

K = TypeVar("K", bound=Hashable)


def test_config_refuses_hammering() -> None:
    with pytest.raises(ValueError, match=r"at least 1\.0 s"):
        PollConfig(interval=0.5)
    with pytest.raises(ValueError, match="max_rate"):
        PollConfig(max_rate=0)
    with pytest.raises(ValueError, match="max_backoff"):
        PollConfig(interval=10, max_backoff=5)
    assert MIN_POLL_INTERVAL == 1.0


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_delay(n, 5.0, 300.0) for n in range(8)] == [
        5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0,
    ]  # fmt: skip
    assert backoff_delay(10_000, 5.0, 300.0) == 300.0


def _run(schedule: PollSchedule[K], until: float) -> list[tuple[float, K]]:
    """Drive the schedule like the channel does: take what is due, finish
    each read at once, sleep to the next deadline."""
    reads: list[tuple[float, str]] = []
    now = 0.0
    while now <= until:
        while (key := schedule.take(now)) is not None:
            reads.append((now, key))
            schedule.done(key, now, ok=True)
        deadline = schedule.next_deadline()
        if deadline is None:
            break
        now = max(deadline, now)
    return reads


def test_each_peer_is_read_every_interval() -> None:
    schedule: PollSchedule[str] = PollSchedule(PollConfig(interval=5.0))
    schedule.watch("a", 0.0)
    schedule.watch("b", 0.0)
    reads = _run(schedule, 20.0)
    times_a = [t for t, k in reads if k == "a"]
    assert times_a[0] == 0.0
    assert all(
        later - earlier == pytest.approx(5.0) for earlier, later in itertools.pairwise(times_a)
    )


def test_the_rate_cap_holds_for_many_peers() -> None:
    config = PollConfig(interval=1.0, max_rate=20.0)
    schedule: PollSchedule[int] = PollSchedule(config)
    for peer in range(1000):
        schedule.watch(peer, 0.0)
    reads = _run(schedule, 120.0)
    times = [t for t, _ in reads]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 1 / config.max_rate - 1e-9
    # 1,000 peers at 20 reads/s: each is read about every 50 s, all of them.
    per_peer: dict[int, list[float]] = {}
    for t, peer in reads:
        per_peer.setdefault(peer, []).append(t)
    assert len(per_peer) == 1000
    assert all(len(ts) >= 2 for ts in per_peer.values())


def test_failures_back_off_and_a_success_resets() -> None:
    schedule: PollSchedule[str] = PollSchedule(PollConfig(interval=5.0, max_backoff=60.0))
    schedule.watch("a", 0.0)
    now = 0.0
    due = []
    for _ in range(6):
        assert schedule.take(now) == "a"
        next_at = schedule.done("a", now, ok=False)
        assert next_at is not None
        due.append(next_at - now)
        now = next_at
    assert due == [10.0, 20.0, 40.0, 60.0, 60.0, 60.0]
    assert schedule.failures("a") == 6
    assert schedule.take(now) == "a"
    assert schedule.done("a", now, ok=True) == now + 5.0
    assert schedule.failures("a") == 0


def test_nothing_is_read_before_it_is_due() -> None:
    schedule: PollSchedule[str] = PollSchedule(PollConfig(interval=5.0))
    schedule.watch("a", 0.0)
    assert schedule.take(0.0) == "a"
    assert schedule.take(0.0) is None  # in flight
    schedule.done("a", 1.0, ok=True)
    assert schedule.take(5.9) is None
    assert schedule.next_deadline() == 6.0
    assert schedule.take(6.0) == "a"


def test_unwatch_and_rewatch_during_a_read() -> None:
    schedule: PollSchedule[str] = PollSchedule(PollConfig(interval=5.0))
    schedule.watch("a", 0.0)
    assert schedule.take(0.0) == "a"
    schedule.unwatch("a")
    assert schedule.done("a", 0.5, ok=True) is None
    assert schedule.next_deadline() is None
    schedule.watch("a", 1.0)
    assert schedule.take(1.0) == "a"
    # Re-watched while its read is in flight: done() schedules it again.
    schedule.unwatch("a")
    schedule.watch("a", 1.2)
    assert schedule.done("a", 1.5, ok=True) == 6.5
    assert "a" in schedule


def test_poll_soon_moves_a_peer_forward() -> None:
    schedule: PollSchedule[str] = PollSchedule(PollConfig(interval=5.0))
    schedule.watch("a", 0.0)
    assert schedule.take(0.0) == "a"
    schedule.done("a", 0.0, ok=True)
    assert schedule.next_deadline() == 5.0
    schedule.poll_soon("a", 2.0)
    assert schedule.next_deadline() == 2.0
