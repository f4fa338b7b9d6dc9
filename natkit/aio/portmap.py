"""Run the PCP and NAT-PMP cores on asyncio UDP sockets.

The gateway is given explicitly or taken from the kernel's IPv4 routing
table (``/proc/net/route``, parsed by :mod:`natkit.portmap.route`; no
``netstat``). The local address, which PCP writes into its requests, is
the one the kernel would send from towards the gateway. Requests leave
from an ephemeral port; optionally a second socket listens for the
gateway's announcements on 224.0.0.1:5350 (:func:`open_announcement_socket`).
A restarted gateway multicasts them to every host on its LAN (RFC 6887
§14.1.3, RFC 6886 §3.2.1), so the cores re-create their mappings at once
instead of at the next renewal, which may be an hour away. IPv4 only: the
IPv6 group (ff02::1) is not listened on.

A :class:`MappingSession` owns one core and its sockets and queues the
core's events; :func:`open_mapping` builds one. The cores do all protocol
work; this module only reads ``loop.time()`` and moves bytes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
from pathlib import Path
from types import TracebackType

from natkit.aio.driver import CoreRunner, open_udp_sockets
from natkit.aio.interfaces import route_source
from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError, NatkitError
from natkit.portmap.events import (
    MappingDeleted,
    MappingFailed,
    MappingGranted,
    MappingRenewed,
    PortmapEvent,
)
from natkit.portmap.lease import LeaseClient
from natkit.portmap.mapping import Mapping, MappingProtocol, TransportProtocol
from natkit.portmap.pcp_client import PcpClient, PcpConfig
from natkit.portmap.pmp_client import PmpClient, PmpConfig
from natkit.portmap.route import PROC_NET_ROUTE, DefaultRoute, default_gateway
from natkit.portmap.wire import ANNOUNCE_GROUP_V4, CLIENT_PORT, SERVER_PORT


class PortMappingError(NatkitError):
    """The gateway refused the mapping, or never answered."""

    def __init__(self, event: MappingFailed) -> None:
        self.event = event
        detail = f" (result code {event.result_code})" if event.result_code is not None else ""
        super().__init__(f"{event.protocol.value}: {event.reason.value}{detail}")


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
        return Endpoint.parse(gateway, SERVER_PORT)
    return Endpoint(gateway, SERVER_PORT)


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


class MappingSession:
    """One mapping client running on its own sockets; events are queued."""

    def __init__(self, client: LeaseClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self._loop = loop
        self._events: asyncio.Queue[PortmapEvent] = asyncio.Queue()
        self.runner: CoreRunner[PortmapEvent] = CoreRunner(client, self._events.put_nowait, loop)
        #: Whether the announcement socket is open (socket index 1).
        self.hears_announcements = False
        #: Why it could not be opened, when asked for and not open.
        self.announcement_error: str | None = None

    @property
    def finished(self) -> bool:
        """The core is done (deleted, or gave up)."""
        return self.client.finished

    def revalidate(self) -> None:
        """Check the mapping with the gateway now (a renewal; the core keeps
        renewals at least its minimum interval apart)."""
        self.client.revalidate(self._loop.time())
        self.runner.transmit()

    @property
    def mapping(self) -> Mapping | None:
        """The mapping currently held, if any."""
        mapping = self.client.mapping
        return mapping if mapping is not None and mapping.is_valid(self._loop.time()) else None

    async def next_event(self, timeout: float | None = None) -> PortmapEvent:
        """The next event from the core (``TimeoutError`` after ``timeout``)."""
        async with asyncio.timeout(timeout):
            return await self._events.get()

    async def wait_for_mapping(self, timeout: float | None = None) -> Mapping:
        """Wait until a mapping is granted or renewed and return it.

        Raises :class:`PortMappingError` if the core gives up; non-terminal
        failures are skipped (the core retries by itself).
        """
        async with asyncio.timeout(timeout):
            while True:
                event = await self._events.get()
                if isinstance(event, MappingGranted | MappingRenewed):
                    return event.mapping
                if isinstance(event, MappingFailed) and event.terminal:
                    raise PortMappingError(event)
                if isinstance(event, MappingDeleted):
                    raise LocalProtocolError("the mapping was deleted")

    async def delete(self, timeout: float | None = None) -> MappingDeleted:
        """Delete the mapping and wait for the gateway's acknowledgement (or
        the core giving up, see ``MappingDeleted.confirmed``)."""
        self.client.delete(self._loop.time())
        self.runner.transmit()
        async with asyncio.timeout(timeout):
            while True:
                event = await self._events.get()
                if isinstance(event, MappingDeleted):
                    return event
                if isinstance(event, MappingFailed) and event.terminal:
                    return MappingDeleted(None, confirmed=False, result_code=event.result_code)

    async def aclose(self, delete_timeout: float = 15.0) -> None:
        """Delete the mapping if the core is still running, then close the
        sockets. Deleting on the way out is what keeps leases from leaking."""
        try:
            if not self.client.finished:
                await self.delete(delete_timeout)
        except TimeoutError:
            pass
        finally:
            self.runner.close()

    async def __aenter__(self) -> MappingSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


async def open_mapping(
    protocol: MappingProtocol,
    internal_port: int,
    *,
    gateway: str | IPAddress | Endpoint | None = None,
    local_address: str | None = None,
    transport: TransportProtocol = TransportProtocol.UDP,
    pcp_config: PcpConfig | None = None,
    pmp_config: PmpConfig | None = None,
    listen_announcements: bool = False,
    rng: random.Random | None = None,
    route_table: str | Path = PROC_NET_ROUTE,
    nonce: bytes | None = None,
    external_address: ipaddress.IPv4Address | None = None,
) -> MappingSession:
    """Start a PCP or NAT-PMP client for ``internal_port`` on this host.

    The first request is on its way when this returns; await
    :meth:`MappingSession.wait_for_mapping` for the grant. ``nonce`` (PCP)
    lets a caller journal the mapping's identity before it is requested;
    ``external_address`` (NAT-PMP) skips the address request when already known.
    """
    loop = asyncio.get_running_loop()
    server = resolve_gateway(gateway, route_table)
    local = ipaddress.ip_address(local_address or route_source(server))
    sockets = open_udp_sockets([Endpoint(local, 0)])
    hears = False
    announcement_error: str | None = None
    if listen_announcements and isinstance(local, ipaddress.IPv4Address):
        try:
            sockets.append(open_announcement_socket(local))
            hears = True
        except OSError as exc:
            # Announcements only speed recovery up (renewals still find a
            # restart), but say why: a listener that silently failed looks
            # just like a gateway that never announces.
            reason = exc.strerror or str(exc)
            announcement_error = f"cannot listen on {ANNOUNCE_GROUP_V4}:{CLIENT_PORT}: {reason}"
    internal = Endpoint(local, internal_port)
    client: LeaseClient
    try:
        if protocol is MappingProtocol.PCP:
            client = PcpClient(
                server,
                internal,
                loop.time(),
                transport=transport,
                config=pcp_config,
                rng=rng,
                nonce=nonce,
            )
        elif protocol is MappingProtocol.NAT_PMP:
            client = PmpClient(
                server,
                internal,
                loop.time(),
                transport=transport,
                config=pmp_config,
                rng=rng,
                external_address=external_address,
            )
        else:
            raise LocalProtocolError(f"{protocol.value} is not run by this driver")
        session = MappingSession(client, loop)
        session.hears_announcements = hears
        session.announcement_error = announcement_error
        await session.runner.attach(sockets)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    session.runner.transmit()
    return session
