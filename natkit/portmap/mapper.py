"""The port mapper as a sans-IO core: one mapping from whichever of PCP,
NAT-PMP and UPnP IGD works.

Theory of operation
-------------------
1. Everything starts at once, from one socket (socket 0; socket 1 may
   listen for announcements): PCP maps straight away (its MAP is the
   probe), NAT-PMP only asks the public address and UPnP only searches
   (SSDP), then reads the description and the external address. Datagrams
   from the gateway's port 5351 go to the PCP or NAT-PMP client by
   :func:`~natkit.portmap.wire.gateway_protocols`; others to the search.
2. Which protocol maps is the decision table of :mod:`natkit.portmap.choice`
   read after every input: PCP, then NAT-PMP, then UPnP. PCP's wait ends at
   ``probe_timeout``, or ``fallback_grace`` after NAT-PMP answered; a
   NAT-PMP mapping gets ``probe_timeout``, a UPnP one four call timeouts.
   A protocol whose turn passed is abandoned, deleting whatever it may have
   made.
3. Every lease runs on the one lease engine (:mod:`natkit.portmap.lease`),
   UPnP included (its calls are requests the driver makes:
   :mod:`natkit.portmap.upnp_calls`).
4. Journal events say when a lease journal would write and forget entries
   (:mod:`natkit.portmap.mapper_events`); the first request of a lease goes
   out one timer tick after its :class:`LeaseOpened`, so a driver writes
   the entry first. An entry is forgotten once nothing of it can be left:
   deleted, refused, or never answered.
5. :class:`PortMapSettled` ends the race; the winner's later events (renewed,
   lost, re-created, gateway restarted) follow it. ``close()`` deletes what
   is held and :class:`MapperClosed` says when every deletion is over.
"""

from __future__ import annotations

import ipaddress
import random
from collections import deque
from dataclasses import dataclass, field, replace

from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError
from natkit.portmap.choice import OPEN, Phase, decide
from natkit.portmap.events import (
    ExternalAddressFound,
    FailureReason,
    MappingDeleted,
    MappingFailed,
    MappingGranted,
    MappingRenewed,
    PortmapEvent,
)
from natkit.portmap.journal import JournalEntry
from natkit.portmap.lease import LeaseClient, LeaseEvent
from natkit.portmap.lease_state import ALLOWED_CALLS, ClientState, LeaseCall
from natkit.portmap.mapper_events import (
    LeaseClosed,
    LeaseExternalKnown,
    LeaseOpened,
    MapperClosed,
    MapperEvent,
    PortMapSettled,
)
from natkit.portmap.mapping import LifetimePolicy, MappingProtocol, TransportProtocol
from natkit.portmap.pcp import NONCE_LENGTH
from natkit.portmap.pcp_client import PcpClient, PcpConfig
from natkit.portmap.pmp_client import PmpClient, PmpConfig
from natkit.portmap.report import ALL_PROTOCOLS, PortMapResult, ProbeStatus, ProtocolResult
from natkit.portmap.ssdp_search import SsdpSearch
from natkit.portmap.upnp_calls import UpnpAnswer, UpnpCallRequested, UpnpConfig
from natkit.portmap.upnp_client import UpnpClient
from natkit.portmap.wire import gateway_protocols
from natkit.sansio import Datagram


@dataclass(frozen=True, slots=True)
class PortMapperConfig:
    """Knobs of a port mapper (seconds)."""

    #: Which protocols to try (preference is always PCP, NAT-PMP, UPnP).
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


def failure_text(event: MappingFailed) -> str:
    """A failure in words: the protocol, the reason, the code."""
    code = f" (result code {event.result_code})" if event.result_code is not None else ""
    return f"{event.protocol.value}: {event.reason.value}{code}"


