"""This host's side of the network: interface addresses, the source address
the kernel picks, and the UDP sockets a gathering runs on.

The I/O the pure :mod:`natkit.probe.candidates_host` is fed from
(``ifaddr`` lists the addresses), and the source-address question every
driver asks before binding (:func:`route_source`: a connected UDP socket
sends nothing, yet the kernel fills in the address it would send from).
"""

from __future__ import annotations

import errno
import ipaddress
import socket

import ifaddr

from natkit.endpoint import Endpoint, IPAddress
from natkit.probe.candidates_host import InterfaceAddress

#: Any port does for asking the kernel for a route (nothing is sent).
_ROUTE_PROBE_PORT = 3478


def list_interface_addresses() -> tuple[InterfaceAddress, ...]:
    """Every address of every interface (``ifaddr``); link-local IPv6
    addresses carry their interface as scope."""
    found: list[InterfaceAddress] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            address: IPAddress
            if isinstance(ip.ip, tuple):
                text = ip.ip[0]
                address = ipaddress.IPv6Address(text)
                if address.is_link_local:
                    address = ipaddress.IPv6Address(f"{text}%{adapter.name}")
            else:
                address = ipaddress.IPv4Address(ip.ip)
            found.append(InterfaceAddress(adapter.name, address, ip.network_prefix))
    return tuple(found)


def route_source(destination: Endpoint) -> str:
    """The source address the kernel picks towards ``destination``; raises
    ``OSError`` without a route."""
    family = socket.AF_INET if destination.address.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(destination.sockaddr())
        return str(probe.getsockname()[0])


def source_address(destination: IPAddress) -> IPAddress | None:
    """:func:`route_source` towards an address, ``None`` without a route."""
    try:
        return ipaddress.ip_address(route_source(Endpoint(destination, _ROUTE_PROBE_PORT)))
    except OSError:
        return None


def _bind_udp(family: socket.AddressFamily, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def open_gathering_sockets(port: int = 0) -> list[socket.socket]:
    """A UDP socket on ``0.0.0.0`` and one on ``::`` (IPv6 only), on
    ``port``, or on one free port for both (the IPv6 one takes another when
    that port is taken in IPv6). A family the kernel lacks is left out."""
    sockets: list[socket.socket] = []
    try:
        try:
            sockets.append(_bind_udp(socket.AF_INET, port))
        except OSError as exc:
            if exc.errno != errno.EAFNOSUPPORT:
                raise
        shared = port or (sockets[0].getsockname()[1] if sockets else 0)
        try:
            sockets.append(_bind_udp(socket.AF_INET6, shared))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE and not port:
                sockets.append(_bind_udp(socket.AF_INET6, 0))
            elif exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL) or not sockets:
                raise
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


__all__ = [
    "list_interface_addresses",
    "open_gathering_sockets",
    "route_source",
    "source_address",
]
