"""The TURN client core against a fake server, on a virtual clock (no sockets)."""

from __future__ import annotations

import ipaddress
import itertools
import random

import pytest
from turn_fakes import CLIENT, PASSWORD, PEER, RELAYED, SERVER, USER, Harness

from natkit.endpoint import Endpoint, Family
from natkit.errors import LocalProtocolError
from natkit.sansio import IcmpError, IcmpKind
from natkit.stun.attributes import IntegerAttribute, XorAddressAttribute
from natkit.stun.codec import Message, encode_message, parse_message
from natkit.stun.constants import ERROR_REASONS, AttributeType, MessageClass, Method
from natkit.turn import AllocationState, TurnClient
from natkit.turn.channel_data import is_channel_data
from natkit.turn.config import TurnConfig, TurnTransport
from natkit.turn.credentials import Credentials
from natkit.turn.events import (
    AllocationCreated,
    AllocationFailed,
    AllocationLost,
    AllocationRefreshed,
    ChannelBound,
    DataReceived,
    Deallocated,
    PermissionCreated,
    PermissionFailed,
    PingCompleted,
    TurnFailure,
)

OTHER_PEER = Endpoint.parse("192.0.2.11:7001")


def make(
    *,
    transport: TurnTransport = TurnTransport.UDP,
    password: str = PASSWORD,
    credentials: bool = True,
    **config: object,
) -> TurnClient:
    creds = Credentials(USER, password) if credentials else None
    turn_config = TurnConfig(SERVER, creds, transport, **config)  # type: ignore[arg-type]
    return TurnClient(turn_config, rng=random.Random(7))


def allocated(**config: object) -> Harness:
    harness = Harness(make(**config))  # type: ignore[arg-type]
    harness.allocate()
    assert harness.client.state is AllocationState.ALLOCATED
    return harness


# -- allocation and authentication ---------------------------------------------


def test_allocate_answers_the_401_challenge_with_a_signed_request() -> None:
    harness = Harness(make())
    harness.allocate()
    created = harness.of_type(AllocationCreated)
    assert created == [AllocationCreated(RELAYED, CLIENT, 600, authenticated=True)]
    assert harness.server.requests[Method.ALLOCATE] == 2  # unsigned, then signed
    assert harness.client.relayed == RELAYED
    assert harness.client.expires_at == 600.0


def test_wrong_password_fails_clearly_after_one_signed_attempt() -> None:
    harness = Harness(make(password="wrong"))
    harness.allocate()
    [failed] = harness.of_type(AllocationFailed)
    assert failed.outcome.failure is TurnFailure.UNAUTHORIZED
    assert failed.outcome.code == 401
    assert not failed.outcome.failure.retryable
    assert harness.server.requests[Method.ALLOCATE] == 2
    assert harness.client.state is AllocationState.FAILED
    assert harness.client.get_timer() is None


def test_a_server_wanting_credentials_we_lack_is_unauthorized() -> None:
    harness = Harness(make(credentials=False))
    harness.allocate()
    [failed] = harness.of_type(AllocationFailed)
    assert failed.outcome.failure is TurnFailure.UNAUTHORIZED
    assert harness.server.requests[Method.ALLOCATE] == 1


def test_a_restarted_server_may_challenge_a_signed_request_once() -> None:
    harness = allocated(refresh_after=10.0)
    harness.server.nonce = "nonce-after-restart"
    harness.server.realm = "new.realm"  # a new key: the old signature fails -> 401
    harness.run_until(11.0)
    assert harness.of_type(AllocationRefreshed) == [AllocationRefreshed(600)]
    assert harness.server.requests[Method.REFRESH] == 2


@pytest.mark.parametrize(
    ("code", "failure"),
    [
        (486, TurnFailure.QUOTA_REACHED),
        (508, TurnFailure.INSUFFICIENT_CAPACITY),
        (403, TurnFailure.FORBIDDEN),
        (440, TurnFailure.ADDRESS_FAMILY),
        (442, TurnFailure.UNSUPPORTED_TRANSPORT),
        (437, TurnFailure.ALLOCATION_MISMATCH),
        (420, TurnFailure.REJECTED),
    ],
)
def test_allocate_refusals_are_typed_and_not_retried(code: int, failure: TurnFailure) -> None:
    harness = Harness(make())
    harness.server.errors[Method.ALLOCATE] = code
    harness.allocate()
    harness.run_until(600.0)
    [failed] = harness.of_type(AllocationFailed)
    assert (failed.outcome.failure, failed.outcome.code) == (failure, code)
    # The server's reason phrase is carried as sent.
    assert failed.outcome.reason == ERROR_REASONS.get(code, f"error {code}")
    assert harness.server.requests[Method.ALLOCATE] == 2  # the challenge, then the refusal


