"""Relay-first, upgrade, downgrade, stickiness and allocation loss, on the simulator.

Two sites behind NATs (``natkit.simulations.sites``) and the simulator's TURN
server (``natkit.simulations.turn``) on the internet, each node relaying through
it (``natkit.simulations.relayed``). Each site is ``SITE_DELAY`` (10 ms) from the
internet and the server ``TURN_DELAY`` (5 ms), so a datagram from one peer
through the relay to the other takes 30 ms and one relay round trip
(:data:`RELAY_RTT`) is 60 ms.
"""

from __future__ import annotations

import itertools
import random

import pytest
from connect_testlib import LOCAL, PEER, FakePeer, Harness, host

from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError
from natkit.ice import (
    ConnectAgent,
    ConnectConfig,
    LossReason,
    PathLost,
    PathSelected,
    SignalReady,
)
from natkit.ice.candidates import Candidate, CandidateKind, priority_of
from natkit.ice.events import (
    RelayAllocated,
    RelayFailed,
    RelayStreamIdle,
)
from natkit.ice.pairs import CheckPurpose, PairState
from natkit.ice.relays import RelayPolicy, RelayServer
from natkit.ice.signals import CandidatesAdded, SignalCandidate
from natkit.sansio import Datagram
from natkit.signal.backoff import Backoff
from natkit.simulations.connect import ConnectNode
from natkit.simulations.relayed import (
    TURN_DELAY,
    TURN_PASSWORD,
    TURN_SERVER,
    TURN_USER,
    RelayedPair,
    relay_server,
    relayed_pair,
)
from natkit.simulations.traversal import SITE_DELAY, NatType
from natkit.simulations.turn import (
    CHANNEL_LIFETIME,
    SimAllocation,
    SimTurnServer,
    start_turn_server,
)
from natkit.turn import Credentials, TurnConfig, TurnFailure, TurnTransport
from natkit.turn.framing import StreamFramer

#: Peer to peer through the relay and back (see the module doc).
RELAY_RTT = 2 * 2 * (SITE_DELAY + TURN_DELAY)
CONFIG = ConnectConfig()


def selections(node: ConnectNode) -> list[tuple[float, PathSelected]]:
    return [(t, e) for t, e in node.timeline if isinstance(e, PathSelected)]


def events_of(node: ConnectNode, kind: type) -> list[tuple[float, object]]:
    return [(t, e) for t, e in node.timeline if isinstance(e, kind)]


def direct_pairs_unfinished(node: ConnectNode, peer: str) -> bool:
    """Some direct (unrelayed) pair has not been decided yet."""
    rows = node.agent.pairs(peer)
    return any(
        row.relay is None
        and row.remote_kind is not CandidateKind.RELAY
        and row.state in (PairState.WAITING, PairState.FROZEN, PairState.IN_PROGRESS)
        for row in rows
    )


# -- relay-first ---------------------------------------------------------------------


@pytest.mark.parametrize("nat", [NatType.SYMMETRIC, NatType.PORT_RESTRICTED])
def test_relay_first_the_first_datagram_crosses_the_relay_within_one_round_trip(
    nat: NatType,
) -> None:
    pair = relayed_pair(nat, nat)
    first, second = pair.nodes
    pair.loop.run_until(lambda: bool(pair.relayed_arrivals()), timeout=5.0)
    both = pair.both_signalled_at()
    assert both is not None
    arrival = pair.relayed_arrivals()[0]
    assert arrival - both <= RELAY_RTT
    # ...while the direct checks are still running on both sides.
    assert direct_pairs_unfinished(first, "b")
    assert direct_pairs_unfinished(second, "a")
    # The relayed path is selected on both sides soon after (a check round
    # trip, the nomination's, and the pacing of checks in between).
    pair.run(1.0)
    for node in pair.nodes:
        at, event = selections(node)[0]
        assert event.kind is CandidateKind.RELAY
        assert at - both <= 2 * RELAY_RTT + 2 * CONFIG.ta + 0.05
        assert "relayed over UDP" in event.reason


def test_without_a_relay_nothing_is_relayed_and_with_one_side_relaying_it_still_works() -> None:
    pair = relayed_pair(NatType.SYMMETRIC, NatType.SYMMETRIC, relays=(True, False))
    pair.run(3.0)
    for node in pair.nodes:
        (_, event), *_ = selections(node)
        assert event.kind is CandidateKind.RELAY
    assert pair.turn.counters.allocations == 1


# -- upgrade, downgrade --------------------------------------------------------------


