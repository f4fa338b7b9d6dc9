"""What both drivers offer every core besides datagrams: stream requests
served generically (natkit.sansio.StreamRequest / stream_answered), the
on_send and on_receive observers, and run_to_completion ending on any
result, None included."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from natkit.aio.driver import RUNNING, CoreRunner, Running, run_to_completion
from natkit.aio.stun_stream import tls_context
from natkit.endpoint import Endpoint
from natkit.errors import InvalidArgument
from natkit.sansio import Datagram, StreamRequest, StreamResult, StreamTransport
from natkit.simulations import CoreDriver, standard_topology
from natkit.stun.codec import Message, binding_request, encode_message, parse_message
from natkit.stun.constants import HEADER_LENGTH, MessageClass, Method

PEER = Endpoint.parse("203.0.113.10:9")
TID = b"\x05" * 12


@dataclass
class Asker:
    """Asks for one stream at ``now``, sends one datagram per input, keeps what comes back."""

    remote: Endpoint
    now: float
    timeout: float = 1.0
    transport: StreamTransport = StreamTransport.TCP
    answers: list[tuple[int, StreamResult, float]] = field(default_factory=list)
    received: list[tuple[bytes, float]] = field(default_factory=list)
    inputs: list[float] = field(default_factory=list)
    wake_at: float | None = None
    _streams: list[StreamRequest] = field(default_factory=list)
    _out: list[Datagram] = field(default_factory=list)

    def __post_init__(self) -> None:
        payload = encode_message(binding_request(TID))
        self._streams.append(StreamRequest(7, self.remote, payload, self.timeout, self.transport))

    def stream_requests(self) -> list[StreamRequest]:
        out, self._streams = self._streams, []
        return out

    def stream_answered(self, request_id: int, result: StreamResult, now: float) -> None:
        self.answers.append((request_id, result, now))

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        self.received.append((data, now))

    def handle_timer(self, now: float) -> None:
        self.inputs.append(now)
        self.wake_at = None
        self._out.append(Datagram(b"tick", self.remote))

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        return self.wake_at

    def next_event(self) -> None:
        return None


# -- the simulator ---------------------------------------------------------------------


def test_the_simulator_serves_a_stream_request_through_its_responder() -> None:
    topo = standard_topology()
    asked: list[StreamRequest] = []

    def responder(request: StreamRequest) -> tuple[float, StreamResult]:
        asked.append(request)
        return 0.25, StreamResult(b"reply", Endpoint.parse("192.168.1.2:5"), 0.2)

    core = Asker(PEER, topo.loop.now)
    driver = CoreDriver(core, topo.bind_client(), streams=responder)
    driver.flush()
    topo.loop.run_until_idle()
    assert [r.id for r in asked] == [7]
    assert core.answers == [(7, StreamResult(b"reply", Endpoint.parse("192.168.1.2:5"), 0.2), 0.25)]
    assert driver.stream_requests == 1


def test_without_a_responder_a_stream_request_times_out() -> None:
    topo = standard_topology()
    core = Asker(PEER, topo.loop.now, timeout=2.0)
    CoreDriver(core, topo.bind_client()).flush()
    topo.loop.run_until_idle()
    ((request_id, result, at),) = core.answers
    assert (request_id, result.reply, at) == (7, None, 2.0)


class Echo(Asker):
    """Sends every datagram back where it came from."""

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        self._out.append(Datagram(data, remote, socket))


def test_the_simulator_observers_see_sends_and_receipts() -> None:
    topo = standard_topology(delay=0.01)
    no_streams = lambda r: (9.0, StreamResult(None))  # noqa: E731
    echo_socket = topo.server.bind(port=4000)
    CoreDriver(Echo(PEER, 0.0), [echo_socket], streams=no_streams)
    sent: list[tuple[float, Datagram]] = []
    seen: list[tuple[float, bytes, Endpoint, int, int]] = []
    core = Asker(echo_socket.local, topo.loop.now)
    core.wake_at = 0.5

    def on_receive(now: float, data: bytes, remote: Endpoint, socket: int) -> None:
        seen.append((now, data, remote, socket, len(core.received)))

    driver = CoreDriver(
        core,
        topo.bind_client(),
        on_send=lambda now, d: sent.append((now, d)),
        on_receive=on_receive,
        streams=no_streams,
    )
    driver.flush()
    assert topo.loop.run_until(lambda: bool(core.received), timeout=5.0)
    assert sent == [(0.5, Datagram(b"tick", echo_socket.local))]
    # The observer saw the echo before the core did.
    ((now, data, remote, socket, before),) = seen
    assert (data, remote, socket, before) == (b"tick", echo_socket.local, 0, 0)
    assert core.received == [(b"tick", now)]


def test_install_hands_the_sockets_to_the_next_core() -> None:
    topo = standard_topology()
    first = Asker(PEER, 0.0)
    first.wake_at = 1.0
    driver = CoreDriver(first, topo.bind_client(), streams=lambda r: (0.1, StreamResult(None)))
    driver.flush()
    second = Asker(PEER, 0.0)
    second.wake_at = 2.0
    driver.install(second)
    driver.flush()
    topo.loop.run_until_idle()
    assert first.inputs == []  # the old core gets nothing more, not even its timer
    assert first.answers == []
    assert second.inputs == [2.0]
    assert [a[0] for a in second.answers] == [7]


# -- asyncio ---------------------------------------------------------------------------


@pytest.fixture
async def tcp_stun() -> AsyncIterator[Endpoint]:
    """A TCP STUN server on loopback answering every Binding request."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        header = await reader.readexactly(HEADER_LENGTH)
        body = await reader.readexactly(int.from_bytes(header[2:4], "big"))
        request = parse_message(header + body)
        answer = Message(Method.BINDING, MessageClass.SUCCESS_RESPONSE, request.transaction_id)
        writer.write(encode_message(answer))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield Endpoint.from_sockaddr(server.sockets[0].getsockname())
    server.close()
    await server.wait_closed()