def test_server_error_is_retried_with_doubling_backoff_then_given_up() -> None:
    harness = Harness(make(max_server_errors=2, retry_backoff=1.0))
    harness.server.errors[Method.ALLOCATE] = 500
    harness.allocate()
    harness.run_until(600.0)
    [failed] = harness.of_type(AllocationFailed)
    assert failed.outcome.failure is TurnFailure.SERVER_ERROR
    assert failed.outcome.failure.retryable
    assert harness.times(Method.ALLOCATE) == [0.0, 0.0, 1.0, 3.0]


def test_a_silent_server_times_out_after_rfc8489s_schedule() -> None:
    harness = Harness(make())
    harness.server.silent.add(Method.ALLOCATE)
    harness.allocate()
    harness.run_until(100.0)
    [failed] = harness.of_type(AllocationFailed)
    assert failed.outcome.failure is TurnFailure.TIMEOUT
    # RFC 8489 §6.2.1: 7 transmissions at 0, 0.5, 1.5, ... 31.5 s; gives up at 39.5 s.
    assert harness.times(Method.ALLOCATE) == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]


def test_over_a_stream_a_request_is_sent_once_and_times_out_at_ti() -> None:
    harness = Harness(make(transport=TurnTransport.TCP))
    harness.server.silent.add(Method.ALLOCATE)
    harness.allocate()
    harness.run_until(39.4)
    assert not harness.of_type(AllocationFailed)
    harness.run_until(39.5)
    assert harness.of_type(AllocationFailed)[0].outcome.failure is TurnFailure.TIMEOUT
    assert harness.times(Method.ALLOCATE) == [0.0]


# -- refresh, nonce, lifetime ----------------------------------------------------


def test_refresh_comes_a_minute_before_expiry_and_keeps_coming() -> None:
    harness = allocated()
    harness.run_until(3600.0)
    assert harness.times(Method.REFRESH) == [540.0, 1080.0, 1620.0, 2160.0, 2700.0, 3240.0]
    assert harness.server.refresh_lifetimes == [600] * 6
    assert harness.client.state is AllocationState.ALLOCATED


def test_a_short_grant_is_refreshed_at_half_its_lifetime() -> None:
    harness = Harness(make())
    harness.server.lifetime = 60
    harness.allocate()
    harness.run_until(100.0)
    assert harness.times(Method.REFRESH) == [30.0, 60.0, 90.0]


def test_stale_nonce_is_retried_with_the_new_nonce() -> None:
    harness = allocated()
    harness.server.nonce = "nonce-2"
    harness.run_until(541.0)
    assert harness.of_type(AllocationRefreshed) == [AllocationRefreshed(600)]
    assert harness.client.counters.stale_nonces == 1
    assert harness.server.requests[Method.REFRESH] == 2


def test_a_server_that_never_takes_a_nonce_gets_bounded_retries() -> None:
    harness = Harness(make(max_stale_nonce=3))
    server = harness.server
    original = server.answer

    def rotating(request):  # type: ignore[no-untyped-def]
        server.nonce = f"nonce-{server.requests[Method.ALLOCATE]}"
        return original(request)

    server.answer = rotating  # type: ignore[method-assign]
    harness.allocate()
    [failed] = harness.of_type(AllocationFailed)
    assert failed.outcome.failure is TurnFailure.STALE_NONCE
    # The challenge, the first signed try, then three retries.
    assert server.requests[Method.ALLOCATE] == 5


def test_refresh_answered_437_means_the_allocation_is_lost() -> None:
    harness = allocated()
    harness.server.allocated = False  # the server forgot it (restart)
    harness.run_until(541.0)
    [lost] = harness.of_type(AllocationLost)
    assert lost.relayed == RELAYED
    assert (lost.outcome.failure, lost.outcome.code) == (TurnFailure.ALLOCATION_MISMATCH, 437)


