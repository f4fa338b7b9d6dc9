"""The hop probe's bookkeeping: which TTL to send when, and when to stop.

One :class:`HopProbe` per TTL, each on a socket of its own: the kernel tells
ICMP errors apart by the socket the quoted datagram left from, and RFC 792
routers quote only 8 bytes of it (the UDP header), not the STUN transaction
ID. A TTL's attempts are spaced like the classifier's other attempts; it is
*settled* once answered, once its last attempt's window has passed, or once
it is no longer needed: TTLs beyond the first public router, the server or a
Destination Unreachable tell nothing about NATs near us and are not waited
for. Everything is a value in, a value out; the classifier sends.

Linux routers send at most 6 ICMP errors in a burst to one host and then one
a second (``net.ipv4.icmp_ratelimit``, a per-peer token bucket), so a TTL
gets few attempts (``max_attempts``), a retry only after an attempt went
unanswered for a full interval, and a missing answer is just that: a gap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from natkit.addresses import AddressKind
from natkit.endpoint import Endpoint
from natkit.probe.hops import Hop, HopReply


@dataclass(frozen=True, slots=True)
class HopPacing:
    """The timing the hop probe follows at one moment of a run."""

    #: Spacing of one TTL's attempts.
    interval: float
    #: An unanswered attempt counts as lost after this long.
    window: float


@dataclass(eq=False, slots=True)
class HopProbe:
    """One TTL: where it is sent from, when, and what came back."""

    ttl: int
    socket: int
    #: Send times of the attempts.
    attempts: list[float] = field(default_factory=list)
    hop: Hop | None = None
    #: Answered, given up, or not needed: nothing more to send or wait for.
    settled: bool = False
    wake_at: float | None = None

    @property
    def terminal(self) -> bool:
        """Its answer ends the path as far as NATs go."""
        hop = self.hop
        if hop is None:
            return False
        if hop.reply is not HopReply.TIME_EXCEEDED:
            return True
        return hop.kind is AddressKind.PUBLIC


class HopTrace:
    """TTL ``i + 1`` on ``sockets[i]``, toward ``destination``."""

    def __init__(self, destination: Endpoint, sockets: Sequence[int], max_attempts: int) -> None:
        self.destination = destination
        self.max_attempts = max_attempts
        self.probes = tuple(HopProbe(ttl, socket) for ttl, socket in enumerate(sockets, start=1))

    @property
    def enabled(self) -> bool:
        return bool(self.probes) and self.max_attempts > 0

    @property
    def done(self) -> bool:
        return all(probe.settled for probe in self.probes)

    def on_socket(self, socket: int) -> HopProbe | None:
        return next((p for p in self.probes if p.socket == socket), None)

    def limit(self) -> int | None:
        """The smallest TTL whose answer ends the path (nothing beyond it is needed)."""
        return min((p.ttl for p in self.probes if p.terminal), default=None)

    def due(
        self, now: float, pacing: HopPacing, ready: Callable[[HopProbe], bool]
    ) -> list[HopProbe]:
        """The TTLs to send an attempt of now. Settles what can be settled
        and notes each open TTL's ``wake_at``. ``ready`` says whether a TTL
        may start (the classifier holds it back until its socket's own first
        packet is out)."""
        if not self.enabled:
            return []
        limit = self.limit()
        out: list[HopProbe] = []
        for probe in self.probes:
            probe.wake_at = None
            if probe.settled:
                continue
            if probe.hop is not None or (limit is not None and probe.ttl > limit):
                probe.settled = True
                continue
            if not probe.attempts:
                if ready(probe):
                    out.append(probe)
                continue  # else woken by whatever makes it ready
            # Paced from the last attempt with the pacing of *now*: the first
            # attempts go out before any RTT is known.
            if len(probe.attempts) < self.max_attempts:
                next_at = probe.attempts[-1] + pacing.interval
                if now >= next_at:
                    out.append(probe)
                else:
                    probe.wake_at = next_at
                continue
            settled_at = probe.attempts[-1] + pacing.window
            if now >= settled_at:
                probe.settled = True
            else:
                probe.wake_at = settled_at
        return out

    def sent(self, probe: HopProbe, now: float) -> None:
        probe.attempts.append(now)

    def record(self, probe: HopProbe, hop: Hop) -> None:
        """An answer for ``probe``'s TTL; the first one stands."""
        if probe.hop is None:
            probe.hop = hop

    def wakeups(self) -> Iterable[float]:
        return (p.wake_at for p in self.probes if not p.settled and p.wake_at is not None)

    def hops(self) -> tuple[Hop, ...] | None:
        """The path as far as it matters: every TTL that was sent, up to the
        first public router or the server; ``None`` when nothing was sent."""
        if not any(p.attempts for p in self.probes):
            return None
        limit = self.limit()
        return tuple(
            p.hop if p.hop is not None else Hop(p.ttl, HopReply.NONE)
            for p in self.probes
            if p.attempts and (limit is None or p.ttl <= limit)
        )