def upgraded_pair() -> tuple[RelayedPair, float]:
    """Port-restricted cones both sides: relay first, then direct; a steady stream."""
    pair = relayed_pair(NatType.PORT_RESTRICTED, NatType.PORT_RESTRICTED)
    pair.stream(0, interval=0.02)
    pair.run(8.0)
    at, event = selections(pair.nodes[0])[-1]
    assert event.kind is not CandidateKind.RELAY
    return pair, at


def test_the_session_upgrades_to_direct_through_the_hysteresis_and_loses_nothing() -> None:
    pair, upgraded = upgraded_pair()
    stream = pair.streams[0]
    relayed, direct = selections(pair.nodes[0])
    assert relayed[1].kind is CandidateKind.RELAY
    assert direct[1].previous is not None
    assert direct[1].previous.kind is CandidateKind.RELAY
    assert direct[1].reason == "direct path confirmed by connectivity checks"
    # Hysteresis: not before switch_confirmations samples, confirm_interval apart.
    minimum = (CONFIG.switch_confirmations - 1) * CONFIG.confirm_interval
    assert upgraded - relayed[0] >= minimum
    # The data moved from the relay to the direct path without a loss.
    assert stream.lost_between(0.0, pair.loop.now - 1.0) == 0
    relayed_seqs = [s for s, (_, through) in stream.received.items() if through]
    direct_seqs = [s for s, (_, through) in stream.received.items() if not through]
    assert relayed_seqs
    assert direct_seqs
    assert max(relayed_seqs) < min(direct_seqs) + 5  # switched once, in order


def test_a_dead_direct_path_moves_to_the_relay_within_the_bound_and_back_when_restored() -> None:
    pair, _ = upgraded_pair()
    node = pair.nodes[0]
    stream = pair.streams[0]
    # While direct is selected the relayed pair stands by: re-checked every
    # keepalive interval (not on the backing-off upgrade schedule), and the
    # direct path kept alive every 5 s.
    session = node.agent._session("b", "test")
    pair.run(60.0)
    standby = session.standby()
    assert standby is not None
    assert standby.relayed
    checks_before = standby.checks
    pair.run(60.0)
    assert standby is session.standby()
    assert standby.checks - checks_before >= 60.0 // CONFIG.keepalive_interval - 1
    assert standby.recheck_interval == CONFIG.keepalive_interval
    log = node.agent.check_log
    assert log is not None
    since = pair.loop.now - 50.0
    keepalives = [c.at for c in log if c.at > since and c.purpose is CheckPurpose.KEEPALIVE]
    gaps = [b - a for a, b in itertools.pairwise(keepalives)]
    # The next keepalive is scheduled when the last one is answered: one RTT late at most.
    assert max(gaps) <= CONFIG.standby_interval + 0.1
    # Cut the direct path (a drop rule between the sites' public addresses).
    cut = pair.loop.now
    pair.cut_direct()
    pair.run(CONFIG.downgrade_bound + 2.0)
    (lost_at, lost), *_ = [(t, e) for t, e in events_of(node, PathLost) if t > cut]
    assert isinstance(lost, PathLost)
    assert lost.reason is LossReason.KEEPALIVE_TIMEOUT
    assert lost_at - cut <= CONFIG.downgrade_bound
    moved_at, moved = selections(node)[-1]
    assert moved.kind is CandidateKind.RELAY
    assert moved_at - lost_at <= RELAY_RTT + CONFIG.ta
    assert "the direct path was lost" in moved.reason
    lost_in_switch = stream.lost_between(cut, moved_at)
    assert 0 < lost_in_switch <= (moved_at - cut) / stream.interval + 1
    # No new allocation was needed.
    assert pair.turn.counters.allocations == 2
    assert len(events_of(node, RelayAllocated)) == 1
    # Restore: back to direct once the direct pair's re-check comes round.
    direct_rechecks = [
        p.recheck_at for p in session.pairs.values() if not p.relayed and p.recheck_at
    ]
    restored = pair.loop.now
    pair.restore_direct()
    upgrade_bound = (
        max(direct_rechecks)
        - restored
        + CONFIG.switch_confirmations * CONFIG.confirm_interval
        + 1.0
    )
    pair.run(upgrade_bound)
    back_at, back = selections(node)[-1]
    assert back.kind is not CandidateKind.RELAY
    assert back_at - restored <= upgrade_bound
    pair.run(2.0)
    assert stream.lost_between(restored, pair.loop.now - 1.0) == 0


