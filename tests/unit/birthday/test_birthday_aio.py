"""Loopback smoke tests: both sides as asyncio tasks on 127.0.0.1 (no NAT)."""

from __future__ import annotations

import asyncio
import random
import socket
from ipaddress import IPv4Address

from birthday_testlib import config

from natkit.aio.birthday import probe_easy, probe_hard, run_prober
from natkit.birthday.events import BirthdayEvent, PairFound
from natkit.birthday.ports import PortRange
from natkit.birthday.schedule import SendPlan, opener_plan
from natkit.birthday.wire import Kind, Side
from natkit.endpoint import Endpoint

LOOPBACK = IPv4Address("127.0.0.1")


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_two_tasks_on_loopback_find_each_other() -> None:
    # The easy side's port plays its STUN-mapped endpoint: the hard side aims at it.
    easy_socket = Endpoint(LOOPBACK, free_loopback_port())
    async with asyncio.timeout(10):
        hard, easy = await asyncio.gather(
            probe_hard(
                config(Side.A, rate=1000.0, budget=0, peer_address=LOOPBACK),
                easy_socket,
                ports=16,
                duration=5.0,
                local_address="127.0.0.1",
            ),
            probe_easy(
                config(Side.B, rate=1000.0, budget=500, peer_address=LOOPBACK),
                LOOPBACK,
                random.Random(1),
                port_range=PortRange(32768, 60999),
                local=easy_socket,
                start_delay=0.05,
            ),
        )
    assert isinstance(hard, PairFound)
    assert isinstance(easy, PairFound)
    # The same path, named from both ends.
    assert easy.pair.local == hard.pair.remote == easy_socket
    assert hard.pair.local == easy.pair.remote


async def test_the_spray_alone_finds_a_socket_when_the_openers_are_lost() -> None:
    # The hard side's openers go to 127.0.0.2, where nobody listens, as if
    # the easy side's NAT had filtered them: only the spray can find the pair.
    async with asyncio.timeout(20):
        for attempt in range(20):
            base = random.Random(attempt).randrange(20000, 30000, 32)
            hard_endpoints = [Endpoint(LOOPBACK, base + 4 * i) for i in range(8)]
            try:
                hard, easy = await _spray_against(hard_endpoints, PortRange(base, base + 31))
            except OSError:
                continue  # a port of the block is taken: try another block
            break
        else:
            raise AssertionError("no free block of loopback ports")
    assert isinstance(easy, PairFound)
    assert isinstance(hard, PairFound)
    assert (easy.via, hard.via) == (Kind.ACK, Kind.PROBE)
    assert easy.pair.remote in hard_endpoints
    assert hard.pair.remote == easy.pair.local
    assert easy.stats.probes_sent <= 32


async def _spray_against(
    hard_endpoints: list[Endpoint], port_range: PortRange
) -> tuple[BirthdayEvent, BirthdayEvent]:
    easy_port = free_loopback_port()
    dead_end = Endpoint.of("127.0.0.2", easy_port)

    def hard_plan(_: list[Endpoint], now: float) -> SendPlan:
        return opener_plan(dead_end, len(hard_endpoints), 1000.0, start=now)

    hard_task = asyncio.create_task(
        run_prober(
            config(Side.A, rate=1000.0, budget=0, peer_address=LOOPBACK, answer_timeout=3.0),
            hard_endpoints,
            hard_plan,
        )
    )
    await asyncio.sleep(0.05)  # the hard side binds (or fails to) before the spray
    if hard_task.done():
        error = hard_task.exception()
        if error is not None:
            raise error
    easy = await probe_easy(
        config(Side.B, rate=1000.0, budget=32, peer_address=LOOPBACK),
        LOOPBACK,
        random.Random(2),
        port_range=port_range,
        local=Endpoint(LOOPBACK, easy_port),
    )
    return await hard_task, easy
