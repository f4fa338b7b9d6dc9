"""Reconnection delays: exponential, capped, with jitter.

``delay(attempt)`` is ``initial * factor**attempt`` capped at ``cap`` (five
minutes, as the mesh VPNs natkit follows do), then scaled down by up to
``jitter`` of itself with the injected RNG, so that many clients cut off
by one server restart do not all come back in the same second. The jitter
only ever shortens a delay, so the cap holds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from natkit.errors import LocalProtocolError

#: The longest wait between two attempts (issue 11: "up to 5 minutes").
MAX_BACKOFF = 300.0


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
