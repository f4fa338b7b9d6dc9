"""The PCP MAP client on a virtual clock against a fake gateway (RFC 6887)."""

from __future__ import annotations

import itertools
import random
import struct

import pytest
from portmap_testlib import (
    CLIENT,
    EXTERNAL_IP,
    GATEWAY,
    INTERNAL,
    FakeGateway,
    Harness,
    Lease,
    pcp_announce_response,
    pcp_map_response,
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
from natkit.portmap.mapping import LifetimeNote, MappingProtocol, PcpDetails
from natkit.portmap.pcp import ResultCode
from natkit.portmap.pcp_client import FAILURE_FOR_RESULT, PcpClient, PcpConfig
from natkit.portmap.pmp_client import PmpClient
from natkit.portmap.timing import PcpRetransmission, pcp_renewal_window


def start(gateway: FakeGateway | None = None, **kwargs: object) -> Harness:
    client = PcpClient(GATEWAY, INTERNAL, 0.0, rng=random.Random(7), **kwargs)  # type: ignore[arg-type]
    return Harness(client, gateway or FakeGateway())


def granted(harness: Harness) -> MappingGranted:
    events = harness.run_until(harness.now + 1)
    grants = [e for e in events if isinstance(e, MappingGranted)]
    assert grants, events
    return grants[-1]


def occupy_internal_port(gateway: FakeGateway) -> None:
    """Another host holds external 51820, so ours gets 60000."""
    gateway.leases[(17, "192.168.1.99", 51820)] = Lease(b"x" * 12, 51820, 10**9)


# --- the whole life of a mapping --------------------------------------------------------


def test_lifecycle_grant_renew_restart_recreate_delete() -> None:
    gateway = FakeGateway()
    occupy_internal_port(gateway)
    harness = start(gateway)
    client = harness.client
    assert isinstance(client, PcpClient)

    # Grant: the first request suggests the internal port; the gateway picks another.
    grant = granted(harness)
    mapping = grant.mapping
    assert not grant.recreated
    assert mapping.protocol is MappingProtocol.PCP
    assert mapping.internal == INTERNAL
    assert mapping.external == Endpoint(EXTERNAL_IP, 60000)
    assert mapping.lifetime == 7200
    assert mapping.details == PcpDetails(client.nonce, gateway.epoch(0.0))
    assert 3600 <= mapping.renew_at <= 4500
    assert client.state is ClientState.HELD

    # Renew at ~half the lifetime, suggesting (and keeping) the external port.
    events = harness.run_until(5000)
    [renewal] = [e for e in events if isinstance(e, MappingRenewed)]
    assert harness.of_type(MappingRenewed)[0][0] == pytest.approx(mapping.renew_at)
    assert renewal.previous == mapping
    assert renewal.mapping.external == mapping.external
    assert not renewal.external_changed
    assert gateway.pcp_seen[-1].suggested_port == 60000
    assert gateway.pcp_seen[-1].internal_port == 51820

    # The gateway reboots and forgets; the next renewal's epoch gives it away,
    # and that renewal has re-created the mapping with the same external port.
    gateway.restart(harness.now)
    occupy_internal_port(gateway)
    events = harness.run_until(10_000, stop=lambda e: isinstance(e, MappingGranted))
    restart, regrant = events[-2:]
    assert isinstance(restart, GatewayRestarted)
    assert restart.mapping == renewal.mapping
    assert not restart.announced
    assert isinstance(regrant, MappingGranted)
    assert regrant.recreated
    assert regrant.mapping.external == mapping.external

    # Delete with lifetime 0 and the same nonce.
    harness.call(client.delete)
    assert harness.events[-1][1] == MappingDeleted(regrant.mapping, confirmed=True)
    assert client.state.value == "deleted"
    assert client.get_timer() is None
    assert gateway.counters["pcp_delete"] == 1
    assert gateway.pcp_seen[-1].lifetime == 0

    # One nonce throughout; never a suggested port of 0; our own address inside.
    assert {seen.nonce for seen in gateway.pcp_seen} == {client.nonce}
    assert all(seen.suggested_port for seen in gateway.pcp_seen)
    assert {seen.client_address for seen in gateway.pcp_seen} == {INTERNAL.address}
    assert gateway.counters["pcp_map"] == 3
    assert not client.dropped


def test_announce_after_restart_recreates_within_the_jitter() -> None:
    gateway = FakeGateway()
    harness = start(gateway)
    first = granted(harness).mapping
    harness.run_until(1000)
    gateway.restart(harness.now)
    harness.deliver(gateway.pcp_announcement(harness.now), socket=1)
    [(at, event)] = harness.of_type(GatewayRestarted)
    assert isinstance(event, GatewayRestarted)
    assert event.announced
    assert event.epoch == 0
    events = harness.run_until(harness.now + 6)
    regrants = [e for e in events if isinstance(e, MappingGranted)]
    assert len(regrants) == 1
    assert regrants[0].recreated
    assert regrants[0].mapping.external == first.external
    assert at <= harness.of_type(MappingGranted)[-1][0] <= at + 5


def test_announce_with_a_plausible_epoch_revalidates_once() -> None:
    gateway = FakeGateway()
    harness = start(gateway)
    granted(harness)
    harness.run_until(1000)
    harness.deliver(gateway.pcp_announcement(harness.now))
    events = harness.run_until(harness.now + 6)
    assert [type(e) for e in events] == [MappingRenewed]
    assert gateway.counters["pcp_map"] == 2
    assert not harness.of_type(GatewayRestarted)


# --- version negotiation ----------------------------------------------------------------


def test_nat_pmp_only_gateway_signals_fallback() -> None:
    gateway = FakeGateway(pcp=False)
    harness = start(gateway)
    [event] = harness.run_until(1)
    assert event == MappingFailed(
        FailureReason.UNSUPPORTED_VERSION,
        MappingProtocol.PCP,
        terminal=True,
        result_code=ResultCode.UNSUPP_VERSION,
        server_version=0,
    )
    assert isinstance(event, MappingFailed)
    assert event.fall_back_to_nat_pmp
    assert harness.client.state is ClientState.FAILED

    # The caller falls back; the same gateway grants over NAT-PMP.
    fallback = Harness(PmpClient(GATEWAY, INTERNAL, harness.now), gateway, now=harness.now)
    assert granted(fallback).mapping.protocol is MappingProtocol.NAT_PMP


def test_a_version_two_refusal_is_no_reason_to_fall_back() -> None:
    harness = start(FakeGateway(), config=PcpConfig())
    harness.gateway.silent = True
    harness.deliver(struct.pack("!BBBBII12x", 2, 0x81, 0, 1, 1800, 5))
    [(_, event)] = harness.of_type(MappingFailed)
    assert isinstance(event, MappingFailed)
    assert event.server_version == 2
    assert not event.fall_back_to_nat_pmp


# --- result codes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code", [c for c in ResultCode if c not in (ResultCode.SUCCESS, ResultCode.UNSUPP_VERSION)]
)
def test_every_error_code_is_typed_and_short_ones_are_retried(code: ResultCode) -> None:
    gateway = FakeGateway()
    gateway.errors.append((code, 30))
    harness = start(gateway)
    [event] = harness.run_until(1)
    assert isinstance(event, MappingFailed)
    assert event.reason is FAILURE_FOR_RESULT[code]
    assert event.result_code == code
    if code in (7, 8, 10, 11):  # RFC 6887's short-lifetime errors
        assert not event.terminal
        assert event.retry_at == 30.0  # the error's lifetime
        events = harness.run_until(31)
        assert isinstance(events[-1], MappingGranted)
        assert harness.of_type(MappingGranted)[0][0] == 30.0
    else:
        assert event.terminal
        assert harness.client.get_timer() is None


