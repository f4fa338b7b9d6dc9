"""Reconnection delays: exponential, capped, with jitter.

``delay(attempt)`` is ``initial * factor**attempt`` capped at ``cap`` (five
minutes, as the mesh VPNs natkit follows do), then scaled down by up to
``jitter`` of itself with the injected RNG, so that many clients cut off
by one server restart do not all come back in the same second. The jitter
only ever shortens a delay, so the cap holds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from natkit.errors import LocalProtocolError
from natkit.signal.channel import DownReason

#: The longest wait between two attempts (issue 11: "up to 5 minutes").
MAX_BACKOFF = 300.0
#: A connection that stayed up this long starts the schedule over.
STABLE_AFTER = 30.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """An exponential backoff schedule (seconds)."""

    initial: float = 1.0
    factor: float = 2.0
    cap: float = MAX_BACKOFF
    #: Fraction of each delay that is random: 0.5 → uniform in [d/2, d].
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.cap or self.factor < 1 or not 0 <= self.jitter < 1:
            raise LocalProtocolError(f"impossible backoff {self}")

    def base(self, attempt: int) -> float:
        """The delay before jitter for 0-based ``attempt``."""
        if attempt < 0:
            raise LocalProtocolError("attempt counts from 0")
        # Stop multiplying once capped: factor**attempt would overflow.
        delay = self.initial
        for _ in range(attempt):
            delay *= self.factor
            if delay >= self.cap:
                return self.cap
        return min(delay, self.cap)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The jittered delay for ``attempt``: in ``[base*(1-jitter), base]``."""
        base = self.base(attempt)
        return base * (1.0 - self.jitter * rng.random())


@dataclass(slots=True)
class Reconnects:
    """When to try again after a connection ended: the attempt counter behind
    a :class:`Backoff`, and when it starts over.

    The counter resets only after a connection stayed up ``stable_after``
    seconds, so a server that accepts and at once drops clients (crash loop,
    full) is not hammered; and never after ``REPLACED``, so two processes
    sharing a key back off from each other instead of fighting at full speed.
    """

    backoff: Backoff = field(default_factory=Backoff)
    stable_after: float = STABLE_AFTER
    attempt: int = 0

    def next_delay(self, reason: DownReason, up_for: float | None, rng: random.Random) -> float:
        """The wait before the next attempt, given how the last one ended and
        how long it was up (``None``: it never was)."""
        if reason is not DownReason.REPLACED and up_for is not None and up_for >= self.stable_after:
            self.attempt = 0
        delay = self.backoff.delay(self.attempt, rng)
        self.attempt += 1
        return delay
