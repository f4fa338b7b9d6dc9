"""A "datagram port" on a UDP port another program owns (WireGuard's).

:class:`SharedUdpPort` sends UDP datagrams with the shared port as their
source through a raw ``IPPROTO_UDP`` socket, and receives, through the same
socket and a classic BPF filter, only the STUN datagrams addressed to that
port (:mod:`natkit.wireguard.rawudp` explains the filter and the headers).
The owner keeps its socket and its data path: WireGuard's packets never pass
through Python, and WireGuard drops the STUN copies it also receives
(wireguard-go logs them as "unknown type").

Needs Linux and CAP_NET_RAW (root); without it :meth:`SharedUdpPort.open`
raises :class:`SharedPortPermissionError`. One port serves one address
family, as one UDP socket does: a dual-stack WireGuard port is two of them.

The datagram port interface
---------------------------
What a driver needs from anything that carries a core's datagrams, a plain
UDP socket or this (:class:`DatagramPort`)::

    port.local                      # Endpoint: the local address and port
    port.send(data, remote)         # never raises for network errors (counted)
    port.set_receiver(fn)           # fn(data: bytes, remote: Endpoint) -> None
    port.close()                    # idempotent

A core runs on one through ``CoreRunner.attach_port(port)``
(:mod:`natkit.aio.driver`), which gives it the next socket index: the core
cannot tell it from a socket. A ``Datagram.ttl`` cannot be honoured there
(the runner counts and drops such a datagram), and no ICMP errors are
read: a raw socket's error queue is not the owner's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import socket
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from natkit.endpoint import Endpoint, Family
from natkit.errors import LocalProtocolError, NatkitError
from natkit.wireguard.rawudp import (
    UDP_CHECKSUM_OFFSET,
    RawDatagram,
    RawUdpError,
    accept_stun,
    build_udp,
    encode_filter,
    parse_ipv4_udp,
    parse_udp,
    stun_filter,
)

#: ``SOL_SOCKET`` options from ``asm-generic/socket.h`` (Python has no names for them).
SO_ATTACH_FILTER = 26
SO_LOCK_FILTER = 44
#: Receive buffer for one read: the largest IPv4 datagram.
_READ_SIZE = 0x10000
#: Datagrams read per wake-up before yielding to the loop.
_READ_BATCH = 64


def ready_datagrams(sock: socket.socket, closed: Callable[[], bool]) -> Iterator[tuple[bytes, Any]]:
    r"""What a non-blocking socket has ready, ``(data, address)``, up to
    :data:`_READ_BATCH` per wake-up (then the loop runs others); stops when
    nothing is left or ``closed()``. Other ``OSError``\ s reach the caller."""
    for _ in range(_READ_BATCH):
        if closed():
            return
        try:
            data, address = sock.recvfrom(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        yield data, address


Receiver = Callable[[bytes, Endpoint], None]
SocketFactory = Callable[[int, int, int], socket.socket]


class DatagramPort(Protocol):
    """Carries a core's datagrams: a local endpoint, send, a receive callback."""

    @property
    def local(self) -> Endpoint:
        """The local address and port datagrams leave from."""

    def send(self, data: bytes, remote: Endpoint) -> None:
        """Send one datagram; network errors are counted, not raised."""

    def set_receiver(self, receiver: Receiver) -> None:
        """Where received datagrams go: ``receiver(data, remote)``."""

    def close(self) -> None:
        """Stop receiving and release the socket; safe to call twice."""


class SharedPortError(NatkitError):
    """A shared port could not be opened."""


class SharedPortPermissionError(SharedPortError):
    """Raw sockets need CAP_NET_RAW."""


@dataclass(slots=True)
class SharedPortCounters:
    """What a shared port saw and did."""

    received: int = 0
    """STUN datagrams delivered to the receiver."""
    rejected: int = 0
    """Datagrams the kernel filter passed but the Python check refused
    (malformed, another port, not STUN): 0 when the filter does its job."""
    sent: int = 0
    send_errors: int = 0
    """Sends the kernel refused (unreachable, buffer full): UDP loses them anyway."""


