"""Birthday probing inside the connect agent: coordination, sockets, the direct path it finds.

On the simulator, with NATs handing out ports from a small range (1,000
ports) so a search ends in seconds: one hard side facing an easy one, and
both sides hard (the NATs share ports between destinations, as Linux does,
or a both-hard search on a small range runs out of ports). Each node sends
the traversal report natkit's classifier gives for its NAT, so the ladder
decides; the simulator's driver binds the sockets the agent asks for.
"""

from __future__ import annotations

import dataclasses

import pytest
from connect_testlib import LOCAL, connected_to_fake

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.ice import ConnectConfig, PathSelected, SignalDecodeError
from natkit.ice.candidates import CandidateKind
from natkit.ice.events import (
    BirthdayFinished,
    BirthdaySocketsReleased,
    BirthdaySocketsWanted,
    BirthdayStarted,
)
from natkit.ice.ladder import LadderConfig
from natkit.ice.relays import RelayServer
from natkit.ice.report import BirthdayCapability, TraversalReport
from natkit.ice.signals import (
    BirthdayDone,
    BirthdayOffer,
    BirthdayReady,
    BirthdayRole,
    SignalFailure,
    decode_signal,
    encode_signal,
)
from natkit.simulations.connect import ConnectNode
from natkit.simulations.nat import FilteringBehavior, MappingBehavior, NatConfig, PortAllocation
from natkit.simulations.relayed import RelayedPair, relay_server, relayed_pair
from natkit.simulations.traversal import NatType
from natkit.turn.config import TurnTransport

TCP = TurnTransport.TCP
SMALL = (40000, 40999)
HARD = NatConfig(
    MappingBehavior.APDM, FilteringBehavior.APDF, PortAllocation.RANDOM, port_range=SMALL
)
HARD_SHARED = dataclasses.replace(HARD, port_sharing=True)


def of(node: ConnectNode, kind: type) -> list[object]:
    return [e for _, e in node.timeline if isinstance(e, kind)]


def selections(node: ConnectNode) -> list[PathSelected]:
    return [e for _, e in node.timeline if isinstance(e, PathSelected)]


def check_found_and_upgraded(pair: RelayedPair) -> None:
    for node in pair.nodes:
        (finished,) = of(node, BirthdayFinished)
        assert isinstance(finished, BirthdayFinished)
        assert finished.found
        relayed, *_, direct = selections(node)
        assert relayed.kind is CandidateKind.RELAY
        assert direct.kind is not CandidateKind.RELAY
        assert direct.reason == "direct: birthday probing found a path"
        assert direct.remote == finished.remote
        why = node.agent.explain(pair.nodes[1 - pair.nodes.index(node)].name, pair.loop.now)
        assert why.sentence == "direct: birthday probing found a path"
    a, b = pair.nodes
    assert selections(a)[-1].remote == selections(b)[-1].local
    assert selections(b)[-1].remote == selections(a)[-1].local
    # Data moved from the relay to the path birthday found, without a loss.
    stream = pair.streams[0]
    assert stream.lost_between(0.0, pair.loop.now - 1.0) == 0
    assert any(not through for _, through in stream.received.values())


def test_one_hard_side_finds_a_direct_path_and_the_session_upgrades() -> None:
    pair = relayed_pair(HARD, NatType.PORT_RESTRICTED, reports=True)
    pair.stream(0, interval=0.02)
    pair.run(30.0)
    hard, easy = pair.nodes
    (started,) = of(hard, BirthdayStarted)
    assert isinstance(started, BirthdayStarted)
    assert started.role is BirthdayRole.OPENER
    assert started.target == Endpoint(pair.sites.b.public_ip, 40000)  # easy's mapped endpoint
    (wanted,) = of(hard, BirthdaySocketsWanted)
    assert isinstance(wanted, BirthdaySocketsWanted)
    assert wanted.count == 64
    (released,) = of(hard, BirthdaySocketsReleased)
    assert isinstance(released, BirthdaySocketsReleased)
    assert len(released.sockets) == 63  # all but the winner
    (sprayer,) = of(easy, BirthdayStarted)
    assert isinstance(sprayer, BirthdayStarted)
    assert sprayer.role is BirthdayRole.SPRAYER
    assert not of(easy, BirthdaySocketsWanted)  # it sprays from its own socket
    check_found_and_upgraded(pair)


def test_both_hard_on_a_small_port_range_finds_a_direct_path() -> None:
    pair = relayed_pair(
        HARD_SHARED, HARD_SHARED, reports=True, birthday=BirthdayCapability(16, 3000, 200)
    )
    pair.stream(0, interval=0.02)
    pair.run(40.0)
    for node in pair.nodes:
        (started,) = of(node, BirthdayStarted)
        assert isinstance(started, BirthdayStarted)
        assert started.role is BirthdayRole.BOTH
        (wanted,) = of(node, BirthdaySocketsWanted)
        assert isinstance(wanted, BirthdaySocketsWanted)
        assert wanted.count == 16
    check_found_and_upgraded(pair)


