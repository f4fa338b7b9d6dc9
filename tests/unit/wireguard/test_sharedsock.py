"""SharedUdpPort's Python side on a fake raw socket: what it sends, what it
delivers, what it refuses. The kernel side (filter, raw sockets, NAT) is
proven in ``tests/lab/test_wireguard_lab.py``."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections import deque
from typing import Any

import pytest
from wireguard_testlib import ipv4_packet, stun_binding, udp_segment

from natkit.aio.sharedsock import SharedPortPermissionError, SharedUdpPort
from natkit.endpoint import Endpoint, Family
from natkit.errors import LocalProtocolError

PORT = 51820


class FakeRawSocket:
    """Enough of a socket: a pipe's fd for the loop, queued packets to read."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        self.incoming: deque[tuple[bytes, tuple[Any, ...]]] = deque()
        self.sent: list[tuple[bytes, tuple[Any, ...]]] = []
        self.send_error: OSError | None = None
        self.closed = False

    def fileno(self) -> int:
        return -1 if self.closed else self._read_fd

    def deliver(self, data: bytes, address: tuple[Any, ...]) -> None:
        self.incoming.append((data, address))
        os.write(self._write_fd, b"x")

    def recvfrom(self, size: int) -> tuple[bytes, tuple[Any, ...]]:
        if not self.incoming:
            raise BlockingIOError
        os.read(self._read_fd, 1)
        return self.incoming.popleft()

    def sendto(self, data: bytes, address: tuple[Any, ...]) -> int:
        if self.send_error is not None:
            raise self.send_error
        self.sent.append((data, address))
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._read_fd)
            os.close(self._write_fd)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _port(family: Family = Family.IPV4) -> tuple[SharedUdpPort, FakeRawSocket, list[Any]]:
    fake = FakeRawSocket()
    got: list[tuple[bytes, Endpoint]] = []
    port = SharedUdpPort(
        fake,  # type: ignore[arg-type]
        PORT,
        family,
        asyncio.get_running_loop(),
        lambda data, remote: got.append((data, remote)),
    )
    return port, fake, got


async def test_send_writes_the_udp_header_with_the_shared_port() -> None:
    port, fake, _ = _port()
    port.send(b"check", Endpoint.parse("198.51.100.2:40000"))
    assert fake.sent == [(struct.pack("!HHHH", PORT, 40000, 13, 0) + b"check", ("198.51.100.2", 0))]
    assert port.local == Endpoint.parse("0.0.0.0:51820")
    with pytest.raises(LocalProtocolError, match="IPV4"):
        port.send(b"x", Endpoint.parse("[2001:db8::1]:1"))
    fake.send_error = OSError(101, "Network is unreachable")
    port.send(b"x", Endpoint.parse("198.51.100.2:40000"))
    assert (port.counters.sent, port.counters.send_errors) == (1, 1)
    port.close()
    port.close()
    assert fake.closed
    with pytest.raises(LocalProtocolError, match="closed"):
        port.send(b"x", Endpoint.parse("198.51.100.2:40000"))


async def test_receive_delivers_stun_to_the_port_and_refuses_the_rest() -> None:
    port, fake, got = _port()
    stun = stun_binding()
    server = ("203.0.113.10", 0)
    # What a filter without a port check would let through (tailscale#13140).
    fake.deliver(ipv4_packet(udp_segment(3478, PORT + 1, stun), source=server[0]), server)
    fake.deliver(ipv4_packet(udp_segment(3478, PORT, b"\x40" + stun[1:])), server)
    fake.deliver(b"\x45\x00", server)
    fake.deliver(ipv4_packet(udp_segment(3478, PORT, stun), source=server[0]), server)
    await _settle()
    assert got == [(stun, Endpoint.parse("203.0.113.10:3478"))]
    assert (port.counters.received, port.counters.rejected) == (1, 3)
    port.close()


async def test_receive_over_ipv6_takes_the_address_from_recvfrom() -> None:
    port, fake, got = _port(Family.IPV6)
    stun = stun_binding()
    fake.deliver(udp_segment(3478, PORT, stun, checksum=0xBEEF), ("2001:db8:1::20", 0, 0, 0))
    fake.deliver(udp_segment(3478, PORT, stun, checksum=0), ("2001:db8:1::20", 0, 0, 0))
    await _settle()
    assert got == [(stun, Endpoint.parse("[2001:db8:1::20]:3478"))]
    assert port.counters.rejected == 1
    assert port.local == Endpoint.parse("[::]:51820")
    port.send(b"x", Endpoint.parse("[2001:db8:1::20]:3478"))
    assert fake.sent[0][1] == ("2001:db8:1::20", 0)
    port.close()


async def test_open_without_raw_sockets_says_why() -> None:
    def refuse(family: int, kind: int, proto: int) -> socket.socket:
        raise PermissionError(1, "Operation not permitted")

    with pytest.raises(SharedPortPermissionError, match="CAP_NET_RAW"):
        SharedUdpPort.open(PORT, socket_factory=refuse)
