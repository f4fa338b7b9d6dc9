"""A UPnP IGD mapping client (UPnP IGD 1 and 2) on the shared lease engine.

It runs on :mod:`natkit.portmap.lease` like the PCP and NAT-PMP clients,
so renewal, expiry (:class:`MappingLost`), re-creation, deletion and the
backoff of rule 4 are the engine's; what differs is that a request is a
sequence of UPnP calls the driver makes (:mod:`natkit.portmap.upnp_calls`)
rather than one datagram. An exchange runs one call at a time:

* connect (first exchange only, unless built with a checked
  ``description``): FETCH_DESCRIPTION, checked with
  :func:`~natkit.portmap.igd.parse_description`; only then SELECT_IGD, so
  miniupnpc's C parser never sees a huge or malformed document.
* probe (ADDRESS): GetExternalIPAddress.
* create: AddAnyPortMapping where the device has it (WANIPConnection:2),
  then AddPortMapping of the granted port with natkit's own lease
  (miniupnpc's AddAnyPortMapping always asks for a permanent one, so a
  crash would leak it forever); otherwise AddPortMapping over candidate
  ports, moving on after 718 ConflictInMappingEntry. 725
  OnlyPermanentLeasesSupported switches to lease 0. Then
  GetExternalIPAddress, unless a probe just told it.
* renew: AddPortMapping of the same external port. 718 means someone else
  holds it now: the mapping is lost (REFUSED) and made again elsewhere.
* delete: DeletePortMapping of the granted port (714 NoSuchEntryInArray
  counts as done). Cleaning up after an earlier run (``start=False``), it
  first checks with GetSpecificPortMappingEntry that the port still points
  at us, or without a known port lists the entries
  (GetGenericPortMappingEntry) and deletes those carrying our description
  and internal endpoint.

Errors: on the first creation every refusal is final (a device that
refuses the first AddPortMapping will refuse the next; the port mapper
moves on). Once a mapping was held, 501 ActionFailed, 728
NoPortMapsAvailable, miniupnpc's transport failures and timeouts are
transient: renewals follow the renewal schedule until expiry, then
re-creation backs off from IRT to MRT; anything else is final.
"""

from __future__ import annotations

import ipaddress
import random
from enum import Enum
from urllib.parse import urlsplit

from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError
from natkit.portmap.events import FailureReason, LossReason, MappingDeleted
from natkit.portmap.igd import (
    DescriptionError,
    IgdDescription,
    MiniupnpcFailure,
    UpnpDetails,
    UpnpError,
    UpnpErrorCode,
    parse_description,
)
from natkit.portmap.lease import Exchange, ExchangeKind, LeaseClient, LeaseDropReason
from natkit.portmap.lease_state import ClientState
from natkit.portmap.mapping import LifetimeNote, MappingProtocol, TransportProtocol
from natkit.portmap.upnp_calls import (
    PortMappingEntry,
    UpnpAction,
    UpnpAnswer,
    UpnpCall,
    UpnpCallRequested,
    UpnpConfig,
)

#: UPnP error codes onto the protocol-independent failure reasons.
FAILURE_FOR_CODE: dict[UpnpErrorCode, FailureReason] = {
    UpnpErrorCode.ACTION_NOT_AUTHORIZED: FailureReason.NOT_AUTHORIZED,
    UpnpErrorCode.CONFLICT_IN_MAPPING_ENTRY: FailureReason.CANNOT_PROVIDE_EXTERNAL,
    UpnpErrorCode.NO_PORT_MAPS_AVAILABLE: FailureReason.NO_RESOURCES,
    UpnpErrorCode.INVALID_ARGS: FailureReason.MALFORMED_REQUEST,
    UpnpErrorCode.INVALID_ACTION: FailureReason.UNSUPPORTED_OPCODE,
    UpnpErrorCode.CONFLICT_WITH_OTHER_MECHANISMS: FailureReason.CANNOT_PROVIDE_EXTERNAL,
}
#: Refusals worth retrying once a mapping was held (module docstring).
TRANSIENT_CODES = frozenset({UpnpErrorCode.ACTION_FAILED, UpnpErrorCode.NO_PORT_MAPS_AVAILABLE})
_NO_ADD_ANY = frozenset(
    {UpnpErrorCode.INVALID_ACTION, UpnpErrorCode.OPTIONAL_ACTION_NOT_IMPLEMENTED}
)
#: How devices end GetGenericPortMappingEntry past the last index.
_END_OF_LIST = frozenset(
    {UpnpErrorCode.NO_SUCH_ENTRY_IN_ARRAY, UpnpErrorCode.SPECIFIED_ARRAY_INDEX_INVALID}
)