def test_expired_rest_credentials_lose_the_allocation_at_refresh() -> None:
    harness = allocated()
    harness.server.password = "rotated"  # what the server now computes for the username
    harness.run_until(541.0)
    [lost] = harness.of_type(AllocationLost)
    assert lost.outcome.failure is TurnFailure.UNAUTHORIZED


# -- permissions, channels and data ----------------------------------------------


def test_data_waits_for_the_permission_then_goes_as_indication_then_channel() -> None:
    harness = allocated()
    client = harness.client
    assert client.send(PEER, b"first", harness.now)
    assert not client.has_permission(PEER)
    harness.pump()
    assert harness.of_type(PermissionCreated) == [PermissionCreated(PEER.address)]
    assert harness.of_type(ChannelBound) == [ChannelBound(PEER, 0x4000)]
    client.send(PEER, b"second", harness.now)
    harness.pump()
    assert harness.server.relayed == [(PEER, b"first", "indication"), (PEER, b"second", "channel")]
    assert client.channel_for(PEER) == 0x4000


def test_without_auto_channel_data_stays_on_indications() -> None:
    harness = allocated(auto_channel=False)
    for i in range(3):
        harness.client.send(PEER, bytes([i]), harness.now)
        harness.pump()
    assert [kind for _, _, kind in harness.server.relayed] == ["indication"] * 3
    assert harness.server.requests[Method.CHANNEL_BIND] == 0


def test_data_can_be_queued_while_allocating() -> None:
    harness = Harness(make())
    harness.client.allocate(0.0)
    harness.client.send(PEER, b"early", 0.0)
    harness.pump()
    assert harness.server.relayed == [(PEER, b"early", "indication")]


def test_held_datagrams_are_bounded() -> None:
    harness = Harness(make(pending_limit=2))
    harness.client.allocate(0.0)
    results = [harness.client.send(PEER, b"x", 0.0) for _ in range(4)]
    assert results == [True, True, False, False]
    assert harness.client.counters.dropped_sends == 2


def test_a_refused_permission_drops_its_held_data() -> None:
    harness = allocated()
    harness.server.errors[Method.CREATE_PERMISSION] = 403
    harness.client.send(PEER, b"x", harness.now)
    harness.client.send(PEER, b"y", harness.now)
    harness.server.errors[Method.CHANNEL_BIND] = 403
    harness.pump()
    [failed] = harness.of_type(PermissionFailed)
    assert (failed.peer, failed.outcome.failure, failed.dropped) == (
        PEER.address,
        TurnFailure.FORBIDDEN,
        2,
    )
    assert harness.client.state is AllocationState.ALLOCATED
    assert harness.server.relayed == []