def test_unknown_result_code_is_fatal() -> None:
    harness = start(FakeGateway())
    harness.gateway.silent = True
    harness.deliver(pcp_map_response(nonce=harness_nonce(harness), result=99, lifetime=0))
    [(_, event)] = harness.of_type(MappingFailed)
    assert isinstance(event, MappingFailed)
    assert event.reason is FailureReason.UNKNOWN_RESULT
    assert event.terminal


def test_error_lifetime_is_bounded_by_irt_and_mrt() -> None:
    for error_lifetime, retry in ((0, 3.0), (10**6, 1024.0)):
        gateway = FakeGateway()
        gateway.errors.append((ResultCode.NO_RESOURCES, error_lifetime))
        harness = start(gateway)
        [event] = harness.run_until(0.5)
        assert isinstance(event, MappingFailed)
        assert event.retry_at == retry


def test_header_only_malformed_request_answer_ends_the_client() -> None:
    harness = start(FakeGateway())
    harness.gateway.silent = True
    harness.deliver(struct.pack("!BBBBII12x", 2, 0x81, 0, 3, 1800, 5))
    assert harness.client.state is ClientState.FAILED


def test_nonce_takeover_refuses_our_renewal() -> None:
    """LAB.md: a second nonce for the same internal port takes the mapping
    over in miniupnpd; the old nonce then gets NOT_AUTHORIZED."""
    gateway = FakeGateway()
    harness = start(gateway)
    mapping = granted(harness).mapping
    intruder = PcpClient(GATEWAY, INTERNAL, 10.0, rng=random.Random(99))
    for datagram in intruder.datagrams_to_send(10.0):
        gateway.handle(datagram.data, CLIENT, 10.0)
    events = harness.run_until(10_000)
    assert events == [
        MappingLost(mapping, LossReason.REFUSED, ResultCode.NOT_AUTHORIZED),
        MappingFailed(
            FailureReason.NOT_AUTHORIZED,
            MappingProtocol.PCP,
            terminal=True,
            result_code=ResultCode.NOT_AUTHORIZED,
        ),
    ]