class SharedUdpPort:
    """Send from, and receive STUN at, UDP port ``port`` owned by another program."""

    def __init__(
        self,
        sock: socket.socket,
        port: int,
        family: Family,
        loop: asyncio.AbstractEventLoop,
        receiver: Receiver | None,
    ) -> None:
        self._sock = sock
        self._port = port
        self._family = family
        self._loop = loop
        self._receiver = receiver
        self.counters = SharedPortCounters()
        self._closed = False
        loop.add_reader(sock.fileno(), self._on_readable)

    @classmethod
    def open(
        cls,
        port: int,
        receiver: Receiver | None = None,
        *,
        family: Family = Family.IPV4,
        loop: asyncio.AbstractEventLoop | None = None,
        socket_factory: SocketFactory | None = None,
    ) -> SharedUdpPort:
        """Open the raw socket, attach the filter, and start receiving.

        ``socket_factory(family, type, proto)`` makes the socket (default
        ``socket.socket``); the lab passes one that creates it inside a
        network namespace. Call from a running event loop (or pass ``loop``).
        """
        if sys.platform != "linux":
            raise LocalProtocolError("sharing a UDP port needs Linux (SO_ATTACH_FILTER)")
        loop = loop or asyncio.get_running_loop()
        sock = open_filtered_socket(port, family, socket_factory or socket.socket)
        try:
            return cls(sock, port, family, loop, receiver)
        except BaseException:
            sock.close()
            raise

    # ------------------------------------------------------ DatagramPort

    @property
    def local(self) -> Endpoint:
        """The wildcard address of the family, and the shared port."""
        return Endpoint.of("0.0.0.0" if self._family is Family.IPV4 else "::", self._port)

    @property
    def port(self) -> int:
        return self._port

    @property
    def closed(self) -> bool:
        return self._closed

    def set_receiver(self, receiver: Receiver) -> None:
        self._receiver = receiver

    def send(self, data: bytes, remote: Endpoint) -> None:
        """Send ``data`` to ``remote`` with the shared port as the UDP source port."""
        if self._closed:
            raise LocalProtocolError("send on a closed shared port")
        if remote.family is not self._family:
            raise LocalProtocolError(f"{remote} is not {self._family.name} like this port")
        segment = build_udp(self._port, remote, data)
        try:
            # A raw socket takes the protocol, or 0, as the port (Linux raw(7)).
            self._sock.sendto(segment, (str(remote.address), 0))
        except OSError:
            # BlockingIOError included: a raw socket does not queue in asyncio.
            self.counters.send_errors += 1
            return
        self.counters.sent += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    # -------------------------------------------------------- receiving

    def _on_readable(self) -> None:
        try:
            for data, address in ready_datagrams(self._sock, lambda: self._closed):
                datagram = self._parse(data, address)
                if datagram is None or not accept_stun(datagram, self._port):
                    self.counters.rejected += 1
                    continue
                self.counters.received += 1
                if self._receiver is not None:
                    self._receiver(datagram.payload, datagram.source)
        except OSError:
            self.counters.rejected += 1

    def _parse(self, data: bytes, address: tuple[object, ...]) -> RawDatagram | None:
        try:
            if self._family is Family.IPV4:
                return parse_ipv4_udp(data)
            return parse_udp(data, Endpoint.from_sockaddr((address[0], 0)).address)
        except (RawUdpError, ValueError):
            return None


def open_filtered_socket(port: int, family: Family, factory: SocketFactory) -> socket.socket:
    """A non-blocking raw UDP socket receiving only STUN to ``port``.

    Until the filter is attached the socket queues every UDP datagram of the
    host; those are drained right after attaching, so nothing unfiltered is
    ever read.
    """
    af = socket.AF_INET if family is Family.IPV4 else socket.AF_INET6
    try:
        sock = factory(af, socket.SOCK_RAW, socket.IPPROTO_UDP)
    except PermissionError:
        raise SharedPortPermissionError(
            "sharing a UDP port needs a raw socket: run as root or with CAP_NET_RAW"
        ) from None
    except OSError as exc:
        raise SharedPortError(f"no raw {family.name} UDP socket: {exc.strerror}") from None
    try:
        if family is Family.IPV6:
            # The kernel fills the checksum on send and checks it on receive
            # (RFC 3542 §3.1); IPv6 forbids UDP checksum 0 (RFC 8200 §8.1).
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_CHECKSUM, UDP_CHECKSUM_OFFSET)
        attach_filter(sock, encode_filter(stun_filter(port, 4 if family is Family.IPV4 else 6)))
        sock.setsockopt(socket.SOL_SOCKET, SO_LOCK_FILTER, 1)
        sock.setblocking(False)
        _drain(sock)
    except OSError as exc:
        sock.close()
        raise SharedPortError(f"cannot filter a raw {family.name} socket: {exc}") from None
    except BaseException:
        sock.close()
        raise
    return sock


def attach_filter(sock: socket.socket, program: bytes) -> None:
    """``SO_ATTACH_FILTER`` with a ``struct sock_fprog`` pointing at ``program``
    (the kernel copies it, so the buffer may go once the call returns)."""
    count = len(program) // 8
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HP", count, ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _drain(sock: socket.socket) -> None:
    # Bounded: what arrives after the filter is in place is fine to read later.
    for _ in range(4096):
        try:
            sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
