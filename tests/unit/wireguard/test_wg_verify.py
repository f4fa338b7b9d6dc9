"""Trust, then verify (natkit.wireguard.verify): the wg set steps of an
endpoint change and what counts as evidence that WireGuard works."""

from __future__ import annotations

import pytest
from wireguard_testlib import PEER_V4

from natkit.endpoint import Endpoint
from natkit.wireguard.commands import PeerConfig, set_peer_argv
from natkit.wireguard.dump import PeerStatus
from natkit.wireguard.keys import WireGuardKey
from natkit.wireguard.verify import (
    KICK_KEEPALIVE,
    SESSION_LIFETIME,
    VERIFY_WINDOW,
    Baseline,
    Evidence,
    endpoint_change,
    evidence,
)

KEY = WireGuardKey.parse(PEER_V4)
THERE = Endpoint.parse("198.51.100.2:51820")
ELSEWHERE = Endpoint.parse("203.0.113.9:4000")


def line(handshake: int | None, rx: int) -> PeerStatus:
    return PeerStatus(KEY, False, THERE, (), handshake, rx, 0, None)


def test_the_window_is_two_rekey_timeouts() -> None:
    assert VERIFY_WINDOW == 10.0


@pytest.mark.parametrize(
    ("before", "after", "found"),
    [
        (line(None, 0), line(None, 0), None),  # nothing yet
        (line(None, 0), line(1700000000, 92), Evidence.HANDSHAKE),  # the first handshake
        (line(1700000000, 500), line(1700000005, 500), Evidence.HANDSHAKE),  # a fresh one
        (line(1700000000, 500), line(1700000000, 532), Evidence.RECEIVED),  # the peer's keepalive
        (line(1700000000, 500), line(1700000000, 500), None),  # old session, silent
        (line(None, 0), line(None, 148), None),  # an initiation we answered, no session
        (None, line(None, 0), None),
    ],
)
def test_evidence(before: PeerStatus | None, after: PeerStatus, found: Evidence | None) -> None:
    assert evidence(Baseline.of(before), after, ELSEWHERE) is found


def test_no_evidence_for_a_peer_no_longer_listed() -> None:
    assert evidence(Baseline(None, 0), None, THERE) is None


def test_wireguard_that_roamed_to_the_endpoint_in_a_live_session_counts() -> None:
    """The peer set its endpoint first: its handshake reached us, and our
    WireGuard moved to its address before natkit here set the same one."""
    roamed = Baseline.of(line(1700000000, 92), taken_at=1700000001)
    assert evidence(roamed, line(1700000000, 92), THERE) is Evidence.ROAMED
    # Not for another endpoint, nor for a session past its lifetime.
    assert evidence(roamed, line(1700000000, 92), ELSEWHERE) is None
    stale = Baseline.of(line(1700000000, 92), taken_at=1700000000 + SESSION_LIFETIME + 1)
    assert evidence(stale, line(1700000000, 92), THERE) is None
    # A configured endpoint that never shook hands proves nothing.
    assert evidence(Baseline.of(line(None, 0), taken_at=1700000001), line(None, 0), THERE) is None


def test_the_endpoint_goes_first_then_a_keepalive_is_kicked_and_the_setting_restored() -> None:
    steps = endpoint_change(KEY, THERE, None)
    assert [set_peer_argv("wg0", s)[3:] for s in steps] == [
        ["peer", PEER_V4, "endpoint", "198.51.100.2:51820", "persistent-keepalive", "off"],
        ["peer", PEER_V4, "persistent-keepalive", str(KICK_KEEPALIVE)],
        ["peer", PEER_V4, "persistent-keepalive", "off"],
    ]
    # The peer's own keepalive is what turns it back on (and stays).
    assert endpoint_change(KEY, THERE, 7)[1:] == [PeerConfig(KEY, persistent_keepalive=7)]
