"""natkit's TURN client against real coturn, from behind real kernel NAT.

The lab's TURN servers (:mod:`natkit.lab.turn`) run beside the STUN-only
coturn: ``coturn`` (203.0.113.30, a user and realm) and ``coturn-rest``
(203.0.113.31, the REST API secret). The client is the lab's client behind
its NAT (``eim-apdf``, and ``udp-blocked`` whose router drops all forwarded
UDP); the peer is on the lab's internet (192.0.2.10): coturn's own
``turnutils_peer`` as an echo, or a socket of the test's.

What is checked: allocation over UDP, TCP and TLS; permission, Send/Data
indications and ChannelData both ways; REST credentials (good, expired,
wrong) and a wrong password as typed 401s; refresh and deallocation as
coturn logs them; real 438 (a short-lived nonce), 486 (a user quota) and
508 (one relay port); a server that dies mid-session (noticed, typed, and a
new allocation once it is back: re-allocation is the caller's); UDP blocked
at the site, where TCP and TLS still allocate and relay.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from natkit.aio.turn import TurnRelay, TurnServer, server_rtt
from natkit.cli.lab import lab_summary, render_up
from natkit.endpoint import Endpoint
from natkit.lab import Lab
from natkit.lab import turn as lab_turn
from natkit.lab.plan import PEER_ROLE
from natkit.lab.turn import LabTurnServer, TurnOptions
from natkit.stun.transaction import RetransmissionPolicy
from natkit.turn import (
    AllocationRefreshed,
    AllocationState,
    Credentials,
    DataReceived,
    TurnConfig,
    TurnError,
    TurnEvent,
    TurnFailure,
    TurnTransport,
    rest_credentials,
)

pytestmark = pytest.mark.lab

PEER = Endpoint.parse("192.0.2.10:3480")  # turnutils_peer, an echo
OWN_PEER = Endpoint.parse("192.0.2.11:7000")  # a socket of the test's
#: Failure guards, never timings under test.
GUARD = 20.0
TRANSPORTS = [TurnTransport.UDP, TurnTransport.TCP, TurnTransport.TLS]


# -- fixtures ---------------------------------------------------------------


@pytest.fixture
def turn(lab: Lab) -> dict[str, LabTurnServer]:
    """The lab's TURN servers, running with default options, and the echo peer."""
    servers = lab.turn_servers
    alive = all(lab_turn.pid_key(name) in lab.record.pids for name in servers)
    if not servers or not alive or any(s.options != TurnOptions() for s in servers.values()):
        lab.start_turn()
    _echo_peer(lab)
    return lab.turn_servers


_ECHOES: dict[str, subprocess.Popen[bytes]] = {}