@dataclass(eq=False, slots=True)
class _Slot:
    """One protocol's part of the race."""

    protocol: MappingProtocol
    phase: Phase = Phase.NOT_WANTED
    client: LeaseClient | None = None
    result: ProtocolResult | None = None
    #: When WAITING or MAPPING ends at the latest.
    deadline: float | None = None
    #: The journal entry of its lease, once opened.
    entry: JournalEntry | None = None
    #: The external endpoint last journaled.
    journaled: Endpoint | None = None
    #: When its first mapping request goes out (after LeaseOpened).
    start_at: float | None = None
    #: The last non-terminal failure (a gateway answering with errors).
    failure: MappingFailed | None = None
    #: The winner's events since its grant, until the race is reported.
    held_back: list[PortmapEvent] = field(default_factory=list)


class MapperCore:
    """Sans-IO port mapper for ``internal`` through ``gateway`` (module docstring).

    ``gateway`` is the PCP/NAT-PMP server endpoint (port 5351); its address
    is also searched for UPnP, and with ``only_gateway`` (the user named
    it) only an IGD at that address is used. ``wait_for_all`` lets every protocol finish
    before the race is reported (for reports of what each answered).
    """

    def __init__(
        self,
        gateway: Endpoint,
        internal: Endpoint,
        now: float,
        *,
        config: PortMapperConfig | None = None,
        transport: TransportProtocol = TransportProtocol.UDP,
        rng: random.Random | None = None,
        wait_for_all: bool = False,
        only_gateway: bool = False,
    ) -> None:
        if not 0 < internal.port <= 0xFFFF:
            raise LocalProtocolError(f"internal port must be 1-65535, not {internal.port}")
        self.config = config or PortMapperConfig()
        self.gateway = gateway
        self.internal = internal
        self.transport = transport
        self.wait_for_all = wait_for_all
        self.started = now
        #: Datagrams no part of the core would take.
        self.dropped = 0
        self._rng = rng if rng is not None else random.SystemRandom()
        self._out: deque[MapperEvent] = deque()
        self._slots = {p: _Slot(p) for p in ALL_PROTOCOLS}
        self._ssdp: SsdpSearch | None = None
        self._where = ""  # "IGD:2 at http://..." for UPnP's reports
        self._upnp_answered: float | None = None
        self._pcp_nonce = b""
        self._winner: _Slot | None = None
        self._settled = False
        self._closing = False
        self._closed = False
        self._deleted: MappingDeleted | None = None
        wanted = self.config.protocols
        ipv4 = isinstance(internal.address, ipaddress.IPv4Address)
        if MappingProtocol.PCP in wanted:
            self._pcp_nonce = self._rng.randbytes(NONCE_LENGTH)
            self._open(self._slots[MappingProtocol.PCP], now, nonce=self._pcp_nonce.hex())
            self._slots[MappingProtocol.PCP].deadline = now + self.config.probe_timeout
        if MappingProtocol.NAT_PMP in wanted and ipv4 and gateway.address.version == 4:
            slot = self._slots[MappingProtocol.NAT_PMP]
            slot.client = PmpClient(gateway, internal, now, transport=transport,
                                    config=self._pmp_config(), rng=self._rng,
                                    start=False, probe=True)  # fmt: skip
            slot.phase, slot.deadline = Phase.WAITING, now + self.config.probe_timeout
        if MappingProtocol.UPNP_IGD in wanted and ipv4:
            self._ssdp = SsdpSearch(now, gateway=gateway.address, config=self.config.upnp,
                                    only_gateway=only_gateway)  # fmt: skip
            self._slots[MappingProtocol.UPNP_IGD].phase = Phase.WAITING
        self._pump(now)

    # -- what drivers read ----------------------------------------------------------

    @property
    def settled(self) -> bool:
        return self._settled

    @property
    def finished(self) -> bool:
        """Closed, and every deletion over (or sent to a gateway that never
        answered: not waited for)."""
        return self._closed

    def client(self, protocol: MappingProtocol) -> LeaseClient | None:
        """The lease client of ``protocol``, if one runs (tests, reports)."""
        return self._slots[protocol].client

    @property
    def winner(self) -> LeaseClient | None:
        """The client holding the mapping, once the race is won."""
        return None if self._winner is None else self._winner.client

    # -- SansIOCore -----------------------------------------------------------------

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        clients = self._lease_clients()
        if remote == self.gateway:
            pcp, pmp = gateway_protocols(data)
            wanted = [p for p, yes in ((MappingProtocol.PCP, pcp),
                                       (MappingProtocol.NAT_PMP, pmp)) if yes]  # fmt: skip
            targets = [c for c in clients if c.protocol in wanted]
        elif self._ssdp is not None and not self._ssdp.done:
            self._ssdp.receive(data, remote, now)
            targets = []
        else:
            targets = clients  # each counts it (wrong source)
        if not targets and remote == self.gateway:
            self.dropped += 1
        for client in targets:
            client.receive_datagram(data, remote, socket, now)
        self._pump(now)

    def handle_timer(self, now: float) -> None:
        for client in self._lease_clients():
            deadline = client.get_timer()
            if deadline is not None and deadline <= now:
                client.handle_timer(now)
        ssdp = self._ssdp
        if ssdp is not None and (deadline := ssdp.get_timer()) is not None and deadline <= now:
            ssdp.handle_timer(now)
        for slot in self._slots.values():
            if slot.start_at is not None and slot.start_at <= now:
                slot.start_at = None
                self._start_lease(slot, now)
            if slot.deadline is not None and slot.deadline <= now:
                slot.deadline = None
                self._expire(slot, now)
        self._pump(now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out: list[Datagram] = []
        for client in self._lease_clients():
            out.extend(client.datagrams_to_send(now))
        if self._ssdp is not None:
            out.extend(self._ssdp.datagrams_to_send())
        return out

    def get_timer(self) -> float | None:
        times: list[float | None] = [c.get_timer() for c in self._lease_clients()]
        if self._ssdp is not None:
            times.append(self._ssdp.get_timer())
        for slot in self._slots.values():
            times += [slot.start_at, slot.deadline]
        return min((t for t in times if t is not None), default=None)

    def next_event(self) -> MapperEvent | None:
        return self._out.popleft() if self._out else None

    # -- calls from the driver ------------------------------------------------------

    def upnp_call_completed(self, answer: UpnpAnswer, now: float) -> None:
        """The driver's answer to an :class:`UpnpCallRequested`."""
        client = self._slots[MappingProtocol.UPNP_IGD].client
        if isinstance(client, UpnpClient):
            client.upnp_call_completed(answer, now)
        self._pump(now)

    def revalidate(self, now: float) -> None:
        """Renew the held mapping now (after a network change); nothing
        when none is held or it is being re-created anyway."""
        client = self.winner
        if client is not None and client.state in ALLOWED_CALLS[LeaseCall.REVALIDATE]:
            client.revalidate(now)
        self._pump(now)

    def close(self, now: float) -> None:
        """Delete everything that may be mapped; :class:`MapperClosed`
        follows once every deletion is over. Idempotent."""
        if self._closing:
            return
        self._closing = True
        if not self._settled:
            self._settled = True  # a race cut off: nothing more is decided
        if self._ssdp is not None:
            self._ssdp.stop(now)
        for slot in self._slots.values():
            if slot.start_at is not None:
                # Journaled, never sent: nothing to delete.
                slot.start_at = None
                self._forget(slot)
            slot.deadline = None
            self._abandon(slot, now)
        self._pump(now)

    # -- the race -------------------------------------------------------------------

    def _pmp_config(self) -> PmpConfig:
        return replace(self.config.pmp or PmpConfig(), lifetime=self.config.lifetime)

    def _lease_clients(self) -> list[LeaseClient]:
        return [s.client for s in self._slots.values() if s.client is not None]

    def _entry_id(self) -> str:
        return f"{self._rng.getrandbits(48):012x}"

    def _open(
        self,
        slot: _Slot,
        now: float,
        *,
        nonce: str | None = None,
        location: str | None = None,
        description: str | None = None,
    ) -> None:
        """Journal the lease, then (next tick) start it (journal rule 1)."""
        gateway = self.gateway if slot.client is None else slot.client.gateway
        entry = JournalEntry(self._entry_id(), slot.protocol, self.transport, gateway,
                             self.internal, nonce=nonce, location=location,
                             description=description)  # fmt: skip
        slot.entry = entry
        slot.phase = Phase.MAPPING
        slot.start_at = now
        self._out.append(LeaseOpened(entry))

    def _start_lease(self, slot: _Slot, now: float) -> None:
        config = self.config
        if slot.protocol is MappingProtocol.PCP:
            pcp = replace(config.pcp or PcpConfig(), lifetime=config.lifetime)
            slot.client = PcpClient(self.gateway, self.internal, now, transport=self.transport,
                                    config=pcp, rng=self._rng,
                                    nonce=self._pcp_nonce)  # fmt: skip
        elif slot.client is not None and slot.client.state is ClientState.IDLE:
            slot.client.start(now)  # probed before: it maps now

    def _begin_mapping(self, slot: _Slot, now: float) -> None:
        """The table chose ``slot``'s protocol (it is AVAILABLE)."""
        if slot.protocol is MappingProtocol.UPNP_IGD and isinstance(slot.client, UpnpClient):
            client = slot.client
            self._open(slot, now, location=client.location, description=client.label)
            slot.deadline = now + 4 * self.config.upnp.call_timeout
        else:
            self._open(slot, now)
            slot.deadline = now + self.config.probe_timeout

    def _expire(self, slot: _Slot, now: float) -> None:
        """``slot`` ran out of time (module docstring, rule 2)."""
        if slot.phase not in OPEN:
            return
        protocol, result = slot.protocol, slot.result
        if protocol is MappingProtocol.PCP:
            failure = slot.failure
            if failure is not None:
                result = self._result(slot, ProbeStatus.REFUSED, result_code=failure.result_code,
                                      detail=failure.reason.value)  # fmt: skip
            else:
                result = ProtocolResult(protocol, ProbeStatus.NO_ANSWER)
        elif slot.phase is Phase.WAITING:
            result = ProtocolResult(protocol, ProbeStatus.NO_ANSWER)
        elif protocol is MappingProtocol.NAT_PMP and result is not None:
            result = replace(result, status=ProbeStatus.REFUSED, result_code=None,
                             detail="map request unanswered")  # fmt: skip
        else:
            result = self._result(slot, ProbeStatus.REFUSED, detail=f"{self._where}: timed out")
        self._done(slot, result, now)

    def _done(self, slot: _Slot, result: ProtocolResult, now: float) -> None:
        """``slot`` is out of the race without a mapping."""
        slot.phase, slot.result, slot.deadline = Phase.DONE, result, None
        self._abandon(slot, now)

    def _abandon(self, slot: _Slot, now: float) -> None:
        """Delete whatever the slot's client may have made; stop it otherwise."""
        client = slot.client
        if client is None or client.finished:
            return
        if client.state in ALLOWED_CALLS[LeaseCall.DELETE]:
            client.delete(now)
        if not client.gateway_answered:
            # Its requests most likely never arrived (journal rule 2): the
            # deletion still goes out, but nothing is kept for a later run,
            # even if the driver stops waiting for it.
            self._forget(slot)

    def _result(
        self,
        slot: _Slot,
        status: ProbeStatus,
        *,
        external_address: IPAddress | None = None,
        result_code: int | None = None,
        detail: str = "",
    ) -> ProtocolResult:
        """A result keeping the time of the protocol's first answer."""
        answered: float | None = None
        if slot.protocol is MappingProtocol.UPNP_IGD:
            answered = self._upnp_answered
        elif slot.result is not None:
            answered = slot.result.answered_after
        return ProtocolResult(slot.protocol, status, external_address, answered, result_code,
                              detail)  # fmt: skip

    # -- events ---------------------------------------------------------------------

    def _pump(self, now: float) -> None:
        """Take every sub-core's events, then read the decision table, until
        nothing changes."""
        for _ in range(100):
            changed = self._drain(now)
            changed |= self._search_over(now)
            changed |= self._decide(now)
            if not changed:
                break
        # A client the gateway never answered is not waited for: its deletion
        # went out, and nothing was kept of it (journal rule 2).
        over = all(c.finished or not c.gateway_answered for c in self._lease_clients())
        if self._closing and not self._closed and over:
            self._closed = True
            self._out.append(MapperClosed(self._deleted))

    def _drain(self, now: float) -> bool:
        changed = False
        for slot in self._slots.values():
            client = slot.client
            while client is not None and (event := client.next_event()) is not None:
                changed = True
                self._on_event(slot, event, now)
        return changed

    def _search_over(self, now: float) -> bool:
        """The SSDP search ended: probe the device it chose."""
        ssdp, slot = self._ssdp, self._slots[MappingProtocol.UPNP_IGD]
        if (
            ssdp is None
            or not ssdp.done
            or slot.client is not None
            or slot.phase is not Phase.WAITING
        ):
            return False
        chosen = ssdp.chosen
        if chosen is None:
            result = ProtocolResult(slot.protocol, ProbeStatus.NO_ANSWER, detail=ssdp.summary())
            slot.phase, slot.result = Phase.DONE, result
            return True
        self._upnp_answered = (now if ssdp.done_at is None else ssdp.done_at) - self.started
        self._where = f"IGD:{chosen.igd_version} at {chosen.location}"
        label = f"{self.config.upnp_description} {self._rng.getrandbits(32):08x}"
        upnp = replace(self.config.upnp, lifetime=self.config.lifetime)
        try:
            slot.client = UpnpClient(chosen.location, self.internal, now, transport=self.transport,
                                     config=upnp, label=label, rng=self._rng,
                                     start=False, probe=True)  # fmt: skip
        except LocalProtocolError as exc:
            self._done(slot, self._result(slot, ProbeStatus.REFUSED, detail=str(exc)), now)
        return True

    def _decide(self, now: float) -> bool:
        if self._settled:
            return False
        phases = {p: s.phase for p, s in self._slots.items()}
        decision = decide(phases, wait_for_all=self.wait_for_all)
        if decision.map is not None:
            self._begin_mapping(self._slots[decision.map], now)
            return True
        if not decision.settled:
            return False
        for protocol in decision.cut_short:
            slot = self._slots[protocol]
            if slot.phase is Phase.MAPPING:
                continue  # never: only the winner maps
            result = ProtocolResult(protocol, ProbeStatus.NOT_TRIED, detail="not waited for")
            if self._ssdp is not None and protocol is MappingProtocol.UPNP_IGD:
                self._ssdp.stop(now)
            self._done(slot, result, now)
        self._settle(decision.winner, now)
        return True

    def _settle(self, winner: MappingProtocol | None, now: float) -> None:
        self._settled = True
        won = None if winner is None else self._slots[winner]
        self._winner = won
        mapping = None if won is None or won.client is None else won.client.mapping
        results = tuple(
            s.result or ProtocolResult(s.protocol, ProbeStatus.NOT_TRIED)
            for s in self._slots.values()
        )
        mapped_after = None
        if won is not None and mapping is not None:
            mapped_after = mapping.granted_at - self.started
        result = PortMapResult(mapping, results, mapped_after=mapped_after).with_stun(None)
        self._out.append(PortMapSettled(result))
        # Whoever probed without mapping is done with (creating nothing).
        for slot in self._slots.values():
            if slot is not won:
                self._abandon(slot, now)
        if won is not None:
            self._out.extend(won.held_back)
            won.held_back.clear()

    def _on_event(self, slot: _Slot, event: LeaseEvent, now: float) -> None:
        if isinstance(event, UpnpCallRequested):
            self._out.append(event)
            return
        self._journal(slot, event)
        if slot.phase is Phase.MAPPED:
            if slot is self._winner:
                if not isinstance(event, ExternalAddressFound):
                    self._out.append(event)
            elif not self._settled:
                slot.held_back.append(event)
            if isinstance(event, MappingDeleted) and slot is self._winner:
                self._deleted = event
            return
        if slot.phase is Phase.DONE or self._closing:
            return
        if isinstance(event, ExternalAddressFound) and slot.phase is Phase.WAITING:
            self._on_probed(slot, event, now)
        elif isinstance(event, MappingGranted) and slot.phase is Phase.MAPPING:
            self._on_mapped(slot, event, now)
        elif isinstance(event, MappingFailed):
            if not event.terminal:
                slot.failure = event
                return
            self._on_failed(slot, event, now)

    def _on_probed(self, slot: _Slot, event: ExternalAddressFound, now: float) -> None:
        slot.phase = Phase.AVAILABLE
        slot.deadline = None
        if slot.protocol is MappingProtocol.NAT_PMP:
            slot.result = ProtocolResult(slot.protocol, ProbeStatus.AVAILABLE,
                                         event.external_address, now - self.started,
                                         detail=f"epoch {event.epoch}")  # fmt: skip
            pcp = self._slots[MappingProtocol.PCP]
            if pcp.phase is Phase.MAPPING and pcp.deadline is not None:
                # PCP keeps only a grace period after NAT-PMP answered.
                pcp.deadline = min(pcp.deadline, now + self.config.fallback_grace)
        else:
            client = slot.client
            if isinstance(client, UpnpClient) and client.description is not None:
                self._where = f"IGD:{client.description.igd_version} at {client.location}"
            slot.result = self._result(slot, ProbeStatus.AVAILABLE,
                                       external_address=event.external_address,
                                       detail=self._where)  # fmt: skip

    def _on_mapped(self, slot: _Slot, event: MappingGranted, now: float) -> None:
        slot.phase, slot.deadline = Phase.MAPPED, None
        address = event.mapping.external.address
        if slot.protocol is MappingProtocol.PCP:
            slot.result = ProtocolResult(slot.protocol, ProbeStatus.MAPPED, address,
                                         now - self.started)  # fmt: skip
        elif slot.protocol is MappingProtocol.NAT_PMP:
            slot.result = replace(slot.result or ProtocolResult(slot.protocol, ProbeStatus.MAPPED),
                                  status=ProbeStatus.MAPPED, external_address=address)  # fmt: skip
        else:
            slot.result = self._result(slot, ProbeStatus.MAPPED, external_address=address,
                                       detail=self._where)  # fmt: skip

    def _on_failed(self, slot: _Slot, event: MappingFailed, now: float) -> None:
        protocol, code = slot.protocol, event.result_code
        after = now - self.started
        if protocol is MappingProtocol.UPNP_IGD:
            text = event.detail or failure_text(event)
            result = self._result(slot, ProbeStatus.REFUSED, result_code=code,
                                  detail=f"{self._where}: {text}")  # fmt: skip
        elif slot.phase is Phase.MAPPING and protocol is MappingProtocol.NAT_PMP:
            base = slot.result or ProtocolResult(protocol, ProbeStatus.REFUSED)
            result = replace(base, status=ProbeStatus.REFUSED, result_code=code,
                             detail=failure_text(event))  # fmt: skip
        elif event.reason is FailureReason.UNSUPPORTED_VERSION:
            detail = event.reason.value
            if protocol is MappingProtocol.NAT_PMP:
                detail = f"speaks version {event.server_version}"
            result = ProtocolResult(protocol, ProbeStatus.UNSUPPORTED, None, after, code, detail)
        elif event.reason is FailureReason.TIMED_OUT:
            result = ProtocolResult(protocol, ProbeStatus.NO_ANSWER)
        else:
            result = ProtocolResult(protocol, ProbeStatus.REFUSED, None, after, code,
                                    event.reason.value)  # fmt: skip
        self._done(slot, result, now)

    # -- the journal ----------------------------------------------------------------

    def _journal(self, slot: _Slot, event: PortmapEvent) -> None:
        entry = slot.entry
        if entry is None:
            return
        if isinstance(event, MappingGranted | MappingRenewed):
            external = event.mapping.external
            if external != slot.journaled:
                slot.journaled = external
                self._out.append(LeaseExternalKnown(entry.id, external))
        elif isinstance(event, MappingDeleted):
            if not event.may_linger:
                self._forget(slot)
        elif isinstance(event, MappingFailed) and event.terminal:
            client = slot.client
            answered = client is not None and client.gateway_answered
            # A refusal leaves nothing; silence leaves nothing if nothing was heard.
            if event.reason is not FailureReason.TIMED_OUT or not answered:
                self._forget(slot)

    def _forget(self, slot: _Slot) -> None:
        if slot.entry is not None:
            self._out.append(LeaseClosed(slot.entry.id))
            slot.entry = None