# -- stickiness: the re-check schedule while relayed -------------------------------------


def test_while_relayed_direct_pairs_are_rechecked_with_backoff_forever_and_at_once_on_change() -> (
    None
):
    pair = relayed_pair(NatType.SYMMETRIC, NatType.SYMMETRIC)
    node = pair.nodes[0]
    pair.run(1500.0)
    log = node.agent.check_log
    assert log is not None
    direct = [c for c in log if c.remote.port < 49152]
    destination = direct[-1].remote
    rechecks = [
        c.at for c in direct if c.remote == destination and c.purpose is CheckPurpose.RECHECK
    ]
    starts = [rechecks[0]] + [b for a, b in itertools.pairwise(rechecks) if b - a > 2.0]
    gaps = [round(b - a) for a, b in itertools.pairwise(starts)]
    # A failed pair's re-checks back off (each 2 transmissions ~0.5 s apart,
    # then the wait doubles) up to retry_max, and never stop.
    assert gaps[:4] == sorted(gaps[:4])
    assert max(gaps) <= CONFIG.retry_max + 2
    assert gaps[-1] >= CONFIG.retry_max - 2
    assert starts[-1] > pair.loop.now - CONFIG.retry_max - 5
    why = node.agent.explain("b", pair.loop.now)
    assert why.relayed
    assert "re-checked" in why.sentence
    assert "next in" in why.sentence
    # A network change re-checks every direct pair at once...
    changed = pair.loop.now
    node.driver.invoke(node.agent.network_changed)
    pair.run(1.0)
    soon = [c for c in log if c.at >= changed and c.remote.port < 49152]
    assert len({c.remote for c in soon}) == len({c.remote for c in direct})
    assert min(c.at for c in soon) - changed <= 2 * CONFIG.ta
    # ...and so does a new candidate from the peer.
    pair.run(100.0)
    other = pair.nodes[1]
    trickled = pair.loop.now
    extra = Endpoint.parse("198.51.100.77:40000")
    other.driver.invoke(
        lambda now: other.agent.add_local_candidate(
            Candidate(CandidateKind.STATIC, extra, other.sockets[0].local, "static"), now
        )
    )
    pair.run(1.0)
    after = [c for c in log if c.at >= trickled and c.remote.port < 49152]
    assert destination in {c.remote for c in after}


# -- allocations -----------------------------------------------------------------------


def test_a_lost_allocation_is_made_again_when_the_server_returns_and_trickled() -> None:
    pair = relayed_pair(NatType.SYMMETRIC, NatType.SYMMETRIC)
    node = pair.nodes[0]
    pair.run(20.0)
    pair.turn.alive = False
    dead = pair.loop.now
    pair.run(120.0)
    (_lost_at, lost), *_ = [(t, e) for t, e in events_of(node, RelayFailed) if t > dead]
    assert isinstance(lost, RelayFailed)
    assert lost.lost
    assert lost.failure is TurnFailure.TIMEOUT
    assert [e for t, e in events_of(node, PathLost) if t > dead]
    pair.turn.restart()
    back = pair.loop.now
    pair.run(120.0)
    allocated = [(t, e) for t, e in events_of(node, RelayAllocated) if t > back]
    assert allocated
    # The new relayed candidate went to the peer...
    trickled = [
        e.message
        for t, e in node.timeline
        if t > back and isinstance(e, SignalReady) and isinstance(e.message, CandidatesAdded)
    ]
    assert any(c.kind is CandidateKind.RELAY for m in trickled for c in m.candidates)
    # ...and traffic is relayed again (through whichever allocation came back
    # first), with pairs through the new one checked too.
    selected_at, selected = selections(node)[-1]
    assert selected.kind is CandidateKind.RELAY
    assert selected_at > back
    rows = [r for r in node.agent.pairs("b") if r.relay is not None]
    assert any(r.answers for r in rows)


def test_permissions_for_the_peers_candidates_are_made_as_they_are_learnt() -> None:
    pair = relayed_pair(NatType.PORT_RESTRICTED, NatType.PORT_RESTRICTED, connect=False)
    first, _second = pair.nodes
    pair.connect()
    pair.loop.run_until(
        lambda: first.agent.state("b") != "waiting for the peer's announcement", 1.0
    )
    learnt = pair.loop.now
    pair.run(2 * (SITE_DELAY + TURN_DELAY) + 0.001)
    allocation = pair.turn.allocations[first.agent.relays.active.client.mapped]  # type: ignore[union-attr, index]
    assert pair.sites.b.public_ip in allocation.permissions
    assert TURN_SERVER.address in allocation.permissions  # the peer's relayed candidate
    assert pair.loop.now - learnt < 0.1


