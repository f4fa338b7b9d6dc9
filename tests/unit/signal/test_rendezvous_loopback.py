"""The rendezvous server and client channel over real TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from natkit.aio.rendezvous_client import AttemptPhase, RendezvousChannel
from natkit.aio.rendezvous_server import PULL_BYTES, WRITE_HIGH_WATER, AsyncRendezvousServer
from natkit.endpoint import Endpoint
from natkit.identity import PrivateKey, seal, unseal
from natkit.signal import (
    ChannelEvent,
    ChannelState,
    DownReason,
    Envelope,
    StateChanged,
    Undeliverable,
    UndeliverableReason,
)
from natkit.signal.auth import prove
from natkit.signal.backoff import Backoff
from natkit.signal.client import ClientConfig, ClientPhase, RendezvousClient
from natkit.signal.frames import (
    FROM_SERVER,
    ClientHello,
    Error,
    ErrorCode,
    FrameDecoder,
    Send,
    ServerHello,
    encode,
)
from natkit.signal.server import ServerConfig, ServerEvent

ALICE = PrivateKey.generate()
BOB = PrivateKey.generate()
MALLORY = PrivateKey.generate()
#: Every wait in these tests is a liveness bound, never a measurement.
LIVENESS = 10.0
FAST = Backoff(initial=0.02, cap=0.1)


async def eventually(predicate: Callable[[], bool], what: str) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), LIVENESS)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


async def next_message(channel: RendezvousChannel) -> Envelope:
    async def first() -> Envelope:
        async for envelope in channel.receive():
            return envelope
        raise AssertionError("receive() ended")

    return await asyncio.wait_for(first(), LIVENESS)


class Server:
    """A server on 127.0.0.1 with its events recorded."""

    def __init__(self, config: ServerConfig | None = None, port: int = 0) -> None:
        self.events: list[ServerEvent] = []
        self.server = AsyncRendezvousServer(
            Endpoint.parse(f"127.0.0.1:{port}"), config, self.events.append
        )

    @property
    def port(self) -> int:
        assert self.server.local_endpoint is not None
        return self.server.local_endpoint.port


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    running = Server(ServerConfig(sweep_interval=0.05, stall_timeout=0.5))
    await running.server.start()
    try:
        yield running
    finally:
        await running.server.close()


def channel(port: int, key: PrivateKey, **options: object) -> RendezvousChannel:
    options.setdefault("backoff", FAST)
    return RendezvousChannel("127.0.0.1", port, key, **options)  # type: ignore[arg-type]


async def up(*channels: RendezvousChannel) -> None:
    for one in channels:
        one.start()
    await asyncio.wait_for(asyncio.gather(*(one.wait_up() for one in channels)), LIVENESS)


async def test_two_clients_exchange_sealed_messages(server: Server) -> None:
    async with channel(server.port, ALICE) as alice, channel(server.port, BOB) as bob:
        await up(alice, bob)
        await alice.send(BOB.public_key, seal(ALICE, BOB.public_key, b"offer"))
        envelope = await next_message(bob)
        assert envelope.sender == ALICE.public_key
        assert unseal(BOB, envelope.sender, envelope.sealed) == b"offer"
        await bob.send(ALICE.public_key, seal(BOB, ALICE.public_key, b"answer"))
        envelope = await next_message(alice)
        assert unseal(ALICE, envelope.sender, envelope.sealed) == b"answer"
    assert server.server.core.counters.relayed == 2


async def test_sends_before_the_connection_is_up_wait_in_the_outbox(server: Server) -> None:
    alice = channel(server.port, ALICE)
    bob = channel(server.port, BOB)
    await up(bob)
    await alice.send(BOB.public_key, b"sent while connecting")
    assert alice.state is ChannelState.CONNECTING
    alice.start()
    assert (await next_message(bob)).sealed == b"sent while connecting"
    await alice.close()
    await bob.close()


async def test_offline_recipient_is_reported(server: Server) -> None:
    events: list[ChannelEvent] = []
    async with channel(server.port, ALICE) as alice:
        alice.subscribe(events.append)
        await up(alice)
        await alice.send(MALLORY.public_key, b"anyone there?")
        await eventually(lambda: any(isinstance(e, Undeliverable) for e in events), "notice")
    assert Undeliverable(MALLORY.public_key, UndeliverableReason.OFFLINE) in events


async def raw_connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def read_frames(reader: asyncio.StreamReader) -> list[object]:
    """Everything the server sends until it closes the connection."""
    data = await asyncio.wait_for(reader.read(), LIVENESS)
    decoder = FrameDecoder(FROM_SERVER, 65000)
    decoder.feed(data)
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    return frames


async def test_impersonation_fails_over_tcp(server: Server) -> None:
    async with channel(server.port, ALICE) as alice, channel(server.port, BOB) as bob:
        await up(alice, bob)
        reader, writer = await raw_connect(server.port)
        decoder = FrameDecoder(FROM_SERVER, 65000)
        while (hello := decoder.next_frame()) is None:
            decoder.feed(await reader.read(100))
        assert isinstance(hello, ServerHello)
        # Mallory claims Alice's key with a proof made with her own.
        proof = prove(MALLORY, hello.server_key, hello.challenge)
        writer.write(encode(ClientHello(ALICE.public_key, proof)))
        assert await read_frames(reader) == [Error(ErrorCode.AUTH_FAILED)]
        writer.close()
        # Alice was never displaced.
        await bob.send(ALICE.public_key, b"for the real alice")
        assert (await next_message(alice)).sealed == b"for the real alice"
        assert alice.counters.connections == 1
    assert server.server.core.counters.disconnects["auth-failed"] == 1


async def test_malformed_streams_never_hurt_the_server(server: Server) -> None:
    rng = random.Random(7)
    attacks = [rng.randbytes(rng.randrange(1, 400)) for _ in range(20)]
    attacks += [
        struct.pack("!BBH", 4, 0, 0xFFFF),  # oversize length
        struct.pack("!BBH", 0xEE, 0, 4) + b"abcd",  # unknown type
        struct.pack("!BBH", 5, 0, 40) + bytes(40),  # wrong direction
        encode(Send(BOB.public_key, b"x")),  # before the handshake
    ]
    async with channel(server.port, ALICE) as alice, channel(server.port, BOB) as bob:
        await up(alice, bob)
        for attack in attacks:
            reader, writer = await raw_connect(server.port)
            writer.write(attack)
            await writer.drain()
            frames = await read_frames(reader)  # the server answers, then hangs up
            assert isinstance(frames[0], ServerHello)
            writer.close()
        # Half frames: connections that send part of a frame and then go away.
        for cut in (1, 3, 5, 50):
            reader, writer = await raw_connect(server.port)
            writer.write(encode(ClientHello(ALICE.public_key, bytes(99)))[:cut])
            writer.close()
        await alice.send(BOB.public_key, b"still served")
        assert (await next_message(bob)).sealed == b"still served"
    counters = server.server.core.counters
    assert sum(counters.malformed.values()) >= 20
    await eventually(lambda: server.server.core.connection_count == 0, "all closed")


async def test_slow_loris_is_cut_off(server: Server) -> None:
    # The fixture's server: 10 s to authenticate is the default; use a short one.
    loris = Server(ServerConfig(auth_timeout=0.3, sweep_interval=0.05))
    await loris.server.start()
    try:
        reader, writer = await raw_connect(loris.port)
        hello = encode(ClientHello(ALICE.public_key, bytes(99)))
        writer.write(hello[:1])
        await writer.drain()
        frames = await read_frames(reader)  # one byte, then silence: cut off
        assert frames[-1] == Error(ErrorCode.AUTH_TIMEOUT)
        writer.close()
    finally:
        await loris.server.close()


async def test_one_host_gets_a_few_handshake_slots() -> None:
    busy = Server(ServerConfig(max_pending_per_source=2, sweep_interval=0.05))
    await busy.server.start()
    writers = []
    try:
        for _ in range(2):
            _reader, writer = await raw_connect(busy.port)
            writers.append(writer)
        reader, writer = await raw_connect(busy.port)  # a third handshake from 127.0.0.1
        writers.append(writer)
        frames = await read_frames(reader)
        assert frames == [Error(ErrorCode.FULL)]
        # Another address of the host is another source.
        other, writer = await asyncio.open_connection(
            "127.0.0.1", busy.port, local_addr=("127.0.0.2", 0)
        )
        writers.append(writer)
        header = await asyncio.wait_for(other.read(1), LIVENESS)
        assert header  # its SERVER_HELLO
        assert busy.server.core.counters.disconnects["source-busy"] == 1
    finally:
        for writer in writers:
            writer.close()
        await busy.server.close()


class NonReader:
    """A client that authenticates and then never reads again."""

    def __init__(self, key: PrivateKey) -> None:
        self.key = key
        self.sock: socket.socket | None = None

    async def connect(self, port: int) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", port))
        core = RendezvousClient(self.key, 0.0)
        while core.phase is not ClientPhase.READY:
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), LIVENESS)
            assert data
            core.receive(data, 0.0)
            await loop.sock_sendall(sock, core.data_to_send())
        self.sock = sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


async def test_a_client_that_never_reads_is_bounded_and_dropped() -> None:
    queue = 64 * 1024
    slow = Server(
        ServerConfig(
            queue_bytes=queue,
            rate=100_000.0,
            burst=100_000,
            stall_timeout=0.5,
            sweep_interval=0.05,
        )
    )
    await slow.server.start()
    events: list[ChannelEvent] = []
    bob = NonReader(BOB)
    try:
        await bob.connect(slow.port)
        async with channel(slow.port, ALICE) as alice:
            alice.subscribe(events.append)
            await up(alice)
            core = slow.server.core
            message = bytes(4000)

            async def flood() -> None:
                # Until the server has given up on Bob (counted, not timed).
                while core.counters.disconnects["too-slow"] == 0:
                    for _ in range(50):
                        await alice.send(BOB.public_key, message)
                    await asyncio.sleep(0.001)

            await asyncio.wait_for(flood(), LIVENESS)
            counters = core.counters
            assert counters.dropped["busy"] > 0
            assert counters.queue_peak <= queue + 5  # + the final ERROR frame
            assert slow.server.transport_peak <= WRITE_HIGH_WATER + PULL_BYTES
            # Bob's connection is gone from the server although Bob never read:
            # aborted, not left to flush into a socket nobody reads.
            await eventually(lambda: len(slow.server.connections) == 1, "bob's socket released")
            await eventually(
                lambda: any(
                    isinstance(e, Undeliverable) and e.reason is UndeliverableReason.BUSY
                    for e in events
                ),
                "busy notice",
            )
            # Alice is still served after all that.
            carol = PrivateKey.generate()
            async with channel(slow.port, carol) as third:
                await up(third)
                await alice.send(carol.public_key, b"after the flood")
                assert (await next_message(third)).sealed == b"after the flood"
    finally:
        bob.close()
        await slow.server.close()


async def test_a_flooding_client_is_rate_limited(server: Server) -> None:
    limited = Server(ServerConfig(rate=50.0, burst=10, sweep_interval=0.05))
    await limited.server.start()
    try:
        async with channel(limited.port, ALICE) as alice, channel(limited.port, BOB) as bob:
            await up(alice, bob)
            for _ in range(500):
                await alice.send(BOB.public_key, b"flood")
            counters = limited.server.core.counters
            await eventually(
                lambda: counters.relayed + counters.dropped["rate-limited"] == 500, "all handled"
            )
            assert counters.dropped["rate-limited"] >= 400
            assert counters.relayed >= 10
    finally:
        await limited.server.close()


async def test_backoff_schedule_with_an_injected_sleep() -> None:
    # A port nobody listens on: every attempt is refused at once.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    requested: list[float] = []
    release = asyncio.Event()

    async def fake_sleep(delay: float) -> None:
        requested.append(delay)
        if len(requested) >= 12:
            await release.wait()

    events: list[ChannelEvent] = []
    rng = random.Random(3)
    alice = RendezvousChannel(
        "127.0.0.1", port, ALICE, sleep=fake_sleep, rng=rng, backoff=Backoff()
    )
    alice.subscribe(events.append)
    alice.start()
    await eventually(lambda: len(requested) >= 12, "12 attempts")
    bases = [min(300.0, 2.0**n) for n in range(12)]
    assert all(b / 2 <= d <= b for d, b in zip(requested, bases, strict=True)), requested
    assert requested == alice.delays
    assert max(requested) <= 300.0
    assert requested[-1] > 150.0  # capped at 5 min, jittered below it
    # Jitter: the same schedule as a Backoff with the same seeded RNG.
    replay = random.Random(3)
    assert requested == [Backoff().delay(n, replay) for n in range(12)]
    await asyncio.sleep(0.05)
    changes = [e for e in events if isinstance(e, StateChanged)]
    assert changes[0].state is ChannelState.CONNECTING
    assert changes[0].previous is ChannelState.CONNECTING
    assert changes[0].reason is DownReason.UNREACHABLE
    assert changes[0].retry_in == requested[0]
    # Now the server appears on that port: the channel comes up.
    late = Server(port=port)
    await late.server.start()
    try:
        release.set()
        await asyncio.wait_for(alice.wait_up(), LIVENESS)
        assert alice.state is ChannelState.UP
    finally:
        await alice.close()
        await late.server.close()


async def test_restart_on_loopback_reconnects_and_reauthenticates() -> None:
    first = Server()
    await first.server.start()
    port = first.port
    alice_events: list[ChannelEvent] = []
    alice = channel(port, ALICE)
    bob = channel(port, BOB)
    alice.subscribe(alice_events.append)
    try:
        await up(alice, bob)
        await first.server.close()
        await eventually(lambda: alice.state is ChannelState.CONNECTING, "alice sees the loss")
        second = Server(port=port)
        await second.server.start()
        try:
            await up(alice, bob)
            await alice.send(BOB.public_key, b"after the restart")
            assert (await next_message(bob)).sealed == b"after the restart"
            assert alice.counters.connections == 2
            connected = [e for e in second.events if type(e).__name__ == "ClientConnected"]
            assert len(connected) == 2  # both proved their keys again
        finally:
            await second.server.close()
    finally:
        await alice.close()
        await bob.close()
    states = [e for e in alice_events if isinstance(e, StateChanged)]
    assert states[0] == StateChanged(ChannelState.UP, ChannelState.CONNECTING)
    assert states[1].state is ChannelState.CONNECTING
    assert states[1].reason is DownReason.REFUSED  # the server said SHUTDOWN
    assert states[1].retry_in is not None
    assert StateChanged(ChannelState.UP, ChannelState.CONNECTING) in states[2:]
    assert states[-1].state is ChannelState.CLOSED


async def test_a_silent_server_is_left_and_retried() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accept, never speak

    mute_server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = mute_server.sockets[0].getsockname()[1]
    events: list[ChannelEvent] = []
    alice = channel(port, ALICE, config=ClientConfig(handshake_timeout=0.1))
    alice.subscribe(events.append)
    alice.start()
    try:
        await eventually(lambda: len(accepted) >= 2, "a second attempt")
        change = next(e for e in events if isinstance(e, StateChanged))
        assert change.reason is DownReason.SILENT
        assert change.detail == (
            "handshake timed out: connected, but no hello from the server in 0.1 s"
        )
    finally:
        await alice.close()
        for writer in accepted:
            writer.close()
        mute_server.close()
        await mute_server.wait_closed()


async def test_the_same_key_elsewhere_replaces_the_connection(server: Server) -> None:
    first = channel(server.port, ALICE, backoff=Backoff(initial=0.05, cap=0.4), stable_after=0.0)
    await up(first)
    events: list[ChannelEvent] = []
    first.subscribe(events.append)
    second = channel(server.port, ALICE, backoff=Backoff(initial=5.0, cap=10.0))
    await up(second)  # takes over; the first is told REPLACED
    await eventually(lambda: bool(first.delays), "the first backs off")
    change = next(e for e in events if isinstance(e, StateChanged))
    assert change.reason is DownReason.REPLACED
    await first.close()
    await second.close()


async def test_a_reset_connection_is_lost_then_restored(server: Server) -> None:
    events: list[ChannelEvent] = []
    async with channel(server.port, ALICE) as alice:
        alice.subscribe(events.append)
        await up(alice)
        for connection in list(server.server.connections.values()):
            assert connection.transport is not None
            # Linger 0: close() sends RST, as a rebooted host's kernel answers.
            sock = connection.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.transport.abort()
        await eventually(lambda: alice.counters.connections == 2, "a second connection")
        assert alice.state is ChannelState.UP
    lost = [e for e in events if isinstance(e, StateChanged) and e.reason is not None]
    assert lost[0].reason is DownReason.LOST
    assert lost[0].detail == "Connection reset by peer"
    assert lost[0].state is ChannelState.CONNECTING


class _GatedReader:
    """A stream reader whose next read the test completes by hand."""

    def __init__(self) -> None:
        self.pending: asyncio.Future[bytes] | None = None

    async def read(self, _size: int) -> bytes:
        self.pending = asyncio.get_running_loop().create_future()
        return await self.pending


class _NullWriter:
    transport = None

    def write(self, _data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def test_close_while_data_arrives_is_not_lost() -> None:
    # Bytes arriving in the same loop iteration as close() cancels the
    # channel: Python 3.11's asyncio.wait_for returned the bytes and lost the
    # cancel, so the connection loop went on and close() never returned.
    reader = _GatedReader()

    async def open_connection(_host: str, _port: int) -> Any:
        return reader, _NullWriter()

    channel = RendezvousChannel("127.0.0.1", 9, ALICE, open_connection=open_connection)
    channel.start()
    await eventually(lambda: reader.pending is not None, "a read in progress")
    assert reader.pending is not None
    reader.pending.set_result(b"")  # the server hung up, at the worst moment
    closing = asyncio.get_running_loop().create_task(channel.close())
    done, _ = await asyncio.wait({closing}, timeout=LIVENESS)
    assert done, "close() never returned"
    assert channel.state is ChannelState.CLOSED


async def test_a_name_that_does_not_resolve_is_named_and_retried() -> None:
    attempts: list[str] = []

    async def open_connection(host: str, _port: int) -> Any:
        attempts.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    events: list[ChannelEvent] = []
    alice = RendezvousChannel(
        "rendezvous.example", 7000, ALICE, open_connection=open_connection,
        backoff=Backoff(initial=0.01, cap=0.02),
    )  # fmt: skip
    alice.subscribe(events.append)
    alice.start()
    try:
        await eventually(lambda: len(attempts) >= 2, "a second attempt")
        change = next(e for e in events if isinstance(e, StateChanged))
        assert change.reason is DownReason.UNREACHABLE
        assert change.detail == "cannot resolve 'rendezvous.example': Name or service not known"
    finally:
        await alice.close()
    assert alice.phase is AttemptPhase.CLOSED


async def test_the_phase_says_where_an_attempt_stands() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accept, never speak

    mute_server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = mute_server.sockets[0].getsockname()[1]
    alice = channel(port, ALICE)
    assert alice.phase is AttemptPhase.CONNECTING
    alice.start()
    try:
        await eventually(lambda: alice.phase is AttemptPhase.HELLO, "connected, no hello")
        assert alice.phase_age() >= 0
    finally:
        await alice.close()
        for writer in accepted:
            writer.close()
        mute_server.close()
        await mute_server.wait_closed()
