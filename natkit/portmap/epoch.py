"""Gateway restart detection from the epoch every response carries.

Both protocols count seconds since the gateway's mapping state began; a
count that goes back, or moves inconsistently with the client's own clock,
means the gateway restarted and its mappings are presumed lost.

* PCP (RFC 6887 §8.5), in integer arithmetic: invalid when the server time
  went back by more than one second, or when
  ``client_delta + 2 < server_delta - server_delta / 16`` or
  ``server_delta + 2 < client_delta - client_delta / 16``.
* NAT-PMP (RFC 6886 §3.6): invalid when the new value is more than 2 s
  below the previous one plus 7/8 of the client time elapsed.

The first response from a gateway is valid by definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


def _div16(value: int) -> int:
    # The RFC's integer division truncates towards zero (C semantics).
    return -((-value) // 16) if value < 0 else value // 16


def pcp_epoch_valid(previous: int, current: int, client_delta: float) -> bool:
    """RFC 6887 §8.5 for one pair of responses ``client_delta`` seconds apart."""
    if current < previous - 1:
        return False  # time went backwards by more than reordering explains
    server_delta = current - previous
    client = int(client_delta)
    return not (
        client + 2 < server_delta - _div16(server_delta)
        or server_delta + 2 < client - _div16(client)
    )


def pmp_epoch_valid(previous: int, current: int, client_delta: float) -> bool:
    """RFC 6886 §3.6 for one pair of packets ``client_delta`` seconds apart."""
    expected = previous + client_delta * 7 / 8
    return current >= expected - 2


class EpochRule(Enum):
    """Which RFC's check to apply."""

    PCP = "pcp"
    NAT_PMP = "nat-pmp"


@dataclass(frozen=True, slots=True)
class EpochVerdict:
    """The outcome of one observation."""

    #: False: the gateway lost its state since the previous observation.
    valid: bool
    #: The epoch of the previous observation (``None`` for the first).
    previous: int | None


class EpochTracker:
    """Remembers the last epoch seen from one gateway and judges the next."""

    def __init__(self, rule: EpochRule) -> None:
        self.rule = rule
        self.last_epoch: int | None = None
        self.last_seen: float | None = None

    def observe(self, epoch: int, now: float) -> EpochVerdict:
        """Judge ``epoch`` received at ``now``, then remember it (both RFCs
        record the new values whatever the verdict)."""
        previous, seen = self.last_epoch, self.last_seen
        self.last_epoch, self.last_seen = epoch, now
        if previous is None or seen is None:
            return EpochVerdict(True, None)
        check = pcp_epoch_valid if self.rule is EpochRule.PCP else pmp_epoch_valid
        return EpochVerdict(check(previous, epoch, now - seen), previous)
