"""``PortMapper``: one mapping from whichever of PCP, NAT-PMP and UPnP works (asyncio).

Theory of operation
-------------------
1. Leases a killed run left in the journal are released first
   (:mod:`natkit.portmap.release`).
2. All three protocols start at once. Only PCP maps straight away (its MAP
   is the probe: one round trip). NAT-PMP only asks the public address and
   UPnP only searches, because two mappings of one port through one
   gateway would fight (miniupnpd lets the newer take the port over).
3. Preference is PCP, then NAT-PMP, then UPnP. NAT-PMP maps when PCP was
   refused as unsupported, or stayed silent ``fallback_grace`` after the
   NAT-PMP answer; it reuses the probed address, so its map is one more
   round trip. UPnP maps when neither answered.
4. Every request is journaled before it goes out and forgotten once the
   mapping is released: on :meth:`close`, when the task running the
   ``async with`` is cancelled, and on SIGINT/SIGTERM once
   :meth:`release_on_signals` is installed (the signal cancels that task).
5. The session behind the mapping keeps renewing and re-creating it (an
   epoch drop, an expiry); its events are forwarded by :meth:`next_event`.
6. The result carries what every protocol answered and a hint when the
   mapping cannot help (:mod:`natkit.portmap.hint`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Protocol

from natkit.aio.interfaces import route_source
from natkit.aio.portmap import PortMappingError, open_mapping, resolve_gateway
from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError, NatkitError
from natkit.portmap.discovery import PmpProbe, probe_nat_pmp, stun_mapped_address
from natkit.portmap.events import (
    FailureReason,
    MappingDeleted,
    MappingFailed,
    MappingGranted,
    MappingRenewed,
    PortmapEvent,
)
from natkit.portmap.hint import MappingHint, mapping_hint
from natkit.portmap.igd import DescriptionError, UpnpError
from natkit.portmap.journal import LeaseJournal, new_entry
from natkit.portmap.mapping import LifetimePolicy, Mapping, MappingProtocol, TransportProtocol
from natkit.portmap.pcp import NONCE_LENGTH
from natkit.portmap.pcp_client import PcpConfig
from natkit.portmap.pmp_client import PmpConfig
from natkit.portmap.release import ReleaseOutcome, release_orphans
from natkit.portmap.route import PROC_NET_ROUTE
from natkit.portmap.ssdp import SsdpDecodeError, SsdpResponse
from natkit.portmap.upnp_client import (
    UpnpConfig,
    UpnpLease,
    UpnpSession,
    UpnpUnavailable,
    discover,
)

ALL_PROTOCOLS = (MappingProtocol.PCP, MappingProtocol.NAT_PMP, MappingProtocol.UPNP_IGD)


class ProbeStatus(Enum):
    """What one protocol came to."""

    MAPPED = "mapped"
    #: It answered and could have mapped; another protocol was preferred.
    AVAILABLE = "available"
    UNSUPPORTED = "unsupported"
    REFUSED = "refused"
    NO_ANSWER = "no answer"
    NOT_TRIED = "not tried"


@dataclass(frozen=True, slots=True)
class ProtocolResult:
    """One protocol's answer, for reports."""

    protocol: MappingProtocol
    status: ProbeStatus
    #: The external address it reported, if any.
    external_address: IPAddress | None = None
    #: Seconds from the start to its first answer.
    answered_after: float | None = None
    #: A protocol result code (PCP/NAT-PMP) or UPnP error code.
    result_code: int | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PortMapResult:
    """What :meth:`PortMapper.start` found."""

    mapping: Mapping | None
    protocols: tuple[ProtocolResult, ...]
    hint: MappingHint | None = None
    #: Leases of killed runs released (or not) first.
    released: tuple[ReleaseOutcome, ...] = ()
    #: The STUN-mapped address used for the hint, if known.
    stun_mapped: IPAddress | None = None
    #: Seconds from the start of the probes to the grant.
    mapped_after: float | None = None

    def result_for(self, protocol: MappingProtocol) -> ProtocolResult:
        for result in self.protocols:
            if result.protocol is protocol:
                return result
        return ProtocolResult(protocol, ProbeStatus.NOT_TRIED)


