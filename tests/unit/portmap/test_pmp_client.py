"""The NAT-PMP client on a virtual clock against a fake gateway (RFC 6886)."""

from __future__ import annotations

import ipaddress
import random

import pytest
from portmap_testlib import (
    GATEWAY,
    INTERNAL,
    FakeGateway,
    Harness,
    Lease,
    pcp_announce_response,
    pmp_address_response,
    pmp_map_response,
)

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.portmap.events import (
    FailureReason,
    GatewayRestarted,
    LossReason,
    MappingDeleted,
    MappingFailed,
    MappingGranted,
    MappingLost,
    MappingRenewed,
)
from natkit.portmap.lease import LeaseDropReason
from natkit.portmap.lease_state import ClientState
from natkit.portmap.mapping import LifetimeNote, MappingProtocol, PmpDetails, TransportProtocol
from natkit.portmap.pmp import PmpResultCode
from natkit.portmap.pmp_client import PmpClient, PmpConfig

NEW_IP = ipaddress.IPv4Address("198.51.100.9")


def start(gateway: FakeGateway | None = None, **kwargs: object) -> Harness:
    return Harness(PmpClient(GATEWAY, INTERNAL, 0.0, **kwargs), gateway or FakeGateway())  # type: ignore[arg-type]


def granted(harness: Harness) -> MappingGranted:
    events = harness.run_until(harness.now + 1)
    grants = [e for e in events if isinstance(e, MappingGranted)]
    assert grants, events
    return grants[-1]


def occupy_internal_port(gateway: FakeGateway) -> None:
    gateway.leases[(1, "192.168.1.99", 51820)] = Lease(None, 51820, 10**9)


def test_lifecycle_address_map_renew_restart_recreate_delete() -> None:
    gateway = FakeGateway()
    occupy_internal_port(gateway)
    harness = start(gateway)
    client = harness.client

    # §3.1: one request at a time, address first, then the mapping.
    grant = granted(harness)
    assert [data[:2] for _, data in harness.sent] == [b"\x00\x00", b"\x00\x01"]
    mapping = grant.mapping
    assert mapping.protocol is MappingProtocol.NAT_PMP
    assert mapping.external == Endpoint(gateway.external, 60000)
    assert mapping.details == PmpDetails(gateway.epoch(0.0))
    assert mapping.renew_at == 3600.0  # half the lifetime (§3.3)
    assert gateway.pmp_seen[0].suggested_port == 51820  # the internal port, not 0

    # Renewal: internal port in its place, the granted external port suggested.
    events = harness.run_until(3600)
    [renewed] = events
    assert isinstance(renewed, MappingRenewed)
    assert renewed.mapping.external == mapping.external
    seen = gateway.pmp_seen[-1]
    assert (seen.internal_port, seen.suggested_port, seen.lifetime) == (51820, 60000, 7200)

    # Reboot; the announcement's epoch shows it; address, then map, again.
    harness.run_until(5000)
    gateway.restart(harness.now)
    occupy_internal_port(gateway)
    harness.deliver(gateway.pmp_announcement(harness.now), socket=1)
    restart, regrant = (e for _, e in harness.events[-2:])
    assert isinstance(restart, GatewayRestarted)
    assert restart.announced
    assert isinstance(regrant, MappingGranted)
    assert regrant.recreated
    assert regrant.mapping.external == mapping.external  # the suggestion healed it

    # Delete: lifetime 0, same internal port, and a non-zero suggestion.
    harness.call(client.delete)
    assert harness.events[-1][1] == MappingDeleted(regrant.mapping, confirmed=True)
    seen = gateway.pmp_seen[-1]
    assert (seen.internal_port, seen.lifetime) == (51820, 0)
    assert seen.suggested_port == 60000
    assert gateway.counters["pmp_refused_port_zero"] == 0
    assert gateway.counters["pmp_delete"] == 1
    assert client.state is ClientState.DELETED
    assert not client.dropped


def test_restart_seen_in_a_renewal_answer() -> None:
    gateway = FakeGateway()
    harness = start(gateway)
    granted(harness)
    harness.run_until(3000)
    gateway.restart(harness.now)
    events = harness.run_until(3600)
    assert [type(e) for e in events] == [GatewayRestarted, MappingGranted]


