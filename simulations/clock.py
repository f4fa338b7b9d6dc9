"""The virtual clock: a discrete-event scheduler.

Theory of operation. Every future happening (a datagram arriving at a node,
a core's timer firing, a test's scheduled poke) is one heap entry
``(time, seq, callback, arg)``. ``seq`` increases with every scheduled
event, so events due at the same instant run in the order they were
scheduled: the simulation is a pure function of its inputs and seed.

The clock only moves when an event is taken off the heap (or when a
``run_until`` reaches its target), and never backwards. Nothing here reads
wall-clock time.

Events are stored as plain tuples with a one-argument callback rather than
closures or handle objects: the hot path (one event per datagram hop) then
allocates one tuple and nothing else. There is no cancellation; owners of
recurring work (the core driver's timer) ignore events that went stale.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Any, TypeVar, overload

from natkit.simulations.errors import SimulationError

T = TypeVar("T")

#: Default horizon of :meth:`EventLoop.run_until_idle`, in virtual seconds.
IDLE_LIMIT = 3600.0


class EventLoop:
    """Runs scheduled callbacks in (time, scheduling order) on a virtual clock."""

    __slots__ = ("_heap", "_now", "_seq", "processed")

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._seq = itertools.count()
        self._heap: list[tuple[float, int, Callable[[Any], object], Any]] = []
        #: How many events have run so far.
        self.processed = 0

    @property
    def now(self) -> float:
        """The current virtual time in seconds."""
        return self._now

    @property
    def pending(self) -> int:
        """How many events are scheduled (including ones their owner will ignore)."""
        return len(self._heap)

    def next_time(self) -> float | None:
        """When the earliest scheduled event is due, or ``None`` when idle."""
        return self._heap[0][0] if self._heap else None

    def call_at(self, when: float, callback: Callable[[T], object], arg: T) -> None:
        """Run ``callback(arg)`` at virtual time ``when`` (not in the past)."""
        if when < self._now:
            raise SimulationError(f"cannot schedule at {when}, the clock is at {self._now}")
        heapq.heappush(self._heap, (when, next(self._seq), callback, arg))

    def call_later(self, delay: float, callback: Callable[[T], object], arg: T) -> None:
        """Run ``callback(arg)`` ``delay`` (>= 0) seconds from now."""
        # The network's per-hop path: one check, one push.
        if delay < 0:
            raise SimulationError(f"cannot schedule {delay} s in the past")
        heapq.heappush(self._heap, (self._now + delay, next(self._seq), callback, arg))

    @overload
    def run_until(self, target: float) -> bool: ...

    @overload
    def run_until(self, target: Callable[[], bool], timeout: float) -> bool: ...

    def run_until(self, target: float | Callable[[], bool], timeout: float | None = None) -> bool:
        """Run events until a time, or until a condition holds.

        ``run_until(t)`` runs every event due at or before ``t`` and leaves
        the clock at ``t``; it returns ``True``.

        ``run_until(predicate, timeout)`` runs events one at a time until
        ``predicate()`` is true (checked before the first event and after
        each one) and returns ``True`` with the clock at that event's time.
        If it is still false after ``timeout`` virtual seconds, it returns
        ``False`` with the clock at ``now + timeout``.
        """
        if callable(target):
            if timeout is None or not timeout >= 0:
                raise SimulationError(f"run_until(predicate) needs a timeout >= 0, not {timeout}")
            if target():
                return True
            deadline = self._now + timeout
            if self._run(deadline, target):
                return True
            self._now = deadline
            return False
        if timeout is not None:
            raise SimulationError("run_until(time) takes no timeout")
        if target < self._now:
            raise SimulationError(f"cannot run until {target}, the clock is at {self._now}")
        self._run(target, None)
        self._now = target
        return True

    def run_until_idle(self, limit: float = IDLE_LIMIT) -> bool:
        """Run until no event is left, at most ``limit`` virtual seconds from now.

        Returns ``True`` if the loop went idle (the clock then stays at the
        last event's time), ``False`` if events remain past the horizon (the
        clock is then at the horizon). A core with a periodic timer never
        goes idle, hence the limit.
        """
        if not math.isfinite(limit) or limit < 0:
            raise SimulationError(f"limit must be finite and >= 0, not {limit}")
        deadline = self._now + limit
        self._run(deadline, None)
        if self._heap:
            self._now = deadline
            return False
        return True

    def _run(self, deadline: float, predicate: Callable[[], bool] | None) -> bool:
        # The hot loop: keep attribute lookups out of it.
        heap = self._heap
        pop = heapq.heappop
        count = 0
        try:
            while heap and heap[0][0] <= deadline:
                when, _, callback, arg = pop(heap)
                self._now = when
                count += 1
                callback(arg)
                if predicate is not None and predicate():
                    return True
            return False
        finally:
            self.processed += count
