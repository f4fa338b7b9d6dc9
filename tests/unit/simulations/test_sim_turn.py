"""The simulator's TURN server against natkit's own TURN client core.

Enough of RFC 8656 for the connect tests: the 401 challenge, Allocate,
CreatePermission, ChannelBind, Send/Data indications and ChannelData both
ways, only for permitted peers, refusals, a dead server, a restart.
"""

from __future__ import annotations

import random

from natkit.endpoint import Endpoint
from natkit.simulations.driver import CoreDriver
from natkit.simulations.link import Link
from natkit.simulations.network import Network, SimSocket
from natkit.simulations.turn import FIRST_RELAY_PORT, SimTurnServer, start_turn_server
from natkit.turn import (
    AllocationCreated,
    AllocationFailed,
    AllocationLost,
    Credentials,
    DataReceived,
    TurnClient,
    TurnConfig,
    TurnEvent,
    TurnFailure,
)

SERVER = Endpoint.parse("192.0.2.30:3478")
CLIENT_IP = "203.0.113.5"
PEER_IP = "198.51.100.9"


def world(
    password: str = "natkit-sim-password",
) -> tuple[Network, SimTurnServer, TurnClient, CoreDriver[TurnEvent], SimSocket]:
    network = Network(random.Random(1))
    internet = network.add_realm("internet")
    server, _ = start_turn_server(network, internet, SERVER, delay=0.005)
    client_host = network.add_host("client", internet, [CLIENT_IP], link=Link.symmetric(0.01))
    peer_host = network.add_host("peer", internet, [PEER_IP], link=Link.symmetric(0.01))
    client = TurnClient(TurnConfig(SERVER, Credentials("natkit", password)), rng=random.Random(2))
    driver: CoreDriver[TurnEvent] = CoreDriver(client, [client_host.bind(CLIENT_IP, 40000)])
    return network, server, client, driver, peer_host.bind(PEER_IP, 50000)


def test_allocation_permissions_and_data_both_ways() -> None:
    network, server, client, driver, peer = world()
    driver.invoke(client.allocate)
    network.loop.run_until(1.0)
    (created,) = [e for e in driver.events if isinstance(e, AllocationCreated)]
    assert created.relayed == Endpoint(SERVER.address, FIRST_RELAY_PORT)
    assert created.authenticated
    # Nothing from the peer gets in before a permission...
    peer.send(b"early", created.relayed)
    network.loop.run_until(2.0)
    assert server.counters.no_permission == 1
    # ...the client's first datagram asks for one, then binds a channel.
    driver.invoke(lambda now: client.send(peer.local, b"hello", now))
    network.loop.run_until(3.0)
    assert [p.data for p in peer.received] == [b"hello"]
    assert peer.received[0].src == created.relayed
    peer.send(b"answer", created.relayed)
    network.loop.run_until(4.0)
    received = [e for e in driver.events if isinstance(e, DataReceived)]
    assert [(e.peer, e.data) for e in received] == [(peer.local, b"answer")]
    assert received[0].channel is not None  # ChannelData once the channel is bound
    assert server.counters.relayed_to_clients == 1


def test_wrong_password_and_refusals_are_answered_as_a_server_would() -> None:
    network, server, client, driver, _ = world(password="wrong")
    driver.invoke(client.allocate)
    network.loop.run_until(2.0)
    (failed,) = [e for e in driver.events if isinstance(e, AllocationFailed)]
    assert failed.outcome.failure is TurnFailure.UNAUTHORIZED
    assert server.counters.unauthenticated == 1
    for code, failure in (
        (486, TurnFailure.QUOTA_REACHED),
        (508, TurnFailure.INSUFFICIENT_CAPACITY),
    ):
        network, server, client, driver, _ = world()
        server.refuse = code
        driver.invoke(client.allocate)
        network.loop.run_until(2.0)
        (failed,) = [e for e in driver.events if isinstance(e, AllocationFailed)]
        assert (failed.outcome.failure, failed.outcome.code) == (failure, code)


def test_a_dead_server_answers_nothing_and_a_restarted_one_knows_no_allocation() -> None:
    network, server, client, driver, _ = world()
    driver.invoke(client.allocate)
    network.loop.run_until(1.0)
    server.alive = False
    driver.invoke(client.refresh)
    network.loop.run_until(10.0)
    assert server.counters.while_dead >= 1
    server.restart()
    assert not server.allocations
    network.loop.run_until(60.0)
    # The refresh was retransmitted until the restarted server answered 437.
    (lost,) = [e for e in driver.events if isinstance(e, AllocationLost)]
    assert (lost.outcome.failure, lost.outcome.code) == (TurnFailure.ALLOCATION_MISMATCH, 437)
