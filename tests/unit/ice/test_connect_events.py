"""Events to every iterator at once (:mod:`natkit.aio.connect_events`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from natkit.aio.connect_events import EventFanout

#: Seconds before a test that waits for an event fails instead of hanging.
LIVENESS = 10.0


async def started(fanout: EventFanout[int], count: int) -> None:
    """Wait until ``count`` iterators run (they register on their first step)."""
    while fanout.subscribers < count:
        await asyncio.sleep(0)


async def step(events: AsyncIterator[int]) -> int:
    """The next event, or a failure (not a hang) when none comes."""
    return await asyncio.wait_for(anext(events), LIVENESS)


async def collect(events: AsyncIterator[int], into: list[int]) -> None:
    async for event in events:
        into.append(event)


async def test_every_iterator_gets_every_event_in_order() -> None:
    fanout: EventFanout[int] = EventFanout(limit=1000)
    first: list[int] = []
    second: list[int] = []
    loop = asyncio.get_running_loop()
    tasks = [
        loop.create_task(collect(fanout.subscribe(), first)),
        loop.create_task(collect(fanout.subscribe(), second)),
    ]
    await started(fanout, 2)
    for i in range(100):
        fanout.publish(i)
        if i % 7 == 0:
            await asyncio.sleep(0)  # readers run in between, at any point
    fanout.close()
    await asyncio.wait_for(asyncio.gather(*tasks), LIVENESS)
    assert first == second == list(range(100))
    assert fanout.dropped == 0
    assert fanout.subscribers == 0


async def test_an_iterator_sees_what_came_after_it_started_and_the_first_the_backlog() -> None:
    fanout: EventFanout[int] = EventFanout(limit=10)
    fanout.publish(1)  # nobody listens yet: kept for the first iterator
    early = fanout.subscribe()
    assert await step(early) == 1
    fanout.publish(2)
    late = fanout.subscribe()
    late_first = asyncio.get_running_loop().create_task(step(late))
    await started(fanout, 2)
    fanout.publish(3)
    assert await late_first == 3
    assert [await step(early), await step(early)] == [2, 3]
    await early.aclose()
    await late.aclose()
    assert fanout.subscribers == 0


async def test_a_slow_iterator_loses_its_own_oldest_events_only() -> None:
    fanout: EventFanout[int] = EventFanout(limit=3)
    fast: list[int] = []
    reader = asyncio.get_running_loop().create_task(collect(fanout.subscribe(), fast))
    slow = fanout.subscribe()
    first_slow = asyncio.get_running_loop().create_task(step(slow))
    await started(fanout, 2)
    fanout.publish(0)
    assert await first_slow == 0
    for i in range(1, 8):
        fanout.publish(i)  # the slow one reads nothing meanwhile
        await asyncio.sleep(0)
    fanout.close()
    await asyncio.wait_for(reader, LIVENESS)
    assert fast == list(range(8))  # unaffected
    assert [event async for event in slow] == [5, 6, 7]  # its newest 3 (the bound)
    assert fanout.dropped == 4


async def test_a_stopped_iterator_is_forgotten() -> None:
    fanout: EventFanout[int] = EventFanout(limit=3)
    events = fanout.subscribe()
    fanout.publish(1)
    assert await step(events) == 1
    await events.aclose()  # e.g. ``break`` out of ``async for``
    for i in range(10):
        fanout.publish(i)  # to the backlog (bounded), to nobody's queue
    assert fanout.subscribers == 0
    assert fanout.dropped == 7
