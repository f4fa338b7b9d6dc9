"""The UDP worker's inner parts on real loopback sockets: the datagram
batches (``recvmmsg``/``sendmmsg`` and the one-at-a-time fallback) and the
worker loop (``natkit.aio.stun_worker.serve``), which must keep every rule
of the server: RFC 5780 source changes, RESPONSE-PORT, 420, silence for
malformed input, counters."""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Iterator

import pytest
from stun_testlib import tlv, wire

from natkit.aio.mmsg import MMSG_SUPPORTED, REPLY_SLOT, open_batch
from natkit.aio.stun_worker import serve
from natkit.aio.stun_workers import bind_groups
from natkit.endpoint import Endpoint
from natkit.stun.attributes import ChangeRequest, Padding, ResponsePort
from natkit.stun.codec import binding_request, encode_message, parse_message
from natkit.stun.constants import ChangeFlags
from natkit.stun.fastpath import packed_peer
from natkit.stun.server import ServerConfig, StunServer, Transport

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="epoll and SO_REUSEPORT: Linux")

TID = bytes(range(12))


@pytest.fixture(params=[True, False], ids=["mmsg", "simple"])
def batched(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_linux_has_the_batched_calls() -> None:
    """Otherwise every "mmsg" test below would silently test the fallback."""
    assert MMSG_SUPPORTED


def _pair(family: int, host: str) -> tuple[socket.socket, list[socket.socket]]:
    server = socket.socket(family, socket.SOCK_DGRAM)
    server.bind((host, 0))
    server.setblocking(False)
    clients = []
    for _ in range(5):
        client = socket.socket(family, socket.SOCK_DGRAM)
        client.bind((host, 0))
        client.settimeout(5)
        clients.append(client)
    return server, clients


@pytest.mark.parametrize(
    ("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_batch_answers_each_sender_and_skips_the_unanswered(
    batched: bool, family: int, host: str
) -> None:
    server, clients = _pair(family, host)
    try:
        for number, client in enumerate(clients):
            client.sendto(b"request %d" % number, server.getsockname())
        batch = open_batch(server, batched=batched)
        seen: dict[bytes, bytes] = {}
        while len(seen) < len(clients):
            count = batch.receive()
            assert count > 0, "loopback datagrams are queued at once"
            for slot in range(count):
                data = batch.datagram(slot)
                seen[data] = batch.peer(slot)
                if int(data.split()[-1]) % 2 == 0:  # leave the odd ones unanswered
                    batch.reply(slot, b"answer to " + data)
            batch.send()
        for number, client in enumerate(clients):
            address = client.getsockname()
            local = Endpoint.from_sockaddr(address)
            assert seen[b"request %d" % number] == packed_peer(local)
        for number in (0, 2, 4):
            assert clients[number].recv(100) == b"answer to request %d" % number
        for number in (1, 3):
            clients[number].settimeout(0.05)
            with pytest.raises(TimeoutError):
                clients[number].recv(100)
    finally:
        for sock in (server, *clients):
            sock.close()


def test_batch_takes_whole_datagrams_and_long_replies(batched: bool) -> None:
    """A 60,000-byte datagram arrives whole (never truncated into something
    that parses); a reply longer than a reply slot still goes out."""
    server, clients = _pair(socket.AF_INET, "127.0.0.1")
    try:
        big = bytes(range(256)) * 234 + b"end!"
        clients[0].sendto(big, server.getsockname())
        batch = open_batch(server, batched=batched)
        assert batch.receive() == 1
        assert batch.datagram(0) == big
        batch.reply(0, big[: REPLY_SLOT + 500])
        batch.send()
        assert clients[0].recv(70000) == big[: REPLY_SLOT + 500]
    finally:
        for sock in (server, *clients):
            sock.close()


# --- the worker loop -----------------------------------------------------------


@pytest.fixture
def rfc5780_worker(batched: bool) -> Iterator[tuple[ServerConfig, StunServer]]:
    """One worker loop in a thread on 127.0.0.1 and 127.0.0.2 x two ports."""
    groups, bound = _bind_rfc5780()
    config = ServerConfig(bound)
    sockets = [group[0] for group in groups]
    for sock in sockets:
        sock.setblocking(False)
    core = StunServer(config)
    stop_read, stop_write = os.pipe()
    thread = threading.Thread(
        target=serve, args=(core, sockets, (stop_read,)), kwargs={"batched": batched}
    )
    thread.start()
    try:
        yield config, core
    finally:
        os.write(stop_write, b"x")
        thread.join(10)
        assert not thread.is_alive()
        for sock in sockets:
            sock.close()
        os.close(stop_read)
        os.close(stop_write)


def _bind_rfc5780() -> tuple[list[list[socket.socket]], tuple[Endpoint, ...]]:
    for port in range(40000, 60000, 97):
        endpoints = [
            Endpoint.parse(f"{host}:{p}")
            for host in ("127.0.0.1", "127.0.0.2")
            for p in (port, port + 1)
        ]
        try:
            return bind_groups(endpoints, 1)
        except OSError:
            continue
    raise RuntimeError("no free pair of ports")


def _client() -> socket.socket:
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(5)
    return client


def test_worker_loop_answers_like_the_core(rfc5780_worker: tuple[ServerConfig, StunServer]) -> None:
    config, _ = rfc5780_worker
    reference = StunServer(config)
    client = _client()
    me = Endpoint.from_sockaddr(client.getsockname())
    try:
        for socket_index, request in [
            (0, encode_message(binding_request(TID))),
            (3, encode_message(binding_request(TID), fingerprint=True)),
            (1, wire(0x0001, tlv(0x7FFF, b""))),  # unknown comprehension-required: 420
            (2, wire(0x0003)),  # Allocate: 400
        ]:
            client.sendto(request, config.sockets[socket_index].sockaddr())
            data, source = client.recvfrom(2048)
            expected = reference.handle(request, me, socket_index, Transport.UDP)
            assert expected is not None
            assert data == expected.data
            assert Endpoint.from_sockaddr(source) == config.sockets[socket_index]
    finally:
        client.close()


def test_worker_loop_changes_source_and_destination(
    rfc5780_worker: tuple[ServerConfig, StunServer],
) -> None:
    config, _ = rfc5780_worker
    client, elsewhere = _client(), _client()
    try:
        change = binding_request(
            TID, ChangeRequest(ChangeFlags.CHANGE_IP | ChangeFlags.CHANGE_PORT)
        )
        client.sendto(encode_message(change), config.sockets[0].sockaddr())
        data, source = client.recvfrom(2048)
        assert Endpoint.from_sockaddr(source) == config.sockets[3]
        assert parse_message(data).response_origin == config.sockets[3]

        redirect = binding_request(TID, ResponsePort(elsewhere.getsockname()[1]))
        client.sendto(encode_message(redirect), config.sockets[0].sockaddr())
        data, _ = elsewhere.recvfrom(2048)
        assert parse_message(data).transaction_id == TID

        padded = binding_request(TID, Padding(b"\x00" * 3000))
        client.sendto(encode_message(padded), config.sockets[1].sockaddr())
        data, _ = client.recvfrom(8192)
        assert len(data) > REPLY_SLOT
        assert len(data) <= len(encode_message(padded)) + 4 * 12
    finally:
        client.close()
        elsewhere.close()


def test_worker_loop_never_answers_malformed_and_counts_it(
    rfc5780_worker: tuple[ServerConfig, StunServer],
) -> None:
    config, core = rfc5780_worker
    client = _client()
    try:
        junk = [b"", b"\x00\x01", wire(0x0001, length=8), b"\xff" * 40, wire(0x0101)]
        for data in junk:
            client.sendto(data, config.sockets[0].sockaddr())
        # A request after the junk: its answer is the first thing to come back.
        client.sendto(encode_message(binding_request(TID)), config.sockets[0].sockaddr())
        data, _ = client.recvfrom(2048)
        assert parse_message(data).transaction_id == TID
        client.settimeout(0.1)
        with pytest.raises(TimeoutError):
            client.recvfrom(2048)
    finally:
        client.close()
    assert core.counters.received == len(junk) + 1
    assert sum(core.counters.malformed.values()) == len(junk) - 1
    assert core.counters.ignored_not_request == 1
    assert core.counters.answered == 1