def lapsing_world() -> tuple[RelayedPair, SimAllocation, set[IPAddress]]:
    """Two relaying nodes connected; node a's allocation and the addresses
    of b it holds permissions for."""
    pair = relayed_pair(NatType.SYMMETRIC, NatType.SYMMETRIC)
    first, second = pair.nodes
    pair.run(3.0)
    assert first.selections("b")
    active = first.agent.relays.active
    assert active is not None
    allocation = pair.turn.allocations[active.client.mapped]  # type: ignore[index]
    now = pair.loop.now
    held = {ip for ip in allocation.permissions if allocation.permitted(ip, now)}
    assert {pair.sites.b.public_ip, TURN_SERVER.address} <= held
    assert allocation.channels
    # b stops talking to a (so nothing of b's comes back to renew anything).
    second.driver.invoke(lambda now: second.agent.remove_peer("a", now))
    return pair, allocation, held


def lapsed(pair: RelayedPair, allocation: SimAllocation, addresses: set[IPAddress]) -> bool:
    """None of ``addresses`` may reach the allocation any more (RFC 8656 §9, §12)."""
    now = pair.loop.now
    channels = [peer for peer, until in allocation.channels.values() if until > now]
    return not any(allocation.permitted(ip, now) for ip in addresses) and not any(
        peer.address in addresses for peer in channels
    )


def test_a_removed_peers_permissions_and_channels_lapse_at_the_server() -> None:
    pair, allocation, held = lapsing_world()
    first = pair.nodes[0]
    first.driver.invoke(lambda now: first.agent.remove_peer("b", now))
    pair.run(CHANNEL_LIFETIME + 60)
    assert lapsed(pair, allocation, held)
    # The allocation itself lives on (refreshed) for the next peer.
    assert first.agent.relays.active is not None
    assert allocation.expires_at > pair.loop.now


def test_a_restarted_peers_old_addresses_lapse_and_its_new_ones_are_kept() -> None:
    pair, allocation, held = lapsing_world()
    first = pair.nodes[0]
    moved = Endpoint.parse("198.51.100.99:4000")  # the peer restarted elsewhere
    fake = FakePeer(address=moved, generation=4242)

    def restart(now: float) -> None:
        first.agent.receive_signal("b", fake.announcement(first.agent, "b"), now)

    first.driver.invoke(restart)
    pair.run(CHANNEL_LIFETIME + 60)
    assert lapsed(pair, allocation, held - {moved.address})
    assert allocation.permitted(moved.address, pair.loop.now)  # still refreshed


def nearest_world() -> tuple[RelayedPair, SimTurnServer]:
    pair = relayed_pair(NatType.SYMMETRIC, NatType.SYMMETRIC, relays=(False, True))
    far = Endpoint.parse("192.0.2.40:3478")
    far_server, _ = start_turn_server(
        pair.sites.network,
        pair.sites.internet,
        far,
        name="far",
        delay=0.2,
        username=TURN_USER,
        password=TURN_PASSWORD,
    )
    return pair, far_server


def test_of_several_servers_the_nearest_by_rtt_is_used() -> None:
    pair, far_server = nearest_world()
    node = pair.nodes[0]
    far = relay_server(Endpoint.parse("192.0.2.40:3478"), name="turn:far")
    near = relay_server(name="turn:near")

    def add_both(now: float) -> None:
        node.agent.add_relay_server(far, now)
        node.agent.add_relay_server(near, now)

    node.driver.invoke(add_both)
    pair.run(3.0)
    ((_, allocated),) = events_of(node, RelayAllocated)
    assert isinstance(allocated, RelayAllocated)
    assert allocated.server == "turn:near"
    assert allocated.rtt == pytest.approx(2 * (SITE_DELAY + TURN_DELAY))
    assert far_server.counters.allocations == 0
    assert pair.turn.counters.allocations == 2  # node a's and node b's


