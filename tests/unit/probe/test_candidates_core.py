"""The reflexive gathering core on the simulator's virtual clock.

Several STUN servers on hosts with different link delays, the client
behind simulated NATs: every server is asked at once from one socket, the
gathering ends one round trip to the slowest answering server after the
start (not the sum), servers that disagree are reported, a dead server is
cut off once the others have answered, and UDP-blocked paths are called
quickly when TCP answers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.gather.candidates import CandidateTransport, PathKind, ServerOutcome
from natkit.gather.plan import find_disagreements, udp_blocked_verdict
from natkit.gather.reflexive import (
    GathererConfig,
    GathererEvent,
    GatheringCompleted,
    ReflexiveAddressFound,
    ReflexiveGatherer,
    ServerFailed,
    StreamTarget,
    StunTarget,
)
from natkit.probe.layering import nat_layering
from natkit.sansio import StreamRequest, StreamResult
from natkit.simulations import CoreDriver, Link, NatConfig
from natkit.simulations import MappingBehavior as SimMapping
from natkit.simulations.topology import HOME_NAT_CARRIER_IP, standard_topology
from natkit.stun.attributes import XorAddressAttribute
from natkit.stun.codec import Message, binding_request, encode_message
from natkit.stun.constants import AttributeType, MessageClass, Method
from natkit.stun.server import ServerConfig, StunServer, Transport

#: One-way delays of the extra servers' links (the client's link adds 5 ms).
SERVER_DELAYS = {"203.0.113.20": 0.010, "203.0.113.30": 0.040, "203.0.113.40": 0.100}
ACCESS_DELAY = 0.005


@dataclass
class Run:
    core: ReflexiveGatherer
    driver: CoreDriver[GathererEvent]
    servers: dict[str, StunServer]
    started: float

    @property
    def completed(self) -> GatheringCompleted:
        found = [e for e in self.driver.events if isinstance(e, GatheringCompleted)]
        assert len(found) == 1, self.driver.events
        return found[0]

    def by_server(self) -> dict[str, ServerOutcome]:
        return {o.server: o.outcome for o in self.completed.observations}


def simulate(
    nat: NatConfig | None,
    *,
    dead: tuple[str, ...] = (),
    loss: float = 0.0,
    seed: int = 1,
    streams: bool = False,
    config: GathererConfig | None = None,
    carrier: NatConfig | None = None,
) -> Run:
    """Gather from the extra servers (``dead`` ones run no server)."""
    topo = standard_topology(nat, carrier=carrier, delay=ACCESS_DELAY, loss=loss, seed=seed)
    servers: dict[str, StunServer] = {}
    for address, delay in SERVER_DELAYS.items():
        endpoint = Endpoint.parse(f"{address}:3478")
        host = topo.network.add_host(
            f"s{address.rsplit('.', 1)[1]}", topo.internet, [address], link=Link.symmetric(delay)
        )
        if address in dead:
            continue
        server = StunServer(ServerConfig((endpoint,)))
        CoreDriver(server, host.bind_all([(endpoint.address, endpoint.port)]))
        servers[address] = server
    sock = topo.bind_client(1)[0]
    start = topo.loop.now
    core = ReflexiveGatherer([sock.local], start, config, random.Random(seed))

    def tcp(request: StreamRequest) -> tuple[float, StreamResult]:
        # TCP is not simulated: the server core answers one round trip later.
        address = str(request.remote.address)
        server = servers.get(address)
        reply = None
        if server is not None:
            answer = server.handle(request.payload, sock.local, 0, Transport.TCP)
            reply = None if answer is None else answer.data
        rtt = 2 * (ACCESS_DELAY + SERVER_DELAYS[address])
        local = sock.local if server is not None else None
        return rtt, StreamResult(reply, local, rtt, "refused")

    driver: CoreDriver[GathererEvent] = CoreDriver(core, [sock], streams=tcp)

    def add(now: float) -> None:
        for address in SERVER_DELAYS:
            server = Endpoint.parse(f"{address}:3478")
            core.add_target(StunTarget(f"{address}:3478", server, server, 0, sock.local), now)
            if streams:
                core.add_stream_target(
                    StreamTarget(f"{address}:3478", server, server, CandidateTransport.TCP), now
                )
        core.no_more_targets(now)

    driver.invoke(add)
    topo.loop.run_until(lambda: core.done, timeout=10.0)
    return Run(core, driver, servers, start)


def test_all_servers_are_asked_at_once_from_one_socket() -> None:
    run = simulate(NatConfig())
    sends = run.driver.sent
    assert sends == len(SERVER_DELAYS)  # one request each, no retransmission needed
    done = run.completed
    slowest = 2 * (ACCESS_DELAY + max(SERVER_DELAYS.values()))
    # One round trip to the slowest server, not the sum of all three.
    assert done.duration == pytest.approx(slowest, abs=1e-6)
    assert done.duration < sum(2 * (ACCESS_DELAY + d) for d in SERVER_DELAYS.values())
    for observation in done.observations:
        expected = 2 * (ACCESS_DELAY + SERVER_DELAYS[str(observation.address.address)])
        assert observation.rtt == pytest.approx(expected, abs=1e-6)
        assert observation.outcome is ServerOutcome.ANSWERED
        assert observation.transmissions == 1


def test_eim_nat_gives_one_address_and_no_disagreement() -> None:
    run = simulate(NatConfig())
    mapped = {o.mapped for o in run.completed.observations}
    assert len(mapped) == 1
    (public,) = mapped
    assert public is not None
    assert str(public.address) == "198.51.100.1"
    assert find_disagreements(run.completed.observations) == ()


def test_apdm_nat_disagreement_is_reported_not_hidden() -> None:
    run = simulate(NatConfig(mapping=SimMapping.APDM))
    observations = run.completed.observations
    ports = {o.mapped.port for o in observations if o.mapped is not None}
    assert len(ports) == len(SERVER_DELAYS)
    (disagreement,) = find_disagreements(observations)
    assert disagreement.kind.value == "port"
    assert len(disagreement.mapped) == len(SERVER_DELAYS)
    assert "the mapping depends on the destination" in disagreement.reason


def test_double_nat_with_a_carrier_tier_and_the_gateways_word() -> None:
    run = simulate(NatConfig(), carrier=NatConfig())
    observations = run.completed.observations
    assert {str(o.mapped.address) for o in observations if o.mapped} == {"198.51.100.1"}
    local = [o.base.address for o in observations if o.base is not None]
    mapped = [(o.server, o.mapped) for o in observations if o.mapped is not None]
    # Without a gateway's word the client cannot see the inner tier...
    unseen = nat_layering(local=local[:1], mapped=mapped)
    assert (unseen.cgnat, unseen.double_nat) == (None, None)
    # ...with it (the home NAT's WAN address in 100.64.0.0/10) it can.
    seen = nat_layering(local=local[:1], mapped=mapped, gateway_external=HOME_NAT_CARRIER_IP)
    assert (seen.cgnat, seen.double_nat) == (True, True)
    assert "100.64.0.2" in seen.cgnat_reason


def test_dead_server_is_cut_off_after_the_straggler_wait() -> None:
    config = GathererConfig(straggler_min_wait=0.5, straggler_factor=3.0)
    run = simulate(NatConfig(), dead=("203.0.113.40",), config=config)
    done = run.completed
    outcomes = run.by_server()
    assert outcomes["203.0.113.40:3478"] is ServerOutcome.CUT_OFF
    assert outcomes["203.0.113.20:3478"] is ServerOutcome.ANSWERED
    # Cut off at max(0.5 s, 3 x the slowest RTT seen, 90 ms), not at the 3 s timeout.
    assert done.duration == pytest.approx(0.5, abs=1e-6)
    failed = [e for e in run.driver.events if isinstance(e, ServerFailed)]
    assert [f.observation.server for f in failed] == ["203.0.113.40:3478"]


def test_all_silent_ends_at_the_timeout() -> None:
    run = simulate(NatConfig(), dead=tuple(SERVER_DELAYS), config=GathererConfig(timeout=1.5))
    assert run.completed.duration == pytest.approx(1.5, abs=1e-6)
    assert set(run.by_server().values()) == {ServerOutcome.CUT_OFF}
    # The RFC 8489 schedule: 0, 250, 750 ms before the 1.5 s end.
    assert run.driver.sent == 3 * len(SERVER_DELAYS)


@pytest.mark.parametrize("seed", range(6))
def test_loss_is_survived_by_retransmission(seed: int) -> None:
    run = simulate(NatConfig(), loss=0.3, seed=seed)
    answered = [o for o in run.completed.observations if o.answered]
    assert answered, run.completed.observations
    for observation in answered:
        assert observation.rtt is not None


def test_events_trickle_in_rtt_order() -> None:
    run = simulate(NatConfig())
    found = [
        e.observation.server for e in run.driver.events if isinstance(e, ReflexiveAddressFound)
    ]
    assert found == [f"{a}:3478" for a in SERVER_DELAYS]


def test_udp_blocked_is_called_when_tcp_answers() -> None:
    config = GathererConfig(straggler_min_wait=0.3)
    run = simulate(NatConfig(udp_blocked=True), streams=True, config=config)
    done = run.completed
    udp = [o for o in done.observations if o.transport is CandidateTransport.UDP]
    tcp = [o for o in done.observations if o.transport is CandidateTransport.TCP]
    assert all(not o.answered for o in udp)
    assert all(o.answered for o in tcp)
    # Called by the straggler rule (3 x the slowest TCP RTT), not the 3 s timeout.
    slowest = 2 * (ACCESS_DELAY + max(SERVER_DELAYS.values()))
    assert done.duration == pytest.approx(max(0.3, 3 * slowest), abs=1e-6)
    blocked, reason = udp_blocked_verdict(done.observations)
    assert blocked is True
    assert "only a relay over TCP or TLS" in reason


def test_stream_checks_report_the_tcp_mapping() -> None:
    run = simulate(NatConfig(), streams=True)
    tcp = [o for o in run.completed.observations if o.transport is CandidateTransport.TCP]
    assert len(tcp) == len(SERVER_DELAYS)
    for observation in tcp:
        assert observation.outcome is ServerOutcome.ANSWERED
        assert observation.mapped is not None
    assert udp_blocked_verdict(run.completed.observations) == (False, "UDP answers received")


def _core() -> ReflexiveGatherer:
    return ReflexiveGatherer([Endpoint.parse("192.168.1.2:4000")], 0.0, rng=random.Random(1))


def _target(address: str, *, socket: int = 0) -> StunTarget:
    server = Endpoint.parse(address)
    return StunTarget(address, server, server, socket, Endpoint.parse("192.168.1.2:4000"))


def test_duplicates_and_late_targets_are_ignored() -> None:
    core = _core()
    assert core.add_target(_target("203.0.113.10:3478"), 0.0)
    assert not core.add_target(_target("203.0.113.10:3478"), 0.0)
    assert len(core.datagrams_to_send(0.0)) == 1
    core.handle_timer(3.0)
    assert core.done
    assert not core.add_target(_target("203.0.113.11:3478"), 3.0)
    with pytest.raises(LocalProtocolError):
        _core().add_target(_target("203.0.113.10:3478", socket=1), 0.0)


def test_nothing_ends_before_the_target_list_is_complete() -> None:
    core = _core()
    core.handle_timer(0.1)
    assert not core.done
    core.no_more_targets(0.1)
    assert core.done
    event = core.next_event()
    assert isinstance(event, GatheringCompleted)
    assert event.observations == ()


def test_stream_replies_are_parsed_strictly() -> None:
    core = _core()
    target = StreamTarget(
        "stuns:203.0.113.20",
        Endpoint.parse("203.0.113.20:5349"),
        Endpoint.parse("203.0.113.20:5349"),
        CandidateTransport.TLS,
    )
    core.add_stream_target(target, 0.0)
    core.no_more_targets(0.0)
    (requested,) = core.stream_requests()
    assert requested.remote == target.destination
    stranger = encode_message(binding_request(b"\x00" * 12))
    core.stream_answered(
        requested.id, StreamResult(stranger, Endpoint.parse("192.168.1.2:5"), 0.01), 0.05
    )
    observation = core.observations[0]
    assert observation.outcome is ServerOutcome.ERROR_RESPONSE
    assert observation.detail == "reply to another transaction"
    assert observation.path is PathKind.DIRECT
    with pytest.raises(LocalProtocolError):
        StreamTarget("x", target.server, target.server, CandidateTransport.UDP)


def test_refused_connection_is_unreachable() -> None:
    core = _core()
    server = Endpoint.parse("203.0.113.20:3478")
    target = StreamTarget("s", server, server, CandidateTransport.TCP)
    core.add_stream_target(target, 0.0)
    (requested,) = core.stream_requests()
    core.stream_answered(requested.id, StreamResult(None, detail="cannot connect: refused"), 0.01)
    observation = core.observations[0]
    assert observation.outcome is ServerOutcome.UNREACHABLE
    assert observation.detail == "cannot connect: refused"


def test_gatherer_config_is_checked() -> None:
    with pytest.raises(LocalProtocolError):
        GathererConfig(timeout=0)
    with pytest.raises(LocalProtocolError):
        GathererConfig(straggler_factor=0.5)


def test_an_answer_from_another_address_does_not_settle_a_target() -> None:
    core = _core()
    target = _target("203.0.113.10:3478")
    core.add_target(target, 0.0)
    core.no_more_targets(0.0)
    (request,) = core.datagrams_to_send(0.0)
    real = Endpoint.parse("198.51.100.1:40000")

    def answer(mapped: Endpoint) -> bytes:
        message = Message(
            Method.BINDING,
            MessageClass.SUCCESS_RESPONSE,
            request.data[8:20],
            (XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, mapped),),
        )
        return encode_message(message)

    # RFC 8489 §6.3.1: a response must come from where the request went.
    core.receive_datagram(
        answer(Endpoint.parse("192.0.2.66:1")), Endpoint.parse("192.0.2.66:3478"), 0, 0.01
    )
    assert not core.done
    core.receive_datagram(answer(real), target.destination, 0, 0.02)
    assert core.done
    (observation,) = core.observations
    assert observation.mapped == real
