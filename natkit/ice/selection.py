"""Which valid pair carries the traffic: ranking and hysteresis, as pure functions.

Ranking (:func:`rank`): a direct pair before a relayed one (a relay only
serves while no direct path works, issue 12); then the smaller smoothed
RTT; then the higher RFC 8445 pair priority (so on equal RTTs a host pair
beats the same peer through the NAT, and the order is deterministic);
then the addresses as text.

The first choice (:func:`choose`, when nothing is selected) applies the
same margins: of the pairs the fastest one does not clearly beat, the one
with the highest priority wins. Two peers on one LAN whose NAT also
hairpins see the LAN pair and the pair through the NAT within microseconds
of each other; by raw SRTT either could win, and hysteresis would then keep
it. Here the host pair wins, as it would on equal RTTs; and when the LAN
pair's first answer came too late for the first choice (a loaded host), it
still takes over: a challenger within the margins of the selected pair
replaces it when its priority is higher (with the same confirmations;
direct pairs only: between relayed ones RTT alone decides).
Priorities are a total order, so this never flaps either: going back needs
a clear win.

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

from collections.abc import Iterable

from natkit.ice.config import ConnectConfig
from natkit.ice.pairs import Pair


def rank(pair: Pair) -> tuple[bool, float, int, str, str]:
    """Sort key of valid pairs, best first (see the module doc)."""
    srtt = pair.srtt if pair.srtt is not None else float("inf")
    return (pair.relayed, srtt, -pair.priority, str(pair.destination), str(pair.local.address))


def choose(eligible: Iterable[Pair], config: ConnectConfig) -> Pair:
    """The pair to select when none is (see the module doc): among the pairs
    the fastest does not clearly beat, the highest priority."""
    pairs = list(eligible)
    fastest = min(pairs, key=rank)
    speed = fastest.srtt
    if speed is None:
        return fastest
    close = [
        p
        for p in pairs
        if p.relayed == fastest.relayed
        and p.srtt is not None
        and not (
            speed <= p.srtt - config.switch_margin and speed <= p.srtt * (1 - config.switch_ratio)
        )
    ]
    return min(close, key=lambda p: (-p.priority, rank(p)))


def clearly_better(challenger: Pair, sample: float, selected: Pair, config: ConnectConfig) -> bool:
    """Whether one RTT ``sample`` of ``challenger`` beats ``selected``: clearly
    faster, or within the margins of it and of higher priority (see the
    module doc)."""
    if challenger.relayed != selected.relayed:
        return selected.relayed  # direct beats relay whatever the RTT, never the reverse
    current = selected.srtt
    if current is None:
        return False
    if _clearly_faster(sample, current, config):
        return True
    # Between relayed pairs RTT alone decides: the warm standby keeps its place.
    return (
        not challenger.relayed
        and challenger.priority > selected.priority
        and not _clearly_faster(current, sample, config)
    )


def _clearly_faster(rtt: float, than: float, config: ConnectConfig) -> bool:
    return rtt <= than - config.switch_margin and rtt <= than * (1 - config.switch_ratio)
