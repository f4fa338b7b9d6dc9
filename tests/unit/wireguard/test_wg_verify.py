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
    VERIFY_WINDOW,
    Baseline,
    Evidence,
    endpoint_change,
    evidence,
)

KEY = WireGuardKey.parse(PEER_V4)
THERE = Endpoint.parse("198.51.100.2:51820")


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
        (None, line(None, 0), None),
    ],
)
def test_evidence(before: PeerStatus | None, after: PeerStatus, found: Evidence | None) -> None:
    assert evidence(Baseline.of(before), after) is found


def test_no_evidence_for_a_peer_no_longer_listed() -> None:
    assert evidence(Baseline(None, 0), None) is None


def test_the_endpoint_goes_first_then_a_keepalive_is_kicked_and_the_setting_restored() -> None:
    steps = endpoint_change(KEY, THERE, None)
    assert [set_peer_argv("wg0", s)[3:] for s in steps] == [
        ["peer", PEER_V4, "endpoint", "198.51.100.2:51820", "persistent-keepalive", "off"],
        ["peer", PEER_V4, "persistent-keepalive", str(KICK_KEEPALIVE)],
        ["peer", PEER_V4, "persistent-keepalive", "off"],
    ]
    # The peer's own keepalive is what turns it back on (and stays).
    assert endpoint_change(KEY, THERE, 7)[1:] == [PeerConfig(KEY, persistent_keepalive=7)]