def test_a_spent_budget_is_reported_and_explains_the_relay() -> None:
    # Eight probes for eight mappings among 1,000 ports: the ladder is told to
    # try anything (min_success 0) and the search runs dry.
    config = ConnectConfig(ladder=LadderConfig(min_success=0.0))
    pair = relayed_pair(
        HARD,
        NatType.PORT_RESTRICTED,
        reports=True,
        config=config,
        birthday=BirthdayCapability(8, 8, 100),
    )
    pair.run(60.0)
    hard, easy = pair.nodes
    (finished,) = of(easy, BirthdayFinished)
    assert isinstance(finished, BirthdayFinished)
    assert (finished.found, finished.probes) == (False, 8)
    (released,) = of(hard, BirthdaySocketsReleased)
    assert isinstance(released, BirthdaySocketsReleased)
    assert len(released.sockets) == 8  # nothing won, everything back
    assert selections(hard)[-1].kind is CandidateKind.RELAY
    why = hard.agent.explain("b", pair.loop.now)
    assert why.relayed
    assert "birthday budget of 8 probes spent (expected success 6 %)" in why.sentence
    assert why.sentence.startswith(
        "this site APDM with random ports and the peer's site filters by address and port (APDF)"
    )


# -- the messages -----------------------------------------------------------------------


OFFER = BirthdayOffer(
    generation=7,
    attempt=1,
    key=bytes(range(32)),
    session=b"sess0001",
    role=BirthdayRole.OPENER,
    target=Endpoint.parse("198.51.100.2:40000"),
    ports=64,
    port_low=1024,
    port_high=65535,
    probes=0,
    rate=100,
    duration_ms=30_000,
)


def test_birthday_messages_round_trip() -> None:
    for message in (OFFER, BirthdayReady(7, 1), BirthdayDone(7, 1, True, 123)):
        assert decode_signal(encode_signal(message)) == message
    v6 = dataclasses.replace(
        OFFER, target=Endpoint.parse("[2001:db8::1]:0"), role=BirthdayRole.BOTH
    )
    assert decode_signal(encode_signal(v6)) == v6


@pytest.mark.parametrize(
    ("offset_or_patch", "detail"),
    [
        ("role", "birthday role 9"),
        ("key", "field 11 of 31 bytes, want 32"),
        ("target", "target of 4 bytes"),
        ("found", "found = 2"),
        ("ports", "birthday ports out of range: 0"),
    ],
)
def test_hostile_birthday_messages_are_refused(offset_or_patch: str, detail: str) -> None:
    data = bytearray(encode_signal(OFFER))
    if offset_or_patch == "found":
        data = bytearray(encode_signal(BirthdayDone(7, 1, True, 0)))
        index = data.index(b"\x14\x00\x01") + 3
        data[index] = 2
    elif offset_or_patch == "role":
        index = data.index(b"\x0d\x00\x01") + 3
        data[index] = 9
    elif offset_or_patch == "key":
        index = data.index(b"\x0b\x00\x20")
        data[index : index + 3 + 32] = b"\x0b\x00\x1f" + bytes(31)
    elif offset_or_patch == "target":
        index = data.index(b"\x0e\x00\x07")
        data[index : index + 3 + 7] = b"\x0e\x00\x04\x01\x00\x00\x00"
    else:
        index = data.index(b"\x0f\x00\x02") + 3
        data[index : index + 2] = b"\x00\x00"
    with pytest.raises(SignalDecodeError) as caught:
        decode_signal(bytes(data))
    assert caught.value.reason is SignalFailure.BAD_FIELD
    assert detail in caught.value.detail


