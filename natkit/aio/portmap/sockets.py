"""The sockets and system facts port mapping needs.

* :func:`resolve_gateway`: the PCP/NAT-PMP server endpoint, as given or
  from the kernel's IPv4 routing table (``/proc/net/route``, parsed by
  :mod:`natkit.portmap.route`; no ``netstat``).
* :func:`open_mapper_socket`: the one socket PCP, NAT-PMP and SSDP share,
  bound to the address PCP writes into its requests (the one the kernel
  would send from towards the gateway), on an ephemeral port.
* :func:`open_announcement_socket`: 224.0.0.1:5350, where a restarted
  gateway multicasts to every host on its LAN (RFC 6887 §14.1.3, RFC 6886
  §3.2.1), so mappings are re-created at once instead of at the next
  renewal, which may be an hour away. IPv4 only: ff02::1 is not listened on.
* :func:`is_local_address`: whether this host has an address (a journal
  entry from another network does not).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from pathlib import Path

from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError
from natkit.portmap.route import PROC_NET_ROUTE, DefaultRoute, default_gateway
from natkit.portmap.wire import ANNOUNCE_GROUP_V4, CLIENT_PORT, SERVER_PORT

#: UPnP Device Architecture 1.1 §1.3.2: a search stays on the link.
SSDP_MULTICAST_TTL = 2


def read_default_route(path: str | Path = PROC_NET_ROUTE) -> DefaultRoute | None:
    """The preferred IPv4 default route from the kernel, if any."""
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return default_gateway(text)


def resolve_gateway(
    gateway: str | IPAddress | Endpoint | None, route_table: str | Path = PROC_NET_ROUTE
) -> Endpoint:
    """The PCP/NAT-PMP server endpoint: as given (port 5351 unless stated),
    else the default gateway's."""
    if isinstance(gateway, Endpoint):
        return gateway
    if gateway is None:
        route = read_default_route(route_table)
        if route is None:
            raise LocalProtocolError(f"no IPv4 default route in {route_table}; name the gateway")
        return Endpoint(route.gateway, SERVER_PORT)
    if isinstance(gateway, str):
        try:
            return Endpoint.parse(gateway, SERVER_PORT)
        except ValueError as exc:
            raise LocalProtocolError(f"gateway {gateway!r}: {exc}") from None
    return Endpoint(gateway, SERVER_PORT)


def open_mapper_socket(local: IPAddress) -> socket.socket:
    """A non-blocking UDP socket on ``local``, any port; for IPv4 its
    multicast (the SSDP search) leaves by the interface of ``local`` with a
    TTL that keeps it on the link."""
    family = socket.AF_INET if local.version == 4 else socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((str(local), 0))
        if isinstance(local, ipaddress.IPv4Address):
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, local.packed)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, SSDP_MULTICAST_TTL)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def open_announcement_socket(local_address: ipaddress.IPv4Address) -> socket.socket:
    """A socket receiving gateway announcements on 224.0.0.1:5350.

    Bound to the group address itself, as RFC 6886 §3.2.1 asks, so unicast
    to port 5350 is not taken; SO_REUSEADDR and SO_REUSEPORT let every
    client on the host bind it too, and the kernel hands each of them a copy
    of a multicast datagram (two natkit listeners in one namespace both got
    miniupnpd's ANNOUNCE in the lab). The explicit join on the interface of
    ``local_address`` is belt and braces: the kernel joins 224.0.0.1 on every
    interface by itself, which suffices by default, but a socket with
    IP_MULTICAST_ALL off receives only the groups it joined.

    Raises ``OSError``, e.g. EADDRINUSE when another program holds port 5350
    without SO_REUSEADDR.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((str(ANNOUNCE_GROUP_V4), CLIENT_PORT))
        membership = ANNOUNCE_GROUP_V4.packed + local_address.packed
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def announcement_listener(
    local: IPAddress, wanted: bool
) -> tuple[socket.socket | None, str | None]:
    """The announcement socket when ``wanted`` and possible, else why not.

    Announcements only speed recovery up (renewals still find a restart),
    so a failure is reported rather than raised: a listener that silently
    failed would look just like a gateway that never announces.
    """
    if not wanted or not isinstance(local, ipaddress.IPv4Address):
        return None, None
    try:
        return open_announcement_socket(local), None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return None, f"cannot listen on {ANNOUNCE_GROUP_V4}:{CLIENT_PORT}: {reason}"


def is_local_address(address: IPAddress) -> bool:
    """Whether ``address`` is one of this host's (binding to it does not
    fail with EADDRNOTAVAIL; any other failure does not tell, so counts as
    local)."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((str(address), 0))
        except OSError as exc:
            return exc.errno != errno.EADDRNOTAVAIL
    return True
