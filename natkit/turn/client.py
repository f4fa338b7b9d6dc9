"""A sans-IO TURN client (RFC 8656): one allocation on one server.

Theory of operation. ``TurnClient`` has the shape of every natkit core
(:mod:`natkit.sansio`): the driver feeds it bytes from the server and the
passing of time, and drains datagrams, one timer and events. It never opens
a socket or reads a clock. The transport to the server is the driver's
business: over UDP it feeds :meth:`receive_datagram`; over TCP or TLS it
feeds the raw stream to :meth:`receive_stream_data` (framed here, RFC 8656
§11.5) and writes each outgoing ``Datagram``'s bytes to the stream in order.

Rules:

1. Requests go through natkit's STUN transaction machinery (RFC 8489 §6.2:
   retransmission over UDP, one transmission and a 39.5 s timeout over
   streams). The first Allocate carries no credentials; the 401 names the
   realm and nonce, and every later request is signed with the long-term key
   (RFC 8489 §9.2). 438 (Stale Nonce) is retried with the new nonce, at most
   ``max_stale_nonce`` times in a row; a 401 to a signed request is a
   refusal of the credentials, except once when it brings a new nonce (a
   restarted server). 500 is retried ``max_server_errors`` times with
   doubling backoff. Nothing else is retried here: the caller decides, with
   :class:`natkit.turn.backoff.Backoff`, on a failure's ``retryable``.
2. Responses must carry valid MESSAGE-INTEGRITY once requests are signed,
   except 401, 437 and 438, which servers send unsigned (RFC 8489 §9.2.5;
   coturn does so for 437 too); a forged or mismatched one is dropped and
   counted, and the transaction carries on.
3. The allocation is refreshed ``refresh_margin`` before it expires;
   permissions every ``permission_refresh`` (< 300 s, §9) and channels every
   ``channel_refresh`` (< 600 s, §12), for as long as they are wanted:
   :meth:`TurnClient.retain` / :meth:`TurnClient.release` stop refreshing
   those of peers that are gone, so they lapse at the server (there is no
   request to delete one; a permission lives 300 s, a channel 600 s). A
   transaction timeout, or 437, on any of them means the allocation is gone:
   :class:`AllocationLost`. ICMP errors from the server's address count as
   strikes; ``icmp_strikes`` of them with no answer in between declare the
   server unreachable (a keepalive probe is sent at the first, so a dead
   server is noticed within about RTO·(2^n − 1) rather than a refresh later).
4. Datagrams to a peer wait (bounded) for its permission, then go as Send
   indications until a channel is bound, then as ChannelData (padded over
   streams). Received ChannelData needs a channel we asked for; a Data
   indication needs a permission for its peer's address. Everything else
   from the server, and anything from elsewhere, is dropped and counted.
5. ``close()`` deletes the allocation with a Refresh of LIFETIME 0 (§8) and
   ends in :class:`Deallocated`. ``AllocationFailed``, ``AllocationLost`` and
   ``Deallocated`` are terminal: a new allocation needs a new client.
"""

from __future__ import annotations

import ipaddress
import random
from collections import deque
from collections.abc import Iterable

from natkit.endpoint import Endpoint, Family, IPAddress
from natkit.errors import LocalProtocolError
from natkit.sansio import Datagram, IcmpError, IcmpKind
from natkit.stun.client import StunClient
from natkit.stun.codec import Message
from natkit.stun.constants import ErrorCode, MessageClass
from natkit.stun.events import ResponseReceived, TransactionTimedOut
from natkit.stun.transaction import RetransmissionPolicy
from natkit.turn.auth import LongTermAuth, Signing
from natkit.turn.channel_data import (
    ChannelData,
    encode_channel_data,
)
from natkit.turn.config import TurnConfig
from natkit.turn.events import (
    AllocationCreated,
    AllocationFailed,
    AllocationLost,
    AllocationRefreshed,
    ChannelBindFailed,
    ChannelBound,
    DataReceived,
    Deallocated,
    Outcome,
    PermissionCreated,
    PermissionFailed,
    PingCompleted,
    TurnEvent,
    TurnFailure,
)
from natkit.turn.framing import FramingError, StreamFramer
from natkit.turn.inbound import Junk, PeerData, classify
from natkit.turn.messages import (
    TurnProtocolError,
    allocate_attributes,
    channel_bind_attributes,
    peer_address,
    permission_attributes,
    read_allocate_success,
    read_lifetime,
    refresh_attributes,
    send_indication,
)
from natkit.turn.peers import Channel, ChannelState, PeerTable, PermissionState
from natkit.turn.requests import (
    UNSIGNED_ERRORS,
    Action,
    Request,
    RequestKind,
    RetryLimits,
    Scope,
    decide_error,
    scope_of,
)
from natkit.turn.state import AllocationState, TurnCounters
from natkit.turn.timers import Deadlines

