"""The rendezvous server and client cores on a virtual clock, no sockets."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rendezvous_testlib import Harness, Link

from natkit.errors import LocalProtocolError
from natkit.identity import PrivateKey, seal, unseal
from natkit.signal import DownReason, Envelope, UndeliverableReason
from natkit.signal.auth import PROOF_LENGTH, prove
from natkit.signal.client import (
    ClientConfig,
    ClientPhase,
    Ended,
    NoticeReceived,
    Ready,
    Received,
    RendezvousClient,
)
from natkit.signal.frames import (
    FROM_SERVER,
    ClientHello,
    Deliver,
    Error,
    ErrorCode,
    FrameDecoder,
    Ping,
    Send,
    ServerHello,
    Welcome,
    encode,
)
from natkit.signal.server import (
    ClientConnected,
    ClientDisconnected,
    DisconnectReason,
    MessagesDropped,
    RelayDropReason,
    RendezvousServer,
    ServerConfig,
)

ALICE = PrivateKey.generate()
BOB = PrivateKey.generate()
MALLORY = PrivateKey.generate()


def received(link: Link) -> list[Envelope]:
    return [event.envelope for event in link.events if isinstance(event, Received)]


def ended(link: Link) -> Ended:
    found = [event for event in link.events if isinstance(event, Ended)]
    assert len(found) == 1, link.events
    return found[0]


def disconnects(harness: Harness) -> list[ClientDisconnected]:
    return [e for e in harness.server_events if isinstance(e, ClientDisconnected)]


def server_frames(link: Link) -> list[object]:
    decoder = FrameDecoder(FROM_SERVER, 65000)
    decoder.feed(bytes(link.written))
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    return frames


def test_two_clients_exchange_sealed_messages() -> None:
    harness = Harness()
    alice = harness.connect(ALICE)
    bob = harness.connect(BOB)
    assert isinstance(alice.events[0], Ready)
    assert alice.client is not None
    assert bob.client is not None
    assert alice.client.phase is ClientPhase.READY
    assert [type(e) for e in harness.server_events] == [ClientConnected, ClientConnected]
    alice.client.send(BOB.public_key, seal(ALICE, BOB.public_key, b"hello bob"))
    harness.pump()
    [envelope] = received(bob)
    assert envelope.sender == ALICE.public_key
    assert unseal(BOB, envelope.sender, envelope.sealed) == b"hello bob"
    bob.client.send(ALICE.public_key, seal(BOB, ALICE.public_key, b"hi"))
    harness.pump()
    assert [unseal(ALICE, e.sender, e.sealed) for e in received(alice)] == [b"hi"]
    assert harness.server.counters.relayed == 2
    assert harness.server.clients == 2


def test_offline_recipient_gets_a_notice_back() -> None:
    harness = Harness()
    alice = harness.connect(ALICE)
    assert alice.client is not None
    alice.client.send(BOB.public_key, b"s" * 50)
    harness.pump()
    assert alice.events[-1] == NoticeReceived(BOB.public_key, UndeliverableReason.OFFLINE)
    assert harness.server.counters.dropped["offline"] == 1
    harness.advance(1.0)
    assert MessagesDropped(ALICE.public_key, RelayDropReason.OFFLINE, 1) in harness.server_events


def test_no_notices_when_turned_off() -> None:
    harness = Harness(ServerConfig(notify_undeliverable=False))
    alice = harness.connect(ALICE)
    assert alice.client is not None
    alice.client.send(BOB.public_key, b"s")
    harness.pump()
    assert not any(isinstance(e, NoticeReceived) for e in alice.events)
    assert harness.server.counters.dropped["offline"] == 1


def hello_of(link: Link) -> ServerHello:
    hello = server_frames(link)[0]
    assert isinstance(hello, ServerHello)
    return hello


@pytest.mark.parametrize("attack", ["own-proof", "replayed-proof", "garbage-proof"])
def test_impersonation_fails_and_the_real_key_keeps_its_messages(attack: str) -> None:
    harness = Harness()
    alice = harness.connect(ALICE)
    bob = harness.connect(BOB)
    # Mallory watched Alice's handshake (no TLS): her proof and the challenge.
    alice_hello = hello_of(alice)
    alice_proof = prove(ALICE, alice_hello.server_key, alice_hello.challenge)
    mallory = harness.connect(None)
    hello = hello_of(mallory)
    proof = {
        "own-proof": prove(MALLORY, hello.server_key, hello.challenge),
        "replayed-proof": alice_proof,
        "garbage-proof": bytes(len(alice_proof)),
    }[attack]
    harness.raw(mallory, encode(ClientHello(ALICE.public_key, proof)))
    assert mallory.closed
    assert server_frames(mallory)[-1] == Error(ErrorCode.AUTH_FAILED)
    assert disconnects(harness)[-1].reason is DisconnectReason.AUTH_FAILED
    assert disconnects(harness)[-1].key is None
    # Alice is still registered and reachable.
    assert bob.client is not None
    bob.client.send(ALICE.public_key, b"still yours")
    harness.pump()
    assert [e.sealed for e in received(alice)] == [b"still yours"]
    assert not alice.closed


def test_the_same_key_connecting_again_takes_over() -> None:
    harness = Harness()
    first = harness.connect(ALICE)
    second = harness.connect(ALICE)
    bob = harness.connect(BOB)
    assert first.closed
    assert ended(first).reason is DownReason.REPLACED
    assert bob.client is not None
    bob.client.send(ALICE.public_key, b"to the new one")
    harness.pump()
    assert [e.sealed for e in received(second)] == [b"to the new one"]
    assert harness.server.clients == 2
    assert harness.server.counters.disconnects["replaced"] == 1


def test_frames_before_hello_or_a_second_hello_close() -> None:
    harness = Harness()
    early = harness.connect(None)
    harness.raw(early, encode(Send(BOB.public_key, b"x")))
    assert early.closed
    assert disconnects(harness)[-1].reason is DisconnectReason.MALFORMED
    alice = harness.connect(ALICE)
    harness.raw(alice, encode(ClientHello(ALICE.public_key, bytes(PROOF_LENGTH))))
    assert alice.closed
    assert disconnects(harness)[-1].reason is DisconnectReason.MALFORMED
    assert harness.server.counters.malformed["second-hello"] == 1


def test_wrong_direction_frame_closes_with_protocol_error() -> None:
    harness = Harness()
    alice = harness.connect(ALICE)
    harness.raw(alice, encode(Deliver(BOB.public_key, b"x")))
    assert alice.closed
    assert ended(alice).code is ErrorCode.PROTOCOL
    assert server_frames(alice)[-1] == Error(ErrorCode.PROTOCOL)
    assert harness.server.counters.malformed["frame type not sent in this direction"] == 1


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(junk=st.binary(min_size=1, max_size=300), authenticated=st.booleans())
def test_random_bytes_close_only_that_connection(junk: bytes, authenticated: bool) -> None:
    harness = Harness()
    alice = harness.connect(ALICE)
    bob = harness.connect(BOB)
    victim = harness.connect(MALLORY if authenticated else None)
    harness.raw(victim, junk)
    # Whatever happened to the victim, the others are served.
    assert alice.client is not None
    alice.client.send(BOB.public_key, b"after the junk")
    harness.pump()
    assert [e.sealed for e in received(bob)] == [b"after the junk"]
    assert harness.server.connection_count in (2, 3)


def test_oversize_length_closes_before_the_body_arrives() -> None:
    harness = Harness(ServerConfig(max_sealed=1000))
    alice = harness.connect(ALICE)
    harness.raw(alice, struct.pack("!BBH", 4, 0, 32 + 1001))
    assert alice.closed
    assert harness.server.counters.malformed["sealed message over the limit"] == 1


def test_half_frame_then_silence_is_cut_by_the_idle_timeout() -> None:
    config = ServerConfig(idle_timeout=60.0, ping_interval=25)
    harness = Harness(config)
    alice = harness.connect(ALICE)
    assert alice.client is not None
    # A slow loris: a frame that never completes, one byte at a time.
    frame = encode(Send(BOB.public_key, b"x" * 100))
    for index in range(40):
        harness.raw(Link(alice.conn, None), frame[index : index + 1])
        harness.now += 2.0
        harness.server.handle_timer(harness.now)
        harness.pump()
    assert alice.closed
    assert disconnects(harness)[-1].reason is DisconnectReason.IDLE


def test_a_silent_unauthenticated_connection_times_out() -> None:
    harness = Harness(ServerConfig(auth_timeout=5.0))
    silent = harness.connect(None)
    harness.raw(silent, encode(ClientHello(ALICE.public_key, bytes(PROOF_LENGTH)))[:10])
    harness.advance(6.0)
    assert silent.closed
    assert disconnects(harness)[-1].reason is DisconnectReason.AUTH_TIMEOUT


def test_a_reader_that_stops_reading_is_bounded_then_disconnected() -> None:
    config = ServerConfig(queue_bytes=8192, stall_timeout=30.0, rate=1000.0, burst=1000)
    harness = Harness(config)
    alice = harness.connect(ALICE)
    bob = harness.connect(BOB)
    assert alice.client is not None
    bob.stalled = True
    message = b"m" * 500
    for _ in range(100):
        alice.client.send(BOB.public_key, message)
    harness.pump()
    counters = harness.server.counters
    frame = len(encode(Deliver(ALICE.public_key, message)))
    fits = 8192 // frame
    assert counters.relayed == fits
    assert counters.dropped["busy"] == 100 - fits
    assert harness.server.queued_bytes(bob.conn) <= 8192
    assert counters.queue_peak <= 8192
    busy = [e for e in alice.events if isinstance(e, NoticeReceived)]
    assert {e.reason for e in busy} == {UndeliverableReason.BUSY}
    harness.advance(31.0)
    assert bob.closed
    assert disconnects(harness)[-1].key == BOB.public_key
    assert disconnects(harness)[-1].reason is DisconnectReason.TOO_SLOW
    assert not alice.closed
    assert (
        MessagesDropped(ALICE.public_key, RelayDropReason.BUSY, 100 - fits) in harness.server_events
    )


def test_a_flooding_sender_is_rate_limited_and_its_notices_bounded() -> None:
    config = ServerConfig(rate=10.0, burst=20, queue_bytes=4096 + 36)
    harness = Harness(config)
    mallory = harness.connect(MALLORY)
    bob = harness.connect(BOB)
    mallory.stalled = True  # floods and never reads its notices
    flood = b"".join(encode(Send(BOB.public_key, b"f")) for _ in range(10_000))
    harness.raw(mallory, flood)
    counters = harness.server.counters
    assert counters.relayed == 20
    assert counters.dropped["rate-limited"] == 10_000 - 20
    assert counters.notices_sent + counters.notices_dropped == 10_000 - 20
    assert harness.server.queued_bytes(mallory.conn) <= config.queue_bytes
    assert len(received(bob)) == 20
    # One report for the sweep, not one per dropped message, and none again.
    harness.advance(3.0)
    reports = [e for e in harness.server_events if isinstance(e, MessagesDropped)]
    assert reports == [MessagesDropped(MALLORY.public_key, RelayDropReason.RATE_LIMITED, 9_980)]
    # Tokens come back with time.
    bob.stalled = False
    harness.raw(mallory, encode(Send(BOB.public_key, b"later")))
    assert received(bob)[-1].sealed == b"later"


def test_too_many_handshakes_or_clients_are_refused() -> None:
    harness = Harness(ServerConfig(max_pending=2, max_clients=1))
    one = harness.connect(None)
    two = harness.connect(None)
    three = harness.connect(None)
    assert not one.closed
    assert not two.closed
    assert three.closed
    assert server_frames(three) == [Error(ErrorCode.FULL)]
    harness.hang_up(one)
    alice = harness.connect(ALICE)
    assert not alice.closed
    bob = harness.connect(BOB)
    assert bob.closed
    assert ended(bob).code is ErrorCode.FULL
    assert harness.server.counters.disconnects["full"] == 2


def test_one_source_cannot_take_every_handshake_slot() -> None:
    # Before: 256 connections from one host, each silent for auth_timeout,
    # and nobody else could connect.
    config = ServerConfig(max_pending=10, max_pending_per_source=2)
    server = RendezvousServer(config, random.Random(1).randbytes)
    first = [server.open(f"192.0.2.66:{port}", 0.0, "192.0.2.66") for port in (1, 2, 3)]
    other = server.open("198.51.100.7:1", 0.0, "198.51.100.7")
    assert [server.wants_close(conn) for conn in first] == [False, False, True]
    assert not server.wants_close(other)
    assert server.counters.disconnects == {"source-busy": 1}
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    assert [(e.conn, e.reason) for e in events if isinstance(e, ClientDisconnected)] == [
        (first[2], DisconnectReason.SOURCE_BUSY)
    ]
    # A handshake that ends (here: it times out) frees its source's slot.
    server.handle_timer(config.auth_timeout + 1)
    again = server.open("192.0.2.66:4", config.auth_timeout + 1, "192.0.2.66")
    assert not server.wants_close(again)


def test_finished_handshakes_free_their_sources_slots() -> None:
    # Before: a handshake that authenticated kept its source's slot for ever,
    # so the 9th login from one NAT's address was refused (source-busy).
    harness = Harness(ServerConfig(max_pending_per_source=2))
    links = []
    for _ in range(6):
        link = harness.connect(PrivateKey.generate(), source="198.51.100.1")
        links.append(link)
        harness.advance(0.1)
    assert [link.closed for link in links] == [False] * 6
    assert harness.server.counters.disconnects == {}
    assert harness.server.counters.authenticated == 6


def test_shutdown_tells_everyone() -> None:
    harness = Harness()
    alice = harness.connect(ALICE)
    harness.server.shutdown(harness.now)
    harness.pump()
    assert ended(alice).reason is DownReason.REFUSED
    assert ended(alice).code is ErrorCode.SHUTDOWN
    assert harness.server.get_timer() is not None
    harness.advance(2.0)
    assert harness.server.get_timer() is None


def test_client_pings_keep_an_idle_connection_alive() -> None:
    harness = Harness(ServerConfig(ping_interval=20, idle_timeout=45.0))
    alice = harness.connect(ALICE)
    harness.advance(300.0)
    assert not alice.closed
    assert harness.server.counters.disconnects == {}


def test_client_notices_a_silent_server() -> None:
    client = RendezvousClient(ALICE, 0.0, ClientConfig(max_ping_interval=10, pong_timeout=5))
    server_key = PrivateKey.generate()
    client.receive(encode(ServerHello(server_key.public_key, bytes(32))), 0.0)
    assert client.phase is ClientPhase.AUTHENTICATING
    client.receive(encode(Welcome(4096, 25)), 0.0)
    assert client.next_event() == Ready(4096, 10.0)
    client.data_to_send()
    assert client.get_timer() == 10.0
    client.handle_timer(10.0)
    assert client.data_to_send() == encode(Ping((1).to_bytes(8, "big")))
    assert client.get_timer() == 15.0
    client.handle_timer(15.0)
    assert client.next_event() == Ended(DownReason.SILENT, "no answer to ping")
    assert client.get_timer() is None


def test_client_handshake_timeout_and_misuse() -> None:
    client = RendezvousClient(ALICE, 100.0, ClientConfig(handshake_timeout=3))
    with pytest.raises(LocalProtocolError, match="hello"):
        client.send(BOB.public_key, b"x")
    assert client.get_timer() == 103.0
    client.handle_timer(103.0)
    assert client.next_event() == Ended(
        DownReason.SILENT, "handshake timed out: connected, but no hello from the server in 3 s"
    )


def test_client_refuses_a_frame_out_of_order() -> None:
    client = RendezvousClient(ALICE, 0.0)
    client.receive(encode(Welcome(4096, 25)), 0.0)
    event = client.next_event()
    assert isinstance(event, Ended)
    assert event.reason is DownReason.PROTOCOL
    assert "Welcome" in event.detail