def test_one_allocation_serves_every_peer() -> None:
    pair = relayed_pair(NatType.SYMMETRIC, NatType.SYMMETRIC)
    hub = pair.nodes[0]
    # A third node on site b's host... a second peer of a, on its own socket.
    site = pair.sites.b
    sockets = [site.host.bind(site.host.ips[0], 41000)]
    third = ConnectNode("c", sockets, pair.hub, seed=7)
    third.add_host_candidates()
    third.driver.invoke(lambda now: third.agent.add_relay_server(relay_server(), now))
    pair.run(1.0)
    hub.connect("c")
    third.connect("a")
    pair.run(3.0)
    assert {e.peer for _, e in selections(hub)} == {"b", "c"}
    assert len(events_of(hub, RelayAllocated)) == 1
    allocation = next(
        a
        for a in pair.turn.allocations.values()
        if a.client == hub.agent.relays.active.client.mapped  # type: ignore[union-attr]
    )
    assert pair.sites.b.public_ip in allocation.permissions


# -- hostile servers ---------------------------------------------------------------------


def test_wrong_credentials_are_a_clear_failure_retried_late_and_nothing_breaks() -> None:
    pair = relayed_pair(NatType.PORT_RESTRICTED, NatType.PORT_RESTRICTED, relays=(False, False))
    node = pair.nodes[0]
    wrong = relay_server(password="not the password")
    node.driver.invoke(lambda now: node.agent.add_relay_server(wrong, now))
    pair.run(5.0)
    ((_, failed),) = events_of(node, RelayFailed)
    assert isinstance(failed, RelayFailed)
    assert (failed.failure, failed.code, failed.lost) == (TurnFailure.UNAUTHORIZED, 401, False)
    assert failed.retry_in == RelayPolicy().refused_retry
    assert not events_of(node, RelayAllocated)
    # The direct path is found regardless.
    assert selections(node)[-1][1].kind is not CandidateKind.RELAY


@pytest.mark.parametrize(
    ("code", "failure"),
    [(486, TurnFailure.QUOTA_REACHED), (508, TurnFailure.INSUFFICIENT_CAPACITY)],
)
def test_a_refusing_server_is_retried_with_backoff_and_used_once_it_serves(
    code: int, failure: TurnFailure
) -> None:
    pair = relayed_pair(NatType.SYMMETRIC, NatType.SYMMETRIC, relays=(False, False))
    node = pair.nodes[0]
    pair.turn.refuse = code
    node.driver.invoke(lambda now: node.agent.add_relay_server(relay_server(), now))
    pair.run(10.0)
    refusals = [e for _, e in events_of(node, RelayFailed)]
    assert len(refusals) >= 3
    assert all(isinstance(e, RelayFailed) and e.failure is failure for e in refusals)
    delays = [e.retry_in for e in refusals if isinstance(e, RelayFailed)]
    assert delays[2] > delays[0]  # backing off
    pair.turn.refuse = None
    pair.run(Backoff().cap)
    assert events_of(node, RelayAllocated)


# -- relays over TCP and TLS: the stream slot ------------------------------------------------


class StreamPipe:
    """An agent's stream slot wired to a simulated TURN server by hand (the
    driver's job over a real TCP or TLS connection)."""

    CLIENT = Endpoint.parse("203.0.113.9:50000")

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.server = SimTurnServer(TURN_SERVER, [Endpoint.parse("192.0.2.30:49152")])
        self.agent = ConnectAgent("a", rng=random.Random(3), sockets=[Endpoint.parse("10.0.0.2:1")])
        self.framer = StreamFramer()
        self.now = 0.0
        self.events: list[object] = []
        self.written = 0

    def pump(self) -> None:
        for _ in range(20):
            out: list[Datagram] = self.agent.datagrams_to_send(self.now)
            while (event := self.agent.next_event()) is not None:
                self.events.append(event)
            if not out:
                return
            for datagram in out:
                assert datagram.socket == self.slot
                self.written += 1
                for message in self.framer.feed(datagram.data):
                    self.server.receive_datagram(message, self.CLIENT, 0, self.now)
            for answer in self.server.datagrams_to_send(self.now):
                self.agent.relay_stream_data(self.slot, answer.data, self.now)

    def run(self, until: float) -> None:
        self.pump()
        while (deadline := self.agent.get_timer()) is not None and deadline <= until:
            self.now = max(self.now, deadline)
            self.agent.handle_timer(self.now)
            self.pump()
        self.now = until