@dataclass(frozen=True, slots=True)
class PortMapperConfig:
    """Knobs of a :class:`PortMapper` (seconds)."""

    #: Which protocols to try, preferred first.
    protocols: tuple[MappingProtocol, ...] = ALL_PROTOCOLS
    lifetime: LifetimePolicy = field(default_factory=LifetimePolicy)
    #: A protocol that has not answered after this long counts as absent.
    probe_timeout: float = 2.0
    #: After NAT-PMP answered, how long PCP still gets before NAT-PMP maps.
    fallback_grace: float = 0.25
    pcp: PcpConfig | None = None
    pmp: PmpConfig | None = None
    upnp: UpnpConfig = field(default_factory=UpnpConfig)
    #: Listen on 224.0.0.1:5350 for restart announcements (RFC 6887 §14.1).
    listen_announcements: bool = True
    #: How long a deletion may take on the way out.
    release_timeout: float = 5.0
    #: Description of UPnP mappings (a random suffix names each run's).
    upnp_description: str = "natkit"


class _Session(Protocol):
    @property
    def mapping(self) -> Mapping | None: ...

    @property
    def finished(self) -> bool: ...

    def revalidate(self) -> None: ...

    async def next_event(self, timeout: float | None = None) -> PortmapEvent: ...

    async def wait_for_mapping(self, timeout: float | None = None) -> Mapping: ...

    async def delete(self, timeout: float | None = None) -> MappingDeleted: ...

    async def aclose(self, delete_timeout: float = 15.0) -> None: ...


class NoMappingError(NatkitError):
    """No protocol granted a mapping; ``result`` says what each answered."""

    def __init__(self, result: PortMapResult) -> None:
        self.result = result
        summary = ", ".join(f"{r.protocol.value}: {r.status.value}" for r in result.protocols)
        super().__init__(f"no port mapping ({summary})")


