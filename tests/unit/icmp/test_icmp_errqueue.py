"""The error-queue parser (bytes of ``struct sock_extended_err`` and the
offender's sockaddr, as Linux's ``recvmsg(MSG_ERRQUEUE)`` hands them over),
and the ICMP type/code table it relies on."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest

from natkit.aio.errqueue import (
    IP_RECVERR,
    IPV6_RECVERR,
    SO_EE_ORIGIN_ICMP,
    SO_EE_ORIGIN_ICMP6,
    SOL_IP,
    SOL_IPV6,
    parse_error,
    parse_offender,
)
from natkit.endpoint import Endpoint
from natkit.sansio import IcmpError, IcmpKind, icmp_kind

SO_EE_ORIGIN_LOCAL = 1
ECONNREFUSED, EHOSTUNREACH = 111, 113
STUN_REQUEST = bytes.fromhex("0001000021124a42") + b"\x07" * 12


def extended_err(errno: int, origin: int, icmp_type: int, icmp_code: int) -> bytes:
    """``struct sock_extended_err`` in host byte order (16 bytes)."""
    return struct.pack("=IBBBBII", errno, origin, icmp_type, icmp_code, 0, 0, 0)


def sockaddr_in(address: str, port: int = 0) -> bytes:
    return (
        struct.pack("=H", socket.AF_INET)
        + struct.pack("!H", port)
        + ipaddress.IPv4Address(address).packed
        + bytes(8)
    )


def sockaddr_in6(address: str, port: int = 0) -> bytes:
    return (
        struct.pack("=H", socket.AF_INET6)
        + struct.pack("!HI", port, 0)
        + ipaddress.IPv6Address(address).packed
        + struct.pack("=I", 0)
    )


def test_time_exceeded_from_a_router() -> None:
    # What the lab's client gets for a TTL-2 Binding: the carrier NAT's inside address.
    data = extended_err(EHOSTUNREACH, SO_EE_ORIGIN_ICMP, 11, 0) + sockaddr_in("100.64.0.1")
    error = parse_error(STUN_REQUEST, [(SOL_IP, IP_RECVERR, data)], ("203.0.113.10", 3478))
    assert error == IcmpError(
        kind=IcmpKind.TIME_EXCEEDED,
        offender=ipaddress.IPv4Address("100.64.0.1"),
        destination=Endpoint.parse("203.0.113.10:3478"),
        icmp_type=11,
        icmp_code=0,
        quoted=STUN_REQUEST,
    )


def test_the_exact_bytes_linux_gave_for_a_loopback_port_unreachable() -> None:
    # Captured on Linux 6.18: sendto 127.0.0.1:<closed>, then recvmsg(MSG_ERRQUEUE).
    data = bytes.fromhex("6f000000020303000000000000000000020000007f0000010000000000000000")
    error = parse_error(b"hello", [(SOL_IP, IP_RECVERR, data)], ("127.0.0.1", 38531))
    assert error is not None
    assert error.kind is IcmpKind.PORT_UNREACHABLE
    assert error.offender == ipaddress.IPv4Address("127.0.0.1")
    assert error.destination == Endpoint.parse("127.0.0.1:38531")
    assert error.quoted == b"hello"


def test_icmpv6_port_unreachable() -> None:
    data = extended_err(ECONNREFUSED, SO_EE_ORIGIN_ICMP6, 1, 4) + sockaddr_in6("2001:db8::1")
    error = parse_error(b"", [(SOL_IPV6, IPV6_RECVERR, data)], ("2001:db8::99", 3478, 0, 0))
    assert error is not None
    assert error.kind is IcmpKind.PORT_UNREACHABLE
    assert error.offender == ipaddress.IPv6Address("2001:db8::1")
    assert error.destination == Endpoint.parse("[2001:db8::99]:3478")
    assert error.quoted == b""  # an RFC 792 router quoting only the UDP header


def test_an_unknown_offender_family_gives_no_offender() -> None:
    data = extended_err(EHOSTUNREACH, SO_EE_ORIGIN_ICMP, 3, 13) + bytes(16)  # AF_UNSPEC
    error = parse_error(b"", [(SOL_IP, IP_RECVERR, data)], ("203.0.113.10", 3478))
    assert error is not None
    assert error.kind is IcmpKind.ADMIN_PROHIBITED
    assert error.offender is None


@pytest.mark.parametrize(
    ("ancillary", "address"),
    [
        ([], ("203.0.113.10", 3478)),  # no control message at all
        ([(SOL_IP, IP_RECVERR, b"\x00" * 7)], ("203.0.113.10", 3478)),  # truncated
        # A local error (EMSGSIZE from path MTU), not ICMP.
        ([(SOL_IP, IP_RECVERR, extended_err(90, SO_EE_ORIGIN_LOCAL, 0, 0))], ("1.2.3.4", 1)),
        ([(SOL_IP, 99, extended_err(111, SO_EE_ORIGIN_ICMP, 3, 3))], ("1.2.3.4", 1)),
        ([(SOL_IP, IP_RECVERR, extended_err(111, SO_EE_ORIGIN_ICMP, 3, 3))], None),
        ([(SOL_IP, IP_RECVERR, extended_err(111, SO_EE_ORIGIN_ICMP, 3, 3))], ("junk", 1)),
        ([(SOL_IP, IP_RECVERR, extended_err(111, SO_EE_ORIGIN_ICMP, 3, 3))], ("1.2.3.4",)),
    ],
)
def test_odd_queue_content_is_none_never_an_exception(
    ancillary: list[tuple[int, int, bytes]], address: object
) -> None:
    assert parse_error(b"x", ancillary, address) is None


def test_truncated_offender_sockaddrs() -> None:
    assert parse_offender(b"") is None
    assert parse_offender(sockaddr_in("192.0.2.1")[:8]) is None
    assert parse_offender(sockaddr_in6("2001:db8::1")[:20]) is None
    assert parse_offender(sockaddr_in("192.0.2.1")) == ipaddress.IPv4Address("192.0.2.1")


@pytest.mark.parametrize(
    ("version", "icmp_type", "code", "kind"),
    [
        (4, 11, 0, IcmpKind.TIME_EXCEEDED),
        (4, 11, 1, IcmpKind.OTHER),  # fragment reassembly time exceeded
        (4, 3, 0, IcmpKind.NET_UNREACHABLE),
        (4, 3, 1, IcmpKind.HOST_UNREACHABLE),
        (4, 3, 3, IcmpKind.PORT_UNREACHABLE),
        (4, 3, 4, IcmpKind.OTHER),  # fragmentation needed
        (4, 3, 13, IcmpKind.ADMIN_PROHIBITED),  # RFC 1812 §5.2.7.1
        (4, 12, 0, IcmpKind.OTHER),  # parameter problem
        (6, 3, 0, IcmpKind.TIME_EXCEEDED),
        (6, 1, 0, IcmpKind.NET_UNREACHABLE),
        (6, 1, 1, IcmpKind.ADMIN_PROHIBITED),
        (6, 1, 3, IcmpKind.HOST_UNREACHABLE),
        (6, 1, 4, IcmpKind.PORT_UNREACHABLE),
        (6, 2, 0, IcmpKind.OTHER),  # packet too big
    ],
)
def test_icmp_kind_table(version: int, icmp_type: int, code: int, kind: IcmpKind) -> None:
    assert icmp_kind(version, icmp_type, code) is kind
