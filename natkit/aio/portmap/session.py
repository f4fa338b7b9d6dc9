"""One lease client (PCP, NAT-PMP or UPnP) on asyncio: :class:`MappingSession`.

The session owns the client's sockets, feeds it through the generic
:class:`~natkit.aio.driver.CoreRunner`, makes the UPnP calls it asks for
(:class:`~natkit.aio.portmap.upnp.UpnpEngine`) and queues its events. The
client does all protocol work; this module only reads ``loop.time()`` and
moves bytes. :func:`open_mapping` starts a PCP or NAT-PMP mapping on its own
(the :class:`~natkit.aio.portmap.mapper.PortMapper` races all three).
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
from natkit.aio.portmap import sockets as portmap_sockets
from natkit.aio.portmap.sockets import resolve_gateway
from natkit.aio.portmap.upnp import UpnpEngine
from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError, NatkitError
from natkit.portmap.events import (
    MappingDeleted,
    MappingFailed,
    MappingGranted,
    MappingRenewed,
    PortmapEvent,
)
from natkit.portmap.lease import LeaseClient, LeaseEvent
from natkit.portmap.lease_state import ALLOWED_CALLS, LeaseCall
from natkit.portmap.mapper import failure_text
from natkit.portmap.mapping import Mapping, MappingProtocol, TransportProtocol
from natkit.portmap.pcp_client import PcpClient, PcpConfig
from natkit.portmap.pmp_client import PmpClient, PmpConfig
from natkit.portmap.route import PROC_NET_ROUTE
from natkit.portmap.upnp_calls import UpnpAnswer, UpnpCallRequested
from natkit.portmap.upnp_client import UpnpClient


class PortMappingError(NatkitError):
    """The gateway refused the mapping, or never answered."""

    def __init__(self, event: MappingFailed) -> None:
        self.event = event
        super().__init__(failure_text(event))


class MappingSession:
    """One lease client running on its own sockets; events are queued."""

    def __init__(
        self,
        client: LeaseClient,
        loop: asyncio.AbstractEventLoop,
        upnp: UpnpEngine | None = None,
    ) -> None:
        self.client = client
        self._loop = loop
        self._events: asyncio.Queue[PortmapEvent] = asyncio.Queue()
        self._own_upnp = upnp is None
        self._upnp = upnp or UpnpEngine()
        self._deleted: MappingDeleted | None = None
        self.runner: CoreRunner[LeaseEvent] = CoreRunner(client, self._on_event, loop)
        #: Whether the announcement socket is open (socket index 1).
        self.hears_announcements = False
        #: Why it could not be opened, when asked for and not open.
        self.announcement_error: str | None = None

    def _on_event(self, event: LeaseEvent) -> None:
        if isinstance(event, UpnpCallRequested):
            self._upnp.start(event.call, self._answer)
            return
        if isinstance(event, MappingDeleted):
            self._deleted = event
        self._events.put_nowait(event)

    def _answer(self, answer: UpnpAnswer) -> None:
        client = self.client
        if isinstance(client, UpnpClient):
            client.upnp_call_completed(answer, self._loop.time())
            self.runner.transmit()

    @property
    def finished(self) -> bool:
        """The client is done (deleted, or gave up)."""
        return self.client.finished

    def revalidate(self) -> None:
        """Check the mapping with the gateway now (a renewal; the client
        keeps renewals at least its minimum interval apart)."""
        self.client.revalidate(self._loop.time())
        self.runner.transmit()

    @property
    def mapping(self) -> Mapping | None:
        """The mapping currently held, if any."""
        mapping = self.client.mapping
        return mapping if mapping is not None and mapping.is_valid(self._loop.time()) else None

    async def next_event(self, timeout: float | None = None) -> PortmapEvent:
        """The next event from the client (``TimeoutError`` after ``timeout``)."""
        async with asyncio.timeout(timeout):
            return await self._events.get()

    async def wait_for_mapping(self, timeout: float | None = None) -> Mapping:
        """Wait until a mapping is granted or renewed and return it.

        Raises :class:`PortMappingError` if the client gives up; non-terminal
        failures are skipped (the client retries by itself).
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
        the client giving up, see ``MappingDeleted.confirmed``). A client
        that already finished holds nothing: its deletion, or an empty one."""
        client = self.client
        if client.finished:
            return self._deleted or MappingDeleted(None, confirmed=True)
        if client.state in ALLOWED_CALLS[LeaseCall.DELETE]:
            client.delete(self._loop.time())
            self.runner.transmit()
        async with asyncio.timeout(timeout):
            while self._deleted is None and not client.finished:
                event = await self._events.get()
                if isinstance(event, MappingFailed) and event.terminal:
                    break
        return self._deleted or MappingDeleted(None, confirmed=True)

    async def aclose(self, delete_timeout: float = 15.0) -> None:
        """Delete the mapping if the client is still running, then close the
        sockets. Deleting on the way out is what keeps leases from leaking."""
        try:
            if not self.client.finished:
                await self.delete(delete_timeout)
        except TimeoutError:
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Close sockets and timers now, deleting nothing."""
        self.runner.close()
        if self._own_upnp:
            self._upnp.close()

    async def __aenter__(self) -> MappingSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


async def run_client(
    client: LeaseClient,
    sockets: list[socket.socket],
    upnp: UpnpEngine | None = None,
) -> MappingSession:
    """A session serving ``client`` on ``sockets`` (closed on failure)."""
    session = MappingSession(client, asyncio.get_running_loop(), upnp)
    try:
        await session.runner.attach(sockets)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    session.runner.transmit()
    return session


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
    ``external_address`` (NAT-PMP) skips the address request when already
    known. It writes no journal: use a ``PortMapper`` with one for that.
    """
    if protocol not in (MappingProtocol.PCP, MappingProtocol.NAT_PMP):
        raise LocalProtocolError(f"{protocol.value} is not run by this driver")
    loop = asyncio.get_running_loop()
    server = resolve_gateway(gateway, route_table)
    local = ipaddress.ip_address(local_address or route_source(server))
    sockets = open_udp_sockets([Endpoint(local, 0)])
    listener, announcement_error = portmap_sockets.announcement_listener(
        local, listen_announcements
    )
    if listener is not None:
        sockets.append(listener)
    internal = Endpoint(local, internal_port)
    client: LeaseClient
    try:
        if protocol is MappingProtocol.PCP:
            client = PcpClient(server, internal, loop.time(), transport=transport,
                               config=pcp_config, rng=rng, nonce=nonce)  # fmt: skip
        else:
            client = PmpClient(server, internal, loop.time(), transport=transport,
                               config=pmp_config, rng=rng,
                               external_address=external_address)  # fmt: skip
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    session = await run_client(client, sockets)
    session.hears_announcements = listener is not None
    session.announcement_error = announcement_error
    return session
