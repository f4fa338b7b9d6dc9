"""ICMP errors from a UDP socket's error queue (Linux ``IP_RECVERR``).

RFC 1122 §4.1.3.3 has UDP pass ICMP errors up to the application; Linux
does so for an unconnected UDP socket only with ``IP_RECVERR``. With it,
the kernel queues one entry per error on the socket's *error queue*:
``recvmsg(MSG_ERRQUEUE)`` returns the quoted payload of the datagram the
error is about, its original destination as the address, and one control
message holding ``struct sock_extended_err`` (``linux/errqueue.h``)::

    u32 ee_errno; u8 ee_origin, ee_type, ee_code, ee_pad; u32 ee_info, ee_data;

followed by the offender's ``sockaddr_in``/``sockaddr_in6``
(``SO_EE_OFFENDER``). No raw socket and no privilege is needed, and
``IPV6_RECVERR`` does the same for IPv6.

Two kernel facts shape the driver (checked on Linux 6.18):

* a non-empty error queue makes the socket poll ``POLLERR`` and nothing else;
  epoll always reports that, and asyncio's selector turns it into a read
  event, so the transport's reader runs, its ``recvfrom`` raises the pending
  error, and the protocol's ``error_received`` is the place to drain the
  queue. An undrained queue keeps ``POLLERR`` up: a busy loop.
* each error also sets the socket's pending error (``sk_err``), which the
  *next* ``sendto`` returns instead of sending. A driver that meets such an
  error drains the queue and sends again.

:func:`parse_error` is pure (bytes in, :class:`IcmpError` or ``None`` out) so
odd queue content is a ``None``, never an exception.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket as socket_module
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from natkit.endpoint import Endpoint, IPAddress
from natkit.sansio import IcmpError, icmp_kind

#: The error queue and per-datagram IP_TTL are Linux's; elsewhere the driver
#: gets no ICMP errors and sets a datagram's TTL around its one send.
ERRQUEUE_SUPPORTED = sys.platform == "linux"

# Linux constants; Python 3.11's socket module lacks the RECVERR ones.
SOL_IP = 0
SOL_IPV6 = 41
IP_TTL = 2
IP_RECVERR = 11
IPV6_RECVERR = 25
IPV6_HOPLIMIT = 52
MSG_ERRQUEUE = 0x2000

#: ``ee_origin`` values: where the error came from.
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3

_EXTENDED_ERR = struct.Struct("=IBBBBII")
_SOCKADDR_IN_LENGTH = 16
_SOCKADDR_IN6_LENGTH = 28
#: Room for the control message: header, sock_extended_err and a sockaddr_in6.
ANCILLARY_SIZE = socket_module.CMSG_SPACE(_EXTENDED_ERR.size + _SOCKADDR_IN6_LENGTH)
#: Quoted payload to keep: a STUN header (20 bytes) and then some.
QUOTE_SIZE = 576

Ancillary = tuple[int, int, bytes]


def parse_error(quoted: bytes, ancillary: Iterable[Ancillary], address: object) -> IcmpError | None:
    """One error-queue entry, as ``socket.recvmsg`` returned it, to an
    :class:`IcmpError`; ``None`` for anything that is not an ICMP error about
    a UDP datagram (local errors, timestamps, truncated or odd content)."""
    try:
        destination = Endpoint.from_sockaddr(address)  # type: ignore[arg-type]
    except (TypeError, ValueError, IndexError):
        return None
    for level, kind, data in ancillary:
        if (level, kind) not in ((SOL_IP, IP_RECVERR), (SOL_IPV6, IPV6_RECVERR)):
            continue
        if len(data) < _EXTENDED_ERR.size:
            return None
        _errno, origin, icmp_type, icmp_code, _pad, _info, _data = _EXTENDED_ERR.unpack_from(data)
        if origin == SO_EE_ORIGIN_ICMP:
            version = 4
        elif origin == SO_EE_ORIGIN_ICMP6:
            version = 6
        else:
            return None  # a local error (EMSGSIZE), a timestamp, ...
        return IcmpError(
            kind=icmp_kind(version, icmp_type, icmp_code),
            offender=parse_offender(data[_EXTENDED_ERR.size :]),
            destination=destination,
            icmp_type=icmp_type,
            icmp_code=icmp_code,
            quoted=bytes(quoted),
        )
    return None


def parse_offender(sockaddr: bytes) -> IPAddress | None:
    """The address in a ``sockaddr_in``/``sockaddr_in6`` (family in host byte order)."""
    if len(sockaddr) < 2:
        return None
    (family,) = struct.unpack_from("=H", sockaddr)
    if family == socket_module.AF_INET and len(sockaddr) >= _SOCKADDR_IN_LENGTH:
        return ipaddress.IPv4Address(sockaddr[4:8])
    if family == socket_module.AF_INET6 and len(sockaddr) >= _SOCKADDR_IN6_LENGTH:
        return ipaddress.IPv6Address(sockaddr[8:24])
    return None  # AF_UNSPEC: the kernel did not say


def errors_enabled(sock: socket_module.socket) -> bool:
    """Whether ``sock`` already queues ICMP errors."""
    if not ERRQUEUE_SUPPORTED:
        return False
    level, option = (
        (SOL_IPV6, IPV6_RECVERR) if sock.family == socket_module.AF_INET6 else (SOL_IP, IP_RECVERR)
    )
    try:
        return bool(sock.getsockopt(level, option))
    except OSError:
        return False


def enable_errors(sock: socket_module.socket, on: bool = True) -> bool:
    """Ask for (or stop) ICMP errors on ``sock``'s error queue; whether it
    worked. Turning it off also empties the queue (``ip_setsockopt``)."""
    if not ERRQUEUE_SUPPORTED:
        return False
    value = int(on)
    try:
        if sock.family == socket_module.AF_INET6:
            sock.setsockopt(SOL_IPV6, IPV6_RECVERR, value)
            # Also for IPv4-mapped traffic on a dual-stack socket; optional.
            with contextlib.suppress(OSError):
                sock.setsockopt(SOL_IP, IP_RECVERR, value)
        else:
            sock.setsockopt(SOL_IP, IP_RECVERR, value)
    except OSError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Drained:
    """What one :func:`read_errors` call found."""

    #: The ICMP errors, oldest first.
    errors: tuple[IcmpError, ...]
    #: Queue entries read (ICMP or not).
    entries: int
    #: The queue was seen empty; ``False`` after ``limit`` entries, or when
    #: reading failed for another reason than "nothing there".
    empty: bool


def read_errors(sock: socket_module.socket, limit: int = 64) -> Drained:
    """Drain up to ``limit`` entries of ``sock``'s error queue without blocking."""
    if not ERRQUEUE_SUPPORTED:
        return Drained((), 0, True)
    errors: list[IcmpError] = []
    entries = 0
    empty = False
    while entries < limit:
        try:
            quoted, ancillary, _flags, address = sock.recvmsg(
                QUOTE_SIZE, ANCILLARY_SIZE, MSG_ERRQUEUE
            )
        except BlockingIOError:
            empty = True
            break
        except OSError:
            break
        entries += 1
        error = parse_error(quoted, ancillary, address)
        if error is not None:
            errors.append(error)
    return Drained(tuple(errors), entries, empty)


