"""``PortMapper``: the asyncio driver of the port mapper core.

The core (:class:`natkit.portmap.mapper.MapperCore`) races PCP, NAT-PMP
and UPnP on one socket and keeps the winner's lease; this driver

1. resolves the gateway and the local address, and (with a journal)
   first releases the leases killed runs left (:mod:`.release`);
2. opens the core's socket (and the announcement listener), runs the core
   on the generic :class:`~natkit.aio.driver.CoreRunner`, makes the UPnP
   calls it asks for (:mod:`.upnp`) and writes its journal events to the
   journal file, if one was given: a library's ``PortMapper`` writes none
   and releases nobody's leases unless asked (``journal=``), the ``natkit``
   command passes one;
3. asks a STUN server, when given one, for the double-NAT hint, meanwhile;
4. releases the mapping on :meth:`close`, when the task running the
   ``async with`` is cancelled, and on SIGINT/SIGTERM once
   :meth:`release_on_signals` is installed (the signal cancels that task).

:func:`map_port` (``natkit.map_port``) is the ``async with`` form.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from types import TracebackType

from natkit.aio.driver import CoreRunner
from natkit.aio.interfaces import route_source
from natkit.aio.portmap import sockets as portmap_sockets
from natkit.aio.portmap.journal import LeaseJournal
from natkit.aio.portmap.release import release_orphans
from natkit.aio.portmap.sockets import resolve_gateway
from natkit.aio.portmap.upnp import UpnpEngine
from natkit.aio.stun_query import stun_binding
from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError, NatkitError
from natkit.portmap.events import MappingDeleted, PortmapEvent
from natkit.portmap.mapper import MapperCore, PortMapperConfig
from natkit.portmap.mapper_events import (
    LeaseClosed,
    LeaseExternalKnown,
    LeaseOpened,
    MapperClosed,
    MapperEvent,
    PortMapSettled,
)
from natkit.portmap.mapping import Mapping, TransportProtocol
from natkit.portmap.report import PortMapResult, ReleaseOutcome
from natkit.portmap.route import PROC_NET_ROUTE
from natkit.portmap.upnp_calls import UpnpAnswer, UpnpCallRequested

#: How long the STUN query for the hint may take.
STUN_TIMEOUT = 2.0


class NoMappingError(NatkitError):
    """No protocol granted a mapping; ``result`` says what each answered."""

    def __init__(self, result: PortMapResult) -> None:
        self.result = result
        summary = ", ".join(f"{r.protocol.value}: {r.status.value}" for r in result.protocols)
        super().__init__(f"no port mapping ({summary})")


class PortMapper:
    """Maps ``internal_port`` on this host and keeps the mapping (module docstring).

    ``async with PortMapper(51820) as mapper:`` maps (or raises
    :class:`NoMappingError`) and releases on the way out; or call
    :meth:`start` and :meth:`close`. ``journal``: a
    :class:`~natkit.aio.portmap.journal.LeaseJournal` or its path, to record
    leases so a later run can release them if this one is killed (and to
    release what killed runs left, first); ``None`` (default): no journal.
    ``gateway``: the one gateway to use (PCP and NAT-PMP are asked there, and
    only an IGD at its address is used for UPnP); ``None``: the default
    route's, and any IGD on the LAN may answer UPnP (the gateway's preferred).
    """

    def __init__(
        self,
        internal_port: int,
        *,
        gateway: str | IPAddress | Endpoint | None = None,
        local_address: str | None = None,
        transport: TransportProtocol = TransportProtocol.UDP,
        config: PortMapperConfig | None = None,
        journal: LeaseJournal | str | Path | None = None,
        stun_mapped: IPAddress | None = None,
        stun_server: Endpoint | None = None,
        rng: random.Random | None = None,
        route_table: str | Path = PROC_NET_ROUTE,
    ) -> None:
        if not 0 < internal_port <= 0xFFFF:
            raise LocalProtocolError(f"internal port must be 1-65535, not {internal_port}")
        self.internal_port = internal_port
        self.config = config or PortMapperConfig()
        self.transport = transport
        self.journal = journal if journal is None or isinstance(journal, LeaseJournal) else (
            LeaseJournal(journal)
        )  # fmt: skip
        self.stun_mapped = stun_mapped
        self.stun_server = stun_server
        #: The last journal write that failed (the mapping goes on without it).
        self.journal_error: OSError | None = None
        #: The signal that ended the mapping, if one did.
        self.received_signal: signal.Signals | None = None
        self.result: PortMapResult | None = None
        #: Whether the announcement socket is open, or why it could not be.
        self.hears_announcements = False
        self.announcement_error: str | None = None
        self._gateway_arg = gateway
        self._local_arg = local_address
        self._route_table = route_table
        self._rng = rng or random.SystemRandom()
        self.core: MapperCore | None = None
        self._runner: CoreRunner[MapperEvent] | None = None
        self._upnp = UpnpEngine()
        self._events: asyncio.Queue[PortmapEvent] = asyncio.Queue()
        #: The result start() waits for; ``None`` when close() came first (a
        #: result, never an exception: a start() cancelled before it awaits
        #: would leave that exception unretrieved, and asyncio logs it).
        self._settled: asyncio.Future[PortMapResult | None] | None = None
        self._closed_future: asyncio.Future[MappingDeleted | None] | None = None
        self._closing = False
        self._signals: list[signal.Signals] = []

    # -- what callers read ---------------------------------------------------------

    @property
    def mapping(self) -> Mapping | None:
        """The mapping held now (``None`` before start, after close, or while lost)."""
        core, runner = self.core, self._runner
        client = None if core is None or self._closing else core.winner
        mapping = None if client is None else client.mapping
        if mapping is None or runner is None or not mapping.is_valid(runner.loop.time()):
            return None
        return mapping

    @property
    def local_endpoint(self) -> Endpoint | None:
        """Where the requests leave from (the core's socket 0), once started."""
        runner = self._runner
        return None if runner is None or not runner.local_endpoints else runner.local_endpoints[0]

    async def next_event(self, timeout: float | None = None) -> PortmapEvent:
        """The next event of the mapping held (renewed, lost, re-created...)."""
        async with asyncio.timeout(timeout):
            return await self._events.get()

    def revalidate(self) -> None:
        """Renew with the gateway now (after a network change, or to test)."""
        core, runner = self.core, self._runner
        if core is not None and runner is not None and not self._closing:
            core.revalidate(runner.loop.time())
            runner.transmit()

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> PortMapper:
        result = await self.start()
        if result.mapping is None:
            await self.close()
            raise NoMappingError(result)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Shielded: a cancelled task must still release its mapping.
        await asyncio.shield(self.close())

    async def start(self, *, wait_for_all: bool = False) -> PortMapResult:
        """Release orphans (with a journal), probe, map. ``wait_for_all``
        lets every protocol finish (for reports); otherwise the slower ones
        are cut short once a mapping is granted."""
        if self.core is not None:
            raise LocalProtocolError("a PortMapper starts once")
        loop = asyncio.get_running_loop()
        server = resolve_gateway(self._gateway_arg, self._route_table)
        local = Endpoint.of(self._local_arg or route_source(server), self.internal_port)
        released: tuple[ReleaseOutcome, ...] = ()
        if self.journal is not None:
            released = tuple(await release_orphans(self.journal, self.config.release_timeout))
        sockets = [portmap_sockets.open_mapper_socket(local.address)]
        listener, self.announcement_error = portmap_sockets.announcement_listener(
            local.address, self.config.listen_announcements
        )
        if listener is not None:
            sockets.append(listener)
        self.hears_announcements = listener is not None
        self._settled = loop.create_future()
        self._closed_future = loop.create_future()
        try:
            self.core = MapperCore(server, local, loop.time(), config=self.config,
                                   transport=self.transport, rng=self._rng,
                                   wait_for_all=wait_for_all,
                                   only_gateway=self._gateway_arg is not None)  # fmt: skip
            self._runner = CoreRunner(self.core, self._on_event, loop)
            await self._runner.attach(sockets)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        stun_task = None
        if self.stun_mapped is None and self.stun_server is not None:
            stun_task = loop.create_task(
                stun_binding(self.stun_server, Endpoint(local.address, 0), timeout=STUN_TIMEOUT)
            )
        try:
            self._runner.transmit()
            result = await asyncio.shield(self._settled)
            if result is None:
                raise LocalProtocolError("closed before a mapping was found")
        except BaseException:
            # Cancelled (or failed) half-way: nothing may stay mapped.
            if not self._settled.done():
                self._settled.cancel()
            if stun_task is not None:
                stun_task.cancel()
            await asyncio.shield(self.close())
            raise
        stun = self.stun_mapped
        if stun_task is not None:
            found = await stun_task
            stun = None if found is None else found.address
        self.result = replace(result.with_stun(stun), released=released)
        return self.result

    async def close(self) -> MappingDeleted | None:
        """Delete the mapping (and whatever a protocol may have made) and
        forget the journal entries of what is gone. Idempotent."""
        if self._closing:
            return None
        self._closing = True
        self._remove_signal_handlers()
        if self._settled is not None and not self._settled.done():
            # A start() still racing (closed from another task) ends here.
            self._settled.set_result(None)
        core, runner, closed = self.core, self._runner, self._closed_future
        if core is None or runner is None or closed is None:
            self._upnp.close()
            return None
        try:
            core.close(runner.loop.time())
            runner.transmit()
            async with asyncio.timeout(self.config.release_timeout):
                # Unconfirmed deletions keep their journal entries for the next run.
                return await asyncio.shield(closed)
        except TimeoutError:
            return None
        finally:
            runner.close()
            self._upnp.close()

    @contextlib.contextmanager
    def release_on_signals(
        self, signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
    ) -> Iterator[None]:
        """While inside, SIGINT/SIGTERM cancel the current task, so its
        ``async with PortMapper`` releases the mapping on the way out;
        :attr:`received_signal` tells which signal it was."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:
            raise LocalProtocolError("release_on_signals needs a running task")

        def handle(sig: signal.Signals) -> None:
            self.received_signal = sig
            task.cancel()

        for sig in signals:
            loop.add_signal_handler(sig, handle, sig)
            self._signals.append(sig)
        try:
            yield
        finally:
            self._remove_signal_handlers()

    def _remove_signal_handlers(self) -> None:
        if not self._signals:
            return
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        self._signals.clear()

    # -- the core's events -------------------------------------------------------------

    def _on_event(self, event: MapperEvent) -> None:
        if isinstance(event, UpnpCallRequested):
            self._upnp.start(event.call, self._answer)
        elif isinstance(event, LeaseOpened | LeaseExternalKnown | LeaseClosed):
            self._write_journal(event)
        elif isinstance(event, PortMapSettled):
            if self._settled is not None and not self._settled.done():
                self._settled.set_result(event.result)
        elif isinstance(event, MapperClosed):
            if self._closed_future is not None and not self._closed_future.done():
                self._closed_future.set_result(event.deleted)
        else:
            self._events.put_nowait(event)

    def _answer(self, answer: UpnpAnswer) -> None:
        core, runner = self.core, self._runner
        if core is not None and runner is not None:
            core.upnp_call_completed(answer, runner.loop.time())
            runner.transmit()

    def _write_journal(self, event: LeaseOpened | LeaseExternalKnown | LeaseClosed) -> None:
        journal = self.journal
        if journal is None:
            return
        try:
            if isinstance(event, LeaseOpened):
                journal.add(event.entry)
            elif isinstance(event, LeaseExternalKnown):
                journal.update(event.entry_id, external=event.external)
            else:
                journal.remove(event.entry_id)
        except OSError as exc:
            self.journal_error = exc


@contextlib.asynccontextmanager
async def map_port(
    internal_port: int,
    *,
    gateway: str | IPAddress | Endpoint | None = None,
    local_address: str | None = None,
    transport: TransportProtocol = TransportProtocol.UDP,
    config: PortMapperConfig | None = None,
    journal: LeaseJournal | str | Path | None = None,
) -> AsyncIterator[PortMapper]:
    """Map ``internal_port`` on the gateway for the length of the block.

    PCP, NAT-PMP and UPnP IGD are raced; the first grant wins. Inside the
    block, ``mapper.mapping.external`` is where peers send, and the mapping
    is renewed (``await mapper.next_event()`` tells of renewals, losses and
    re-creations); on the way out, also when the task is cancelled, it is
    deleted. Raises :class:`NoMappingError` (its ``result`` says what each
    protocol answered) when nothing maps. ``gateway``: default the default
    route's; ``journal``: record the lease in a :class:`LeaseJournal` (and
    release what killed runs left there), none by default.
    """
    mapper = PortMapper(
        internal_port,
        gateway=gateway,
        local_address=local_address,
        transport=transport,
        config=config,
        journal=journal,
    )
    async with mapper:
        yield mapper