def test_silent_gateway_nine_attempts_then_give_up() -> None:
    """§3.1: 250 ms, doubling; after the ninth attempt wait 64 s."""
    gateway = FakeGateway()
    gateway.silent = True
    harness = start(gateway)
    events = harness.run_until(200)
    assert [t for t, _ in harness.sent] == [
        0,
        0.25,
        0.75,
        1.75,
        3.75,
        7.75,
        15.75,
        31.75,
        63.75,
    ]
    assert events == [
        MappingFailed(FailureReason.TIMED_OUT, MappingProtocol.NAT_PMP, terminal=True)
    ]
    assert harness.of_type(MappingFailed)[0][0] == 127.75


def test_unanswered_renewal_retries_halfway_then_expires_and_starts_over() -> None:
    gateway = FakeGateway()
    harness = start(gateway)
    mapping = granted(harness).mapping
    gateway.silent = True
    harness.sent.clear()
    events = harness.run_until(7200)
    assert events == [MappingLost(mapping, LossReason.EXPIRED)]
    sends = [t for t, _ in harness.sent if t < 7200]
    starts = [t for i, t in enumerate(sends) if i == 0 or t - sends[i - 1] > 64.5]
    # Each renewal exchange lasts 127.75 s (§3.1); the next one starts
    # halfway from its failure to expiry (§3.3, like DHCP).
    expected = [3600.0]
    while (failed := expected[-1] + 127.75) < 7200:
        expected.append(failed + (7200 - failed) / 2)
    assert starts == expected == [3600.0, 5463.875, 6395.8125, 6861.78125, 7094.765625]
    assert harness.client.state is ClientState.REQUESTING


def test_new_external_address_announced_is_confirmed_by_a_renewal() -> None:
    gateway = FakeGateway()
    harness = start(gateway)
    mapping = granted(harness).mapping
    harness.run_until(100)
    gateway.external = NEW_IP
    harness.deliver(gateway.pmp_announcement(harness.now))
    harness.run_until(harness.now)  # the re-validation is due at once
    [(_, renewed)] = harness.of_type(MappingRenewed)
    assert isinstance(renewed, MappingRenewed)
    assert renewed.external_changed
    assert renewed.mapping.external == Endpoint(NEW_IP, mapping.external.port)
    assert not harness.of_type(GatewayRestarted)


# --- a PCP ANNOUNCE heard by a NAT-PMP client -------------------------------------------
#
# miniupnpd 2.3.1 announces a restart only as a PCP ANNOUNCE (captured in the
# lab); RFC 6886's own announcement comes only when its address changes.


def test_pcp_announce_after_restart_prompts_a_renewal_that_finds_it() -> None:
    gateway = FakeGateway()
    harness = start(gateway, config=PmpConfig(announce_delay=5.0), rng=random.Random(7))
    first = granted(harness).mapping
    harness.run_until(1000)
    gateway.restart(harness.now)  # the gateway forgot the lease
    sent_before = len(harness.sent)
    harness.deliver(gateway.pcp_announcement(harness.now), socket=1)
    assert len(harness.sent) == sent_before  # the random wait first
    events = harness.run_until(harness.now + 6)
    restart, regrant = events
    assert isinstance(restart, GatewayRestarted)
    assert restart.announced
    # The renewal's own NAT-PMP epoch gave it away (§3.6), not the PCP one.
    assert restart.previous_epoch == 100
    assert restart.epoch <= 5
    assert isinstance(regrant, MappingGranted)
    assert regrant.recreated
    assert regrant.mapping.external == first.external  # the suggestion healed it
    [at] = [t for t, _ in harness.sent[sent_before:]]
    assert 1000 <= at <= 1005
    assert gateway.pmp_seen[-1].suggested_port == first.external.port
    assert not harness.client.dropped


def test_pcp_announce_without_restart_just_renews_and_is_not_remembered() -> None:
    gateway = FakeGateway()
    harness = start(gateway, config=PmpConfig(announce_delay=0.0))
    granted(harness)
    harness.run_until(1000)
    harness.deliver(pcp_announce_response(epoch=0))  # PCP epoch reset, NAT-PMP's not
    assert [type(e) for e in harness.run_until(1001)] == [MappingRenewed]
    assert gateway.counters["pmp_map"] == 2
    # A restart found later, at a scheduled renewal, was not announced.
    gateway.restart(harness.now)
    events = harness.run_until(10_000, stop=lambda e: isinstance(e, MappingGranted))
    [restart] = [e for e in events if isinstance(e, GatewayRestarted)]
    assert not restart.announced


