"""Simultaneous hole punching with natkit's birthday prober, and a runner for prober pairs.

natkit has no separate hole-punching core (the path scheduler is a later
issue), and needs none here: :class:`~natkit.birthday.prober.BirthdayProber`
already is one. Given a plan whose every PROBE goes to the one endpoint the
peer was told (its STUN-mapped or port-mapped endpoint), it sends them
paced, answers the first authentic PROBE that gets in with ACKs sent back
to wherever it came from (as an ICE agent answers a check from a
peer-reflexive address), and reports :class:`~natkit.birthday.events.PairFound`
once a PROBE of the peer's arrives or the peer ACKs one of ours. Either
proves the path works both ways, which is what "connected" means below.

So every method of the traversal matrix is the same two cores, run by
:func:`run_pair`, with different plans.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from natkit.birthday.events import BirthdayEvent, PairFound
from natkit.birthday.prober import BirthdayProber
from natkit.birthday.schedule import PlannedSend, SendPlan
from natkit.birthday.wire import Kind
from natkit.endpoint import Endpoint
from natkit.simulations.clock import EventLoop
from natkit.simulations.driver import CoreDriver
from natkit.simulations.errors import SimulationError
from natkit.simulations.network import SimSocket

#: Punch packets per side, and the gap between them: a second of trying.
PUNCH_ATTEMPTS = 20
PUNCH_INTERVAL = 0.05


def direct_plan(
    peer: Endpoint,
    start: float,
    *,
    attempts: int = PUNCH_ATTEMPTS,
    interval: float = PUNCH_INTERVAL,
) -> SendPlan:
    """PROBEs from socket 0 to ``peer``, ``attempts`` times, ``interval`` apart.

    Repeated because the first ones may arrive before the peer's own
    packets have opened its NAT for us.
    """
    if attempts < 1 or not interval > 0:
        raise SimulationError(f"bad punch schedule: {attempts} x {interval}")
    sends = tuple(PlannedSend(start + i * interval, 0, peer.port) for i in range(attempts))
    return SendPlan(Kind.PROBE, peer.address, sends)


@dataclass(frozen=True, slots=True)
class PairRun:
    """How two probers run against each other ended."""

    #: The terminal event of each prober (``None``: still running at the timeout).
    events: tuple[BirthdayEvent | None, BirthdayEvent | None]
    #: Virtual time when both were started.
    started: float

    @property
    def connected(self) -> bool:
        """Both peers found the pair: the path works both ways."""
        return all(isinstance(e, PairFound) for e in self.events)

    @property
    def seconds(self) -> float | None:
        """From the start until both knew the pair; ``None`` if they never did."""
        if not self.connected:
            return None
        return max(e.at for e in self.events if e is not None) - self.started

    @property
    def probes_sent(self) -> tuple[int, int]:
        """PROBEs each side sent (0 for a side that did not end)."""
        a, b = self.events
        return (a.stats.probes_sent if a else 0, b.stats.probes_sent if b else 0)


def run_pair(
    loop: EventLoop,
    cores: Sequence[tuple[BirthdayProber, Sequence[SimSocket]]],
    timeout: float,
) -> PairRun:
    """Drive two probers on their sockets until both end or ``timeout`` passes."""
    if len(cores) != 2:
        raise SimulationError(f"a pair is two probers, not {len(cores)}")
    started = loop.now
    drivers: list[CoreDriver[BirthdayEvent]] = [CoreDriver(core, socks) for core, socks in cores]
    for driver in drivers:
        driver.flush()
    first, second = (core for core, _ in cores)
    loop.run_until(lambda: first.finished and second.finished, timeout=timeout)
    for driver in drivers:
        driver.close()
    a, b = (driver.events[0] if driver.events else None for driver in drivers)
    return PairRun((a, b), started)