#: Largest datagram a peer can be sent: a Send indication to an IPv6 peer
#: (20 header + 24 XOR-PEER-ADDRESS + 4 DATA header) must fit one IPv4 UDP
#: datagram (65,507 bytes), and the relay leg is UDP too.
MAX_DATA = 65_507 - 20 - 24 - 4 - 3
#: The shortest refresh interval scheduled, whatever the server grants.
_MIN_REFRESH = 1.0
#: ICMP errors that mean nothing answers at the server's address.
_UNREACHABLE = frozenset(
    {
        IcmpKind.PORT_UNREACHABLE,
        IcmpKind.HOST_UNREACHABLE,
        IcmpKind.NET_UNREACHABLE,
        IcmpKind.ADMIN_PROHIBITED,
    }
)


#: A deadline's key: what is due (``"refresh"``, ``"permission"``...) and for whom.
_TimerKey = tuple[str, object]


class TurnClient:
    """One TURN allocation, driven by bytes and ``now`` (see the module doc)."""

    def __init__(self, config: TurnConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.state = AllocationState.IDLE
        self.counters = TurnCounters()
        #: XOR-RELAYED-ADDRESS, once allocated.
        self.relayed: Endpoint | None = None
        #: XOR-MAPPED-ADDRESS, once allocated.
        self.mapped: Endpoint | None = None
        #: The lifetime last granted, and when it runs out.
        self.lifetime: int | None = None
        self.expires_at: float | None = None
        #: Why the allocation ended (``None`` while it lives or after a clean close).
        self.outcome: Outcome | None = None
        # Transaction IDs must be unpredictable (RFC 8489 §6: they are what
        # keeps off-path forgeries out); the RNG is injected for tests.
        self._rng = rng or random.SystemRandom()
        self._stun = StunClient(policy=config.request_policy(), rng=self._rng)
        self._framer = StreamFramer() if config.transport.reliable else None
        self._peers = PeerTable()
        self._requests: dict[bytes, Request] = {}
        self._retries: dict[int, Request] = {}
        self._retry_ids = 0
        self._deadlines: Deadlines[_TimerKey] = Deadlines()
        self._outbox: list[Datagram] = []
        self._events: deque[TurnEvent] = deque()
        self._auth = LongTermAuth(config.credentials)
        self._limits = RetryLimits(
            config.max_stale_nonce, config.max_server_errors, config.retry_backoff
        )
        self._refreshing = False
        self._keepalive_tid: bytes | None = None
        self._last_sent: float | None = None
        self._icmp_strikes = 0
        self._close_requested = False

    # -- queries ------------------------------------------------------------

    @property
    def server(self) -> Endpoint:
        return self.config.server

    @property
    def srtt(self) -> float | None:
        """Smoothed RTT to the server from unambiguous answers (RFC 6298), if any."""
        return self._stun.rto_estimator.srtt

    @property
    def bad_integrity(self) -> int:
        """Responses dropped for missing or wrong MESSAGE-INTEGRITY."""
        return self._stun.counters.bad_integrity

    @property
    def unknown_transaction(self) -> int:
        """Responses matching no transaction (forged, late or duplicated)."""
        counters = self._stun.counters
        return counters.unknown_transaction + counters.late_or_duplicate + counters.malformed

    def has_permission(self, peer: IPAddress | Endpoint) -> bool:
        """Whether the server relays from ``peer``'s address now."""
        permission = self._peers.permission(peer_address(peer))
        return permission is not None and permission.state is PermissionState.INSTALLED

    def refusal(self, peer: IPAddress | Endpoint, now: float) -> Outcome | None:
        """Why ``peer``'s permission was refused, while ``refusal_hold`` lasts."""
        return self._peers.refusal(peer_address(peer), now)

    def channel_for(self, peer: Endpoint) -> int | None:
        """The bound channel number of ``peer`` (``None``: none bound yet)."""
        channel = self._peers.channel(peer)
        return channel.number if channel and channel.state is ChannelState.BOUND else None

    # -- caller's inputs ------------------------------------------------------

    def allocate(self, now: float) -> None:
        """Ask the server for an allocation (only once, from ``idle``)."""
        if self.state is not AllocationState.IDLE:
            raise LocalProtocolError(f"allocate() in state {self.state.value}")
        self.state = AllocationState.ALLOCATING
        attributes = allocate_attributes(
            self.config.lifetime, self.config.family, self.config.software
        )
        self._send(Request(RequestKind.ALLOCATE, attributes), now)

    def permit(self, peer: IPAddress | Endpoint | str, now: float) -> None:
        """Have the server accept datagrams from ``peer``'s address (RFC 8656
        §9), now or as soon as the allocation exists; kept until close."""
        address = peer_address(peer)
        self._check_usable("permit()", address)
        permission = self._peers.permission(address)
        if permission is not None or self._peers.refusal(address, now) is not None:
            return
        permission = self._peers.add_permission(address)
        if self.state is AllocationState.ALLOCATED:
            self._request_permission(address, now)

    @property
    def permitted(self) -> tuple[IPAddress, ...]:
        """The addresses whose permissions are kept (installed or pending)."""
        return tuple(self._peers.permissions)

    @property
    def bound(self) -> tuple[Endpoint, ...]:
        """The peers whose channels are kept (bound or pending)."""
        kept = (ChannelState.PENDING, ChannelState.BOUND)
        return tuple(e for e, c in self._peers.channels.items() if c.state in kept)

    def release(self, peer: IPAddress | Endpoint, now: float) -> None:
        """Stop refreshing what was kept for ``peer`` (RFC 8656 §9, §12): for an
        address, its permission and every channel to it; for an endpoint, its
        channel only. Nothing is sent: the server lets them lapse. Datagrams
        held for the permission are dropped (counted); data from a released
        peer is dropped too. A later :meth:`permit`, :meth:`bind` or
        :meth:`send` to it asks again (a channel with its old number)."""
        if isinstance(peer, Endpoint):
            channel = self._peers.channel(peer)
            if channel is not None and channel.state is not ChannelState.FAILED:
                channel.state = ChannelState.RELEASED
                self._deadlines.cancel(("channel", peer))
            return
        for endpoint in [e for e in self._peers.channels if e.address == peer]:
            self._deadlines.cancel(("channel", endpoint))
        self._deadlines.cancel(("permission", peer))
        self.counters.dropped_sends += self._peers.release(peer)

    def retain(self, peers: Iterable[Endpoint], now: float) -> None:
        """Keep permissions and channels for ``peers`` only; :meth:`release`
        every other one."""
        wanted = set(peers)
        addresses = {e.address for e in wanted}
        for address in self.permitted:
            if address not in addresses:
                self.release(address, now)
        for endpoint in self.bound:
            if endpoint not in wanted:
                self.release(endpoint, now)

    def bind(self, peer: Endpoint, now: float) -> int:
        """Bind a channel to ``peer`` (RFC 8656 §12); returns its number.

        Raises :class:`LocalProtocolError` when all 4,096 numbers are used.
        """
        self._check_usable("bind()", peer.address)
        self.permit(peer, now)
        channel = self._peers.channel(peer)
        if channel is None:
            channel = self._peers.new_channel(peer)
            if channel is None:
                raise LocalProtocolError("no TURN channel numbers left on this allocation")
        elif channel.state in (ChannelState.FAILED, ChannelState.RELEASED):
            # RFC 8656 §12: the same number may be tried again for the same peer.
            channel.state = ChannelState.PENDING
        if self.state is AllocationState.ALLOCATED and not channel.requested:
            self._request_channel(channel, now)
        return channel.number

    def send(self, peer: Endpoint, data: bytes, now: float) -> bool:
        """Relay ``data`` to ``peer``; ``False`` when it was dropped (counted).

        Like UDP, no delivery is promised. Without a permission for the
        peer's address, one is requested and up to ``pending_limit``
        datagrams are held until it is installed.
        """
        if len(data) > MAX_DATA:
            raise LocalProtocolError(f"{len(data)} bytes: a TURN datagram holds {MAX_DATA}")
        if self.state is AllocationState.IDLE:
            raise LocalProtocolError("send() before allocate()")
        if self.state not in (AllocationState.ALLOCATING, AllocationState.ALLOCATED):
            self.counters.dropped_sends += 1
            return False
        self._check_family(peer.address)
        permission = self._peers.permission(peer.address)
        if permission is None:
            if self._peers.refusal(peer.address, now) is not None:
                self.counters.dropped_sends += 1
                return False
            self.permit(peer.address, now)
            permission = self._peers.add_permission(peer.address)
        if permission.state is PermissionState.PENDING:
            if len(permission.held) >= self.config.pending_limit:
                self.counters.dropped_sends += 1
                return False
            permission.held.append((peer, data))
            return True
        self._transmit(peer, data, now)
        return True

    def refresh(self, now: float) -> None:
        """Refresh the allocation now, not at its schedule: the caller doubts it
        (the network changed, so the 5-tuple may have; a relayed path went
        silent). The answer proves the server still holds it; 437 or no answer
        ends it (:class:`AllocationLost`). Nothing happens unless allocated."""
        if self.state is AllocationState.ALLOCATED:
            self._refresh(now)

    def ping(self, now: float) -> None:
        """Send a Binding request to the server (allowed before ``allocate()``
        too); :class:`PingCompleted` gives the round-trip time, and the answer
        also feeds :attr:`srtt`. For picking the nearest of several servers."""
        if self.state.terminal:
            raise LocalProtocolError(f"ping() in state {self.state.value}")
        self._send(Request(RequestKind.PING, ()), now)

    def close(self, now: float) -> None:
        """Delete the allocation (Refresh with LIFETIME 0); idempotent."""
        if self.state is AllocationState.IDLE:
            self._finish(AllocationState.CLOSED, Deallocated(confirmed=True))
        elif self.state is AllocationState.ALLOCATING:
            # Wait for the answer: a success must still be deleted.
            self._close_requested = True
            self.state = AllocationState.DEALLOCATING
        elif self.state is AllocationState.ALLOCATED:
            self._deallocate(now)

    # -- driver's inputs ------------------------------------------------------

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        """A UDP datagram arrived on ``socket`` from ``remote``."""
        if self.state.terminal:
            self.counters.after_close += 1
            return
        if remote != self.config.server or socket != self.config.socket:
            self.counters.wrong_source += 1
            return
        self._receive_message(data, now)

    def receive_stream_data(self, data: bytes, now: float) -> None:
        """Bytes arrived on the TCP/TLS connection to the server."""
        if self._framer is None:
            raise LocalProtocolError("receive_stream_data() on a UDP client")
        if self.state.terminal:
            self.counters.after_close += 1
            return
        try:
            messages = self._framer.feed(data)
        except FramingError as exc:
            self.counters.malformed += 1
            self._end(Outcome(TurnFailure.PROTOCOL_ERROR, None, f"stream framing: {exc.reason}"))
            return
        for message in messages:
            self._receive_message(message, now)
            if self.state.terminal:
                return

    def connection_lost(self, now: float, detail: str = "") -> None:
        """The driver's connection to the server closed or could not be made."""
        if self.state is AllocationState.DEALLOCATING and not self._close_requested:
            # RFC 8656 §3.1: closing the connection deletes the allocation anyway.
            self._finish(AllocationState.CLOSED, Deallocated(confirmed=False))
            return
        self._end(Outcome(TurnFailure.CONNECTION_LOST, None, detail or "connection closed"))

    def receive_icmp_error(self, error: IcmpError, socket: int, now: float) -> None:
        """An ICMP error about a datagram sent from ``socket`` (see rule 3)."""
        if socket != self.config.socket or error.destination != self.config.server:
            return
        if error.kind not in _UNREACHABLE or self.state.terminal:
            return
        self.counters.icmp_errors += 1
        self._icmp_strikes += 1
        if self._icmp_strikes >= self.config.icmp_strikes:
            reason = f"ICMP {error.kind.value} from {error.offender or 'the network'}"
            self._end(Outcome(TurnFailure.SERVER_UNREACHABLE, None, reason))
        elif self.state is AllocationState.ALLOCATED and self._keepalive_tid is None:
            self._send_keepalive(now)

    def handle_timer(self, now: float) -> None:
        self._stun.handle_timer(now)
        self._after_stun(now)
        for key in self._deadlines.pop_due(now):
            if self.state.terminal:
                return
            self._on_deadline(key, now)

    # -- driver's outputs -----------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        self._collect()
        out, self._outbox = self._outbox, []
        if out:
            self._last_sent = now
        return out

    def get_timer(self) -> float | None:
        if self.state.terminal:
            return None
        deadlines = [d for d in (self._stun.get_timer(), self._deadlines.next()) if d is not None]
        return min(deadlines) if deadlines else None

    def next_event(self) -> TurnEvent | None:
        return self._events.popleft() if self._events else None

    # -- requests -------------------------------------------------------------

    def _send(
        self, request: Request, now: float, policy: RetransmissionPolicy | None = None
    ) -> None:
        if request.kind.unsigned:
            signing = Signing(request.attributes, None, None)
        else:
            signing = self._auth.sign(request.attributes)
        request.nonce = signing.nonce
        tid = self._stun.new_transaction_id()
        message = Message(request.kind.method, MessageClass.REQUEST, tid, signing.attributes)
        tid = self._stun.send_request(
            message,
            self.config.server,
            now,
            socket=self.config.socket,
            policy=policy,
            integrity_key=signing.key,
            unsigned_errors=UNSIGNED_ERRORS,
        )
        self._requests[tid] = request
        if request.kind is RequestKind.KEEPALIVE:
            self._keepalive_tid = tid
        self._collect()

    def _collect(self) -> None:
        self._outbox.extend(self._stun.datagrams_to_send(0.0))

    def _after_stun(self, now: float) -> None:
        """Act on what the STUN client matched or gave up on."""
        self._collect()
        while (event := self._stun.next_event()) is not None:
            if isinstance(event, ResponseReceived):
                request = self._requests.pop(event.transaction_id, None)
                if request is not None and request.kind is RequestKind.PING:
                    self._events.append(PingCompleted(event.rtt))
                if request is not None:
                    self._forget_keepalive(event.transaction_id)
                    self._on_response(request, event.response, now)
            elif isinstance(event, TransactionTimedOut):
                request = self._requests.pop(event.transaction_id, None)
                if request is not None:
                    self._forget_keepalive(event.transaction_id)
                    self._on_timeout(request, now)
            if self.state.terminal:
                return

    def _forget_keepalive(self, tid: bytes) -> None:
        if tid == self._keepalive_tid:
            self._keepalive_tid = None

    def _on_response(self, request: Request, response: Message, now: float) -> None:
        self._icmp_strikes = 0
        if response.message_class is MessageClass.ERROR_RESPONSE:
            self._on_error(request, response, now)
            return
        if response.method != request.kind.method:
            outcome = Outcome(TurnFailure.PROTOCOL_ERROR, None, "success of another method")
            self._request_failed(request, outcome, now)
            return
        handlers = {
            RequestKind.ALLOCATE: self._allocated,
            RequestKind.REFRESH: self._refreshed,
            RequestKind.PERMISSION: self._permission_installed,
            RequestKind.CHANNEL: self._channel_bound,
            RequestKind.DEALLOCATE: self._deallocated,
            RequestKind.KEEPALIVE: self._keepalive_answered,
            RequestKind.PING: self._keepalive_answered,
        }
        handlers[request.kind](request, response, now)

    def _on_error(self, request: Request, response: Message, now: float) -> None:
        decision = decide_error(
            request,
            response,
            limits=self._limits,
            credentials=self.config.credentials is not None,
            realm=self._auth.realm,
        )
        if decision.action is Action.RESEND_SIGNED:
            assert decision.realm is not None
            assert decision.nonce is not None
            self._auth.learn(decision.realm, decision.nonce)
            if response.error_code and response.error_code.code == ErrorCode.STALE_NONCE:
                request.stale_nonces += 1
                self.counters.stale_nonces += 1
            else:
                request.reauthenticated = request.nonce is not None
            self._send(request, now)
        elif decision.action is Action.RESEND_LATER:
            self.counters.server_errors += 1
            request.server_errors += 1
            self._retry_ids += 1
            self._retries[self._retry_ids] = request
            self._deadlines.schedule(("retry", self._retry_ids), now + decision.delay)
        else:
            assert decision.outcome is not None
            self._request_failed(request, decision.outcome, now)

    def _on_timeout(self, request: Request, now: float) -> None:
        if request.kind is RequestKind.PING:
            self._events.append(PingCompleted(None))
        outcome = Outcome(TurnFailure.TIMEOUT, None, f"no answer to {request.kind.value}")
        self._request_failed(request, outcome, now)

    def _request_failed(self, request: Request, outcome: Outcome, now: float) -> None:
        scope = scope_of(request.kind, outcome.failure)
        if scope is Scope.CLOSE:
            confirmed = outcome.failure is TurnFailure.ALLOCATION_MISMATCH  # nothing to delete
            self._finish(AllocationState.CLOSED, Deallocated(confirmed))
        elif scope is Scope.PERMISSION:
            self._permission_refused(request, outcome, now)
        elif scope is Scope.CHANNEL:
            self._channel_refused(request, outcome)
        elif scope is Scope.ALLOCATION:
            self._end(outcome)

    # -- successes ------------------------------------------------------------

    def _allocated(self, request: Request, response: Message, now: float) -> None:
        try:
            result = read_allocate_success(response)
        except TurnProtocolError as exc:
            self._end(Outcome(TurnFailure.PROTOCOL_ERROR, None, str(exc)))
            return
        self.relayed, self.mapped = result.relayed, result.mapped
        self._granted(result.lifetime, now)
        if self._close_requested:
            self._deallocate(now)
            return
        self.state = AllocationState.ALLOCATED
        authenticated = request.nonce is not None and response.has_message_integrity
        self._events.append(
            AllocationCreated(result.relayed, result.mapped, result.lifetime, authenticated)
        )
        if self.config.keepalive is not None:
            self._deadlines.schedule(("keepalive", None), now + self.config.keepalive)
        # Permissions and channels asked for while allocating.
        for address in list(self._peers.permissions):
            self._request_permission(address, now)
        for channel in list(self._peers.channels.values()):
            if channel.state is ChannelState.PENDING:
                self._request_channel(channel, now)

    def _granted(self, lifetime: int, now: float) -> None:
        self.lifetime = lifetime
        self.expires_at = now + lifetime
        if self.config.refresh_after is not None:
            interval = self.config.refresh_after
        else:
            interval = lifetime - min(self.config.refresh_margin, lifetime / 2)
        self._deadlines.schedule(("refresh", None), now + max(_MIN_REFRESH, interval))
        self._deadlines.schedule(("expiry", None), now + lifetime)

    def _refreshed(self, request: Request, response: Message, now: float) -> None:
        self._refreshing = False
        lifetime = read_lifetime(response)
        if lifetime is None or lifetime < 1:
            self._end(Outcome(TurnFailure.PROTOCOL_ERROR, None, f"Refresh granted {lifetime}"))
            return
        self.counters.refreshes += 1
        self._granted(lifetime, now)
        self._events.append(AllocationRefreshed(lifetime))

    def _permission_installed(self, request: Request, response: Message, now: float) -> None:
        address = peer_address(_peer_of(request))
        permission = self._peers.permission(address)
        if permission is None:
            return
        permission.requested = False
        self._deadlines.schedule(("permission", address), now + self.config.permission_refresh)
        if permission.state is PermissionState.INSTALLED:
            return
        permission.state = PermissionState.INSTALLED
        self._events.append(PermissionCreated(address))
        held, permission.held = permission.held, deque()
        for peer, data in held:
            self._transmit(peer, data, now)

    def _channel_bound(self, request: Request, response: Message, now: float) -> None:
        peer = _peer_of(request)
        assert isinstance(peer, Endpoint)
        channel = self._peers.channel(peer)
        if channel is None:
            return
        channel.requested = False
        if channel.state is ChannelState.RELEASED:
            return  # released while the request was out: let it lapse
        self._deadlines.schedule(("channel", peer), now + self.config.channel_refresh)
        # RFC 8656 §12: ChannelBind refreshed the address's permission too.
        permission = self._peers.permission(peer.address)
        if permission is not None and permission.state is PermissionState.INSTALLED:
            self._deadlines.schedule(
                ("permission", peer.address), now + self.config.permission_refresh
            )
        if channel.state is not ChannelState.BOUND:
            channel.state = ChannelState.BOUND
            self._events.append(ChannelBound(peer, channel.number))

    def _deallocated(self, request: Request, response: Message, now: float) -> None:
        self._finish(AllocationState.CLOSED, Deallocated(confirmed=True))

    def _keepalive_answered(self, request: Request, response: Message, now: float) -> None:
        pass  # the RTT sample went to the estimator; the strikes were reset

    # -- refusals -------------------------------------------------------------

    def _permission_refused(self, request: Request, outcome: Outcome, now: float) -> None:
        address = peer_address(_peer_of(request))
        self._peers.refuse(address, now + self.config.refusal_hold, now, outcome)
        self._deadlines.cancel(("permission", address))
        for endpoint in [e for e in self._peers.channels if e.address == address]:
            self._deadlines.cancel(("channel", endpoint))
        dropped = self._peers.remove_permission(address)
        self.counters.dropped_sends += dropped
        self._events.append(PermissionFailed(address, outcome, dropped))

    def _channel_refused(self, request: Request, outcome: Outcome) -> None:
        peer = _peer_of(request)
        assert isinstance(peer, Endpoint)
        channel = self._peers.channel(peer)
        if channel is None:
            return
        channel.requested = False
        channel.state = ChannelState.FAILED
        self._deadlines.cancel(("channel", peer))
        self._events.append(ChannelBindFailed(peer, channel.number, outcome))

    # -- timers ---------------------------------------------------------------

    def _on_deadline(self, key: _TimerKey, now: float) -> None:
        what = key[0]
        if what == "retry":
            # Deallocating, only the Allocate is still retried (close() waits for it).
            request = self._retries.pop(key[1])  # type: ignore[call-overload]
            if self.state is not AllocationState.DEALLOCATING or self._close_requested:
                self._send(request, now)
            return
        if self.state is not AllocationState.ALLOCATED:
            return
        if what == "refresh":
            self._refresh(now)
        elif what == "expiry":
            self._end(Outcome(TurnFailure.TIMEOUT, None, "the allocation expired unrefreshed"))
        elif what == "permission":
            address = key[1]
            assert isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address)
            self._request_permission(address, now)
        elif what == "channel":
            peer = key[1]
            assert isinstance(peer, Endpoint)
            channel = self._peers.channel(peer)
            if channel is not None and channel.state is ChannelState.BOUND:
                self._request_channel(channel, now)
        elif what == "keepalive":
            self._keepalive_due(now)

    def _refresh(self, now: float) -> None:
        if not self._refreshing:
            self._refreshing = True
            self._send(Request(RequestKind.REFRESH, refresh_attributes(self.config.lifetime)), now)

    def _keepalive_due(self, now: float) -> None:
        interval = self.config.keepalive
        assert interval is not None
        idle_since = self._last_sent if self._last_sent is not None else now
        if now - idle_since >= interval and self._keepalive_tid is None:
            self._send_keepalive(now)
            self._deadlines.schedule(("keepalive", None), now + interval)
        else:
            self._deadlines.schedule(("keepalive", None), max(now, idle_since) + interval)

    def _send_keepalive(self, now: float) -> None:
        self.counters.keepalives += 1
        self._send(Request(RequestKind.KEEPALIVE, ()), now)

    # -- permissions, channels, data ------------------------------------------

    def _request_permission(self, address: IPAddress, now: float) -> None:
        permission = self._peers.permission(address)
        if permission is None or permission.requested:
            return
        permission.requested = True
        self._send(Request(RequestKind.PERMISSION, permission_attributes(address), address), now)

    def _request_channel(self, channel: Channel, now: float) -> None:
        channel.requested = True
        attributes = channel_bind_attributes(channel.number, channel.peer)
        self._send(Request(RequestKind.CHANNEL, attributes, channel.peer), now)

    def _transmit(self, peer: Endpoint, data: bytes, now: float) -> None:
        channel = self._peers.channel(peer)
        server, socket = self.config.server, self.config.socket
        if channel is not None and channel.state is ChannelState.BOUND:
            packet = encode_channel_data(channel.number, data, pad=self.config.transport.reliable)
            self._outbox.append(Datagram(packet, server, socket))
            self.counters.sent_channel_data += 1
            return
        tid = self._stun.new_transaction_id()
        self._outbox.append(Datagram(send_indication(tid, peer, data), server, socket))
        self.counters.sent_indications += 1
        if not self.config.auto_channel:
            return
        if channel is None:
            channel = self._peers.new_channel(peer)
            if channel is not None:
                self._request_channel(channel, now)
        elif channel.state is ChannelState.RELEASED and not channel.requested:
            channel.state = ChannelState.PENDING  # the peer is back: its old number
            self._request_channel(channel, now)

    def _check_usable(self, call: str, address: IPAddress) -> None:
        if self.state not in (AllocationState.ALLOCATING, AllocationState.ALLOCATED):
            raise LocalProtocolError(f"{call} in state {self.state.value}")
        self._check_family(address)

    def _check_family(self, address: IPAddress) -> None:
        if self.relayed is not None:
            family = self.relayed.family
        else:
            family = self.config.family or Family.IPV4
        if (address.version == 6) != (family is Family.IPV6):
            raise LocalProtocolError(
                f"peer {address} is not in the relay's address family ({family.name})"
            )

    # -- receiving ------------------------------------------------------------

    def _receive_message(self, data: bytes, now: float) -> None:
        inbound = classify(data)
        if isinstance(inbound, Message):
            self._stun.receive_response(inbound, self.config.server, self.config.socket, now)
            self._after_stun(now)
        elif isinstance(inbound, ChannelData):
            channel = self._peers.channel_by_number(inbound.channel)
            # RFC 8656 §12: data may come as soon as the ChannelBind was sent.
            if channel is None or channel.state in (ChannelState.FAILED, ChannelState.RELEASED):
                self.counters.unknown_channel += 1
                return
            self._icmp_strikes = 0
            self._events.append(DataReceived(channel.peer, inbound.data, inbound.channel))
        elif isinstance(inbound, PeerData):
            # RFC 8656 §11.4: only from addresses we hold a permission for.
            if self._peers.permission(inbound.peer.address) is None:
                self.counters.no_permission += 1
                return
            self._icmp_strikes = 0
            self._events.append(DataReceived(inbound.peer, inbound.data, None))
        elif inbound is Junk.MALFORMED:
            self.counters.malformed += 1
        else:
            self.counters.unexpected += 1

    # -- endings --------------------------------------------------------------

    def _deallocate(self, now: float) -> None:
        self._cancel_requests()
        self._deadlines.clear()
        self._retries.clear()
        self.counters.dropped_sends += self._peers.clear()
        self.state = AllocationState.DEALLOCATING
        request = Request(RequestKind.DEALLOCATE, refresh_attributes(0))
        self._send(request, now, self.config.close_policy())

    def _end(self, outcome: Outcome) -> None:
        """The allocation failed (never made) or was lost (made, now gone)."""
        if self.state.terminal:
            return
        if self.state is AllocationState.DEALLOCATING:
            # Closed while allocating: an error answer proves nothing was made.
            confirmed = self._close_requested and outcome.code is not None
            self._finish(AllocationState.CLOSED, Deallocated(confirmed))
            return
        self.outcome = outcome
        if self.state is AllocationState.ALLOCATED and self.relayed is not None:
            self._finish(AllocationState.FAILED, AllocationLost(self.relayed, outcome))
        else:
            self._finish(AllocationState.FAILED, AllocationFailed(outcome))

    def _finish(self, state: AllocationState, event: TurnEvent) -> None:
        self._cancel_requests()
        self._deadlines.clear()
        self._retries.clear()
        self.counters.dropped_sends += self._peers.clear()
        self.state = state
        self._events.append(event)

    def _cancel_requests(self) -> None:
        for tid in list(self._requests):
            self._stun.cancel(tid)
        self._requests.clear()
        self._keepalive_tid = None
        self._refreshing = False


def _peer_of(request: Request) -> IPAddress | Endpoint:
    peer = request.peer
    assert peer is not None
    return peer
