"""The lease engine every port-mapping client runs on: PCP, NAT-PMP and UPnP.

Theory of operation
-------------------
A client maintains one mapping with one gateway. It has at most one
request in flight (an *exchange*: RFC 6886 §3.1 asks clients not to issue
concurrent requests, and a single mapping never needs two). Its state is a
:class:`~natkit.portmap.lease_state.ClientState`, stored, changed only
along the table in :mod:`~natkit.portmap.lease_state`; a call the state
does not allow raises :class:`~natkit.portmap.lease_state.LeaseStateError`.

Rules, in the order they apply:

1. Only datagrams from the gateway's exact address and port are looked at;
   everything else is counted in :attr:`LeaseClient.dropped`, never raised.
2. A mapping that reaches ``expires_at`` unrenewed is lost (EXPIRED) and
   re-created with a fresh exchange.
3. Re-creation and renewal suggest the external endpoint last granted, so
   a restarted gateway tends to hand the same one back (RFC 6886 §3.3);
   the first request suggests the internal port, never 0 (MikroTik rejects
   external port 0).
4. A transient error keeps the client trying, each retry waiting at least
   the gateway's hint and twice the previous wait, up to a cap
   (:func:`~natkit.portmap.timing.error_backoff`); a failed renewal is
   retried on the protocol's renewal schedule until expiry. A permanent
   error ends the client, and a mapping held at that moment is reported
   lost (REFUSED). So no gateway, however it fails, is asked in a loop.
5. Deletion reuses the request's identity (PCP nonce, NAT-PMP internal
   port, UPnP external port) with lifetime 0, and gives up no later than
   the mapping would have expired anyway (RFC 6886 §3.1).
6. A probe (``probe()``, NAT-PMP and UPnP) asks only whether the gateway
   speaks the protocol, creating nothing, and ends in
   :class:`~natkit.portmap.events.ExternalAddressFound`; ``start()`` then
   maps without asking again.

Subclasses supply the protocol: how a request looks and goes out (a
datagram, or a UPnP call the driver makes), when to retransmit and renew,
and how an answer is matched to the exchange.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, TypeVar

from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError
from natkit.portmap.epoch import EpochTracker
from natkit.portmap.events import (
    ExternalAddressFound,
    FailureReason,
    GatewayRestarted,
    LossReason,
    MappingDeleted,
    MappingFailed,
    MappingGranted,
    MappingLost,
    MappingRenewed,
    PortmapEvent,
)
from natkit.portmap.lease_state import (
    FINISHED,
    ClientState,
    LeaseCall,
    check_call,
    check_move,
)
from natkit.portmap.mapping import (
    LifetimeNote,
    LifetimePolicy,
    Mapping,
    MappingDetails,
    MappingProtocol,
    TransportProtocol,
    clamp_lifetime,
)
from natkit.portmap.timing import error_backoff, pmp_next_renewal
from natkit.portmap.upnp_calls import UpnpCallRequested
from natkit.portmap.wire import PortmapDecodeError, PortmapDecodeFailure, UnsupportedVersion
from natkit.sansio import Datagram

#: A protocol's parsed response.
Message = TypeVar("Message")

#: What a lease client hands its driver: events, and (UPnP) calls to make.
LeaseEvent = PortmapEvent | UpnpCallRequested


class LeaseDropReason(Enum):
    """Why a received datagram was ignored."""

    WRONG_SOURCE = "not from the gateway's address and port"
    MALFORMED = "not a well-formed message"
    WRONG_VERSION = "another protocol version"
    WRONG_OPCODE = "not a response to an opcode we send"
    WRONG_NONCE = "mapping nonce is not ours"
    WRONG_MAPPING = "protocol or internal port is not ours"
    UNEXPECTED = "no request of ours is waiting for it"
    STALE = "answers an earlier request"
    BAD_GRANT = "success without a usable external endpoint"
    CLOSED = "arrived after the client finished"


_DROP_FOR_DECODE = {
    PortmapDecodeFailure.WRONG_VERSION: LeaseDropReason.WRONG_VERSION,
    PortmapDecodeFailure.NOT_A_RESPONSE: LeaseDropReason.WRONG_OPCODE,
    PortmapDecodeFailure.UNKNOWN_OPCODE: LeaseDropReason.WRONG_OPCODE,
}


class ExchangeKind(Enum):
    """What the request in flight is for."""

    #: Is the protocol there? NAT-PMP's public address request (opcode 0),
    #: UPnP's description and GetExternalIPAddress.
    ADDRESS = "address"
    CREATE = "create"
    RENEW = "renew"
    DELETE = "delete"


#: The state an exchange of each kind puts the client in.
_STATE_FOR_KIND = {
    ExchangeKind.ADDRESS: ClientState.REQUESTING,
    ExchangeKind.CREATE: ClientState.REQUESTING,
    ExchangeKind.RENEW: ClientState.RENEWING,
    ExchangeKind.DELETE: ClientState.DELETING,
}


@dataclass(eq=False, slots=True)
class Exchange:
    """One request and its transmissions."""

    kind: ExchangeKind
    request: bytes
    #: The lifetime requested (0 for a deletion).
    lifetime: int
    started: float
    #: When the next copy goes out (``None``: no more copies).
    next_send: float | None
    #: When the exchange fails if still unanswered.
    give_up_at: float | None = None
    transmissions: int = 0
    last_sent: float | None = None
    #: The current retransmission timeout (PCP's RT).
    timeout: float = 0.0
    #: Re-creating a mapping that was lost or presumed lost.
    recreate: bool = False
    #: A probe (rule 6): its answer ends the exchange, mapping nothing.
    probe: bool = False
    #: The wait after the last transient error answer (rule 4); 0: none yet.
    error_wait: float = 0.0


class LeaseClient(ABC):
    """Sans-IO core maintaining one mapping (see the module docstring).

    Socket 0 is the one requests go out on; datagrams from the gateway on
    any socket (e.g. a second one listening for announcements on port 5350)
    are accepted.
    """

    protocol: ClassVar[MappingProtocol]
    #: Whether :meth:`probe` exists (PCP's MAP request is its own probe).
    can_probe: ClassVar[bool] = False
    #: Whether sending a CREATE or RENEW request may already create a
    #: mapping (UPnP says so per call instead, see ``_may_exist``).
    _requests_create: ClassVar[bool] = True

    def __init__(
        self,
        gateway: Endpoint,
        internal: Endpoint,
        *,
        transport: TransportProtocol,
        lifetime: LifetimePolicy,
        epoch: EpochTracker | None,
        rng: random.Random | None,
        min_renewal_interval: float,
        max_error_wait: float,
        previous_external: Endpoint | None = None,
    ) -> None:
        if not 0 < internal.port <= 0xFFFF:
            raise LocalProtocolError(f"internal port must be 1-65535, not {internal.port}")
        if internal.address.version != gateway.address.version:
            raise LocalProtocolError(f"{internal} and gateway {gateway} differ in family")
        self.gateway = gateway
        self.internal = internal
        self.transport = transport
        self.lifetime_policy = lifetime
        #: Renewals never go out closer together than this.
        self.min_renewal_interval = min_renewal_interval
        #: The longest wait between retries after transient errors (rule 4).
        self.max_error_wait = max_error_wait
        #: Datagrams ignored, by reason.
        self.dropped: Counter[LeaseDropReason] = Counter()
        # A nonce guards mappings against off-path deletion: unpredictable by default.
        self._rng = rng if rng is not None else random.SystemRandom()
        self._epoch = epoch
        self._state = ClientState.IDLE
        self._events: deque[LeaseEvent] = deque()
        self._outbox: list[Datagram] = []
        self._mapping: Mapping | None = None
        self._exchange: Exchange | None = None
        self._renew_at: float | None = None
        # What to suggest when (re-)creating: a journal may seed it so a new
        # run gets back the external port the last one had (RFC 6886 §3.3).
        self._last_external: Endpoint | None = previous_external
        self._last_renewal_sent: float | None = None
        self._ever_granted = False
        # A mapping may exist at the gateway: something that could create
        # one went out, or an earlier run left one (``start=False``).
        self._may_exist = False
        # The gateway answered one of our requests (MappingDeleted.gateway_answered).
        self._answered = False

    # -- what callers read --------------------------------------------------------

    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def mapping(self) -> Mapping | None:
        """The mapping held (or presumed lost and being re-created)."""
        return self._mapping

    @property
    def finished(self) -> bool:
        """No more datagrams or timers will come from this client."""
        return self._state in FINISHED

    @property
    def gateway_answered(self) -> bool:
        """The gateway answered at least one of this client's requests."""
        return self._answered

    # -- SansIOCore ---------------------------------------------------------------

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        if self.finished:
            self._drop(LeaseDropReason.CLOSED)
        elif remote != self.gateway:
            # RFC 6886 §3.2, RFC 6887 §8.3: only the server we asked, from its
            # port, may answer; the gateway we asked need not be the default one.
            self._drop(LeaseDropReason.WRONG_SOURCE)
        else:
            self._on_datagram(data, now)

    def handle_timer(self, now: float) -> None:
        if self.finished:
            return
        mapping, exchange = self._mapping, self._exchange
        if (
            mapping is not None
            and now >= mapping.expires_at
            and self._state is not ClientState.DELETING
        ):
            self._mapping = None
            self._renew_at = None
            self._emit(MappingLost(mapping, LossReason.EXPIRED))
            if exchange is None or exchange.kind is ExchangeKind.RENEW:
                self._start(ExchangeKind.CREATE, now, recreate=True)
                return
        exchange = self._exchange
        if exchange is None:
            if self._renew_at is not None and now >= self._renew_at:
                self._start(ExchangeKind.RENEW, now)
        elif exchange.give_up_at is not None and now >= exchange.give_up_at:
            self._give_up(exchange, now)
        elif exchange.next_send is not None and now >= exchange.next_send:
            self._transmit(exchange, now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self._outbox = self._outbox, []
        return out

    def get_timer(self) -> float | None:
        if self.finished:
            return None
        times: list[float | None] = []
        exchange = self._exchange
        if exchange is not None:
            times += [exchange.next_send, exchange.give_up_at]
        else:
            times.append(self._renew_at)
        if self._mapping is not None and self._state is not ClientState.DELETING:
            times.append(self._mapping.expires_at)
        return min((t for t in times if t is not None), default=None)

    def next_event(self) -> LeaseEvent | None:
        return self._events.popleft() if self._events else None

    # -- calls from the user ------------------------------------------------------

    def start(self, now: float) -> None:
        """Begin creating the mapping (the constructors do unless ``start=False``).

        Legal only while IDLE (also after a probe answered)."""
        check_call(self._state, LeaseCall.START)
        self._begin(now)

    def probe(self, now: float) -> None:
        """Ask whether the gateway speaks the protocol, creating nothing
        (rule 6); :class:`ExternalAddressFound` or a terminal
        :class:`MappingFailed` follows. Legal only while IDLE."""
        if not self.can_probe:
            raise LocalProtocolError(f"{self.protocol.value} has no probe: its request maps")
        check_call(self._state, LeaseCall.PROBE)
        self._start(ExchangeKind.ADDRESS, now, probe=True)

    def delete(self, now: float) -> None:
        """Ask the gateway to drop the mapping; :class:`MappingDeleted` follows."""
        check_call(self._state, LeaseCall.DELETE)
        if self._state is ClientState.PROBING or (self._mapping is None and not self._may_exist):
            # Nothing that could create a mapping has been sent yet.
            self._finish(ClientState.DELETED, MappingDeleted(None, confirmed=True))
            return
        self._start(ExchangeKind.DELETE, now)

    def revalidate(self, now: float, delay: float = 0.0) -> None:
        """Check the mapping with the gateway ``delay`` seconds from now
        (after a network change, or an announcement), keeping renewals at
        least the minimum interval apart."""
        check_call(self._state, LeaseCall.REVALIDATE)
        self._revalidate(now, delay)

    def _revalidate(self, now: float, delay: float = 0.0) -> None:
        """:meth:`revalidate` for the protocol's own reasons (an announcement):
        in any state, doing nothing where there is nothing to check."""
        at = now + delay
        exchange = self._exchange
        if self.finished:
            return
        if exchange is None:
            if self._mapping is not None:
                at = max(at, self._renewal_floor())
                self._renew_at = at if self._renew_at is None else min(self._renew_at, at)
        elif exchange.kind is ExchangeKind.RENEW:
            at = max(at, self._renewal_floor())
            exchange.next_send = at if exchange.next_send is None else min(exchange.next_send, at)
        elif exchange.kind is not ExchangeKind.DELETE and not exchange.probe:
            exchange.next_send = at if exchange.next_send is None else min(exchange.next_send, at)

    def _start_or_hold(self, now: float, start: bool, probe: bool = False) -> None:
        """The constructors' last step: :meth:`start`; or :meth:`probe`; or
        (``start=False`` alone) stay idle, holding a lease an earlier run may
        have left, so that a :meth:`delete` is really sent."""
        if start and probe:
            raise LocalProtocolError("start=True and probe=True: probe first, start after")
        if start:
            self.start(now)
        elif probe:
            self.probe(now)
        else:
            self._may_exist = True

    # -- protocol hooks -----------------------------------------------------------

    @abstractmethod
    def _begin(self, now: float) -> None:
        """Send the first request."""

    @abstractmethod
    def _request(self, kind: ExchangeKind, lifetime: int, suggested: Endpoint | None) -> bytes:
        """The request bytes for an exchange."""

    @abstractmethod
    def _deadline(self, exchange: Exchange) -> float | None:
        """When a fresh exchange fails at the latest (``None``: only by schedule)."""

    @abstractmethod
    def _schedule(self, exchange: Exchange, now: float) -> None:
        """After a transmission: set ``next_send`` (and ``give_up_at`` after the last)."""

    def _first_renewal(self, granted_at: float, lifetime: int) -> float:
        """When a fresh grant is first renewed: halfway (RFC 6886 §3.3, like
        DHCP; PCP has its own windows)."""
        return granted_at + lifetime / 2

    def _renewal_retry_at(self, exchange: Exchange, now: float) -> float | None:
        """When to try again after a renewal failed (``None``: let it
        expire): halfway from now to expiry, like DHCP."""
        mapping = self._mapping
        if mapping is None:
            return None
        return pmp_next_renewal(now, mapping.expires_at, self.min_renewal_interval)

    @abstractmethod
    def _on_datagram(self, data: bytes, now: float) -> None:
        """A datagram from the gateway's address and port."""

    def _send_request(self, exchange: Exchange, now: float) -> None:
        """Put the exchange's request on its way (a datagram by default)."""
        self._outbox.append(Datagram(exchange.request, self.gateway))

    def _silence_retry_hint(self, exchange: Exchange) -> float | None:
        """After a creation went unanswered to its end with nothing held: the
        first wait before starting it over, backing off from there (rule 4);
        ``None``: fail instead (the default)."""
        return None

    def _retry_exchange_at(self, exchange: Exchange, at: float) -> None:
        """Send the exchange again at ``at`` (after a transient error)."""
        exchange.next_send = at

    # -- helpers for subclasses ---------------------------------------------------

    def _drop(self, reason: LeaseDropReason) -> None:
        self.dropped[reason] += 1

    def _emit(self, event: LeaseEvent) -> None:
        self._events.append(event)

    def _move(self, state: ClientState) -> None:
        check_move(self._state, state)
        self._state = state

    def _renewal_floor(self) -> float:
        if self._last_renewal_sent is None:
            return -math.inf
        return self._last_renewal_sent + self.min_renewal_interval

    def _decode(
        self,
        data: bytes,
        parse: Callable[[bytes], Message | UnsupportedVersion],
        unsupported_version: int,
        now: float,
    ) -> Message | None:
        """``parse(data)``, or ``None`` when there is nothing more to do: bytes
        that do not parse are dropped; an "unsupported version" answer (from
        a server of the other protocol: NAT-PMP's is version 0) ends the
        client with the server's version and ``unsupported_version`` as the
        result code."""
        try:
            message = parse(data)
        except PortmapDecodeError as exc:
            self._drop(_DROP_FOR_DECODE.get(exc.reason, LeaseDropReason.MALFORMED))
            return None
        if isinstance(message, UnsupportedVersion):
            self._answered = True
            self._refuse(
                FailureReason.UNSUPPORTED_VERSION,
                unsupported_version,
                now,
                transient=False,
                retry_after=0.0,
                server_version=message.server_version,
            )
            return None
        return message

    def _suggested_port(self, suggested: Endpoint | None) -> int:
        """The external port to suggest: the one granted before, else the
        internal port, never 0 (rule 3)."""
        return suggested.port if suggested is not None and suggested.port else self.internal.port

    def _start(
        self,
        kind: ExchangeKind,
        now: float,
        *,
        at: float | None = None,
        recreate: bool = False,
        probe: bool = False,
    ) -> None:
        lifetime = 0 if kind is ExchangeKind.DELETE else self.lifetime_policy.requested
        suggested = self._mapping.external if self._mapping is not None else self._last_external
        start = now if at is None else at
        exchange = Exchange(
            kind,
            self._request(kind, lifetime, suggested),
            lifetime,
            start,
            start,
            recreate=recreate,
            probe=probe,
        )
        exchange.give_up_at = self._deadline(exchange)
        if kind is ExchangeKind.DELETE and self._mapping is not None:
            # No point deleting what the gateway drops by itself (RFC 6886 §3.1).
            give_up = exchange.give_up_at
            expiry = self._mapping.expires_at
            exchange.give_up_at = expiry if give_up is None else min(give_up, expiry)
        self._move(ClientState.PROBING if probe else _STATE_FOR_KIND[kind])
        self._exchange = exchange
        self._renew_at = None
        if start <= now:
            self._transmit(exchange, now)

    def _transmit(self, exchange: Exchange, now: float) -> None:
        self._send_request(exchange, now)
        exchange.transmissions += 1
        exchange.last_sent = now
        if self._requests_create and exchange.kind in (ExchangeKind.CREATE, ExchangeKind.RENEW):
            self._may_exist = True
        if exchange.kind is ExchangeKind.RENEW:
            self._last_renewal_sent = now
        self._schedule(exchange, now)

    def _give_up(self, exchange: Exchange, now: float) -> None:
        self._exchange = None
        if exchange.kind is ExchangeKind.DELETE:
            self._finish(
                ClientState.DELETED,
                MappingDeleted(self._mapping, confirmed=False, gateway_answered=self._answered),
            )
        elif exchange.probe:
            self._fail(FailureReason.TIMED_OUT, None, None)
        elif exchange.kind is ExchangeKind.RENEW:
            # The mapping is still valid: try again later, or let it expire
            # and re-create it (rule 2).
            self._move(ClientState.HELD)
            self._renew_at = self._renewal_retry_at(exchange, now)
        elif self._mapping is not None:
            # Re-creating a mapping presumed lost: keep at it until it expires.
            self._start(exchange.kind, now, recreate=True)
        elif (hint := self._silence_retry_hint(exchange)) is not None:
            # The same exchange again, later: its backoff carries on.
            self._exchange = exchange
            exchange.error_wait = error_backoff(exchange.error_wait, hint, self.max_error_wait)
            retry_at = now + exchange.error_wait
            self._retry_exchange_at(exchange, retry_at)
            self._emit(
                MappingFailed(
                    FailureReason.TIMED_OUT, self.protocol, terminal=False, retry_at=retry_at
                )
            )
        else:
            self._fail(FailureReason.TIMED_OUT, None, None)

    def _grant(
        self,
        external: Endpoint,
        granted_lifetime: int,
        now: float,
        details: MappingDetails,
        *,
        restarted: bool,
        planned: tuple[int, tuple[LifetimeNote, ...]] | None = None,
    ) -> None:
        """A success: record the mapping and say whether it is new or renewed.
        ``planned``: the lifetime to plan with and its notes, when the
        protocol knows better than :func:`clamp_lifetime` (UPnP's permanent
        leases)."""
        exchange = self._exchange
        requested = exchange.lifetime if exchange is not None else self.lifetime_policy.requested
        if planned is None:
            lifetime, notes = clamp_lifetime(granted_lifetime, requested, self.lifetime_policy)
        else:
            lifetime, notes = planned
        renew_at = self._first_renewal(now, lifetime)
        mapping = Mapping(
            protocol=self.protocol,
            transport=self.transport,
            internal=self.internal,
            external=external,
            gateway=self._mapping_gateway(),
            lifetime=lifetime,
            granted_lifetime=granted_lifetime,
            granted_at=now,
            renew_at=renew_at,
            expires_at=now + lifetime,
            notes=notes,
            details=details,
        )
        previous = self._mapping
        renewal = exchange is None or exchange.kind is ExchangeKind.RENEW
        self._mapping = mapping
        self._last_external = external
        self._exchange = None
        self._renew_at = renew_at
        self._move(ClientState.HELD)
        if previous is not None and renewal and not restarted:
            self._emit(MappingRenewed(mapping, previous))
        else:
            # A restart means the gateway made it afresh, even if asked to renew.
            self._emit(MappingGranted(mapping, recreated=self._ever_granted))
        self._ever_granted = True

    def _mapping_gateway(self) -> Endpoint:
        """What :attr:`Mapping.gateway` names (the server asked, by default)."""
        return self.gateway

    def _probe_answered(self, address: IPAddress | None, epoch: int | None) -> None:
        """The answer to :meth:`probe` (rule 6): back to IDLE, ready to start."""
        self._exchange = None
        self._move(ClientState.IDLE)
        self._emit(ExternalAddressFound(self.protocol, address, epoch))

    def _refuse(
        self,
        reason: FailureReason,
        code: int | None,
        now: float,
        *,
        transient: bool,
        retry_after: float,
        server_version: int | None = None,
        detail: str = "",
    ) -> None:
        """An error answer to the exchange in flight (rule 4)."""
        exchange = self._exchange
        if exchange is None:
            self._drop(LeaseDropReason.UNEXPECTED)
            return
        if exchange.kind is ExchangeKind.DELETE:
            self._exchange = None
            self._finish(
                ClientState.DELETED,
                MappingDeleted(self._mapping, confirmed=False, result_code=code),
            )
            return
        if not transient or exchange.probe:
            self._exchange = None
            if self._mapping is not None:
                self._emit(MappingLost(self._mapping, LossReason.REFUSED, code))
                self._mapping = None
            self._fail(reason, code, server_version, detail)
            return
        retry_at: float | None
        if exchange.kind is ExchangeKind.RENEW:
            self._exchange = None
            self._move(ClientState.HELD)
            retry_at = self._renew_at = self._renewal_retry_at(exchange, now)
        else:
            exchange.error_wait = error_backoff(
                exchange.error_wait, retry_after, self.max_error_wait
            )
            retry_at = now + exchange.error_wait
            # The gateway answered: the retransmission schedule (for silence)
            # starts over with the retry, and its attempt limit with it.
            exchange.transmissions = 0
            exchange.give_up_at = self._deadline(exchange)
            self._retry_exchange_at(exchange, retry_at)
        self._emit(
            MappingFailed(
                reason,
                self.protocol,
                terminal=False,
                result_code=code,
                retry_at=retry_at,
                detail=detail,
            )
        )

    def _note_epoch(self, epoch: int, now: float, *, announced: bool) -> bool:
        """Track the gateway's epoch; on a restart say so and return True.
        Every message that reaches this is an answer from the gateway."""
        self._answered = True
        if self._epoch is None:
            return False
        verdict = self._epoch.observe(epoch, now)
        if verdict.valid or verdict.previous is None:
            return False
        self._emit(
            GatewayRestarted(self.gateway, verdict.previous, epoch, self._mapping, announced)
        )
        return True

    def _recreate(self, now: float, at: float) -> None:
        """After a restart: make the mapping again at ``at``."""
        if not self._may_recreate():
            return
        exchange = self._exchange
        if exchange is not None and exchange.kind is not ExchangeKind.RENEW:
            # Already creating: just do not wait for the next retransmission.
            exchange.next_send = at if exchange.next_send is None else min(exchange.next_send, at)
            return
        self._start(ExchangeKind.CREATE, now, at=at, recreate=True)

    def _on_delete_answer(self, lifetime: int) -> None:
        """A success while deleting: lifetime 0 acknowledges the deletion;
        any other answers an earlier renewal, late."""
        if lifetime == 0:
            self._finish(ClientState.DELETED, MappingDeleted(self._mapping, confirmed=True))
        else:
            self._drop(LeaseDropReason.STALE)

    def _lose(self, reason: LossReason, code: int | None, now: float) -> None:
        """The gateway dropped or refused the mapping unasked: report it and
        make it again."""
        mapping = self._mapping
        if mapping is None:
            self._drop(LeaseDropReason.UNEXPECTED)
            return
        self._mapping = None
        self._emit(MappingLost(mapping, reason, code))
        self._start(ExchangeKind.CREATE, now, recreate=True)

    def _revoke(self, now: float) -> None:
        """The gateway said, unasked, that the mapping has lifetime 0."""
        self._lose(LossReason.REVOKED, None, now)

    def _may_recreate(self) -> bool:
        """Re-creation is for a running client: not an idle (delete-only or
        probing) or finished one, and not while deleting."""
        return self._state in (ClientState.REQUESTING, ClientState.HELD, ClientState.RENEWING)

    def _fail(
        self,
        reason: FailureReason,
        code: int | None,
        server_version: int | None,
        detail: str = "",
    ) -> None:
        self._finish(
            ClientState.FAILED,
            MappingFailed(
                reason,
                self.protocol,
                terminal=True,
                result_code=code,
                server_version=server_version,
                detail=detail,
            ),
        )

    def _finish(self, state: ClientState, event: PortmapEvent) -> None:
        self._move(state)
        self._exchange = None
        self._renew_at = None
        if state is ClientState.DELETED:
            self._mapping = None
        self._emit(event)