def test_pcp_announce_with_nothing_held_is_dropped() -> None:
    gateway = FakeGateway()
    harness = Harness(PmpClient(GATEWAY, INTERNAL, 0.0, start=False), gateway)
    harness.deliver(pcp_announce_response(epoch=0))
    assert harness.client.dropped == {LeaseDropReason.UNEXPECTED: 1}
    assert harness.sent == []


def test_pcp_announce_from_another_host_is_ignored() -> None:
    gateway = FakeGateway()
    harness = start(gateway, config=PmpConfig(announce_delay=0.0))
    granted(harness)
    harness.deliver(pcp_announce_response(epoch=0), Endpoint.parse("192.168.1.254:5351"))
    assert harness.client.dropped == {LeaseDropReason.WRONG_SOURCE: 1}
    assert harness.run_until(100) == []


@pytest.mark.parametrize(
    ("code", "reason", "terminal"),
    [
        (PmpResultCode.NOT_AUTHORIZED, FailureReason.NOT_AUTHORIZED, True),
        (PmpResultCode.UNSUPPORTED_OPCODE, FailureReason.UNSUPPORTED_OPCODE, True),
        (PmpResultCode.NETWORK_FAILURE, FailureReason.NETWORK_FAILURE, False),
        (PmpResultCode.OUT_OF_RESOURCES, FailureReason.NO_RESOURCES, False),
        (77, FailureReason.UNKNOWN_RESULT, True),
    ],
)
def test_result_codes(code: int, reason: FailureReason, terminal: bool) -> None:
    gateway = FakeGateway()
    gateway.errors.append((code, 0))
    harness = start(gateway)
    [event] = harness.run_until(1)
    assert isinstance(event, MappingFailed)
    assert (event.reason, event.terminal, event.result_code) == (reason, terminal, code)
    if not terminal:
        assert event.retry_at == pytest.approx(30.0)
        events = harness.run_until(31)
        assert isinstance(events[-1], MappingGranted)


def test_pcp_only_gateway_answers_unsupported_version() -> None:
    gateway = FakeGateway()
    gateway.silent = True
    harness = start(gateway)
    harness.deliver(bytes.fromhex("028000010000070800000009") + bytes(12))
    [(_, event)] = harness.of_type(MappingFailed)
    assert isinstance(event, MappingFailed)
    assert (event.reason, event.server_version) == (FailureReason.UNSUPPORTED_VERSION, 2)


def test_absurd_lifetime_is_capped() -> None:
    gateway = FakeGateway()
    gateway.lifetime_override = 0xFFFFFFFF
    mapping = granted(start(gateway)).mapping
    assert mapping.lifetime == 86400
    assert LifetimeNote.CAPPED in mapping.notes


WRONG_SOURCE, WRONG_MAPPING = LeaseDropReason.WRONG_SOURCE, LeaseDropReason.WRONG_MAPPING
HOSTILE = [
    ("wrong source address", pmp_map_response(epoch=100), "192.168.1.254:5351", WRONG_SOURCE),
    ("wrong source port", pmp_map_response(epoch=100), "192.168.1.1:5350", WRONG_SOURCE),
    ("other internal port", pmp_map_response(epoch=100, internal_port=22), None, WRONG_MAPPING),
    ("TCP answer", pmp_map_response(epoch=100, opcode=2), None, WRONG_MAPPING),
    ("truncated", pmp_map_response(epoch=100)[:15], None, LeaseDropReason.MALFORMED),
    ("version 2 noise", b"\x02\x81\x00\x00" + bytes(12), None, LeaseDropReason.WRONG_VERSION),
    ("a request", b"\x00\x01" + bytes(10), None, LeaseDropReason.WRONG_OPCODE),
    (
        "external port 0",
        pmp_map_response(epoch=100, external_port=0),
        None,
        LeaseDropReason.BAD_GRANT,
    ),
]


