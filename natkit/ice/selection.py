"""Which valid pair carries the traffic: ranking and hysteresis, as pure functions.

Ranking (:func:`rank`): a direct pair before a relayed one (a relay only
serves while no direct path works, issue 12); then the smaller smoothed
RTT; then the higher RFC 8445 pair priority (so on equal RTTs a host pair
beats the same peer through the NAT, and the order is deterministic);
then the addresses as text.

Hysteresis (:func:`clearly_better`), after tailscale's ``betterAddr`` (keep
the current address unless clearly beaten) but with two margins instead of
one percentage: a sample beats the selected pair only if it is smaller than
the selected SRTT by ``switch_margin`` seconds *and* by ``switch_ratio`` of
it. The absolute margin keeps microsecond LAN differences from counting,
the relative one keeps jitter on long paths from counting. The session
also wants ``switch_confirmations`` such samples in a row before it
switches, so one lucky sample never moves traffic, and since the switch
condition is strict in both directions, two paths within the margins of
each other never flap.
"""

from __future__ import annotations

from natkit.ice.config import ConnectConfig
from natkit.ice.pairs import Pair


def rank(pair: Pair) -> tuple[bool, float, int, str, str]:
    """Sort key of valid pairs, best first (see the module doc)."""
    srtt = pair.srtt if pair.srtt is not None else float("inf")
    return (pair.relayed, srtt, -pair.priority, str(pair.destination), str(pair.local.address))


def clearly_better(challenger: Pair, sample: float, selected: Pair, config: ConnectConfig) -> bool:
    """Whether one RTT ``sample`` of ``challenger`` beats ``selected`` clearly."""
    if challenger.relayed != selected.relayed:
        return selected.relayed  # direct beats relay whatever the RTT, never the reverse
    current = selected.srtt
    if current is None:
        return False
    return sample <= current - config.switch_margin and sample <= current * (
        1 - config.switch_ratio
    )