# --- lifetimes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("granted_lifetime", "lifetime", "notes"),
    [
        (3600, 3600, ()),
        (0, 120, (LifetimeNote.ZERO_ON_SUCCESS,)),
        (100_000, 86400, (LifetimeNote.LONGER_THAN_REQUESTED, LifetimeNote.CAPPED)),
        (0xFFFFFFFF, 86400, (LifetimeNote.LONGER_THAN_REQUESTED, LifetimeNote.CAPPED)),
    ],
)
def test_absurd_lifetimes_are_clamped_with_a_note(
    granted_lifetime: int, lifetime: int, notes: tuple[LifetimeNote, ...]
) -> None:
    gateway = FakeGateway()
    gateway.lifetime_override = granted_lifetime
    mapping = granted(start(gateway)).mapping
    assert (mapping.granted_lifetime, mapping.lifetime, mapping.notes) == (
        granted_lifetime,
        lifetime,
        notes,
    )
    assert mapping.expires_at == mapping.granted_at + lifetime
    assert mapping.granted_at + lifetime / 2 <= mapping.renew_at


# --- retransmission ---------------------------------------------------------------------------


def sends(harness: Harness) -> list[float]:
    return [round(t, 6) for t, _ in harness.sent]


def test_silent_gateway_retransmits_per_rfc6887_without_giving_up() -> None:
    gateway = FakeGateway()
    gateway.silent = True
    harness = start(gateway, config=PcpConfig(retransmission=PcpRetransmission(rand=0.0)))
    assert harness.run_until(3000) == []
    assert sends(harness) == [0, 3, 9, 21, 45, 93, 189, 381, 765, 1533, 2557]