def test_permissions_and_channels_are_refreshed_before_they_expire() -> None:
    harness = allocated()
    harness.client.bind(PEER, harness.now)
    harness.client.permit(OTHER_PEER.address, harness.now)
    harness.run_until(3600.0)
    permission_times = harness.times(Method.CREATE_PERMISSION)
    channel_times = harness.times(Method.CHANNEL_BIND)
    # RFC 8656 §9: the peer's permission (refreshed by either method) never
    # goes 300 s without a refresh; §12: the channel never 600 s.
    peer_refreshes = sorted({*permission_times, *channel_times})
    assert max(b - a for a, b in itertools.pairwise(peer_refreshes)) <= 240
    assert max(b - a for a, b in itertools.pairwise(channel_times)) <= 480
    # ...and no storm: about one refresh per interval, not more.
    assert len(permission_times) <= 2 * (3600 // 240 + 1)
    assert len(channel_times) == 3600 // 480 + 1
    assert harness.server.permissions == {PEER.address, OTHER_PEER.address}


def peers_refreshed(harness: Harness, since: int) -> list[Endpoint]:
    """The peers of the CreatePermission / ChannelBind requests sent since ``since``."""
    peers = []
    for datagram in harness.sent[since:]:
        if is_channel_data(datagram.data):
            continue
        message = parse_message(datagram.data)
        if message.method in (Method.CREATE_PERMISSION, Method.CHANNEL_BIND):
            for attribute in message.attributes:
                if isinstance(attribute, XorAddressAttribute):
                    peers.append(attribute.endpoint)
    return peers


def test_a_released_peer_is_no_longer_refreshed_so_it_lapses() -> None:
    harness = allocated()
    client = harness.client
    client.bind(PEER, harness.now)
    client.send(OTHER_PEER, b"x", harness.now)  # a permission, and a channel (auto)
    harness.pump()
    assert set(client.permitted) == {PEER.address, OTHER_PEER.address}
    assert set(client.bound) == {PEER, OTHER_PEER}
    client.retain([OTHER_PEER], harness.now)  # PEER is gone
    assert (client.permitted, client.bound) == ((OTHER_PEER.address,), (OTHER_PEER,))
    assert not client.has_permission(PEER)
    since = len(harness.sent)
    harness.run_until(3600.0)
    # RFC 8656 §9/§12: nothing refreshes PEER's permission or channel any
    # more (the server drops them after 300/600 s); OTHER_PEER's go on.
    refreshed = peers_refreshed(harness, since)
    assert OTHER_PEER in refreshed
    assert PEER not in refreshed
    assert client.state is AllocationState.ALLOCATED
    # What the server still relays from PEER meanwhile is not delivered.
    harness.deliver(harness.server.channel_data(PEER, b"late"))
    harness.deliver(harness.server.data_indication(PEER, b"late"))
    assert [e for e in harness.of_type(DataReceived) if e.peer == PEER] == []
    # PEER comes back: asked again, on its old channel number (RFC 8656 §12).
    client.send(PEER, b"back", harness.now)
    harness.pump()
    assert client.has_permission(PEER)
    assert client.channel_for(PEER) == 0x4000
    assert PEER in client.bound


def test_a_peer_released_while_its_requests_are_out_is_not_revived_by_the_answers() -> None:
    harness = allocated()
    client = harness.client
    client.bind(PEER, harness.now)  # CreatePermission and ChannelBind queued
    client.retain([], harness.now)
    since = len(harness.sent)
    harness.run_until(3600.0)  # their answers arrive, then an hour passes
    # The two first requests only (CreatePermission names the address, port 0).
    assert [e.address for e in peers_refreshed(harness, since)] == [PEER.address] * 2
    assert (client.permitted, client.bound) == ((), ())
    assert harness.of_type(ChannelBound) == []


def test_releasing_an_endpoint_keeps_its_address_permission() -> None:
    harness = allocated()
    client = harness.client
    moved = Endpoint(PEER.address, PEER.port + 1)
    client.bind(PEER, harness.now)
    client.bind(moved, harness.now)
    harness.pump()
    client.retain([moved], harness.now)  # the peer's NAT moved it to another port
    assert (client.permitted, client.bound) == ((PEER.address,), (moved,))
    since = len(harness.sent)
    harness.run_until(3600.0)
    assert PEER not in peers_refreshed(harness, since)
    assert moved in peers_refreshed(harness, since)


def test_data_indications_and_channel_data_from_the_server_are_delivered() -> None:
    harness = allocated()
    harness.client.bind(PEER, harness.now)
    harness.client.permit(OTHER_PEER, harness.now)
    harness.pump()
    harness.deliver(harness.server.channel_data(PEER, b"via channel"))
    harness.deliver(harness.server.data_indication(OTHER_PEER, b"via indication"))
    data = harness.of_type(DataReceived)
    assert data == [
        DataReceived(PEER, b"via channel", 0x4000),
        DataReceived(OTHER_PEER, b"via indication", None),
    ]


def test_hostile_input_is_dropped_and_counted() -> None:
    harness = allocated()
    client = harness.client
    stranger = Endpoint.parse("192.0.2.99:1")
    harness.deliver(harness.server.data_indication(stranger, b"no permission"))
    harness.deliver(b"\x40\x01\x00\x02hi")  # ChannelData on a channel never bound
    harness.deliver(b"\x40\x00\x00\x09hi")  # length runs past the datagram
    harness.deliver(b"\xff" * 30)
    client.receive_datagram(harness.server.data_indication(PEER, b"x"), stranger, 0, 0.0)
    counters = client.counters
    assert counters.no_permission == 1
    assert counters.unknown_channel == 1
    assert counters.malformed == 2
    assert counters.wrong_source == 1
    assert harness.of_type(DataReceived) == []
    assert client.state is AllocationState.ALLOCATED


def test_forged_responses_are_dropped_and_the_transaction_carries_on() -> None:
    harness = Harness(make())
    client = harness.client
    client.allocate(0.0)
    first = client.datagrams_to_send(0.0)[0].data
    # Answer the unsigned Allocate by hand, then forge its signed retry's answer.
    for answer in harness.server.receive(first):
        harness.deliver(answer)
    signed = client.datagrams_to_send(0.0)[0].data
    request = parse_message(signed)
    relay = XorAddressAttribute(AttributeType.XOR_RELAYED_ADDRESS, PEER)
    lifetime = IntegerAttribute(AttributeType.LIFETIME, 600)
    forged = Message(
        Method.ALLOCATE, MessageClass.SUCCESS_RESPONSE, request.transaction_id, (relay, lifetime)
    )
    harness.deliver(encode_message(forged, integrity_key=b"not the key"))
    harness.deliver(encode_message(forged))  # unsigned
    stranger = Message(Method.ALLOCATE, MessageClass.SUCCESS_RESPONSE, b"\x01" * 12, (relay,))
    harness.deliver(encode_message(stranger))
    assert client.bad_integrity == 2
    assert client.unknown_transaction == 1
    assert harness.of_type(AllocationCreated) == []
    for answer in harness.server.receive(signed):
        harness.deliver(answer)
    assert [e.relayed for e in harness.of_type(AllocationCreated)] == [RELAYED]


def test_the_relay_family_is_checked_locally() -> None:
    harness = allocated()
    with pytest.raises(LocalProtocolError, match="address family"):
        harness.client.send(Endpoint.parse("[2001:db8::1]:9"), b"x", harness.now)
    v6 = make(family=Family.IPV6)
    v6.allocate(0.0)
    with pytest.raises(LocalProtocolError, match="address family"):
        v6.permit(ipaddress.ip_address("192.0.2.1"), 0.0)


# -- keepalive, liveness, close --------------------------------------------------


def test_keepalive_binding_only_when_idle() -> None:
    harness = allocated(keepalive=15.0)
    harness.run_until(60.0)
    assert harness.times(Method.BINDING) == [15.0, 30.0, 45.0, 60.0]
    busy = allocated(keepalive=15.0)
    for second in range(1, 61):
        busy.run_until(float(second))
        busy.client.send(PEER, b"x", busy.now)
        busy.pump()
    assert busy.times(Method.BINDING) == []


def test_a_server_gone_silent_is_lost_within_keepalive_plus_the_transaction_timeout() -> None:
    harness = allocated(keepalive=15.0)
    harness.blackhole = True
    harness.run_until(100.0)
    [lost] = harness.of_type(AllocationLost)
    assert lost.outcome.failure is TurnFailure.TIMEOUT
    assert harness.times(Method.BINDING)[0] == 15.0
    assert harness.now >= 15.0 + 39.5


def test_icmp_unreachable_declares_the_server_gone_after_strikes() -> None:
    harness = allocated(icmp_strikes=3)
    harness.blackhole = True  # the process died: datagrams draw ICMP, nothing answers
    client = harness.client
    error = IcmpError(IcmpKind.PORT_UNREACHABLE, SERVER.address, SERVER, 3, 3)
    client.receive_icmp_error(error, 0, harness.now)
    harness.pump()
    assert harness.times(Method.BINDING) == [0.0]  # the probe
    client.receive_icmp_error(error, 0, harness.now)
    assert client.state is AllocationState.ALLOCATED
    client.receive_icmp_error(error, 0, harness.now)
    harness.pump()
    [lost] = harness.of_type(AllocationLost)
    assert lost.outcome.failure is TurnFailure.SERVER_UNREACHABLE
    # An error about another destination is not the server's.
    other = Harness(make())
    other.allocate()
    elsewhere = IcmpError(IcmpKind.PORT_UNREACHABLE, None, PEER, 3, 3)
    for _ in range(5):
        other.client.receive_icmp_error(elsewhere, 0, other.now)
    assert other.client.state is AllocationState.ALLOCATED


def test_close_deletes_the_allocation_with_lifetime_zero() -> None:
    harness = allocated()
    harness.client.close(harness.now)
    harness.pump()
    assert harness.of_type(Deallocated) == [Deallocated(confirmed=True)]
    assert harness.server.refresh_lifetimes == [0]
    assert not harness.server.allocated
    assert harness.client.state is AllocationState.CLOSED
    assert harness.client.get_timer() is None
    harness.client.close(harness.now)  # idempotent
    assert harness.client.send(PEER, b"late", harness.now) is False


def test_close_while_allocating_still_deletes_what_the_server_made() -> None:
    harness = Harness(make())
    harness.client.allocate(0.0)
    harness.client.close(0.0)
    harness.pump()
    assert harness.of_type(Deallocated) == [Deallocated(confirmed=True)]
    assert harness.server.refresh_lifetimes == [0]
    assert harness.of_type(AllocationCreated) == []


def test_close_against_a_dead_server_gives_up_within_close_timeout() -> None:
    harness = allocated(close_timeout=3.0)
    harness.blackhole = True
    harness.client.close(harness.now)
    harness.run_until(10.0)
    assert harness.of_type(Deallocated) == [Deallocated(confirmed=False)]
    assert harness.now <= 10.0
    assert max(harness.times(Method.REFRESH)) < 3.0


def test_illegal_calls_name_the_state() -> None:
    client = make()
    with pytest.raises(LocalProtocolError, match="idle"):
        client.permit(PEER, 0.0)
    client.allocate(0.0)
    with pytest.raises(LocalProtocolError, match="allocating"):
        client.allocate(0.0)


# -- streams -------------------------------------------------------------------


def test_over_tcp_channel_data_is_padded_and_split_streams_are_reassembled() -> None:
    harness = allocated(transport=TurnTransport.TCP)
    client = harness.client
    client.bind(PEER, harness.now)
    harness.pump()
    client.send(PEER, b"abc", harness.now)
    [datagram] = client.datagrams_to_send(harness.now)
    assert datagram.data == b"\x40\x00\x00\x03abc\x00"  # RFC 8656 §12.5: padded to 4
    # Two messages arriving byte by byte.
    stream = harness.server.channel_data(PEER, b"one") + harness.server.data_indication(PEER, b"2")
    for i in range(len(stream)):
        client.receive_stream_data(stream[i : i + 1], harness.now)
    harness.deliver(b"")
    assert harness.of_type(DataReceived) == [
        DataReceived(PEER, b"one", 0x4000),
        DataReceived(PEER, b"2", None),
    ]


def test_a_stream_that_loses_its_framing_loses_the_allocation() -> None:
    harness = allocated(transport=TurnTransport.TLS)
    harness.deliver(b"\xc0\x00\x00\x00garbage")
    [lost] = harness.of_type(AllocationLost)
    assert lost.outcome.failure is TurnFailure.PROTOCOL_ERROR
    harness.deliver(b"more")  # after the end: counted, ignored
    assert harness.client.counters.after_close == 1


def test_connection_lost_ends_the_allocation() -> None:
    harness = allocated(transport=TurnTransport.TCP)
    harness.client.connection_lost(harness.now, "reset by peer")
    harness.pump()
    [lost] = harness.of_type(AllocationLost)
    assert (lost.outcome.failure, lost.outcome.reason) == (
        TurnFailure.CONNECTION_LOST,
        "reset by peer",
    )


def test_ping_measures_the_round_trip_before_or_after_allocating() -> None:
    client = make()
    client.ping(0.0)  # idle: no allocation needed
    [request] = client.datagrams_to_send(0.0)
    server = Harness(client).server
    [answer] = server.receive(request.data)
    client.receive_datagram(answer, SERVER, 0, 0.25)
    assert client.next_event() == PingCompleted(0.25)
    assert client.srtt == 0.25
    assert client.state is AllocationState.IDLE
    silent = allocated()
    silent.blackhole = True
    silent.client.ping(silent.now)
    silent.run_until(39.0)  # the ping gives up at 39.5 s, before the keepalive's does
    assert silent.of_type(PingCompleted) == []
    silent.run_until(39.5)
    assert silent.of_type(PingCompleted) == [PingCompleted(None)]


def test_close_while_an_allocate_waits_out_a_500_still_ends() -> None:
    harness = Harness(make(max_server_errors=1, retry_backoff=1.0))
    harness.server.errors[Method.ALLOCATE] = 500
    harness.client.allocate(0.0)
    harness.pump()
    harness.client.close(0.0)
    del harness.server.errors[Method.ALLOCATE]
    harness.run_until(10.0)
    assert harness.of_type(Deallocated) == [Deallocated(confirmed=True)]
    assert harness.server.refresh_lifetimes == [0]