class PortMapper:
    """Maps ``internal_port`` on this host and keeps the mapping (module docstring)."""

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
        self.journal = journal if isinstance(journal, LeaseJournal) else LeaseJournal(journal)
        self.stun_mapped = stun_mapped
        self.stun_server = stun_server
        self._gateway_arg = gateway
        self._local_arg = local_address
        self._route_table = route_table
        self._rng = rng or random.SystemRandom()
        self._session: _Session | None = None
        self._entry_id: str | None = None
        self._events: asyncio.Queue[PortmapEvent] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        self._closed = False
        self._signals: list[signal.Signals] = []
        #: The signal that ended the mapping, if one did.
        self.received_signal: signal.Signals | None = None
        self.result: PortMapResult | None = None

    # -- what callers read ---------------------------------------------------------

    @property
    def mapping(self) -> Mapping | None:
        """The mapping held now (``None`` before start, after close, or while lost)."""
        return None if self._session is None else self._session.mapping

    async def next_event(self, timeout: float | None = None) -> PortmapEvent:
        """The next event of the session holding the mapping."""
        async with asyncio.timeout(timeout):
            return await self._events.get()

    def revalidate(self) -> None:
        """Renew with the gateway now (after a network change, or to test)."""
        if self._session is not None:
            self._session.revalidate()

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
        """Release orphans, probe, map. ``wait_for_all`` lets every probe
        finish (for reports); otherwise the slower ones are cut short once a
        mapping is granted."""
        loop = asyncio.get_running_loop()
        server = resolve_gateway(self._gateway_arg, self._route_table)
        local = self._local_arg or route_source(server)
        released = tuple(await release_orphans(self.journal, self.config.release_timeout))
        start = loop.time()
        internal = Endpoint.of(local, self.internal_port)
        stun_task = None
        if self.stun_mapped is None and self.stun_server is not None:
            stun_task = loop.create_task(stun_mapped_address(self.stun_server, internal.address))
        try:
            results, mapped_at = await self._race(server, internal, start, wait_for_all)
        except BaseException:
            # Cancelled (or failed) half-way: nothing may stay mapped.
            await asyncio.shield(self.close())
            if stun_task is not None:
                stun_task.cancel()
            raise
        stun = self.stun_mapped
        if stun_task is not None:
            found = await stun_task
            stun = None if found is None else found.address
        mapping = self.mapping
        hint = None if mapping is None else mapping_hint(mapping.external.address, stun)
        if mapping is None:
            pmp = next((r for r in results if r.protocol is MappingProtocol.NAT_PMP), None)
            if pmp is not None and pmp.external_address is not None:
                hint = mapping_hint(pmp.external_address, stun)
        self.result = PortMapResult(
            mapping=mapping,
            protocols=tuple(results),
            hint=hint,
            released=released,
            stun_mapped=stun,
            mapped_after=None if mapped_at is None else mapped_at - start,
        )
        return self.result

    async def close(self) -> MappingDeleted | None:
        """Delete the mapping and forget its journal entry. Idempotent."""
        if self._closed:
            return None
        self._closed = True
        self._remove_signal_handlers()
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        session, self._session = self._session, None
        if session is None:
            return None
        deleted = None
        confirmed = True  # a finished session holds nothing
        if not session.finished:
            try:
                deleted = await session.delete(self.config.release_timeout)
            except TimeoutError:
                deleted = None
            confirmed = deleted is not None and deleted.confirmed
        await session.aclose(0.1)
        if self._entry_id is not None and confirmed:
            # Unconfirmed: the entry stays, so the next run tries again.
            self.journal.remove(self._entry_id)
        return deleted

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

    # -- the race --------------------------------------------------------------------

    async def _race(
        self, server: Endpoint, internal: Endpoint, start: float, wait_for_all: bool
    ) -> tuple[list[ProtocolResult], float | None]:
        loop = asyncio.get_running_loop()
        wanted = self.config.protocols
        results: dict[MappingProtocol, ProtocolResult] = {
            p: ProtocolResult(p, ProbeStatus.NOT_TRIED) for p in ALL_PROTOCOLS
        }
        pcp_task = pmp_task = upnp_task = None
        if MappingProtocol.PCP in wanted:
            pcp_task = loop.create_task(self._try_pcp(server, internal))
        if MappingProtocol.NAT_PMP in wanted:
            pmp_task = loop.create_task(
                probe_nat_pmp(server, internal.address, self.config.probe_timeout)
            )
        if MappingProtocol.UPNP_IGD in wanted and isinstance(
            internal.address, ipaddress.IPv4Address
        ):
            upnp_task = loop.create_task(
                discover(internal.address, server.address, self.config.upnp)
            )
        mapped_at: float | None = None
        pmp_probe: PmpProbe | None = None
        try:
            # 1. PCP, unless NAT-PMP answered and PCP stays silent past the grace.
            if pcp_task is not None:
                pcp_deadline = start + self.config.probe_timeout
                if pmp_task is not None:
                    done, _ = await asyncio.wait(
                        {pcp_task, pmp_task}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if pmp_task in done and pcp_task not in done:
                        pmp_probe = pmp_task.result()
                        if pmp_probe.answered:
                            pcp_deadline = min(
                                pcp_deadline, loop.time() + self.config.fallback_grace
                            )
                results[MappingProtocol.PCP] = await self._settle_pcp(pcp_task, pcp_deadline, start)
                if results[MappingProtocol.PCP].status is ProbeStatus.MAPPED:
                    mapped_at = loop.time()
            # 2. NAT-PMP.
            if pmp_task is not None:
                pmp_probe = await pmp_task
                results[MappingProtocol.NAT_PMP] = _pmp_result(pmp_probe)
                if mapped_at is None and pmp_probe.answered:
                    results[MappingProtocol.NAT_PMP] = await self._try_pmp(
                        server, internal, pmp_probe
                    )
                    if results[MappingProtocol.NAT_PMP].status is ProbeStatus.MAPPED:
                        mapped_at = loop.time()
            # 3. UPnP.
            if upnp_task is not None:
                if mapped_at is not None and not wait_for_all:
                    upnp_task.cancel()
                    results[MappingProtocol.UPNP_IGD] = ProtocolResult(
                        MappingProtocol.UPNP_IGD, ProbeStatus.NOT_TRIED, detail="not waited for"
                    )
                else:
                    results[MappingProtocol.UPNP_IGD] = await self._settle_upnp(
                        upnp_task, internal, start, map_it=mapped_at is None
                    )
                    if results[MappingProtocol.UPNP_IGD].status is ProbeStatus.MAPPED:
                        mapped_at = loop.time()
        finally:
            for task in (pcp_task, pmp_task, upnp_task):
                if task is not None and not task.done():
                    task.cancel()
        if self._session is not None:
            self._pump = loop.create_task(self._forward_events(self._session))
        return [results[p] for p in ALL_PROTOCOLS], mapped_at

    async def _try_pcp(self, server: Endpoint, internal: Endpoint) -> Mapping:
        nonce = self._rng.randbytes(NONCE_LENGTH)
        entry = new_entry(MappingProtocol.PCP, self.transport, server, internal, nonce=nonce.hex())
        self.journal.add(entry)
        session = await open_mapping(
            MappingProtocol.PCP,
            internal.port,
            gateway=server,
            local_address=str(internal.address),
            transport=self.transport,
            pcp_config=replace(self.config.pcp or PcpConfig(), lifetime=self.config.lifetime),
            listen_announcements=self.config.listen_announcements,
            rng=self._rng,
            nonce=nonce,
        )
        self._session, self._entry_id = session, entry.id
        mapping = await session.wait_for_mapping()
        self.journal.update(entry.id, external=mapping.external)
        return mapping

    async def _settle_pcp(
        self, task: asyncio.Task[Mapping], deadline: float, start: float
    ) -> ProtocolResult:
        loop = asyncio.get_running_loop()
        protocol = MappingProtocol.PCP
        try:
            async with asyncio.timeout_at(deadline):
                mapping = await asyncio.shield(task)
        except TimeoutError:
            await self._abandon()
            task.cancel()
            return ProtocolResult(protocol, ProbeStatus.NO_ANSWER)
        except PortMappingError as exc:
            await self._abandon()
            event = exc.event
            unsupported = event.reason is FailureReason.UNSUPPORTED_VERSION
            status = ProbeStatus.UNSUPPORTED if unsupported else ProbeStatus.REFUSED
            return ProtocolResult(protocol, status, None, loop.time() - start,
                                  event.result_code, event.reason.value)  # fmt: skip
        return ProtocolResult(protocol, ProbeStatus.MAPPED, mapping.external.address,
                              loop.time() - start)  # fmt: skip

    async def _try_pmp(
        self, server: Endpoint, internal: Endpoint, probe: PmpProbe
    ) -> ProtocolResult:
        protocol = MappingProtocol.NAT_PMP
        entry = new_entry(protocol, self.transport, server, internal)
        self.journal.add(entry)
        session = await open_mapping(
            protocol,
            internal.port,
            gateway=server,
            local_address=str(internal.address),
            transport=self.transport,
            pmp_config=replace(self.config.pmp or PmpConfig(), lifetime=self.config.lifetime),
            listen_announcements=self.config.listen_announcements,
            rng=self._rng,
            external_address=probe.external_address,
        )
        self._session, self._entry_id = session, entry.id
        try:
            mapping = await session.wait_for_mapping(self.config.probe_timeout)
        except (PortMappingError, TimeoutError) as exc:
            await self._abandon()
            code = exc.event.result_code if isinstance(exc, PortMappingError) else None
            return replace(_pmp_result(probe), status=ProbeStatus.REFUSED, result_code=code,
                           detail=str(exc) or "map request unanswered")  # fmt: skip
        self.journal.update(entry.id, external=mapping.external)
        return ProtocolResult(protocol, ProbeStatus.MAPPED, mapping.external.address,
                              probe.rtt, detail=f"epoch {probe.epoch}")  # fmt: skip

    async def _settle_upnp(
        self,
        task: asyncio.Task[tuple[SsdpResponse, list[SsdpDecodeError]]],
        internal: Endpoint,
        start: float,
        *,
        map_it: bool,
    ) -> ProtocolResult:
        loop = asyncio.get_running_loop()
        protocol = MappingProtocol.UPNP_IGD
        try:
            found, _rejected = await task
        except UpnpUnavailable as exc:
            return ProtocolResult(protocol, ProbeStatus.NO_ANSWER, detail=str(exc))
        answered = loop.time() - start
        where = f"IGD:{found.igd_version} at {found.location}"
        try:
            session, description = await UpnpSession.connect(found.location, self.config.upnp)
            where = f"IGD:{description.igd_version} at {found.location}"
            if not map_it:
                external = await session.external_address()
                return ProtocolResult(protocol, ProbeStatus.AVAILABLE, external, answered,
                                      detail=where)  # fmt: skip
            label = f"{self.config.upnp_description} {self._rng.getrandbits(32):08x}"
            entry = new_entry(protocol, self.transport, Endpoint(found.source.address, 0), internal,
                              location=found.location, description=label)  # fmt: skip
            self.journal.add(entry)
            lease = UpnpLease(session, internal, transport=self.transport,
                              lifetime=self.config.lifetime, description=label,
                              config=self.config.upnp, rng=self._rng)  # fmt: skip
            self._session, self._entry_id = lease, entry.id
            lease.start()
            mapping = await lease.wait_for_mapping(self.config.upnp.call_timeout * 4)
        except (UpnpError, DescriptionError) as exc:
            await self._abandon()
            code = getattr(exc, "code", None)
            return ProtocolResult(protocol, ProbeStatus.REFUSED, None, answered,
                                  None if code is None else int(code),
                                  f"{where}: {exc}")  # fmt: skip
        except (PortMappingError, TimeoutError) as exc:
            await self._abandon()
            return ProtocolResult(protocol, ProbeStatus.REFUSED, None, answered,
                                  detail=f"{where}: {exc or 'timed out'}")  # fmt: skip
        self.journal.update(entry.id, external=mapping.external)
        return ProtocolResult(protocol, ProbeStatus.MAPPED, mapping.external.address, answered,
                              detail=where)  # fmt: skip

    async def _abandon(self) -> None:
        """Drop a session that did not get (or will not keep) the mapping,
        deleting whatever it may have created; the journal keeps the entry
        if the gateway does not confirm."""
        session, self._session = self._session, None
        entry_id, self._entry_id = self._entry_id, None
        if session is None:
            return
        try:
            deleted = await session.delete(self.config.release_timeout)
        except TimeoutError:
            deleted = None
        await session.aclose(0.1)
        if entry_id is not None and deleted is not None and deleted.confirmed:
            self.journal.remove(entry_id)

    async def _forward_events(self, session: _Session) -> None:
        while True:
            event = await session.next_event()
            if isinstance(event, MappingGranted | MappingRenewed) and self._entry_id is not None:
                self.journal.update(self._entry_id, external=event.mapping.external)
            self._events.put_nowait(event)
            if isinstance(event, MappingFailed) and event.terminal:
                return


def _pmp_result(probe: PmpProbe) -> ProtocolResult:
    protocol = MappingProtocol.NAT_PMP
    if probe.answered:
        return ProtocolResult(protocol, ProbeStatus.AVAILABLE, probe.external_address, probe.rtt,
                              detail=f"epoch {probe.epoch}")  # fmt: skip
    if probe.server_version is not None:
        return ProtocolResult(protocol, ProbeStatus.UNSUPPORTED, None, probe.rtt,
                              probe.result_code,
                              f"speaks version {probe.server_version}")  # fmt: skip
    if probe.result_code is not None:
        return ProtocolResult(protocol, ProbeStatus.REFUSED, None, probe.rtt, probe.result_code)
    return ProtocolResult(protocol, ProbeStatus.NO_ANSWER)