async def test_the_asyncio_driver_serves_a_stream_request(tcp_stun: Endpoint) -> None:
    loop = asyncio.get_running_loop()
    core = Asker(tcp_stun, loop.time())
    runner: CoreRunner[None] = CoreRunner(core, lambda event: None)
    await runner.bind([Endpoint.parse("127.0.0.1:0")])
    try:
        runner.transmit()
        for _ in range(200):
            if core.answers:
                break
            await asyncio.sleep(0.01)
        ((request_id, result, _at),) = core.answers
        assert request_id == 7
        assert result.reply is not None
        assert parse_message(result.reply).transaction_id == TID
        assert result.local is not None
        assert result.rtt is not None
    finally:
        runner.close()


async def test_a_tls_context_that_cannot_be_made_is_the_answer_not_a_lost_task(
    tmp_path: Path,
) -> None:
    # natkit candidates --tls-ca FILE with junk in FILE: the context is made
    # on the first TLS request; its failure must reach the core as the reason.
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    loop = asyncio.get_running_loop()
    core = Asker(Endpoint.parse("127.0.0.1:9"), loop.time(), transport=StreamTransport.TLS)
    runner: CoreRunner[None] = CoreRunner(
        core, lambda event: None, tls=lambda: tls_context(str(junk))
    )
    await runner.bind([Endpoint.parse("127.0.0.1:0")])
    try:
        runner.transmit()
        for _ in range(200):
            if core.answers:
                break
            await asyncio.sleep(0.01)
        ((request_id, result, _at),) = core.answers
        assert (request_id, result.reply) == (7, None)
        assert result.detail.startswith("TLS setup failed: ")
        assert "no CA certificate could be loaded" in result.detail
    finally:
        runner.close()


async def test_on_send_is_stamped_with_the_time_the_core_was_given() -> None:
    loop = asyncio.get_running_loop()
    sent: list[tuple[float, Datagram]] = []
    core = Asker(Endpoint.parse("127.0.0.1:9"), loop.time(), timeout=0.05)
    core.wake_at = loop.time() + 0.01
    runner: CoreRunner[None] = CoreRunner(
        core, lambda event: None, on_send=lambda now, d: sent.append((now, d))
    )
    await runner.bind([Endpoint.parse("127.0.0.1:0")])
    try:
        runner.transmit()
        for _ in range(200):
            if sent:
                break
            await asyncio.sleep(0.01)
        assert [(now, d.data) for now, d in sent] == [(core.inputs[0], b"tick")]
    finally:
        runner.close()