class _Step(Enum):
    """Which call of an exchange is in flight."""

    FETCH = "fetch"
    SELECT = "select"
    PROBE_ADDRESS = "probe address"
    ADD_ANY = "add any"
    #: AddPortMapping: a candidate port, the port AddAnyPortMapping reserved
    #: (its lease shortened), or a renewal.
    ADD = "add"
    GRANT_ADDRESS = "grant address"
    CHECK = "check"
    LIST = "list"
    DELETE = "delete"


def location_endpoint(location: str) -> Endpoint:
    """The literal address and port of a description URL."""
    try:
        parts = urlsplit(location)
        host, port = parts.hostname, parts.port
        return Endpoint(ipaddress.ip_address(host or ""), port or 80)
    except ValueError:
        raise LocalProtocolError(
            f"not an http:// URL with a literal address: {location!r}"
        ) from None


class UpnpClient(LeaseClient):
    """Maintains one UPnP IGD mapping of ``internal`` at the device
    described at ``location`` (see the module docstring).

    ``label`` is the ``NewPortMappingDescription``: give each run its own
    (a port mapper adds a random suffix), so that a cleanup can tell its
    mappings from others'. ``description``: the device description already
    checked and selected by this driver (skips the connect calls).
    ``start=False, probe=True`` only asks the external address
    (:class:`ExternalAddressFound`); ``start=False`` alone holds a lease an
    earlier run may have left, for :meth:`delete` (``previous_external``:
    its port, if known).
    """

    protocol = MappingProtocol.UPNP_IGD
    can_probe = True
    # A creation's first calls (the description, selectigd) create nothing:
    # the AddPortMapping calls say so themselves.
    _requests_create = False

    def __init__(
        self,
        location: str,
        internal: Endpoint,
        now: float,
        *,
        transport: TransportProtocol = TransportProtocol.UDP,
        config: UpnpConfig | None = None,
        label: str = "natkit",
        description: IgdDescription | None = None,
        rng: random.Random | None = None,
        previous_external: Endpoint | None = None,
        external_address: IPAddress | None = None,
        start: bool = True,
        probe: bool = False,
    ) -> None:
        self.config = config or UpnpConfig()
        super().__init__(
            location_endpoint(location),
            internal,
            transport=transport,
            lifetime=self.config.lifetime,
            epoch=None,
            rng=rng,
            min_renewal_interval=self.config.min_renewal_interval,
            max_error_wait=self.config.retransmission.mrt,
            previous_external=previous_external,
        )
        self.location = location
        self.label = label
        #: The checked device description (after the connect calls).
        self.description = description
        #: The device's external address, once it told us.
        self.external_address = external_address
        self._selected = description is not None
        self._next_id = 1
        self._call: UpnpCall | None = None
        self._step: _Step | None = None
        # Creation: ports to try, and whether the device lacks AddAny.
        self._candidates: list[int] = []
        self._port: int | None = None
        self._no_add_any = False
        # The device keeps only permanent leases (725).
        self._permanent = False
        # Cleanup: entries found to carry our label, still to delete.
        self._doomed: list[PortMappingEntry] = []
        self._list_index = 0
        self._start_or_hold(now, start, probe)

    # -- driver input -------------------------------------------------------------

    def upnp_call_completed(self, answer: UpnpAnswer, now: float) -> None:
        """The driver's answer to the call last requested."""
        call, exchange, step = self._call, self._exchange, self._step
        if self.finished:
            self._drop(LeaseDropReason.CLOSED)
            return
        if call is None or exchange is None or step is None or answer.call_id != call.id:
            self._drop(LeaseDropReason.STALE)
            return
        self._call = None
        if answer.timed_out:
            self._give_up(exchange, now)
            return
        self._answered = True
        if answer.error is not None:
            self._on_error(step, answer.error, exchange, now)
        else:
            self._on_success(step, answer, exchange, now)

    # -- lease hooks --------------------------------------------------------------

    def _begin(self, now: float) -> None:
        self._start(ExchangeKind.CREATE, now)

    def _request(self, kind: ExchangeKind, lifetime: int, suggested: Endpoint | None) -> bytes:
        return b""  # the calls are made step by step (_send_request)

    def _deadline(self, exchange: Exchange) -> float | None:
        return None  # each call has its own (_issue)

    def _schedule(self, exchange: Exchange, now: float) -> None:
        exchange.next_send = None  # a call is answered or times out; never repeated

    def _on_datagram(self, data: bytes, now: float) -> None:
        self._drop(LeaseDropReason.UNEXPECTED)  # UPnP speaks through calls only

    def _send_request(self, exchange: Exchange, now: float) -> None:
        """Start (or start over) the exchange's calls."""
        if not self._selected:
            if self.description is None:
                self._issue(_Step.FETCH, UpnpAction.FETCH_DESCRIPTION, now)
            else:
                self._issue(_Step.SELECT, UpnpAction.SELECT_IGD, now)
            return
        self._first_call(exchange, now)

    def _silence_retry_hint(self, exchange: Exchange) -> float | None:
        # Re-creating a mapping we held: keep at it, backing off (module docstring).
        return self.config.retransmission.irt if self._ever_granted else None

    def _retry_exchange_at(self, exchange: Exchange, at: float) -> None:
        exchange.next_send = at
        exchange.give_up_at = None  # the call deadline ended with the call

    def _give_up(self, exchange: Exchange, now: float) -> None:
        self._call = None  # a late answer is stale now
        super()._give_up(exchange, now)

    def _mapping_gateway(self) -> Endpoint:
        # The control URL the mapping lives behind.
        description = self.description
        if description is None:
            return self.gateway
        try:
            return location_endpoint(description.control_url)
        except LocalProtocolError:
            return self.gateway

    # -- the calls ----------------------------------------------------------------

    def _issue(
        self,
        step: _Step,
        action: UpnpAction,
        now: float,
        *,
        external_port: int = 0,
        transport: TransportProtocol | None = None,
        lease: int = 0,
        index: int = 0,
    ) -> None:
        adds = action in (UpnpAction.ADD_PORT_MAPPING, UpnpAction.ADD_ANY_PORT_MAPPING)
        call = UpnpCall(
            self._next_id,
            action,
            self.location,
            self.config.call_timeout,
            external_port=external_port,
            transport=self.transport if transport is None else transport,
            internal=self.internal if adds else None,
            description=self.label if adds else "",
            lease=lease,
            index=index,
            limit=self.config.max_description,
        )
        self._next_id += 1
        self._call, self._step = call, step
        if adds:
            self._may_exist = True
        exchange = self._exchange
        if exchange is not None:
            exchange.give_up_at = now + self.config.call_timeout
        # Requests travel with the events, in order (natkit.portmap.upnp_calls).
        self._emit(UpnpCallRequested(call))

    def _add(self, port: int, now: float) -> None:
        self._port = port
        lease = 0 if self._permanent else self.lifetime_policy.requested
        self._issue(_Step.ADD, UpnpAction.ADD_PORT_MAPPING, now, external_port=port, lease=lease)

    def _first_call(self, exchange: Exchange, now: float) -> None:
        kind = exchange.kind
        if kind is ExchangeKind.ADDRESS:
            self._issue(_Step.PROBE_ADDRESS, UpnpAction.GET_EXTERNAL_ADDRESS, now)
        elif kind is ExchangeKind.CREATE:
            suggested = self._suggested_port(self._last_external)
            description = self.description
            add_any = description is not None and description.has_add_any_port_mapping
            if add_any and not self._no_add_any:
                self._issue(_Step.ADD_ANY, UpnpAction.ADD_ANY_PORT_MAPPING, now,
                            external_port=suggested)  # fmt: skip
                return
            self._candidates = [suggested]
            while len(self._candidates) < self.config.conflict_attempts:
                self._candidates.append(self._rng.randint(1024, 65535))
            self._add(self._candidates.pop(0), now)
        elif kind is ExchangeKind.RENEW and self._mapping is not None:
            self._add(self._mapping.external.port, now)
        elif kind is ExchangeKind.DELETE:
            self._first_delete_call(now)
        else:  # a renewal with nothing held: the engine never starts one
            self._give_up(exchange, now)

    def _first_delete_call(self, now: float) -> None:
        mapping = self._mapping
        if mapping is not None:
            self._delete(mapping.external.port, self.transport, now)
            return
        # Nothing granted (a cleanup, or a creation cut short): delete only
        # what still points at us.
        port = self._port
        if port is None and self._last_external is not None:
            port = self._last_external.port
        if port is not None:
            self._port = port
            self._issue(_Step.CHECK, UpnpAction.GET_SPECIFIC_ENTRY, now, external_port=port)
        else:
            self._doomed = []
            self._list(0, now)

    def _list(self, index: int, now: float) -> None:
        self._list_index = index
        self._issue(_Step.LIST, UpnpAction.GET_GENERIC_ENTRY, now, index=index)

    def _delete(self, port: int, transport: TransportProtocol, now: float) -> None:
        self._port = port
        self._issue(_Step.DELETE, UpnpAction.DELETE_PORT_MAPPING, now, external_port=port,
                    transport=transport)  # fmt: skip

    # -- answers ------------------------------------------------------------------

    def _on_success(self, step: _Step, answer: UpnpAnswer, exchange: Exchange, now: float) -> None:
        if step is _Step.FETCH:
            try:
                self.description = parse_description(answer.body, self.location)
            except DescriptionError as exc:
                self._on_error(step, exc, exchange, now)
                return
            self._issue(_Step.SELECT, UpnpAction.SELECT_IGD, now)
        elif step is _Step.SELECT:
            self._selected = True
            self._first_call(exchange, now)
        elif step is _Step.PROBE_ADDRESS:
            self.external_address = _address(answer.text)
            self._probe_answered(self.external_address, None)
        elif step is _Step.ADD_ANY:
            if answer.port is None or not 0 < answer.port <= 0xFFFF:
                self._invalid(step, f"reserved port {answer.port}", exchange, now)
                return
            # Bring miniupnpc's permanent lease down to ours at once.
            self._candidates = []
            self._add(answer.port, now)
        elif step is _Step.ADD:
            if exchange.kind is ExchangeKind.CREATE and (
                exchange.recreate or self.external_address is None
            ):
                self._issue(_Step.GRANT_ADDRESS, UpnpAction.GET_EXTERNAL_ADDRESS, now)
            else:  # a renewal, or the probe just told the address
                self._granted(exchange, now)
        elif step is _Step.GRANT_ADDRESS:
            address = _address(answer.text)
            if address is None:
                self._invalid(step, f"external address {answer.text[:60]!r}", exchange, now)
                return
            self.external_address = address
            self._granted(exchange, now)
        elif step is _Step.CHECK:
            entry, port = answer.entry, self._port
            if entry is not None and entry.internal == self.internal and port is not None:
                self._delete(port, self.transport, now)
            else:
                self._deleted(gone=True)
        elif step is _Step.LIST:
            entry = answer.entry
            if entry is None:
                self._delete_doomed(now, gone=True)
                return
            if entry.internal == self.internal and entry.description == self.label:
                self._doomed.append(entry)
            if self._list_index + 1 < self.config.max_entries:
                self._list(self._list_index + 1, now)
            else:
                self._delete_doomed(now, gone=True)
        else:
            self._delete_doomed(now, gone=False)

    def _granted(self, exchange: Exchange, now: float) -> None:
        port, address, description = self._port, self.external_address, self.description
        if port is None or address is None or description is None:
            self._invalid(_Step.ADD, "a grant without port or address", exchange, now)
            return
        mapping = self._mapping
        if mapping is not None and exchange.kind is ExchangeKind.RENEW:
            external = mapping.external
        else:
            external = Endpoint(address, port)
        lifetime = self.lifetime_policy.requested
        # A permanent lease is renewed all the same: the device may forget it.
        notes = (LifetimeNote.ZERO_ON_SUCCESS,) if self._permanent else ()
        details = UpnpDetails(self.location, description.igd_version,
                              description.service_type, self.label)  # fmt: skip
        self._grant(external, 0 if self._permanent else lifetime, now, details,
                    restarted=False, planned=(lifetime, notes))  # fmt: skip

    def _delete_doomed(self, now: float, *, gone: bool) -> None:
        """Delete the next entry found to be ours, or finish (``gone``:
        nothing of ours was there)."""
        if self._doomed:
            entry = self._doomed.pop(0)
            transport = _TRANSPORTS.get(entry.transport.upper(), self.transport)
            self._delete(entry.external_port, transport, now)
            return
        self._deleted(gone=gone)

    def _deleted(self, *, gone: bool) -> None:
        # Nothing of ours there counts as done, reported as 714 NoSuchEntryInArray.
        code = int(UpnpErrorCode.NO_SUCH_ENTRY_IN_ARRAY) if gone else None
        self._finish(ClientState.DELETED, MappingDeleted(self._mapping, True, code))

    # -- errors -------------------------------------------------------------------

    def _invalid(self, step: _Step, what: str, exchange: Exchange, now: float) -> None:
        error = UpnpError(_ACTION_FOR_STEP[step].value, what, None,
                          MiniupnpcFailure.INVALID_RESPONSE)  # fmt: skip
        self._on_error(step, error, exchange, now)

    def _on_error(
        self,
        step: _Step,
        error: UpnpError | DescriptionError,
        exchange: Exchange,
        now: float,
    ) -> None:
        code = error.code if isinstance(error, UpnpError) else None
        if self._recover(step, code, exchange, now):
            return
        if isinstance(error, DescriptionError):
            reason = FailureReason.INVALID_DESCRIPTION
        elif code is not None:
            reason = FAILURE_FOR_CODE.get(code, FailureReason.UNKNOWN_RESULT)
        else:
            reason = FailureReason.UNKNOWN_RESULT
        transient = self._ever_granted and (
            code in TRANSIENT_CODES or (isinstance(error, UpnpError) and code is None)
        )
        self._refuse(reason, None if code is None else int(code), now, transient=transient,
                     retry_after=self.config.retransmission.irt,
                     detail=str(error))  # fmt: skip

    def _recover(
        self, step: _Step, code: UpnpErrorCode | None, exchange: Exchange, now: float
    ) -> bool:
        """The error codes a step knows how to get past (module docstring)."""
        if step is _Step.ADD_ANY and code in _NO_ADD_ANY:
            self._no_add_any = True
            self._first_call(exchange, now)
        elif step is _Step.ADD and code is UpnpErrorCode.ONLY_PERMANENT_LEASES_SUPPORTED:
            if self._permanent or self._port is None:
                return False
            self._permanent = True
            self._add(self._port, now)
        elif step is _Step.ADD and code is UpnpErrorCode.CONFLICT_IN_MAPPING_ENTRY:
            if exchange.kind is ExchangeKind.RENEW:
                # Another host holds our port now: lost; make it again elsewhere.
                self._lose(LossReason.REFUSED, int(code), now)
            elif self._candidates:
                self._add(self._candidates.pop(0), now)
            else:
                return False
        elif (
            step in (_Step.CHECK, _Step.DELETE) and code is UpnpErrorCode.NO_SUCH_ENTRY_IN_ARRAY
        ) or (step is _Step.LIST and code in _END_OF_LIST):
            self._delete_doomed(now, gone=True)
        else:
            return False
        return True


_ACTION_FOR_STEP = {
    _Step.FETCH: UpnpAction.FETCH_DESCRIPTION,
    _Step.SELECT: UpnpAction.SELECT_IGD,
    _Step.PROBE_ADDRESS: UpnpAction.GET_EXTERNAL_ADDRESS,
    _Step.ADD_ANY: UpnpAction.ADD_ANY_PORT_MAPPING,
    _Step.ADD: UpnpAction.ADD_PORT_MAPPING,
    _Step.GRANT_ADDRESS: UpnpAction.GET_EXTERNAL_ADDRESS,
    _Step.CHECK: UpnpAction.GET_SPECIFIC_ENTRY,
    _Step.LIST: UpnpAction.GET_GENERIC_ENTRY,
    _Step.DELETE: UpnpAction.DELETE_PORT_MAPPING,
}
_TRANSPORTS = {t.name: t for t in TransportProtocol}


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None