@pytest.mark.parametrize(("name", "data", "source", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_replies_are_dropped_and_counted(
    name: str, data: bytes, source: str | None, reason: LeaseDropReason
) -> None:
    gateway = FakeGateway()
    gateway.silent = True
    harness = start(gateway)
    harness.deliver(pmp_address_response(epoch=100))  # the map request goes out
    assert harness.sent[-1][1][:2] == b"\x00\x01"
    harness.deliver(data, None if source is None else Endpoint.parse(source))
    assert harness.client.dropped == {reason: 1}
    assert harness.client.state is ClientState.REQUESTING
    harness.deliver(pmp_map_response(epoch=100))
    assert isinstance(harness.events[-1][1], MappingGranted)


def test_late_renewal_answer_during_delete_is_stale() -> None:
    gateway = FakeGateway()
    harness = start(gateway)
    mapping = granted(harness).mapping
    gateway.silent = True
    harness.call(harness.client.delete)
    harness.deliver(pmp_map_response(epoch=101))
    assert harness.client.dropped == {LeaseDropReason.STALE: 1}
    harness.deliver(pmp_map_response(epoch=101, external_port=0, lifetime=0))
    assert harness.events[-1][1] == MappingDeleted(mapping, confirmed=True)


def test_unanswered_delete_tries_three_times() -> None:
    gateway = FakeGateway()
    harness = start(gateway)
    mapping = granted(harness).mapping
    gateway.silent = True
    asked = harness.now
    harness.sent.clear()
    harness.call(harness.client.delete)
    events = harness.run_until(asked + 10)
    assert [t - asked for t, _ in harness.sent] == [0, 0.25, 0.75]
    assert events == [MappingDeleted(mapping, confirmed=False)]
    assert harness.of_type(MappingDeleted)[0][0] == asked + 1.75


def test_delete_before_any_map_request_sends_nothing() -> None:
    gateway = FakeGateway()
    gateway.silent = True
    harness = start(gateway)
    harness.flush()  # the address request went out
    harness.sent.clear()
    harness.call(harness.client.delete)
    assert harness.events[-1][1] == MappingDeleted(None, confirmed=True)
    assert harness.sent == []


def test_a_leaked_lease_is_deleted_without_being_recreated() -> None:
    gateway = FakeGateway()
    occupy_internal_port(gateway)
    leaked = granted(start(gateway)).mapping
    maps = gateway.counters["pmp_map"]
    cleanup = PmpClient(GATEWAY, INTERNAL, 5.0, previous_external=leaked.external, start=False)
    harness = Harness(cleanup, gateway, now=5.0)
    assert cleanup.state is ClientState.IDLE
    harness.call(cleanup.delete)
    assert harness.events[-1][1] == MappingDeleted(None, confirmed=True)
    assert gateway.counters["pmp_map"] == maps
    seen = gateway.pmp_seen[-1]
    assert (seen.internal_port, seen.suggested_port, seen.lifetime) == (51820, 60000, 0)
    assert (1, "192.168.1.10", 51820) not in gateway.leases


def test_an_idle_cleanup_client_ignores_restarts() -> None:
    gateway = FakeGateway()
    harness = Harness(PmpClient(GATEWAY, INTERNAL, 0.0, start=False), gateway)
    harness.deliver(pmp_address_response(epoch=5000))
    harness.now = 10.0
    harness.deliver(pmp_address_response(epoch=1))  # a restart announcement
    assert [type(e) for _, e in harness.events] == [GatewayRestarted]
    assert harness.sent == []
    assert harness.client.state is ClientState.IDLE


def test_tcp_mapping_uses_opcode_two() -> None:
    gateway = FakeGateway()
    harness = Harness(PmpClient(GATEWAY, INTERNAL, 0.0, transport=TransportProtocol.TCP), gateway)
    mapping = granted(harness).mapping
    assert mapping.transport is TransportProtocol.TCP
    assert gateway.pmp_seen[0].opcode == 2


def test_misconfiguration_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        PmpClient(Endpoint.parse("[fe80::1]:5351"), Endpoint.parse("[fe80::2]:1"), 0.0)
    with pytest.raises(LocalProtocolError):
        PmpConfig(delete_attempts=0)
    with pytest.raises(LocalProtocolError):
        PmpConfig(announce_delay=-1.0)
