"""Ranking and hysteresis as pure functions: each margin matters on its own."""

from __future__ import annotations

import pytest
from connect_testlib import LOCAL, PEER, host

from natkit.ice import ConnectConfig
from natkit.ice.candidates import CandidateKind, LocalCandidate, priority_of
from natkit.ice.pairs import Pair, PairState
from natkit.ice.selection import choose, clearly_better, rank
from natkit.ice.signals import SignalCandidate

CONFIG = ConnectConfig()


def pair(srtt: float, *, relay: bool = False, preference: int = 65535) -> Pair:
    kind = CandidateKind.RELAY if relay else CandidateKind.HOST
    local = LocalCandidate(host(LOCAL), 0, priority_of(kind, preference), "1")
    remote = SignalCandidate(kind, PEER, priority_of(kind), "r")
    made = Pair(local, remote, PEER, PairState.SUCCEEDED, controlling=True)
    made.record_rtt(srtt)
    return made


@pytest.mark.parametrize(
    ("selected", "sample", "switch"),
    [
        (0.050, 0.0495, False),  # 1 % better: neither margin
        (0.500, 0.480, False),  # 20 ms better but only 4 %: the relative margin holds
        (0.001, 0.0005, False),  # 50 % better but 0.5 ms: the absolute margin holds
        (0.050, 0.040, True),  # 10 ms and 20 %: both
        (0.050, 0.045, True),  # exactly both margins
    ],
)
def test_a_switch_needs_both_margins(selected: float, sample: float, switch: bool) -> None:
    assert clearly_better(pair(sample), sample, pair(selected), CONFIG) is switch


def test_direct_beats_relay_whatever_the_rtt_and_never_the_reverse() -> None:
    assert clearly_better(pair(0.5), 0.5, pair(0.01, relay=True), CONFIG)
    assert not clearly_better(pair(0.001, relay=True), 0.001, pair(0.5), CONFIG)


def test_rank_orders_direct_then_rtt_then_priority() -> None:
    fast_relay = pair(0.001, relay=True)
    slow = pair(0.100)
    fast = pair(0.020, preference=100)
    tied_but_preferred = pair(0.020, preference=65535)
    assert sorted([fast_relay, slow, fast, tied_but_preferred], key=rank) == [
        tied_but_preferred,
        fast,
        slow,
        fast_relay,
    ]


def test_the_first_choice_gives_near_equal_rtts_to_the_higher_priority() -> None:
    # One LAN behind a hairpinning NAT: the pair through the NAT answered a few
    # microseconds faster than the host pair; the host pair is chosen.
    through_nat = pair(0.000180, preference=100)
    lan = pair(0.000200, preference=65535)
    assert choose([through_nat, lan], CONFIG) is lan
    # A clearly faster pair still wins over priority...
    slow_lan = pair(0.030, preference=65535)
    assert choose([through_nat, slow_lan], CONFIG) is through_nat
    # ...and a direct pair over any relay.
    assert choose([pair(0.5), pair(0.001, relay=True)], CONFIG).relayed is False


def test_a_higher_priority_pair_within_the_margins_takes_over_once() -> None:
    # The LAN pair answered too late for the first choice (a loaded host): the
    # pair through the NAT was selected. Near-equal and preferred, the LAN pair
    # takes over; the pair through the NAT never takes it back without a clear win.
    through_nat = pair(0.000180, preference=100)
    lan = pair(0.000200, preference=65535)
    assert clearly_better(lan, 0.000210, through_nat, CONFIG)
    assert not clearly_better(through_nat, 0.000150, lan, CONFIG)
    # Clearly slower, the preferred pair does not take over.
    assert not clearly_better(pair(0.030, preference=65535), 0.030, pair(0.010), CONFIG)
    # Between relayed pairs only RTT counts (the warm standby stays).
    preferred_relay = pair(0.010, relay=True, preference=65535)
    assert not clearly_better(preferred_relay, 0.010, pair(0.010, relay=True, preference=1), CONFIG)