def test_an_offer_beyond_this_nodes_limits_is_declined() -> None:
    harness, fake = connected_to_fake()
    agent = harness.agent
    # No traversal report here: this node does no birthday probing at all.
    offer = dataclasses.replace(OFFER, generation=fake.generation)
    harness.call(lambda now: agent.receive_signal("b", offer, now))
    (declined,) = [m for m in harness.signals() if isinstance(m, BirthdayDone)]
    assert (declined.attempt, declined.found, declined.probes) == (1, False, 0)
    (finished,) = harness.of(BirthdayFinished)
    assert isinstance(finished, BirthdayFinished)
    assert finished.detail == "this node does no birthday probing"
    # With limits: more sockets, probes or speed than it reported is declined too.
    capability = BirthdayCapability(ports=32, probes=1000, rate=100)
    harness.call(lambda now: agent.set_traversal_report(TraversalReport(birthday=capability), now))
    offer = dataclasses.replace(offer, ports=32)
    for change, why in (
        ({"ports": 33}, "33 sockets asked, at most 32"),
        ({"role": BirthdayRole.SPRAYER, "probes": 1001}, "1001 probes asked, at most 1000"),
        ({"rate": 101}, "101 probes/s asked, at most 100"),
        ({"duration_ms": 601_000}, "a run of 601 s asked, at most 600"),
    ):
        harness.call(
            lambda now, c=change: agent.receive_signal("b", dataclasses.replace(offer, **c), now)
        )
        assert harness.of(BirthdayFinished)[-1].detail == why  # type: ignore[union-attr]
    assert agent.counters.birthday_refused == 5
    assert not harness.of(BirthdaySocketsWanted)
    # A peer may not aim this node at anyone but itself.
    aimed = dataclasses.replace(offer, target=fake.address)
    harness.call(lambda now: agent.receive_signal("b", aimed, now))
    assert harness.of(BirthdaySocketsWanted)  # its own candidate: taken
    third_party = Endpoint.parse("192.0.2.99:40000")
    for role in BirthdayRole:
        elsewhere = dataclasses.replace(offer, target=third_party, role=role, attempt=9)
        harness.call(lambda now, e=elsewhere: agent.receive_signal("b", e, now))
        detail = harness.of(BirthdayFinished)[-1].detail  # type: ignore[union-attr]
        assert detail == "the target 192.0.2.99:40000 is none of the peer's candidates"
    # An offer of another generation (an old session's) is ignored outright.
    stale = dataclasses.replace(offer, generation=fake.generation + 1)
    before = agent.counters.signals_ignored
    harness.call(lambda now: agent.receive_signal("b", stale, now))
    assert agent.counters.signals_ignored == before + 1


def test_a_driver_that_binds_nothing_fails_the_attempt_cleanly() -> None:
    harness, fake = connected_to_fake()
    agent = harness.agent
    capability = BirthdayCapability(ports=64, probes=1000, rate=100)
    harness.call(lambda now: agent.set_traversal_report(TraversalReport(birthday=capability), now))
    offer = dataclasses.replace(OFFER, generation=fake.generation, target=fake.address)
    harness.call(lambda now: agent.receive_signal("b", offer, now))
    (wanted,) = harness.of(BirthdaySocketsWanted)
    assert isinstance(wanted, BirthdaySocketsWanted)
    harness.call(lambda now: agent.birthday_sockets("b", wanted.attempt, [], now))
    (finished,) = harness.of(BirthdayFinished)
    assert isinstance(finished, BirthdayFinished)
    assert (finished.found, finished.detail) == (False, "the driver bound no sockets")
    assert [m for m in harness.signals() if isinstance(m, BirthdayDone)]
    # The attempt is over: sockets for it now are a caller's mistake.
    with pytest.raises(LocalProtocolError, match="wants none"):
        harness.call(lambda now: agent.birthday_sockets("b", wanted.attempt, [(5, LOCAL)], now))


def test_closing_the_agent_gives_a_running_attempts_sockets_back() -> None:
    harness, fake = connected_to_fake()
    agent = harness.agent
    capability = BirthdayCapability(ports=64, probes=1000, rate=100)
    harness.call(lambda now: agent.set_traversal_report(TraversalReport(birthday=capability), now))
    offer = dataclasses.replace(OFFER, generation=fake.generation, target=fake.address)
    harness.call(lambda now: agent.receive_signal("b", offer, now))
    sockets = [(5, Endpoint.parse("192.0.2.1:41005")), (6, Endpoint.parse("192.0.2.1:41006"))]
    harness.call(lambda now: agent.birthday_sockets("b", 1, sockets, now))
    harness.advance(1.0)
    opens = [d for d in harness.take() if d.socket in (5, 6)]
    assert {d.remote for d in opens} == {fake.address}  # the mappings are being opened
    harness.call(agent.close)
    (released,) = harness.of(BirthdaySocketsReleased)
    assert isinstance(released, BirthdaySocketsReleased)
    assert released.sockets == (5, 6)
    harness.advance(30.0)
    assert not [d for d in harness.take() if d.socket in (5, 6)]


def test_sockets_that_are_already_the_agents_are_refused() -> None:
    harness, fake = connected_to_fake()
    agent = harness.agent
    capability = BirthdayCapability(ports=64, probes=1000, rate=100)
    harness.call(lambda now: agent.set_traversal_report(TraversalReport(birthday=capability), now))
    offer = dataclasses.replace(OFFER, generation=fake.generation, target=fake.address)
    harness.call(lambda now: agent.receive_signal("b", offer, now))
    for index in (0, 9):  # the agent's own socket; a TURN server's stream slot
        if index == 9:
            server = relay_server(socket=9)
            tcp = RelayServer(server.name, dataclasses.replace(server.config, transport=TCP))
            harness.call(lambda now, s=tcp: agent.add_relay_server(s, now))
        with pytest.raises(LocalProtocolError, match=f"socket {index} is already in use"):
            agent.birthday_sockets("b", 1, [(index, LOCAL)], harness.now)
