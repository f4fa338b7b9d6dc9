"""Send plans: which packet leaves which socket for which port, and when.

A plan is plain data, made by a pure function of its inputs and a
``random.Random`` the caller passes in, so a test can write the whole
expected plan down (after tailscale's ``makeProbePlan``). The prober
(:mod:`natkit.birthday.prober`) follows a plan; it never decides what to
send on its own, except to answer the peer.

Pacing: a plan's sends are :func:`pacing_gap` apart, which is ``1/rate``
plus one part per million. The margin is there so that float rounding of
times (even clock values near 1e7 s) can never squeeze ``rate + 1`` sends
into a one-second window; the rate loses 1 ppm. Times accumulate
(``t[i] = t[i-1] + gap``), and the prober never sends before a planned
time, so an on-time run reproduces the plan bit for bit. The cap itself
is a :class:`RateWindow`, which a late sender may use to catch up.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from natkit.birthday.ports import PortRange
from natkit.birthday.wire import Kind
from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError

#: The fastest any plan or prober may send (packets per second).
MAX_RATE = 1000.0
#: Default cap, as in the issue: 100 probes per second.
DEFAULT_RATE = 100.0
_RATE_MARGIN = 1e-6


def pacing_gap(rate: float) -> float:
    """The time between two paced sends of an on-time plan at ``rate`` per second."""
    if not 0.0 < rate <= MAX_RATE:
        raise LocalProtocolError(f"rate must be in (0, {MAX_RATE:g}], got {rate}")
    return (1.0 / rate) * (1.0 + _RATE_MARGIN)


@dataclass(frozen=True, slots=True)
class RateWindow:
    """The cap as a sliding window: at most ``count`` paced sends in any
    half-open window of ``seconds``, and never two closer than ``min_gap``.

    ``count`` is ``floor(rate)`` (at least 1) and ``seconds`` that many
    :func:`pacing_gap`: at a whole rate, no one-second window holds more
    than ``rate`` sends. The window (not a fixed gap after the last send) is
    what lets a sender that woke late catch up with its plan, at no more
    than twice the rate for a few sends, without breaking the cap.
    """

    count: int
    seconds: float
    min_gap: float

    @classmethod
    def for_rate(cls, rate: float) -> RateWindow:
        gap = pacing_gap(rate)  # validates the rate
        count = max(1, int(rate))
        return cls(count, count * gap, gap / 2)

    def next_allowed(self, sent: Sequence[float]) -> float:
        """The earliest time the next send may go, given the previous sends'
        times (oldest first; only the last ``count`` matter)."""
        if not sent:
            return float("-inf")
        floor = sent[-1] + self.min_gap
        if len(sent) >= self.count:
            floor = max(floor, sent[-self.count] + self.seconds)
        return floor


@dataclass(frozen=True, slots=True)
class PlannedSend:
    """One packet: not before ``at``, from local socket ``socket``, to ``port``."""

    at: float
    socket: int
    port: int


@dataclass(frozen=True, slots=True)
class SendPlan:
    """Every packet of one kind a prober will send, to ports of ``target``."""

    kind: Kind
    target: IPAddress
    sends: tuple[PlannedSend, ...]

    def __post_init__(self) -> None:
        if self.kind is Kind.ACK:
            raise LocalProtocolError("ACKs answer probes; they are never planned")
        previous = float("-inf")
        for send in self.sends:
            if send.at < previous:
                raise LocalProtocolError(f"plan goes back in time at {send}")
            if not 0 <= send.port <= 0xFFFF or send.socket < 0:
                raise LocalProtocolError(f"bad planned send {send}")
            previous = send.at

    def __len__(self) -> int:
        return len(self.sends)

    def remote(self, index: int) -> Endpoint:
        """Where send ``index`` goes."""
        return Endpoint(self.target, self.sends[index].port)

    @property
    def sockets_used(self) -> int:
        """One more than the highest socket index the plan uses."""
        return 1 + max((s.socket for s in self.sends), default=-1)


def _paced_times(count: int, gap: float, start: float) -> list[float]:
    times: list[float] = []
    at = start
    for _ in range(count):
        times.append(at)
        at = at + gap
    return times


def spray_plan(
    target: IPAddress,
    port_range: PortRange,
    probes: int,
    rate: float,
    rng: random.Random,
    *,
    sockets: int = 1,
    start: float = 0.0,
) -> SendPlan:
    """PROBEs to ``probes`` distinct random (socket, port) pairs, paced at ``rate``.

    With one socket (the easy side) that is distinct random ports of the
    range; with k sockets (both sides hard) each socket may try each port
    once, so up to ``k * N`` probes.
    """
    size = port_range.size
    if sockets < 1:
        raise LocalProtocolError(f"need a socket to spray from, got {sockets}")
    if not 0 <= probes <= sockets * size:
        raise LocalProtocolError(
            f"{probes} probes do not fit in {sockets} socket(s) x {size} ports"
        )
    picks = rng.sample(range(sockets * size), probes)
    times = _paced_times(probes, pacing_gap(rate), start)
    return SendPlan(
        Kind.PROBE,
        target,
        tuple(
            PlannedSend(at, pick // size, port_range.low + pick % size)
            for at, pick in zip(times, picks, strict=True)
        ),
    )


def opener_plan(
    peer: Endpoint,
    sockets: int,
    rate: float,
    *,
    start: float = 0.0,
    keepalive: float = 15.0,
    rounds: int = 1,
) -> SendPlan:
    """OPENs from every socket to ``peer``, in socket order, repeated
    ``rounds`` times ``keepalive`` seconds apart (or back to back, when a
    round takes longer than that at ``rate``)."""
    if sockets < 1 or rounds < 1:
        raise LocalProtocolError(f"need sockets and rounds >= 1, got {sockets}, {rounds}")
    if not keepalive > 0.0:
        raise LocalProtocolError(f"keepalive must be positive, got {keepalive}")
    gap = pacing_gap(rate)
    sends: list[PlannedSend] = []
    previous: float | None = None
    for round_index in range(rounds):
        round_start = start + round_index * keepalive
        for socket in range(sockets):
            at = round_start if previous is None else max(round_start, previous + gap)
            sends.append(PlannedSend(at, socket, peer.port))
            previous = at
    return SendPlan(Kind.OPEN, peer.address, tuple(sends))


def max_sends_in_window(times: Sequence[float], window: float = 1.0) -> int:
    """The most of ``times`` (sorted) inside any half-open window ``[t, t + window)``.

    The busiest window can always be slid to start at a send, so checking
    those starts is enough.
    """
    best = 0
    for index, at in enumerate(times):
        best = max(best, bisect_left(times, at + window, lo=index) - index)
    return best