@dataclass
class Announcer:
    """Emits one event at once and nothing else."""

    event: str
    _events: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._events.append(self.event)

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        pass

    def handle_timer(self, now: float) -> None:
        pass

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        return []

    def get_timer(self) -> float | None:
        return None

    def next_event(self) -> str | None:
        return self._events.pop() if self._events else None


async def test_run_to_completion_ends_on_a_none_result() -> None:
    def result_of(event: str) -> Running | None:
        return None if event == "done" else RUNNING

    found = await asyncio.wait_for(
        run_to_completion(
            lambda sockets, now: Announcer("done"), [Endpoint.parse("127.0.0.1:0")], result_of
        ),
        timeout=2.0,
    )
    assert found is None


def test_stream_requests_are_checked() -> None:
    with pytest.raises(InvalidArgument):
        StreamRequest(1, PEER, b"", timeout=0)
    with pytest.raises(InvalidArgument):
        StreamRequest(1, PEER, b"", timeout=1, stagger=())


# -- datagram ports (CoreRunner.attach_port) ---------------------------------------------


@dataclass
class FakePort:
    """A datagram port that keeps what it is asked to send."""

    local: Endpoint
    sent: list[tuple[bytes, Endpoint]] = field(default_factory=list)
    receiver: object = None

    def send(self, data: bytes, remote: Endpoint) -> None:
        self.sent.append((data, remote))

    def set_receiver(self, receiver: object) -> None:
        self.receiver = receiver

    def close(self) -> None:
        pass


@dataclass
class PortEcho:
    """Answers every datagram on the socket it came in on; a ``ttl:`` prefix
    asks for a hop limit."""

    seen: list[tuple[bytes, Endpoint, int]] = field(default_factory=list)
    _out: list[Datagram] = field(default_factory=list)

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        self.seen.append((data, remote, socket))
        ttl = 3 if data.startswith(b"ttl:") else None
        self._out.append(Datagram(b"echo " + data, remote, socket, ttl=ttl))

    def handle_timer(self, now: float) -> None:
        pass

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        return None

    def next_event(self) -> None:
        return None


async def test_a_datagram_port_takes_the_next_socket_index_among_sockets() -> None:
    core = PortEcho()
    runner: CoreRunner[None] = CoreRunner(core, lambda event: None)
    port = FakePort(Endpoint.parse("0.0.0.0:51820"))
    await runner.bind([Endpoint.parse("127.0.0.1:0")])
    assert runner.attach_port(port) == 1
    await runner.bind([Endpoint.parse("127.0.0.1:0")])
    try:
        assert runner.local_endpoints[1] == port.local
        assert len(runner.sockets) == 2
        remote = Endpoint.parse("192.0.2.7:3478")
        assert callable(port.receiver)
        port.receiver(b"hello", remote)
        assert core.seen == [(b"hello", remote, 1)]
        assert port.sent == [(b"echo hello", remote)]
        # A hop limit cannot be given to a port: dropped and counted.
        port.receiver(b"ttl:x", remote)
        assert port.sent == [(b"echo hello", remote)]
        assert runner.socket_errors == 1
        # The socket after the port is index 2 and still answers itself.
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        try:
            peer.sendto(b"ping", runner.local_endpoints[2].sockaddr())
            loop = asyncio.get_running_loop()
            data, source = await asyncio.wait_for(loop.sock_recvfrom(peer, 100), 5)
        finally:
            peer.close()
        assert data == b"echo ping"
        assert source == runner.local_endpoints[2].sockaddr()
        assert core.seen[-1][2] == 2
    finally:
        runner.close()
    # The port outlives the runner: what it receives later goes nowhere.
    assert callable(port.receiver)
    port.receiver(b"late", Endpoint.parse("192.0.2.7:1"))
    assert len(core.seen) == 3
    assert runner.ports == {}
