"""The asyncio driver's ICMP plumbing on loopback (no root, no namespace):
errors reach the core, a queued error never eats the next datagram, a core
without the hook is unaffected, and a datagram's TTL is its own."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from natkit.aio import errqueue
from natkit.aio.driver import CoreRunner
from natkit.aio.errqueue import IP_TTL, SOL_IP, errors_enabled
from natkit.endpoint import Endpoint
from natkit.sansio import Datagram, IcmpError, IcmpKind

IP_RECVTTL = 12


class Sender:
    """A core that sends what it is told and keeps what comes back."""

    def __init__(self) -> None:
        self.outbox: list[Datagram] = []
        self.received: list[tuple[bytes, Endpoint, int]] = []

    def send(self, *datagrams: Datagram) -> None:
        self.outbox.extend(datagrams)

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        self.received.append((data, remote, socket))

    def handle_timer(self, now: float) -> None:
        pass

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self.outbox = self.outbox, []
        return out

    def get_timer(self) -> float | None:
        return None

    def next_event(self) -> None:
        return None


class IcmpSender(Sender):
    def __init__(self) -> None:
        super().__init__()
        self.errors: list[tuple[IcmpError, int]] = []

    def receive_icmp_error(self, error: IcmpError, socket: int, now: float) -> None:
        self.errors.append((error, socket))


def closed_port(host: str = "127.0.0.1") -> Endpoint:
    """A loopback port nobody listens on (bound, then closed)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return Endpoint.from_sockaddr(probe.getsockname())


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback UDP socket reporting each datagram's IP TTL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(SOL_IP, IP_RECVTTL, 1)
    sock.settimeout(1.0)
    yield sock
    sock.close()


def received_ttl(sock: socket.socket) -> tuple[bytes, int]:
    data, ancillary, _flags, _address = sock.recvmsg(2048, socket.CMSG_SPACE(4))
    for level, kind, value in ancillary:
        if (level, kind) == (SOL_IP, IP_TTL):
            return data, struct.unpack("=i", value[:4])[0]
    raise AssertionError(f"no TTL in {ancillary}")


async def until(condition: object, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_port_unreachable_from_loopback_reaches_the_core(host: str) -> None:
    core = IcmpSender()
    runner = CoreRunner(core, lambda event: None)
    await runner.bind([Endpoint.of(host, 0)])
    try:
        target = closed_port(host)
        core.send(Datagram(b"\x00\x01\x00\x00stun-ish", target))
        runner.transmit()
        await until(lambda: core.errors)
        error, index = core.errors[0]
        assert index == 0
        assert error.kind is IcmpKind.PORT_UNREACHABLE
        assert error.destination == target
        assert error.offender == ipaddress.ip_address(host)
        assert error.quoted == b"\x00\x01\x00\x00stun-ish"
        assert runner.icmp_errors == 1
        assert runner.socket_errors == 0
    finally:
        runner.close()


async def test_a_queued_error_does_not_eat_the_next_datagram(listener: socket.socket) -> None:
    """Linux fails the send after an ICMP error with that error (with
    IP_RECVERR on); the runner reads the queue and sends again."""
    core = IcmpSender()
    runner = CoreRunner(core, lambda event: None)
    await runner.bind([Endpoint.of("127.0.0.1", 0)])
    try:
        core.send(Datagram(b"refused", closed_port()))
        runner.transmit()
        time.sleep(0.05)  # the error is queued before the loop can read it
        core.send(Datagram(b"after", Endpoint.from_sockaddr(listener.getsockname())))
        runner.transmit()
        assert listener.recv(100) == b"after"
        await until(lambda: core.errors)
        assert runner.socket_errors == 0
    finally:
        runner.close()


async def test_a_core_without_the_hook_only_has_errors_counted() -> None:
    core = Sender()
    runner = CoreRunner(core, lambda event: None)
    await runner.bind([Endpoint.of("127.0.0.1", 0)])
    try:
        core.send(*(Datagram(b"x", closed_port()) for _ in range(3)))
        runner.transmit()
        await until(lambda: runner.icmp_errors == 3)
        # The queue is drained: POLLERR is down and the loop idles.
        started = time.process_time()
        await asyncio.sleep(0.2)
        assert time.process_time() - started < 0.1
    finally:
        runner.close()


async def test_each_datagram_carries_its_own_ttl(listener: socket.socket) -> None:
    core = Sender()
    runner = CoreRunner(core, lambda event: None)
    await runner.bind([Endpoint.of("127.0.0.1", 0)])
    target = Endpoint.from_sockaddr(listener.getsockname())
    try:
        core.send(
            Datagram(b"one", target, ttl=1),
            Datagram(b"default", target),
            Datagram(b"three", target, ttl=3),
        )
        runner.transmit()
        got = [received_ttl(listener) for _ in range(3)]
        assert got[0] == (b"one", 1)
        assert got[1][0] == b"default"
        assert got[1][1] > 3  # the socket's default, untouched
        assert got[2] == (b"three", 3)
    finally:
        runner.close()


async def test_close_hands_back_a_kept_socket_as_it_came() -> None:
    mine = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    mine.bind(("127.0.0.1", 0))
    mine.setblocking(False)
    lent = mine.dup()
    try:
        runner = CoreRunner(Sender(), lambda event: None)
        await runner.attach([lent])
        assert errors_enabled(mine)  # the same socket, seen through the caller's fd
        runner.close()
        assert not errors_enabled(mine)
    finally:
        mine.close()


def test_without_ancillary_ttl_the_option_is_set_for_one_send(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback for kernels without IP_TTL as ancillary data."""
    monkeypatch.setattr(errqueue, "ERRQUEUE_SUPPORTED", False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        default = sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL)
        target = Endpoint.from_sockaddr(listener.getsockname())
        errqueue.send_with_ttl(sock, b"two", target, 2)
        assert received_ttl(listener) == (b"two", 2)
        assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == default
        assert not errqueue.enable_errors(sock)
        assert errqueue.read_errors(sock).empty


def test_a_ttl_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match=r"ttl must be in 1\.\.255"):
        Datagram(b"", Endpoint.parse("192.0.2.1:1"), ttl=0)
