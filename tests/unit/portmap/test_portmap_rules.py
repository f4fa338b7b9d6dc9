"""The pure rules: retransmission, renewal windows, epochs, lifetimes, routes."""

from __future__ import annotations

import ipaddress
import itertools
import random

import pytest

from natkit.errors import LocalProtocolError
from natkit.portmap.epoch import (
    EpochRule,
    EpochTracker,
    EpochVerdict,
    pcp_epoch_valid,
    pmp_epoch_valid,
)
from natkit.portmap.mapping import LifetimeNote, LifetimePolicy, clamp_lifetime
from natkit.portmap.route import DefaultRoute, default_gateway, parse_default_routes
from natkit.portmap.timing import (
    PcpRetransmission,
    PmpRetransmission,
    pcp_first_renewal,
    pcp_next_renewal,
    pcp_renewal_window,
    pmp_next_renewal,
)


class Extreme(random.Random):
    """``uniform`` always returns the low (or high) bound."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


# --- RFC 6887 §8.1.1 ---------------------------------------------------------------------


def test_pcp_timeouts_double_up_to_mrt_without_jitter() -> None:
    policy = PcpRetransmission(rand=0.0)
    rng = random.Random(1)
    timeouts = [policy.first_timeout(rng)]
    for _ in range(10):
        timeouts.append(policy.next_timeout(timeouts[-1], rng))
    assert timeouts == [3, 6, 12, 24, 48, 96, 192, 384, 768, 1024, 1024]


@pytest.mark.parametrize("high", [False, True])
def test_pcp_jitter_is_plus_or_minus_ten_percent(high: bool) -> None:
    policy = PcpRetransmission()
    rng = Extreme(high)
    factor = 1.1 if high else 0.9
    first = policy.first_timeout(rng)
    assert first == pytest.approx(3.0 * factor)
    assert policy.next_timeout(first, rng) == pytest.approx(2 * first * factor)
    assert policy.next_timeout(1000.0, rng) == pytest.approx(1024 * factor)


def test_pcp_mrc_zero_means_no_limit() -> None:
    assert not PcpRetransmission().exhausted(10_000)
    assert PcpRetransmission(mrc=3).exhausted(3)
    assert not PcpRetransmission(mrc=3).exhausted(2)


@pytest.mark.parametrize(
    "kwargs", [{"irt": 0.0}, {"mrt": 1.0}, {"mrc": -1}, {"mrd": -1.0}, {"rand": 1.0}]
)
def test_impossible_pcp_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(LocalProtocolError):
        PcpRetransmission(**kwargs)  # type: ignore[arg-type]


# --- RFC 6887 §11.2.1 ------------------------------------------------------------------


def test_renewal_windows_are_the_rfc_fractions() -> None:
    assert pcp_renewal_window(0) == (1 / 2, 5 / 8)
    assert pcp_renewal_window(1) == (3 / 4, 3 / 4 + 1 / 16)
    assert pcp_renewal_window(2) == (7 / 8, 7 / 8 + 1 / 32)


@pytest.mark.parametrize("high", [False, True])
def test_first_renewal_is_between_half_and_five_eighths(high: bool) -> None:
    at = pcp_first_renewal(100.0, 7200, Extreme(high))
    assert at == pytest.approx(100 + 7200 * (5 / 8 if high else 1 / 2))


def test_unanswered_renewals_walk_the_windows_four_seconds_apart() -> None:
    rng = random.Random(3)
    granted, lifetime = 0.0, 7200
    sent = pcp_first_renewal(granted, lifetime, rng)
    times = [sent]
    while (nxt := pcp_next_renewal(granted, lifetime, times[-1], rng)) is not None:
        times.append(nxt)
    for attempt, at in enumerate(times):
        low, high = pcp_renewal_window(attempt)
        assert lifetime * low <= at <= max(lifetime * high, times[attempt - 1] + 4)
    assert all(b - a >= 4 for a, b in itertools.pairwise(times))
    assert times[-1] < lifetime
    assert len(times) == 11


def test_no_renewal_is_squeezed_in_before_expiry() -> None:
    """Lifetime 10 s: renewals at 5 s and (4 s later) 9 s, then none; lifetime
    6 s: one at 3 s, since the next would be 4 s later, past expiry."""
    rng = Extreme(high=False)
    assert pcp_first_renewal(0.0, 10, rng) == 5.0
    assert pcp_next_renewal(0.0, 10, 5.0, rng) == 9.0
    assert pcp_next_renewal(0.0, 10, 9.0, rng) is None
    assert pcp_first_renewal(0.0, 6, rng) == 3.0
    assert pcp_next_renewal(0.0, 6, 3.0, rng) is None


def test_an_early_revalidation_is_followed_by_the_first_window() -> None:
    assert pcp_next_renewal(0.0, 7200, 100.0, Extreme(high=False)) == 3600.0


# --- RFC 6886 §3.1, §3.3 ---------------------------------------------------------------


def test_pmp_schedule_is_250ms_doubling_nine_times() -> None:
    policy = PmpRetransmission()
    waits = [policy.wait_after(n) for n in range(1, 10)]
    assert waits == [0.25, 0.5, 1, 2, 4, 8, 16, 32, 64]
    assert policy.give_up_after() == 127.75
    assert policy.give_up_after(3) == 1.75


def test_pmp_renewal_retry_halves_the_remaining_time() -> None:
    assert pmp_next_renewal(3600.0, 7200.0) == 5400.0
    assert pmp_next_renewal(7190.0, 7200.0) == 7195.0
    assert pmp_next_renewal(7194.0, 7200.0) == 7198.0  # never closer than 4 s
    assert pmp_next_renewal(7197.0, 7200.0) is None  # ...which would be past expiry


# --- epochs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "current", "elapsed", "valid"),
    [
        (1000, 1100, 100, True),  # moved with our clock
        (1000, 999, 0.5, True),  # back by one second: reordering, tolerated
        (1000, 998, 0.5, False),  # back by two: "time should not go backwards"
        (1000, 1, 100, False),  # restarted
        (1000, 1000 + 200, 100, False),  # server raced ahead
        (1000, 1000 + 106, 100, True),  # within 1/16 + 2
        (1000, 1000 + 50, 100, False),  # server lagged behind
        (1000, 1000 + 92, 100, True),
    ],
)
def test_pcp_epoch_rule(previous: int, current: int, elapsed: float, valid: bool) -> None:
    """RFC 6887 §8.5."""
    assert pcp_epoch_valid(previous, current, elapsed) is valid


@pytest.mark.parametrize(
    ("previous", "current", "elapsed", "valid"),
    [
        (1000, 1100, 100, True),
        (1000, 1000 + 87, 100, True),  # expected 1087.5 (7/8 of the elapsed time)
        (1000, 1000 + 86, 100, True),  # 1.5 s short: tolerated
        (1000, 1000 + 85, 100, False),  # 2.5 s short: "by more than 2 seconds"
        (1000, 5, 100, False),
        (1000, 5000, 100, True),  # NAT-PMP only checks "behind"
    ],
)
def test_pmp_epoch_rule(previous: int, current: int, elapsed: float, valid: bool) -> None:
    """RFC 6886 §3.6."""
    assert pmp_epoch_valid(previous, current, elapsed) is valid


def test_tracker_treats_the_first_epoch_as_valid_and_remembers_each() -> None:
    tracker = EpochTracker(EpochRule.PCP)
    assert tracker.observe(5000, 10.0) == EpochVerdict(True, None)
    assert tracker.observe(3, 20.0) == EpochVerdict(False, 5000)
    assert tracker.observe(13, 30.0) == EpochVerdict(True, 3)


# --- lifetimes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("granted", "lifetime", "notes"),
    [
        (3600, 3600, ()),
        (10, 10, ()),  # short but real: honoured
        (0, 120, (LifetimeNote.ZERO_ON_SUCCESS,)),
        (86400, 86400, (LifetimeNote.LONGER_THAN_REQUESTED,)),
        (
            0xFFFFFFFF,
            86400,
            (LifetimeNote.LONGER_THAN_REQUESTED, LifetimeNote.CAPPED),
        ),
    ],
)
def test_clamp_lifetime(granted: int, lifetime: int, notes: tuple[LifetimeNote, ...]) -> None:
    assert clamp_lifetime(granted, 7200, LifetimePolicy()) == (lifetime, notes)


def test_impossible_lifetime_policies_are_refused() -> None:
    with pytest.raises(LocalProtocolError):
        LifetimePolicy(requested=0)
    with pytest.raises(LocalProtocolError):
        LifetimePolicy(assumed_when_zero=100, maximum=50)


# --- /proc/net/route ---------------------------------------------------------------------------

ROUTES = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"
    "eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
    "eth0\t0002A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"
    "tun0\t00000000\t0100000A\t0001\t0\t0\t50\t00000000\t0\t0\t0\n"
    "down0\t00000000\t0103A8C0\t0002\t0\t0\t10\t00000000\t0\t0\t0\n"
    "junk\tZZZZZZZZ\t0104A8C0\t0003\t0\t0\t1\t00000000\n"
    "short line\n"
)


def test_default_routes_lowest_metric_first_little_endian() -> None:
    assert parse_default_routes(ROUTES, "little") == (
        DefaultRoute("eth0", ipaddress.IPv4Address("192.168.2.1"), 100),
        DefaultRoute("wlan0", ipaddress.IPv4Address("192.168.1.1"), 600),
    )


def test_default_gateway_on_a_big_endian_host() -> None:
    text = "Iface\tDestination\tGateway\n" + "eth0\t00000000\tC0A80201\t0003\t0\t0\t0\t00000000\n"
    route = default_gateway(text, "big")
    assert route == DefaultRoute("eth0", ipaddress.IPv4Address("192.168.2.1"), 0)


def test_no_default_route() -> None:
    assert default_gateway(ROUTES.splitlines()[0] + "\n") is None
    assert default_gateway("") is None
