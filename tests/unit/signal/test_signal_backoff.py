"""The reconnection schedule: exponential, jittered, capped at 5 minutes."""

from __future__ import annotations

import random

import pytest

from natkit.errors import LocalProtocolError
from natkit.signal import DownReason
from natkit.signal.backoff import MAX_BACKOFF, Backoff, Reconnects


def test_bases_double_up_to_five_minutes() -> None:
    backoff = Backoff()
    assert [backoff.base(n) for n in range(11)] == [
        1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300,
    ]  # fmt: skip
    assert backoff.base(10_000) == MAX_BACKOFF == 300.0


def test_jitter_only_shortens_and_stays_within_half() -> None:
    backoff = Backoff()
    rng = random.Random(1)
    for attempt in range(40):
        for _ in range(20):
            delay = backoff.delay(attempt, rng)
            base = backoff.base(attempt)
            assert base / 2 <= delay <= base <= 300.0


def test_jitter_spreads_clients_apart() -> None:
    backoff = Backoff()
    delays = {round(backoff.delay(8, random.Random(seed)), 3) for seed in range(50)}
    assert len(delays) > 40


def test_impossible_schedules_are_refused() -> None:
    for bad in (
        {"initial": 0.0},
        {"initial": 400.0},
        {"factor": 0.5},
        {"jitter": 1.0},
    ):
        with pytest.raises(LocalProtocolError):
            Backoff(**bad)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        Backoff().base(-1)


def no_jitter() -> Backoff:
    return Backoff(jitter=0.0)


def test_attempts_grow_while_connections_fail() -> None:
    reconnects = Reconnects(no_jitter(), stable_after=30.0)
    rng = random.Random(0)
    delays = [reconnects.next_delay(DownReason.UNREACHABLE, None, rng) for _ in range(5)]
    assert delays == [1, 2, 4, 8, 16]


def test_a_stable_connection_resets_the_schedule() -> None:
    reconnects = Reconnects(no_jitter(), stable_after=30.0)
    rng = random.Random(0)
    for _ in range(6):
        reconnects.next_delay(DownReason.UNREACHABLE, None, rng)
    assert reconnects.next_delay(DownReason.LOST, 31.0, rng) == 1


def test_a_short_lived_connection_does_not_reset_it() -> None:
    reconnects = Reconnects(no_jitter(), stable_after=30.0)
    rng = random.Random(0)
    for _ in range(4):
        reconnects.next_delay(DownReason.UNREACHABLE, None, rng)
    # Welcomed, then dropped after 2 s (a server in a crash loop).
    assert reconnects.next_delay(DownReason.LOST, 2.0, rng) == 16


def test_replaced_never_resets_it() -> None:
    reconnects = Reconnects(no_jitter(), stable_after=30.0)
    rng = random.Random(0)
    assert reconnects.next_delay(DownReason.REPLACED, 3600.0, rng) == 1
    assert reconnects.next_delay(DownReason.REPLACED, 3600.0, rng) == 2
    assert reconnects.next_delay(DownReason.REPLACED, 3600.0, rng) == 4
