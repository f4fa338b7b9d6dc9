"""The events of a connect node, to every iterator at once (fan-out).

:meth:`natkit.aio.connect.Connection.events` may be iterated by several
tasks at the same time (a tunnel watching paths, a status page, a logger):
each iterator gets every event published from the moment it started, in
order, as its own copy; no iterator takes an event from another.

Bounds and policy:

* each iterator has its own queue of at most ``limit`` events; when a slow
  iterator's queue is full, *its* oldest event is dropped to make room
  (counted in :attr:`EventFanout.dropped`, the node's
  ``counters.events_dropped``). The node never waits for a reader and never
  grows without bound; the other iterators are unaffected.
* events published while no iterator runs are kept in a backlog (same
  bound, same policy), handed to the next iterator that starts: the events
  of ``start()`` reach the ``async for`` written right after it.
* :meth:`close` ends every iterator once it has what was queued for it.

An iterator is registered when it is first advanced, not when
``events()`` is called, and unregistered when it ends (``break``,
``aclose()``, an exception in its loop).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

__all__ = ["EventFanout"]

E = TypeVar("E")


class _Subscriber(Generic[E]):
    __slots__ = ("queue", "wake")

    def __init__(self, backlog: deque[E]) -> None:
        self.queue = backlog
        self.wake = asyncio.Event()


class EventFanout(Generic[E]):
    """Publishes events to every running iterator (module doc)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._subscribers: list[_Subscriber[E]] = []
        self._backlog: deque[E] = deque()
        self._closed = False
        #: Events dropped from a full queue (an iterator's, or the backlog).
        self.dropped = 0

    @property
    def subscribers(self) -> int:
        """Iterators running now."""
        return len(self._subscribers)

    def publish(self, event: E) -> None:
        """Queue ``event`` for every iterator (or the backlog when there is none)."""
        if self._closed:
            return
        if not self._subscribers:
            self._push(self._backlog, event)
            return
        for subscriber in self._subscribers:
            self._push(subscriber.queue, event)
            subscriber.wake.set()

    def _push(self, queue: deque[E], event: E) -> None:
        if len(queue) >= self.limit:
            queue.popleft()
            self.dropped += 1
        queue.append(event)

    async def subscribe(self) -> AsyncIterator[E]:
        """Every event from now on (and the backlog, if this is the next
        iterator to start), until :meth:`close`."""
        backlog, self._backlog = self._backlog, deque()
        subscriber = _Subscriber(backlog)
        self._subscribers.append(subscriber)
        try:
            while True:
                while subscriber.queue:
                    yield subscriber.queue.popleft()
                if self._closed:
                    return
                subscriber.wake.clear()
                await subscriber.wake.wait()
        finally:
            self._subscribers.remove(subscriber)

    def close(self) -> None:
        """End every iterator (after what was queued for it); idempotent."""
        self._closed = True
        for subscriber in self._subscribers:
            subscriber.wake.set()
