"""Run :class:`~natkit.birthday.prober.BirthdayProber` on real UDP sockets.

Each function binds the sockets its role needs, builds the plan on the real
clock (``loop.time()``) once they are bound, and returns the terminal event:
:class:`~natkit.birthday.events.PairFound` or
:class:`~natkit.birthday.events.SearchExhausted`. All sockets are closed on
return; the ACKs that end a run are sent before that.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from natkit.aio.driver import run_to_completion
from natkit.birthday.events import BirthdayEvent
from natkit.birthday.ports import FULL_RANGE, PortRange
from natkit.birthday.prober import BirthdayProber, ProberConfig
from natkit.birthday.schedule import SendPlan, opener_plan, pacing_gap, spray_plan
from natkit.endpoint import Endpoint, IPAddress
from natkit.sansio import SansIOCore


async def run_prober(
    config: ProberConfig,
    endpoints: Sequence[Endpoint],
    make_plan: Callable[[list[Endpoint], float], SendPlan],
) -> BirthdayEvent:
    """Bind ``endpoints`` (port 0: any), plan with ``make_plan(bound, now)``, run."""

    def make_core(sockets: list[Endpoint], now: float) -> SansIOCore[BirthdayEvent]:
        return BirthdayProber(config, sockets, make_plan(sockets, now), now)

    def result_of(event: BirthdayEvent) -> BirthdayEvent:
        return event  # every event a prober emits ends its run

    return await run_to_completion(make_core, endpoints, result_of)


def opener_rounds(duration: float, keepalive: float) -> int:
    """Rounds of OPENs that keep mappings alive for ``duration`` seconds."""
    return max(1, math.floor(duration / keepalive) + 1)


def spray_seconds(probes: int, rate: float) -> float:
    """How long a spray of ``probes`` takes at ``rate`` (what the peer must outlast)."""
    return probes * pacing_gap(rate)


async def probe_hard(
    config: ProberConfig,
    peer: Endpoint,
    *,
    ports: int = 256,
    duration: float = 30.0,
    keepalive: float = 15.0,
    local_address: str = "0.0.0.0",
) -> BirthdayEvent:
    """The hard side of one-hard mode: ``ports`` sockets send OPENs to the
    easy side's mapped endpoint ``peer``, refreshed every ``keepalive``
    seconds for ``duration``, and answer the first probe that gets in."""
    rounds = opener_rounds(duration, keepalive)

    def make_plan(_: list[Endpoint], now: float) -> SendPlan:
        return opener_plan(peer, ports, config.rate, start=now, keepalive=keepalive, rounds=rounds)

    return await run_prober(config, [Endpoint.of(local_address, 0)] * ports, make_plan)


async def probe_easy(
    config: ProberConfig,
    peer_address: IPAddress,
    rng: random.Random,
    *,
    port_range: PortRange = FULL_RANGE,
    local: Endpoint | None = None,
    start_delay: float = 0.0,
) -> BirthdayEvent:
    """The easy side of one-hard mode: one socket (``local``, whose mapped
    endpoint the hard side targets) sprays ``config.budget`` probes at
    random ports of ``peer_address``, after ``start_delay`` seconds (the
    time the hard side needs to open its mappings)."""

    def make_plan(_: list[Endpoint], now: float) -> SendPlan:
        return spray_plan(
            peer_address, port_range, config.budget, config.rate, rng, start=now + start_delay
        )

    return await run_prober(config, [local or Endpoint.of("0.0.0.0", 0)], make_plan)


async def probe_both_hard(
    config: ProberConfig,
    peer_address: IPAddress,
    rng: random.Random,
    *,
    ports: int = 256,
    port_range: PortRange = FULL_RANGE,
    local_address: str = "0.0.0.0",
) -> BirthdayEvent:
    """Both-hard mode, either side: ``ports`` sockets spray
    ``config.budget`` probes at random (socket, port) pairs of the peer's IP."""

    def make_plan(_: list[Endpoint], now: float) -> SendPlan:
        return spray_plan(
            peer_address, port_range, config.budget, config.rate, rng, sockets=ports, start=now
        )

    return await run_prober(config, [Endpoint.of(local_address, 0)] * ports, make_plan)