def test_mrc_ends_the_exchange_after_the_last_timeout() -> None:
    gateway = FakeGateway()
    gateway.silent = True
    policy = PcpRetransmission(rand=0.0, mrc=4)
    harness = start(gateway, config=PcpConfig(retransmission=policy))
    [event] = harness.run_until(100)
    assert sends(harness) == [0, 3, 9, 21]
    assert event == MappingFailed(FailureReason.TIMED_OUT, MappingProtocol.PCP, terminal=True)
    assert harness.of_type(MappingFailed)[0][0] == 45


def test_mrd_bounds_the_exchange() -> None:
    gateway = FakeGateway()
    gateway.silent = True
    policy = PcpRetransmission(rand=0.0, mrd=10.0)
    harness = start(gateway, config=PcpConfig(retransmission=policy))
    harness.run_until(100)
    assert sends(harness) == [0, 3, 9]
    assert harness.of_type(MappingFailed)[0][0] == 10


def test_unanswered_renewals_follow_the_windows_then_the_mapping_expires() -> None:
    gateway = FakeGateway()
    harness = start(gateway)
    mapping = granted(harness).mapping
    gateway.silent = True
    harness.sent.clear()
    events = harness.run_until(7200)
    assert events == [MappingLost(mapping, LossReason.EXPIRED)]
    assert harness.of_type(MappingLost)[0][0] == 7200
    renewals = [t for t, _ in harness.sent if t < 7200]
    for attempt, at in enumerate(renewals):
        low, high = pcp_renewal_window(attempt)
        assert 7200 * low <= at <= max(7200 * high, renewals[attempt - 1] + 4)
    assert all(b - a >= 4 for a, b in itertools.pairwise(renewals))
    # ...and at expiry it starts over, suggesting the old external port.
    assert harness.sent[-1][0] == 7200
    assert harness.client.state is ClientState.REQUESTING
    gateway.silent = False
    events = harness.run_until(7210)
    assert isinstance(events[-1], MappingGranted)
    assert events[-1].recreated


def test_transient_error_on_renewal_keeps_the_mapping_and_retries() -> None:
    gateway = FakeGateway()
    harness = start(gateway)
    mapping = granted(harness).mapping
    gateway.errors.append((ResultCode.NETWORK_FAILURE, 30))
    events = harness.run_until(mapping.renew_at)
    [failure] = events
    assert isinstance(failure, MappingFailed)
    assert not failure.terminal
    assert failure.retry_at is not None
    assert 7200 * 3 / 4 <= failure.retry_at <= 7200 * (3 / 4 + 1 / 16)
    assert harness.client.mapping == mapping
    events = harness.run_until(failure.retry_at)
    assert [type(e) for e in events] == [MappingRenewed]


# --- hostile and stray replies -------------------------------------------------------------


def harness_nonce(harness: Harness) -> bytes:
    client = harness.client
    assert isinstance(client, PcpClient)
    return client.nonce


HOSTILE = [
    ("wrong nonce", lambda n: pcp_map_response(nonce=bytes(12)), None, LeaseDropReason.WRONG_NONCE),
    (
        "wrong source address",
        lambda n: pcp_map_response(nonce=n),
        Endpoint.parse("192.168.1.254:5351"),
        LeaseDropReason.WRONG_SOURCE,
    ),
    (
        "wrong source port",
        lambda n: pcp_map_response(nonce=n),
        Endpoint.parse("192.168.1.1:5350"),
        LeaseDropReason.WRONG_SOURCE,
    ),
    ("truncated", lambda n: pcp_map_response(nonce=n)[:40], None, LeaseDropReason.MALFORMED),
    ("odd length", lambda n: pcp_map_response(nonce=n) + b"\x00", None, LeaseDropReason.MALFORMED),
    (
        "version 1",
        lambda n: pcp_map_response(nonce=n, version=1),
        None,
        LeaseDropReason.WRONG_VERSION,
    ),
    (
        "R bit clear",
        lambda n: pcp_map_response(nonce=n, opcode_byte=0x01),
        None,
        LeaseDropReason.WRONG_OPCODE,
    ),
    (
        "PEER",
        lambda n: pcp_map_response(nonce=n, opcode_byte=0x82),
        None,
        LeaseDropReason.WRONG_OPCODE,
    ),
    ("TCP", lambda n: pcp_map_response(nonce=n, protocol=6), None, LeaseDropReason.WRONG_MAPPING),
    (
        "other port",
        lambda n: pcp_map_response(nonce=n, internal_port=22),
        None,
        LeaseDropReason.WRONG_MAPPING,
    ),
    (
        "external port 0",
        lambda n: pcp_map_response(nonce=n, external_port=0),
        None,
        LeaseDropReason.BAD_GRANT,
    ),
    (
        "external address 0",
        lambda n: pcp_map_response(nonce=n, external_address="0.0.0.0"),
        None,
        LeaseDropReason.BAD_GRANT,
    ),
    (
        "announce error",
        lambda n: pcp_announce_response(epoch=5, result=2),
        None,
        LeaseDropReason.UNEXPECTED,
    ),
    ("empty", lambda n: b"", None, LeaseDropReason.MALFORMED),
]