@pytest.mark.parametrize("transport", [TurnTransport.TCP, TurnTransport.TLS])
def test_a_relay_over_a_stream_allocates_and_a_lost_connection_is_reported(
    transport: TurnTransport,
) -> None:
    pipe = StreamPipe(slot=7)
    server = RelayServer(
        f"turn:{TURN_SERVER}?transport={transport.value}",
        TurnConfig(TURN_SERVER, Credentials(TURN_USER, "natkit-sim-password"), transport, socket=7),
    )
    pipe.agent.add_relay_server(server, pipe.now)
    pipe.run(1.0)
    (allocated,) = [e for e in pipe.events if isinstance(e, RelayAllocated)]
    assert allocated.transport is transport
    assert [c.kind for c in pipe.agent.local_candidates] == [CandidateKind.RELAY]
    # The connection drops: the allocation is lost, the driver may close it.
    pipe.agent.relay_stream_lost(7, pipe.now, "reset by peer")
    pipe.pump()
    (failed,) = [e for e in pipe.events if isinstance(e, RelayFailed)]
    assert (failed.failure, failed.lost) == (TurnFailure.CONNECTION_LOST, True)
    assert failed.detail == "reset by peer"
    assert RelayStreamIdle(7, server.name) in pipe.events
    assert pipe.agent.local_candidates == ()
    # A new connection (opened by the driver on the next write) is used after the backoff.
    pipe.server.restart()
    pipe.run(pipe.now + Backoff().cap)
    assert len([e for e in pipe.events if isinstance(e, RelayAllocated)]) == 2


def test_stream_input_for_a_slot_that_is_no_relays_is_refused() -> None:
    pipe = StreamPipe(slot=7)
    with pytest.raises(LocalProtocolError, match="no relay server's stream"):
        pipe.agent.relay_stream_data(3, b"x", 0.0)
    with pytest.raises(LocalProtocolError, match="no relay server's stream"):
        pipe.agent.relay_stream_lost(0, 0.0)


# -- selection among relayed and direct pairs (a scripted peer, exact RTTs) ----------------


def test_a_faster_relayed_pair_never_races_a_valid_direct_one() -> None:
    slow_relay = Endpoint.parse("192.0.2.30:49153")
    fast_relay = Endpoint.parse("192.0.2.30:49154")
    fake = FakePeer()
    candidates = (
        SignalCandidate(CandidateKind.RELAY, slow_relay, priority_of(CandidateKind.RELAY), "r1"),
        SignalCandidate(
            CandidateKind.RELAY, fast_relay, priority_of(CandidateKind.RELAY, 60000), "r2"
        ),
        fake.candidate(),
    )
    harness = Harness()
    harness.call(lambda now: harness.agent.add_local_candidate(host(LOCAL), now))
    harness.call(lambda now: harness.agent.add_peer("b", now))
    announcement = fake.announcement(harness.agent, "b", candidates=candidates)
    harness.call(lambda now: harness.agent.receive_signal("b", announcement, now))
    rtts = {slow_relay: 0.100, fast_relay: 0.020, PEER: 0.030}
    # The fast relayed pair's first check is lost (so the slow one is chosen
    # first), the direct pair's first two (so the fast relayed pair starts
    # beating the selected one first): both then race to replace it.
    lose = {fast_relay: 1, PEER: 2}
    pending: list[tuple[float, bytes, Endpoint]] = []
    while harness.now < 10.0:
        for datagram in harness.take():
            if lose.get(datagram.remote):
                lose[datagram.remote] -= 1
                continue
            answer = fake.answer(datagram.data, LOCAL)
            pending.append((harness.now + rtts[datagram.remote], answer, datagram.remote))
        pending.sort(key=lambda item: item[0])
        timer = harness.agent.get_timer()
        step = min([harness.now + 0.01] + [t for t, _, _ in pending[:1]])
        if timer is not None:
            step = min(step, max(timer, harness.now))
        harness.advance(step)
        while pending and pending[0][0] <= harness.now:
            _, data, source = pending.pop(0)
            harness.deliver(data, source=source)
    chosen = [e.remote for e in harness.of(PathSelected)]  # type: ignore[union-attr]
    # Relay first (the first relayed pair answered), then straight to direct:
    # the faster relayed pair lost its lead the moment a direct pair was valid.
    assert chosen == [slow_relay, PEER]


def test_closing_the_agent_deallocates_and_the_session_stays_direct() -> None:
    pair, _ = upgraded_pair()
    node = pair.nodes[0]
    mapped = node.agent.relays.active.client.mapped  # type: ignore[union-attr]
    assert mapped in pair.turn.allocations
    node.driver.invoke(node.agent.close)
    pair.run(1.0)
    assert mapped not in pair.turn.allocations  # the Refresh with LIFETIME 0 arrived
    assert not [c for c in node.agent.local_candidates if c.kind is CandidateKind.RELAY]
    assert selections(node)[-1][1].kind is not CandidateKind.RELAY