def send_with_ttl(sock: socket_module.socket, data: bytes, remote: Endpoint, ttl: int) -> None:
    """Send one datagram with its own hop limit, atomically.

    On Linux the TTL rides along as ancillary data (``IP_TTL``, Linux >= 4.6;
    ``IPV6_HOPLIMIT``, RFC 3542 §6.3), so the socket's own setting never
    changes and nothing sent before or after, or buffered by asyncio, is
    affected. Elsewhere the socket option is set for this one synchronous
    send and put back. Raises like ``sendto``.
    """
    if not ERRQUEUE_SUPPORTED:
        _send_with_ttl_option(sock, data, remote, ttl)
        return
    if sock.family == socket_module.AF_INET6:
        control = [(SOL_IPV6, IPV6_HOPLIMIT, struct.pack("=i", ttl))]
    else:
        control = [(SOL_IP, IP_TTL, struct.pack("=i", ttl))]
    sock.sendmsg([data], control, 0, remote.sockaddr())


def _send_with_ttl_option(
    sock: socket_module.socket, data: bytes, remote: Endpoint, ttl: int
) -> None:
    if sock.family == socket_module.AF_INET6:
        level, option = socket_module.IPPROTO_IPV6, socket_module.IPV6_UNICAST_HOPS
    else:
        level, option = socket_module.IPPROTO_IP, socket_module.IP_TTL
    default = sock.getsockopt(level, option)
    sock.setsockopt(level, option, ttl)
    try:
        sock.sendto(data, remote.sockaddr())
    finally:
        sock.setsockopt(level, option, default)
