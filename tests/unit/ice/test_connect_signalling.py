"""Signalling between real agents: re-sends with backoff, trickle, restarts, reports.

Messages travel through the simulator's hub as bytes (natkit's codec), with
a delay; a node can be taken offline (its messages dropped, as a rendezvous
drops them for a peer that is not connected).
"""

from __future__ import annotations

import itertools

import pytest
from connect_testlib import sim_peers

from natkit.ice import (
    Acknowledgement,
    Announcement,
    CandidatesAdded,
    ConnectConfig,
    PathSelected,
    PeerReportReceived,
    PeerUnreachable,
    UnreachableReason,
    decode_signal,
)
from natkit.ice.candidates import Candidate, CandidateKind


def sent(pair, sender: str, recipient: str) -> list[tuple[float, object]]:  # type: ignore[no-untyped-def]
    return [
        (t, decode_signal(data)) for t, s, r, data in pair.hub.log if s == sender and r == recipient
    ]


def test_an_unanswered_announcement_is_resent_with_backoff_capped_at_five_minutes() -> None:
    config = ConnectConfig()
    pair = sim_peers([[0.01], [0.01]], connect=False)
    pair.hub.offline.add("p1")
    pair.nodes[0].connect("p1")
    pair.run(3 * 3600.0)
    times = [t for t, message in sent(pair, "p0", "p1") if isinstance(message, Announcement)]
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    assert gaps[:9] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert set(gaps[9:]) == {config.signal_retry_max}
    # The silence is reported once, after signal_timeout.
    (silent,) = [(t, e) for t, e in pair.nodes[0].timeline if isinstance(e, PeerUnreachable)]
    assert silent[1].reason is UnreachableReason.NO_SIGNAL
    assert silent[0] == pytest.approx(config.signal_timeout)


def test_once_both_sides_hold_each_other_signalling_goes_quiet() -> None:
    pair = sim_peers([[0.01], [0.01]])
    pair.run(3600.0)
    assert all(node.selections() for node in pair.nodes)
    late = [t for t, *_ in pair.hub.log if t > 1.0]
    assert late == []
    assert all(
        node.agent._session(peer, "t").signal.acked
        for node, peer in zip(pair.nodes, ("p1", "p0"), strict=True)
    )


def test_a_peer_that_comes_online_later_is_reached_by_the_next_resend() -> None:
    pair = sim_peers([[0.01], [0.01]], connect=False)
    pair.hub.offline.add("p1")
    pair.nodes[0].connect("p1")
    pair.run(10.0)
    pair.hub.offline.discard("p1")
    pair.nodes[1].connect("p0")  # p1's own announcement reaches p0, which answers at once
    pair.run(2.0)
    assert all(node.selections() for node in pair.nodes)


def test_trickled_candidates_reach_the_peer_and_are_paired() -> None:
    # p0 starts with no candidate at all; p1 learns p0's host candidate by trickle.
    pair = sim_peers([[0.01], [0.01]], without_candidates=[0])
    first = pair.nodes[0]
    address = first.sockets[0].local
    pair.run(2.0)
    assert not any(node.selections() for node in pair.nodes)
    trickled_at = pair.loop.now
    first.add_candidate(Candidate(CandidateKind.HOST, address, address, "late"), 0)
    pair.run(2.0)
    after = [(t, m) for t, m in sent(pair, "p0", "p1") if t >= trickled_at]
    added = [m for _, m in after if isinstance(m, CandidatesAdded)]
    assert [c.address for m in added for c in m.candidates] == [address]
    # Acknowledged at once, so nothing is re-announced: a trickle costs two messages.
    assert not [m for _, m in after if isinstance(m, Announcement)]
    acks = [m for t, m in sent(pair, "p1", "p0") if t >= trickled_at]
    assert len(acks) == 1
    assert isinstance(acks[0], Acknowledgement)
    assert acks[0].peer_candidates == 1
    assert all(node.selections() for node in pair.nodes)


def test_a_lost_trickle_is_repaired_by_a_new_announcement() -> None:
    pair = sim_peers([[0.01], [0.01, 0.02]], preferences=[[], [65535, 65000]], connect=False)
    second = pair.nodes[1]
    extra = second.agent.local_candidates[1]
    second.driver.invoke(lambda now: second.agent.remove_local_candidate(extra.address, now))
    for node, peer in zip(pair.nodes, ("p1", "p0"), strict=True):
        node.connect(peer)
    pair.run(2.0)
    pair.hub.offline.add("p1")
    second.add_candidate(extra.candidate, 1)  # the CandidatesAdded is dropped
    pair.run(0.5)
    pair.hub.offline.discard("p1")
    pair.run(10.0)
    # p1 re-announced until p0 held both candidates.
    announcements = [m for _, m in sent(pair, "p1", "p0") if isinstance(m, Announcement)]
    assert len(announcements[-1].candidates) == 2
    rows = pair.nodes[0].agent.pairs("p1")
    assert {row.remote for row in rows} == {c.address for c in second.agent.local_candidates}


def test_reports_ride_in_announcements() -> None:
    pair = sim_peers([[0.01], [0.01]])
    pair.run(2.0)
    first = pair.nodes[0]
    first.driver.invoke(lambda now: first.agent.set_report(b'{"mapping": "EIM"}', now))
    pair.run(1.0)
    reports = [e for e in pair.nodes[1].events if isinstance(e, PeerReportReceived)]
    assert [r.report for r in reports] == [b'{"mapping": "EIM"}']
    # The path is untouched by a report.
    assert len([e for e in pair.nodes[1].events if isinstance(e, PathSelected)]) == 1


def test_reannounce_reaches_a_peer_at_once_instead_of_after_the_grown_backoff() -> None:
    # Both sides announce while the channel drops everything: the backoff grows
    # to minutes. When the channel is up again (StateChanged(UP) in the aio
    # layer), reannounce() sends at once and restarts the backoff.
    pair = sim_peers([[0.01], [0.01]], connect=False)
    pair.hub.offline.update({"p0", "p1"})
    for node, peer in zip(pair.nodes, ("p1", "p0"), strict=True):
        node.connect(peer)
    pair.run(300.0)  # re-sends are now 128 s apart, the next one ~200 s away
    pair.hub.offline.clear()
    back = pair.loop.now
    first = pair.nodes[0]
    first.driver.invoke(first.agent.reannounce)
    pair.run(3.0)
    assert next(t for t, *_ in pair.hub.log if t >= back) == back
    assert all(node.selections() for node in pair.nodes)


def test_reannounce_to_a_peer_that_holds_everything_costs_one_acknowledgement() -> None:
    pair = sim_peers([[0.01], [0.01]])
    pair.run(10.0)
    back = pair.loop.now
    first = pair.nodes[0]
    first.driver.invoke(first.agent.reannounce)
    pair.run(600.0)
    after = [(s, decode_signal(data)) for t, s, _, data in pair.hub.log if t >= back]
    assert [type(m) for _, m in after] == [Announcement, Acknowledgement]
    assert [s for s, _ in after] == ["p0", "p1"]
    assert len([e for e in pair.nodes[1].events if isinstance(e, PathSelected)]) == 1