def _echo_peer(lab: Lab) -> None:
    """coturn's ``turnutils_peer`` on the internet (killed with the lab)."""
    running = _ECHOES.get(lab.run_id)
    if running is not None and running.poll() is None:
        return
    argv = ["turnutils_peer", "-L", str(PEER.address), "-p", str(PEER.port)]
    _ECHOES[lab.run_id] = lab.popen(
        PEER_ROLE, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 5
    while not _udp_listening(lab, PEER):
        assert time.monotonic() < deadline, "turnutils_peer did not start"
        time.sleep(0.02)


def _udp_listening(lab: Lab, where: Endpoint) -> bool:
    out = lab.exec(PEER_ROLE, ["ss", "-lnu"]).stdout
    return f"{where.address}:{where.port}" in out


def _relay(
    lab: Lab,
    server: LabTurnServer,
    transport: TurnTransport,
    credentials: Credentials | None = None,
    on_event: Callable[[TurnEvent], None] | None = None,
    **config: Any,
) -> TurnRelay:
    endpoint = server.tls if transport is TurnTransport.TLS else server.udp
    kind = socket.SOCK_DGRAM if transport is TurnTransport.UDP else socket.SOCK_STREAM
    if credentials is None:
        assert server.user is not None
        assert server.password is not None
        credentials = Credentials(server.user, server.password)
    return TurnRelay(
        TurnConfig(endpoint, credentials, transport, **config),
        cafile=str(server.ca_file),
        sock=lab.socket(kind=kind),
        on_event=on_event,
    )


def _sessions(lab: Lab, name: str, pattern: str) -> int:
    return len(lab_turn.log_lines(lab, name, pattern))


# -- allocation and data, every transport ------------------------------------


@pytest.mark.scenarios("eim-apdf")
@pytest.mark.parametrize("transport", TRANSPORTS, ids=lambda t: t.value)
async def test_allocate_relay_both_ways_and_deallocate(
    lab: Lab, turn: dict[str, LabTurnServer], transport: TurnTransport
) -> None:
    server = turn["coturn"]
    deallocations = _sessions(lab, "coturn", r"refreshed, .*lifetime=0(,|$)")
    events: list[TurnEvent] = []
    # No channel until asked for: the first datagrams go as indications.
    relay = _relay(lab, server, transport, on_event=events.append, auto_channel=False)
    async with asyncio.timeout(GUARD):
        relayed = await relay.allocate()
        assert relayed.address == server.address
        # The server saw the client through the NAT, at the router's public address.
        assert relay.mapped is not None
        assert relay.mapped.address == lab.public_address
        await relay.permit(PEER)
        assert relay.send(PEER, b"over an indication")
        assert await relay.receive() == (PEER, b"over an indication")
        channel = await relay.bind(PEER)
        # Lengths that are not multiples of 4: over a stream each ChannelData
        # is padded, or the next message would be misread (RFC 8656 §12.5).
        for data in (b"over the channel", b"odd length", b"x"):
            relay.send(PEER, data)
            assert await relay.receive() == (PEER, data)
        assert await relay.close() is True
    counters = relay.client.counters
    assert counters.sent_indications >= 1
    assert counters.sent_channel_data >= 1
    channels = [e.channel for e in events if isinstance(e, DataReceived)]
    assert channels[0] is None  # a Data indication
    assert channels[-1] == channel
    # coturn logged the Refresh with LIFETIME 0 (RFC 8656 §8).
    assert _sessions(lab, "coturn", r"refreshed, .*lifetime=0(,|$)") == deallocations + 1
    assert relay.state is AllocationState.CLOSED


@pytest.mark.scenarios("eim-apdf")
async def test_the_peer_can_send_first_once_permitted(
    lab: Lab, turn: dict[str, LabTurnServer]
) -> None:
    events: list[TurnEvent] = []
    relay = _relay(lab, turn["coturn"], TurnTransport.UDP, on_event=events.append)
    peer, stranger = lab.socket(PEER_ROLE), lab.socket(PEER_ROLE)
    peer.bind(OWN_PEER.sockaddr())
    stranger.bind((str(PEER.address), 7001))  # an address never permitted
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(GUARD):
            relayed = await relay.allocate()
            await relay.permit(OWN_PEER)
            # coturn handles one relay socket's datagrams in order: were the
            # stranger's relayed, it would arrive before the peer's.
            stranger.sendto(b"from a stranger", relayed.sockaddr())
            peer.sendto(b"as a Data indication", relayed.sockaddr())
            assert await relay.receive() == (OWN_PEER, b"as a Data indication")
            channel = await relay.bind(OWN_PEER)
            stranger.sendto(b"from a stranger", relayed.sockaddr())
            peer.sendto(b"as ChannelData", relayed.sockaddr())
            assert await relay.receive() == (OWN_PEER, b"as ChannelData")
            relay.send(OWN_PEER, b"back to the peer")
            data, source = await loop.sock_recvfrom(peer, 2048)
            assert (data, Endpoint.from_sockaddr(source)) == (b"back to the peer", relayed)
            await relay.close()
    finally:
        peer.close()
        stranger.close()
    received = [e for e in events if isinstance(e, DataReceived)]
    assert [(e.data, e.channel) for e in received] == [
        (b"as a Data indication", None),
        (b"as ChannelData", channel),
    ]


# -- credentials ------------------------------------------------------------------


@pytest.mark.scenarios("eim-apdf")
async def test_rest_api_credentials_good_expired_and_wrong(
    lab: Lab, turn: dict[str, LabTurnServer]
) -> None:
    server = turn["coturn-rest"]
    assert server.secret is not None
    now = int(time.time())
    good = rest_credentials(server.secret, now + 3600, "natkit-test")
    relay = _relay(lab, server, TurnTransport.UDP, good)
    async with asyncio.timeout(GUARD):
        assert (await relay.allocate()).address == server.address
        await relay.close()
    for credentials in (
        rest_credentials(server.secret, now - 60, "natkit-test"),  # expired
        rest_credentials("not the secret", now + 3600, "natkit-test"),
    ):
        refused = _relay(lab, server, TurnTransport.UDP, credentials)
        with pytest.raises(TurnError) as caught:
            await refused.allocate(timeout=GUARD)
        assert (caught.value.failure, caught.value.outcome.code) == (TurnFailure.UNAUTHORIZED, 401)
        assert not caught.value.failure.retryable
        await refused.close()


@pytest.mark.scenarios("eim-apdf")
async def test_a_wrong_password_is_a_clear_error(lab: Lab, turn: dict[str, LabTurnServer]) -> None:
    relay = _relay(lab, turn["coturn"], TurnTransport.TCP, Credentials("natkit", "wrong"))
    with pytest.raises(TurnError) as caught:
        await relay.allocate(timeout=GUARD)
    assert caught.value.failure is TurnFailure.UNAUTHORIZED
    assert "401" in str(caught.value)
    await relay.close()
    assert relay.state is AllocationState.FAILED


# -- refresh, nonce, refusals ---------------------------------------------------


@pytest.mark.scenarios("eim-apdf")
async def test_refresh_is_seen_by_coturn_and_a_stale_nonce_is_renewed(
    lab: Lab, turn: dict[str, LabTurnServer]
) -> None:
    lab.start_turn(TurnOptions(stale_nonce=1))  # every nonce is stale a second later
    server = lab.turn_servers["coturn"]
    refreshed = asyncio.Event()
    refreshes: list[AllocationRefreshed] = []

    def on_event(event: TurnEvent) -> None:
        if isinstance(event, AllocationRefreshed):
            refreshes.append(event)
            if len(refreshes) == 2:
                refreshed.set()

    before = _sessions(lab, "coturn", r"refreshed, .*lifetime=600(,|$)")
    relay = _relay(lab, server, TurnTransport.UDP, on_event=on_event, refresh_after=1.5)
    async with asyncio.timeout(GUARD):
        await relay.allocate()
        await refreshed.wait()
        await relay.close()
    assert relay.client.counters.stale_nonces >= 1  # real 438s, answered
    assert _sessions(lab, "coturn", r"refreshed, .*lifetime=600(,|$)") >= before + 2
    assert _sessions(lab, "coturn", r"processed, error 438") >= 1


@pytest.mark.scenarios("eim-apdf")
async def test_quota_and_capacity_refusals_are_typed(
    lab: Lab, turn: dict[str, LabTurnServer]
) -> None:
    try:
        lab.start_turn(TurnOptions(user_quota=1))
        await _second_allocation_fails(lab, TurnFailure.QUOTA_REACHED, 486)
        lab.start_turn(TurnOptions(relay_ports=(50000, 50000)))
        await _second_allocation_fails(lab, TurnFailure.INSUFFICIENT_CAPACITY, 508)
    finally:
        lab.start_turn()


async def _second_allocation_fails(lab: Lab, failure: TurnFailure, code: int) -> None:
    server = lab.turn_servers["coturn"]
    first = _relay(lab, server, TurnTransport.UDP)
    second = _relay(lab, server, TurnTransport.UDP)
    async with asyncio.timeout(GUARD):
        await first.allocate()
        with pytest.raises(TurnError) as caught:
            await second.allocate()
        await first.close()
        await second.close()
    assert (caught.value.failure, caught.value.outcome.code) == (failure, code)
    assert caught.value.failure.retryable
    assert second.client.counters.server_errors == 0  # not retried


# -- a server that dies ------------------------------------------------------------


@pytest.mark.scenarios("eim-apdf")
@pytest.mark.parametrize(
    ("transport", "failure"),
    [
        (TurnTransport.UDP, TurnFailure.SERVER_UNREACHABLE),
        (TurnTransport.TCP, TurnFailure.CONNECTION_LOST),
    ],
    ids=["udp", "tcp"],
)
async def test_a_server_that_dies_is_noticed_and_a_new_allocation_works_when_it_returns(
    lab: Lab, turn: dict[str, LabTurnServer], transport: TurnTransport, failure: TurnFailure
) -> None:
    server = turn["coturn"]
    relay = _relay(lab, server, transport)
    try:
        async with asyncio.timeout(GUARD):
            await relay.allocate()
            await relay.permit(PEER)
            lab.stop_turn("coturn")
            # Over UDP the next datagrams draw ICMP port unreachable through
            # the NAT; over TCP the connection is reset.
            relay.send(PEER, b"anyone there?")
            outcome = await relay.wait_ended()
            assert outcome is not None
            assert outcome.failure is failure
            assert outcome.failure.retryable
            with pytest.raises(TurnError):
                await relay.receive()
    finally:
        lab.start_turn()
    # Re-allocation is the caller's: a new relay on the restarted server.
    again = _relay(lab, lab.turn_servers["coturn"], transport)
    async with asyncio.timeout(GUARD):
        await again.allocate()
        await again.permit(PEER)
        again.send(PEER, b"back")
        assert await again.receive() == (PEER, b"back")
        await again.close()
    await relay.close()


# -- UDP blocked at the site -------------------------------------------------------


@pytest.mark.scenarios("udp-blocked")
async def test_udp_blocked_fails_over_udp_and_relays_over_tcp_and_tls(
    lab: Lab, turn: dict[str, LabTurnServer]
) -> None:
    server = turn["coturn"]
    quick = RetransmissionPolicy(rto=0.1, rc=3, rm=4)
    blocked = _relay(lab, server, TurnTransport.UDP, policy=quick)
    with pytest.raises(TurnError) as caught:
        await blocked.allocate(timeout=GUARD)
    assert caught.value.failure is TurnFailure.TIMEOUT
    await blocked.close()
    for transport in (TurnTransport.TCP, TurnTransport.TLS):
        relay = _relay(lab, server, transport)
        async with asyncio.timeout(GUARD):
            await relay.allocate()
            await relay.bind(PEER)
            relay.send(PEER, transport.value.encode())
            assert await relay.receive() == (PEER, transport.value.encode())
            assert await relay.close() is True


# -- natkit lab up -------------------------------------------------------------------


@pytest.mark.scenarios("eim-apdf")
def test_lab_up_reports_the_turn_servers(lab: Lab, turn: dict[str, LabTurnServer]) -> None:
    summary = json.loads(json.dumps(lab_summary(lab)))
    servers = summary["turn_servers"]
    assert servers["coturn"]["address"] == "203.0.113.30"
    assert servers["coturn"]["ports"] == {"udp": 3478, "tcp": 3478, "tls": 5349}
    assert (servers["coturn"]["user"], servers["coturn"]["secret"]) == ("natkit", None)
    assert servers["coturn-rest"]["secret"] == lab_turn.SECRET
    assert servers["coturn-rest"]["uris"][-1] == "turns:203.0.113.31:5349"
    assert servers["coturn"]["ca_file"] == str(turn["coturn"].ca_file)
    text = render_up(summary)
    assert "turn servers:" in text
    assert "coturn-rest 203.0.113.31 udp/tcp 3478 tls 5349" in text


@pytest.mark.scenarios("eim-apdf")
async def test_server_rtt_over_each_transport(lab: Lab, turn: dict[str, LabTurnServer]) -> None:
    server = turn["coturn"]
    for transport in TRANSPORTS:
        endpoint = server.tls if transport is TurnTransport.TLS else server.udp
        kind = socket.SOCK_DGRAM if transport is TurnTransport.UDP else socket.SOCK_STREAM
        rtt = await server_rtt(
            TurnServer(endpoint, transport),
            cafile=str(server.ca_file),
            sock=lab.socket(kind=kind),
            timeout=GUARD,
        )
        assert rtt is not None, transport
        assert rtt > 0
