"""Datagrams in batches: Linux ``recvmmsg(2)`` and ``sendmmsg(2)``.

A STUN answer costs two system calls when sent one by one (``recvfrom`` and
``sendto``); for a server that only reflects addresses those calls are most
of the work. ``recvmmsg`` fills up to :data:`BATCH` slots in one call and
``sendmmsg`` sends every reply of the batch in one, each reply addressed to
the ``sockaddr`` its request came from (the kernel's own bytes, so even an
IPv6 scope survives). Python's :mod:`socket` has neither call, so they are
reached through :mod:`ctypes` (see ``docs/dependencies.md``).

Each slot holds 64 KiB, a whole UDP datagram: a request is never truncated,
so the server sees exactly what an unbatched ``recvfrom`` would have given
it. The slots live in an anonymous ``mmap``, whose pages the kernel only
backs once a datagram is written into them.

:func:`open_batch` returns :class:`MmsgBatch` where the C library has the
calls, else :class:`SimpleBatch` (``recvfrom``/``sendto``, one datagram per
call) with the same interface.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import socket as socket_module
import struct
import sys
from collections.abc import Callable
from typing import Any, Protocol

#: Datagrams per system call. Beyond ~64 the gain is lost in cache misses.
BATCH = 64
#: The largest UDP payload (IPv6 without jumbograms) fits a slot.
SLOT = 65536
#: A reply longer than this is sent on its own with ``sendto``.
REPLY_SLOT = 2048

_MSG_DONTWAIT = 0x40
_SOCKADDR_SLOT = 32  # sizeof(struct sockaddr_in6) is 28
_RETRY = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR})


class DatagramBatch(Protocol):
    """One socket's receive-then-reply cycle."""

    #: Most datagrams one :meth:`receive` returns.
    capacity: int
    #: Replies not sent, and receive calls that failed: for the server's log.
    send_errors: int
    receive_errors: int

    def receive(self) -> int:
        """Read what is queued (up to :data:`BATCH`, never blocking): how many."""
        ...

    def datagram(self, index: int) -> bytes:
        """Payload of received datagram ``index``."""
        ...

    def peer(self, index: int) -> bytes:
        """Its sender: port and address in network order (6 or 18 bytes)."""
        ...

    def reply(self, index: int, data: bytes) -> None:
        """Queue ``data`` for the sender of datagram ``index``."""
        ...

    def send(self) -> None:
        """Send the queued replies."""
        ...


class _IoVec(ctypes.Structure):
    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


class _MsgHdr(ctypes.Structure):
    _fields_ = (
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    )


