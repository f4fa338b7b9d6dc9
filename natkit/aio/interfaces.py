"""This host's side of the network: interface addresses, the source address
the kernel picks, and the UDP sockets a gathering runs on.

The I/O the pure :mod:`natkit.gather.host` is fed from
(``ifaddr`` lists the addresses), and the source-address question every
driver asks before binding (:func:`route_source`: a connected UDP socket
sends nothing, yet the kernel fills in the address it would send from).
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from natkit.endpoint import Endpoint, IPAddress
from natkit.gather.host import InterfaceAddress, has_routable_ipv6

#: Any port does for asking the kernel for a route (nothing is sent).
_ROUTE_PROBE_PORT = 3478


def list_interface_addresses() -> tuple[InterfaceAddress, ...]:
    """Every address of every interface (``ifaddr``); link-local IPv6
    addresses carry their interface as scope."""
    # ifaddr (ctypes) costs ~50 ms to import: only gathering needs it.
    import ifaddr  # noqa: PLC0415

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
            tunnel = is_tunnel(adapter.name)
            found.append(InterfaceAddress(adapter.name, address, ip.network_prefix, tunnel))
    return tuple(found)


#: ``ARPHRD_NONE`` (linux/if_arp.h): a device without a link-layer header,
#: as WireGuard's and tun's are.
_ARPHRD_NONE = 65534


def is_tunnel(interface: str) -> bool:
    """Whether ``interface`` is a layer-3 tunnel (``/sys/class/net/IFACE/type``
    is ``ARPHRD_NONE``); ``False`` where that cannot be read."""
    try:
        with open(f"/sys/class/net/{interface}/type", encoding="ascii") as kind:
            return int(kind.read().strip()) == _ARPHRD_NONE
    except (OSError, ValueError):
        return False


#: Linux lists every IPv6 address here: hex address, ifindex, prefix length,
#: scope, flags, interface name.
_PROC_IF_INET6 = "/proc/net/if_inet6"


def ipv6_addresses_from_proc(path: str = _PROC_IF_INET6) -> tuple[InterfaceAddress, ...] | None:
    """IPv6 addresses from ``/proc/net/if_inet6``, or ``None`` where there is no such file."""
    try:
        with open(path, encoding="ascii") as listing:
            lines = listing.read().splitlines()
    except OSError:
        return None
    found: list[InterfaceAddress] = []
    for line in lines:
        fields = line.split()
        if len(fields) != 6:
            continue
        try:
            address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            found.append(InterfaceAddress(fields[5], address, int(fields[2], 16)))
        except ValueError:
            continue
    return tuple(found)


def has_routable_ipv6_here() -> bool:
    """Whether this host has an IPv6 address beyond loopback and link-local
    (:func:`has_routable_ipv6`), cheaply from ``/proc`` where it exists."""
    addresses = ipv6_addresses_from_proc()
    if addresses is None:
        addresses = list_interface_addresses()
    return has_routable_ipv6(addresses)


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
    "is_tunnel",
    "list_interface_addresses",
    "open_gathering_sockets",
    "route_source",
    "source_address",
]
