"""When to read each peer's records: a poll schedule with a rate cap and
backoff. Pure: ``now`` comes in, the next deadline goes out.

* Each watched peer is read every ``interval`` seconds (never below
  :data:`MIN_POLL_INTERVAL`): DNS is polled, not pushed, and a short TTL is
  a promise not to read more often than that, not an invitation to.
* All reads together stay under ``max_rate`` per second: with many peers
  the reads are spread out, and each peer's interval grows (1,000 peers at
  20 reads/s are each read every 50 s). A server is never hammered.
* A failed read (timeout, SERVFAIL, garbage) doubles that peer's delay, up
  to ``max_backoff`` (5 minutes, like the rendezvous client's reconnects);
  a success returns it to ``interval``. "Nothing published yet" (NXDOMAIN)
  is a success.

One heap of deadlines, so the next read costs O(log n) for n peers.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

#: The shortest interval between two reads of one peer.
MIN_POLL_INTERVAL = 1.0
#: The default interval, and the TTL natkit publishes its records with.
DEFAULT_POLL_INTERVAL = 5.0
#: Reads per second over all peers.
DEFAULT_MAX_RATE = 20.0
#: The longest delay after failures.
DEFAULT_MAX_BACKOFF = 300.0


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """``base`` after no failure, doubled per consecutive failure, at most ``cap``."""
    if failures <= 0:
        return base
    # 2**failures overflows nothing we care about: the cap is reached by ~9.
    return min(cap, base * 2.0 ** min(failures, 64))


@dataclass(frozen=True, slots=True)
class PollConfig:
    """How often peers are read."""

    #: Seconds between two reads of one peer (at least :data:`MIN_POLL_INTERVAL`).
    interval: float = DEFAULT_POLL_INTERVAL
    #: Reads per second, all peers together.
    max_rate: float = DEFAULT_MAX_RATE
    #: Longest delay before retrying a peer whose reads fail.
    max_backoff: float = DEFAULT_MAX_BACKOFF

    def __post_init__(self) -> None:
        if not self.interval >= MIN_POLL_INTERVAL:
            raise ValueError(
                f"poll interval must be at least {MIN_POLL_INTERVAL} s, got {self.interval}"
            )
        if not self.max_rate > 0:
            raise ValueError(f"max_rate must be positive, got {self.max_rate}")
        if not self.max_backoff >= self.interval:
            raise ValueError("max_backoff must be at least the poll interval")


class PollSchedule(Generic[K]):
    """Which peer to read next, and when (see the module docs)."""

    def __init__(self, config: PollConfig | None = None) -> None:
        self.config = config or PollConfig()
        self._spacing = 1.0 / self.config.max_rate
        self._due: dict[K, float] = {}
        self._failures: dict[K, int] = {}
        self._in_flight: set[K] = set()
        self._heap: list[tuple[float, int, K]] = []
        self._order = itertools.count()
        self._next_slot = float("-inf")

    # -- peers

    def watch(self, key: K, now: float) -> None:
        """Read ``key`` from now on, the first time as soon as the rate allows."""
        if key in self._failures:
            return
        self._failures[key] = 0
        if key not in self._in_flight:  # else done() schedules it
            self._schedule(key, now)

    def unwatch(self, key: K) -> None:
        """Stop reading ``key`` (a read in flight finishes and is discarded)."""
        self._due.pop(key, None)
        self._failures.pop(key, None)

    def poll_soon(self, key: K, now: float) -> None:
        """Read ``key`` as soon as the rate allows (e.g. after a network change)."""
        if key in self._due:
            self._schedule(key, now)

    def __contains__(self, key: object) -> bool:
        return key in self._failures

    @property
    def watched(self) -> tuple[K, ...]:
        return tuple(self._failures)

    def failures(self, key: K) -> int:
        """Consecutive failed reads of ``key``."""
        return self._failures.get(key, 0)

    # -- time

    def next_deadline(self) -> float | None:
        """When :meth:`take` will next return a peer (``None``: nothing to read)."""
        self._drop_stale()
        if not self._heap:
            return None
        return max(self._heap[0][0], self._next_slot)

    def take(self, now: float) -> K | None:
        """The peer to read now, or ``None`` (none due, or the rate says wait).

        The peer is in flight until :meth:`done`.
        """
        if now < self._next_slot:
            return None
        self._drop_stale()
        if not self._heap or self._heap[0][0] > now:
            return None
        _, _, key = heapq.heappop(self._heap)
        del self._due[key]
        self._in_flight.add(key)
        self._next_slot = now + self._spacing
        return key

    def done(self, key: K, now: float, *, ok: bool) -> float | None:
        """A read of ``key`` finished; returns when it is read next (``None``:
        no longer watched)."""
        self._in_flight.discard(key)
        if key not in self._failures:
            return None
        failures = 0 if ok else self._failures[key] + 1
        self._failures[key] = failures
        delay = backoff_delay(failures, self.config.interval, self.config.max_backoff)
        return self._schedule(key, now + delay)

    # -- heap

    def _schedule(self, key: K, due: float) -> float:
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._order), key))
        return due

    def _drop_stale(self) -> None:
        """Pop heap entries that were rescheduled or unwatched since."""
        heap = self._heap
        while heap and self._due.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