class _MMsgHdr(ctypes.Structure):
    _fields_ = (("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint))


_MMSG_SIZE = ctypes.sizeof(_MMsgHdr)
_IOVEC_SIZE = ctypes.sizeof(_IoVec)
#: One mmsghdr seen as bytes: only its msg_len matters after recvmmsg.
_MSG_LEN = struct.Struct(f"{_MMsgHdr.msg_len.offset}xI{_MMSG_SIZE - _MMsgHdr.msg_len.offset - 4}x")
_IOV_LEN = struct.Struct("N")  # size_t
_IOV_LEN_OFFSET = _IoVec.iov_len.offset


def _libc_calls() -> tuple[Callable[..., int], Callable[..., int]] | None:
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        recvmmsg, sendmmsg = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recvmmsg.argtypes = (
        ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p,
    )  # fmt: skip
    recvmmsg.restype = ctypes.c_int
    sendmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
    sendmmsg.restype = ctypes.c_int
    return recvmmsg, sendmmsg


_CALLS = _libc_calls()
#: Whether this platform batches (Linux with a C library that has the calls).
MMSG_SUPPORTED = _CALLS is not None


class MmsgBatch:
    """:class:`DatagramBatch` over ``recvmmsg``/``sendmmsg``."""

    def __init__(self, sock: socket_module.socket, size: int = BATCH) -> None:
        if _CALLS is None:
            raise OSError(errno.ENOSYS, "recvmmsg/sendmmsg are not available")
        self._recvmmsg, self._sendmmsg = _CALLS
        self._sock = sock
        self._size = size
        self.capacity = size
        self.send_errors = 0
        self.receive_errors = 0
        self._ipv4 = sock.family == socket_module.AF_INET
        namelen = 16 if self._ipv4 else 28
        # Receive slots (mmap: zero pages until written), reply slots, sockaddrs.
        self._in = mmap.mmap(-1, size * SLOT)
        self._out = mmap.mmap(-1, size * REPLY_SLOT)
        self._names = mmap.mmap(-1, size * _SOCKADDR_SLOT)
        in_base = ctypes.addressof(ctypes.c_char.from_buffer(self._in))
        out_base = ctypes.addressof(ctypes.c_char.from_buffer(self._out))
        names_base = ctypes.addressof(ctypes.c_char.from_buffer(self._names))
        self._in_iov = (_IoVec * size)()
        self._out_iov = (_IoVec * size)()
        self._in_msgs = (_MMsgHdr * size)()
        self._out_msgs = (_MMsgHdr * size)()
        self._templates: list[bytes] = []
        for i in range(size):
            self._in_iov[i].iov_base = in_base + i * SLOT
            self._in_iov[i].iov_len = SLOT
            self._out_iov[i].iov_base = out_base + i * REPLY_SLOT
            header = self._in_msgs[i].msg_hdr
            header.msg_name = names_base + i * _SOCKADDR_SLOT
            header.msg_namelen = namelen
            header.msg_iov = ctypes.addressof(self._in_iov[i])
            header.msg_iovlen = 1
            # The reply to slot i: to slot i's sender, from reply slot i.
            template = _MMsgHdr()
            template.msg_hdr.msg_name = names_base + i * _SOCKADDR_SLOT
            template.msg_hdr.msg_namelen = namelen
            template.msg_hdr.msg_iov = ctypes.addressof(self._out_iov[i])
            template.msg_hdr.msg_iovlen = 1
            self._templates.append(bytes(template))
        self._in_view = memoryview(self._in_msgs).cast("B")
        self._out_view = memoryview(self._out_msgs).cast("B")
        self._out_iov_view = memoryview(self._out_iov).cast("B")
        self._lengths: list[int] = []
        self._queued = 0

    def receive(self) -> int:
        received = self._recvmmsg(
            self._sock.fileno(), self._in_msgs, self._size, _MSG_DONTWAIT, None
        )
        if received <= 0:
            self._lengths = []
            if received < 0 and ctypes.get_errno() not in _RETRY:
                # An error the socket reports once (e.g. a pending ICMP
                # error): nothing was received, the next call reads on.
                self.receive_errors += 1
            return 0
        view = self._in_view[: received * _MMSG_SIZE]
        self._lengths = [length for (length,) in _MSG_LEN.iter_unpack(view)]
        return received

    def datagram(self, index: int) -> bytes:
        start = index * SLOT
        return self._in[start : start + self._lengths[index]]

    def peer(self, index: int) -> bytes:
        base = index * _SOCKADDR_SLOT
        names = self._names
        if self._ipv4:  # sockaddr_in: family, port, address
            return names[base + 2 : base + 8]
        # sockaddr_in6: family, port, flow information, address, scope
        return names[base + 2 : base + 4] + names[base + 8 : base + 24]

    def reply(self, index: int, data: bytes) -> None:
        if len(data) > REPLY_SLOT:
            self._send_alone(index, data)
            return
        start = index * REPLY_SLOT
        self._out[start : start + len(data)] = data
        _IOV_LEN.pack_into(self._out_iov_view, index * _IOVEC_SIZE + _IOV_LEN_OFFSET, len(data))
        position = self._queued * _MMSG_SIZE
        self._out_view[position : position + _MMSG_SIZE] = self._templates[index]
        self._queued += 1

    def send(self) -> None:
        fd = self._sock.fileno()
        done, queued = 0, self._queued
        self._queued = 0
        while done < queued:
            sent = self._sendmmsg(
                fd, ctypes.byref(self._out_msgs, done * _MMSG_SIZE), queued - done, 0
            )
            if sent > 0:
                done += sent
            elif ctypes.get_errno() == errno.EINTR:
                continue
            else:
                # The first unsent reply failed (a full buffer, an unreachable
                # peer): drop it as UDP would and send the rest.
                self.send_errors += 1
                done += 1

    def _send_alone(self, index: int, data: bytes) -> None:
        base = index * _SOCKADDR_SLOT
        namelen = self._in_msgs[index].msg_hdr.msg_namelen
        sockaddr = self._names[base : base + namelen]
        address = _sockaddr_to_tuple(self._sock.family, sockaddr)
        try:
            self._sock.sendto(data, address)
        except OSError:
            self.send_errors += 1


def _sockaddr_to_tuple(family: int, sockaddr: bytes) -> tuple[str, int] | tuple[str, int, int, int]:
    port = int.from_bytes(sockaddr[2:4], "big")
    if family == socket_module.AF_INET:
        return socket_module.inet_ntop(family, sockaddr[4:8]), port
    flowinfo = int.from_bytes(sockaddr[4:8], "big")
    scope = int.from_bytes(sockaddr[24:28], sys.byteorder)
    return socket_module.inet_ntop(family, sockaddr[8:24]), port, flowinfo, scope


class SimpleBatch:
    """:class:`DatagramBatch` one datagram at a time (``recvfrom``/``sendto``)."""

    def __init__(self, sock: socket_module.socket) -> None:
        self._sock = sock
        self.capacity = 1
        self.send_errors = 0
        self.receive_errors = 0
        self._data = b""
        self._address: tuple[Any, ...] = ()

    def receive(self) -> int:
        try:
            self._data, self._address = self._sock.recvfrom(SLOT)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            self.receive_errors += 1  # a pending socket error, reported once
            return 0
        return 1

    def datagram(self, index: int) -> bytes:
        return self._data

    def peer(self, index: int) -> bytes:
        host: str = self._address[0]
        port: int = self._address[1]
        address = socket_module.inet_pton(self._sock.family, host.split("%", 1)[0])
        return port.to_bytes(2, "big") + address

    def reply(self, index: int, data: bytes) -> None:
        try:
            self._sock.sendto(data, self._address)
        except OSError:
            self.send_errors += 1

    def send(self) -> None:
        """Replies went out in :meth:`reply`."""


def open_batch(sock: socket_module.socket, *, batched: bool = True) -> DatagramBatch:
    """The fastest :class:`DatagramBatch` for ``sock`` (a non-blocking UDP socket)."""
    if batched and MMSG_SUPPORTED:
        return MmsgBatch(sock)
    return SimpleBatch(sock)