@pytest.mark.parametrize(("name", "make", "source", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_replies_are_dropped_and_counted(
    name: str, make: object, source: Endpoint | None, reason: LeaseDropReason
) -> None:
    gateway = FakeGateway()
    gateway.silent = True
    harness = start(gateway)
    nonce = harness_nonce(harness)
    harness.deliver(make(nonce), source)  # type: ignore[operator]
    assert harness.client.dropped == {reason: 1}
    assert harness.events == []
    assert harness.client.state is ClientState.REQUESTING
    # ...and the real answer still works afterwards.
    harness.deliver(pcp_map_response(nonce=nonce, epoch=gateway.epoch(0)))
    assert isinstance(harness.events[-1][1], MappingGranted)


def test_duplicate_answer_is_stale_and_unsolicited_update_is_a_renewal() -> None:
    gateway = FakeGateway()
    harness = start(gateway)
    mapping = granted(harness).mapping
    nonce = harness_nonce(harness)
    epoch = gateway.epoch(harness.now)
    harness.deliver(pcp_map_response(nonce=nonce, epoch=epoch))
    assert harness.client.dropped == {LeaseDropReason.STALE: 1}
    # RFC 6887 §14.2: the server tells us, unasked, the external port moved.
    harness.deliver(pcp_map_response(nonce=nonce, epoch=epoch, external_port=40001))
    [(_, renewed)] = harness.of_type(MappingRenewed)
    assert isinstance(renewed, MappingRenewed)
    assert renewed.external_changed
    assert renewed.previous == mapping
    assert renewed.mapping.external.port == 40001


def test_unsolicited_lifetime_zero_is_a_revocation_and_the_mapping_is_remade() -> None:
    gateway = FakeGateway()
    harness = start(gateway)
    mapping = granted(harness).mapping
    harness.deliver(
        pcp_map_response(nonce=harness_nonce(harness), lifetime=0, epoch=gateway.epoch(0))
    )
    lost, regrant = (e for _, e in harness.events[-2:])
    assert lost == MappingLost(mapping, LossReason.REVOKED)
    assert isinstance(regrant, MappingGranted)
    assert regrant.recreated


def test_late_renewal_answer_during_delete_is_stale() -> None:
    gateway = FakeGateway()
    harness = start(gateway)
    mapping = granted(harness).mapping
    gateway.silent = True
    harness.call(harness.client.delete)
    assert harness.client.state is ClientState.DELETING
    nonce = harness_nonce(harness)
    harness.deliver(pcp_map_response(nonce=nonce, epoch=gateway.epoch(0)))
    assert harness.client.dropped == {LeaseDropReason.STALE: 1}
    harness.deliver(pcp_map_response(nonce=nonce, lifetime=0, epoch=gateway.epoch(0)))
    assert harness.events[-1][1] == MappingDeleted(mapping, confirmed=True)


def test_unanswered_delete_gives_up_and_says_so() -> None:
    gateway = FakeGateway()
    harness = start(gateway, config=PcpConfig(retransmission=PcpRetransmission(rand=0.0)))
    mapping = granted(harness).mapping
    gateway.silent = True
    asked = harness.now
    harness.call(harness.client.delete)
    events = harness.run_until(100)
    assert events == [MappingDeleted(mapping, confirmed=False)]
    assert harness.of_type(MappingDeleted)[0][0] == asked + 10.0  # delete_timeout
    deletes = [t - asked for t, data in harness.sent if data[4:8] == bytes(4)]
    assert deletes == [0, 3, 9]


def test_delete_while_still_requesting_uses_the_same_nonce() -> None:
    gateway = FakeGateway()
    gateway.silent = True
    harness = start(gateway)
    harness.run_until(5)
    gateway.silent = False
    harness.call(harness.client.delete)
    assert harness.events[-1][1] == MappingDeleted(None, confirmed=True)
    assert {s.nonce for s in gateway.pcp_seen} == {harness_nonce(harness)}


def test_datagrams_after_the_end_are_counted_not_processed() -> None:
    harness = start(FakeGateway(pcp=False))
    harness.run_until(1)
    harness.deliver(pcp_map_response(nonce=harness_nonce(harness)))
    assert harness.client.dropped == {LeaseDropReason.CLOSED: 1}


# --- after a crash: what a lease journal needs ---------------------------------------------


def test_only_the_journaled_nonce_deletes_a_leaked_lease() -> None:
    gateway = FakeGateway()
    crashed = start(gateway)
    leaked = granted(crashed).mapping
    assert isinstance(crashed.client, PcpClient)
    nonce = crashed.client.nonce  # what the journal wrote down

    # A new run with a new nonce cannot delete it (the bug users met)...
    stranger = Harness(PcpClient(GATEWAY, INTERNAL, 5.0, start=False), gateway, now=5.0)
    assert stranger.client.state is ClientState.IDLE
    assert stranger.client.get_timer() is None
    stranger.call(stranger.client.delete)
    assert stranger.events[-1][1] == MappingDeleted(
        None, confirmed=False, result_code=ResultCode.NOT_AUTHORIZED
    )
    assert gateway.leases

    # ...the journaled nonce can, without re-creating the mapping first.
    cleanup = PcpClient(
        GATEWAY, INTERNAL, 6.0, nonce=nonce, previous_external=leaked.external, start=False
    )
    harness = Harness(cleanup, gateway, now=6.0)
    harness.call(cleanup.delete)
    assert harness.events[-1][1] == MappingDeleted(None, confirmed=True)
    assert [s.lifetime for s in gateway.pcp_seen[-1:]] == [0]
    assert gateway.pcp_seen[-1].suggested_port == leaked.external.port
    assert not gateway.leases


def test_a_restarted_process_takes_its_mapping_back() -> None:
    gateway = FakeGateway()
    occupy_internal_port(gateway)
    first = granted(start(gateway)).mapping
    assert isinstance(first.details, PcpDetails)
    again = PcpClient(
        GATEWAY, INTERNAL, 10.0, nonce=first.details.nonce, previous_external=first.external
    )
    regrant = granted(Harness(again, gateway, now=10.0))
    assert regrant.mapping.external == first.external
    assert not regrant.recreated  # new to this client


def test_misconfiguration_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        PcpClient(GATEWAY, Endpoint.parse("192.168.1.10:0"), 0.0)
    with pytest.raises(LocalProtocolError):
        PcpClient(Endpoint.parse("[fe80::1]:5351"), INTERNAL, 0.0)
    with pytest.raises(LocalProtocolError, match=r"^mapping nonce of 4 bytes, not 12$"):
        PcpClient(GATEWAY, INTERNAL, 0.0, nonce=b"abcd")
