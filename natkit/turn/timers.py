"""A keyed set of deadlines: one timer for a core with many things to do.

Each key (a refresh, a permission, a channel...) has at most one deadline;
re-scheduling replaces it. Deadlines live in a heap with lazy deletion, so
scheduling and popping cost O(log n) however many peers an allocation has.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Deadlines(Generic[K]):
    """Deadlines by key; the earliest is :meth:`next`."""

    def __init__(self) -> None:
        self._when: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._when)

    def __contains__(self, key: object) -> bool:
        return key in self._when

    def get(self, key: K) -> float | None:
        return self._when.get(key)

    def schedule(self, key: K, when: float) -> None:
        """Set ``key``'s deadline to ``when`` (replacing any earlier one)."""
        self._when[key] = when
        heapq.heappush(self._heap, (when, next(self._order), key))
        if len(self._heap) > 2 * len(self._when) + 64:
            # Rescheduled keys leave stale entries behind: rebuild now and then.
            self._heap = [(w, next(self._order), k) for k, w in self._when.items()]
            heapq.heapify(self._heap)

    def cancel(self, key: K) -> None:
        self._when.pop(key, None)

    def clear(self) -> None:
        self._when.clear()
        self._heap.clear()

    def next(self) -> float | None:
        """The earliest deadline, or ``None``."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[K]:
        """Remove and return the keys whose deadline is ``now`` or earlier, earliest first."""
        due: list[K] = []
        while True:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                return due
            _, _, key = heapq.heappop(self._heap)
            del self._when[key]
            due.append(key)

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap and self._when.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
