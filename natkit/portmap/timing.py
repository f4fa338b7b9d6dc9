"""When to send: retransmission and renewal schedules as pure functions.

Nothing here reads a clock; the caller passes times and a ``random.Random``.

* PCP requests retransmit per RFC 6887 §8.1.1: the first timeout is
  ``(1 + RAND) * IRT``, each next one ``(1 + RAND) * MIN(2 * RTprev, MRT)``,
  RAND uniform in [-0.1, 0.1]; the exchange fails after MRC transmissions
  or MRD seconds (0 means never).
* PCP renewals follow RFC 6887 §11.2.1: one request at a uniform time in
  1/2-5/8 of the lifetime, then 3/4-(3/4+1/16), 7/8-(7/8+1/32)... and never
  less than 4 s apart.
* NAT-PMP requests retransmit per RFC 6886 §3.1: 250 ms, doubling, nine
  attempts, then 64 s of waiting before giving up (127.75 s in all).
* NAT-PMP renewals start halfway to expiry (RFC 6886 §3.3, "like DHCP").
* Error answers back off (:func:`error_backoff`): every protocol, UPnP
  included, waits at least the gateway's hint and doubles the wait after
  each refusal in a row, up to MRT, as RFC 6887 §8.1.1 does for silence. A
  gateway that refuses everything is asked a few dozen times a day, never
  in a loop (a UPnP lease once sent 54,445 requests in 2 s to a gateway
  answering 501).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from natkit.errors import LocalProtocolError


@dataclass(frozen=True, slots=True)
class PcpRetransmission:
    """RFC 6887 §8.1.1 parameters (seconds)."""

    #: Initial retransmission time.
    irt: float = 3.0
    #: Maximum transmissions; 0: no limit.
    mrc: int = 0
    #: Maximum retransmission time.
    mrt: float = 1024.0
    #: Maximum duration of the exchange; 0: no limit.
    mrd: float = 0.0
    #: RAND is uniform in [-rand, +rand].
    rand: float = 0.1

    def __post_init__(self) -> None:
        if self.irt <= 0 or self.mrt < self.irt or self.mrc < 0 or self.mrd < 0:
            raise LocalProtocolError(f"impossible PCP retransmission policy {self!r}")
        if not 0 <= self.rand < 1:
            raise LocalProtocolError(f"RAND bound out of range: {self.rand}")

    def first_timeout(self, rng: random.Random) -> float:
        """RT for the first transmission: (1 + RAND) * IRT."""
        return (1 + rng.uniform(-self.rand, self.rand)) * self.irt

    def next_timeout(self, previous: float, rng: random.Random) -> float:
        """RT after a retransmission: (1 + RAND) * MIN(2 * RTprev, MRT)."""
        return (1 + rng.uniform(-self.rand, self.rand)) * min(2 * previous, self.mrt)

    def exhausted(self, transmissions: int) -> bool:
        """True once MRC transmissions went out (never with MRC 0)."""
        return self.mrc > 0 and transmissions >= self.mrc


@dataclass(frozen=True, slots=True)
class PmpRetransmission:
    """RFC 6886 §3.1 parameters."""

    #: Wait after the first attempt; each later wait doubles.
    initial: float = 0.25
    #: Attempts before the gateway is deemed silent.
    attempts: int = 9

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.attempts < 1:
            raise LocalProtocolError(f"impossible NAT-PMP retransmission policy {self!r}")

    def wait_after(self, transmissions: int) -> float:
        """Seconds to wait after the ``transmissions``-th attempt (1-based)."""
        return self.initial * (1 << (transmissions - 1))

    def give_up_after(self, attempts: int | None = None) -> float:
        """Seconds from the first attempt to giving up (127.75 s by default)."""
        count = self.attempts if attempts is None else attempts
        return self.initial * ((1 << count) - 1)


#: Windows halve each time; past this many they are below float resolution.
_MAX_RENEWAL_ATTEMPTS = 48


def pcp_renewal_window(attempt: int) -> tuple[float, float]:
    """Fractions of the lifetime bounding renewal ``attempt`` (0-based):
    1/2-5/8, 3/4-13/16, 7/8-29/32... (RFC 6887 §11.2.1)."""
    start = 1 - 0.5 ** (attempt + 1)
    return start, start + 0.5 ** (attempt + 3)


def pcp_first_renewal(granted_at: float, lifetime: float, rng: random.Random) -> float:
    """When to send the first renewal of a fresh grant."""
    low, high = pcp_renewal_window(0)
    return granted_at + lifetime * rng.uniform(low, high)


def pcp_next_renewal(
    granted_at: float,
    lifetime: float,
    sent_at: float,
    rng: random.Random,
    min_interval: float = 4.0,
) -> float | None:
    """When to repeat an unanswered renewal sent at ``sent_at``: in the first
    window that starts after it, at least ``min_interval`` later, and before
    expiry; ``None`` when no such time is left (RFC 6887 §11.2.1)."""
    expires_at = granted_at + lifetime
    for attempt in range(_MAX_RENEWAL_ATTEMPTS):
        low, high = pcp_renewal_window(attempt)
        if granted_at + lifetime * low > sent_at:
            at = max(granted_at + lifetime * rng.uniform(low, high), sent_at + min_interval)
            return at if at < expires_at else None
        if lifetime * (1 - low) < min_interval:
            break  # the windows have shrunk below the minimum spacing
    return None


def error_backoff(previous: float, hint: float, cap: float) -> float:
    """The wait before repeating a request the gateway refused with a
    transient error: ``hint`` the first time (``previous`` 0), then twice
    the previous wait, never below ``hint`` nor above ``cap`` (RFC 6887
    §8.1.1's RT rule without RAND: the gateway answered, so there is no
    congestion to spread)."""
    return max(hint, min(2 * previous, cap))


def pmp_next_renewal(now: float, expires_at: float, min_interval: float = 4.0) -> float | None:
    """Halfway from ``now`` to expiry, like a DHCP client (RFC 6886 §3.3);
    ``None`` when that is closer than ``min_interval`` or past expiry."""
    at = now + (expires_at - now) / 2
    if at - now < min_interval:
        at = now + min_interval
    return at if at < expires_at else None
