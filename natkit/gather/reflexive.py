"""Server-reflexive gathering: many STUN servers at once, as one sans-IO core.

Theory of operation
-------------------
A NAT mapping belongs to a socket, so every server is asked from the same
local socket of its family (index 0, 1, ... of the sockets the driver
bound), all at once: gathering costs one round trip to the slowest server
that answers, not the sum. One :class:`~natkit.stun.client.StunClient`
owns the transactions (RFC 8489 §6.2.1 retransmissions, responses matched
by transaction ID and source) and measures each server's RTT.

Targets arrive with :meth:`ReflexiveGatherer.add_target` (UDP) and
:meth:`~ReflexiveGatherer.add_stream_target` (TCP/TLS), so the driver can
start the servers it knows while it still asks DNS for a NAT64 prefix;
:meth:`~ReflexiveGatherer.no_more_targets` says the list is complete. A
stream target becomes a :class:`~natkit.sansio.StreamRequest`: the driver
opens the connection, sends the request, and hands back the reply
(:meth:`~ReflexiveGatherer.stream_answered`), which is parsed here with the
same strict codec.

When to stop: when every target is answered or failed, at ``timeout``, or
when the stragglers have had long enough. A target still silent
``max(straggler_min_wait, straggler_factor x the slowest RTT seen)`` after
it was sent, once any server has answered, is *cut off*: it would most
likely have answered by then, and one dead server must not cost every
gathering its full retransmission schedule. The same rule decides "UDP is
blocked" quickly when TCP answered and UDP stays silent.
"""

from __future__ import annotations

import ipaddress
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.gather.candidates import (
    CandidateTransport,
    PathKind,
    ServerObservation,
    ServerOutcome,
)
from natkit.sansio import Datagram, StreamRequest, StreamResult, StreamTransport
from natkit.stun.client import StunClient
from natkit.stun.codec import (
    Message,
    StunDecodeError,
    binding_request,
    encode_message,
    parse_message,
)
from natkit.stun.constants import AttributeType, MessageClass
from natkit.stun.events import RequestReceived, ResponseReceived, TransactionTimedOut
from natkit.stun.transaction import RetransmissionPolicy


@dataclass(frozen=True, slots=True)
class GathererConfig:
    """Knobs of reflexive gathering (seconds)."""

    #: Retransmissions per server: 250 ms initial RTO, doubling (RFC 8489 §6.2.1).
    policy: RetransmissionPolicy = field(
        default_factory=lambda: RetransmissionPolicy(rto=0.25, rc=6, rm=4)
    )
    #: Stop after this long whatever is still open.
    timeout: float = 3.0
    #: Once a server answered, a silent one is cut off after this long at least...
    straggler_min_wait: float = 1.0
    #: ...or this many times the slowest RTT seen, if that is longer.
    straggler_factor: float = 3.0

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.straggler_min_wait < 0 or self.straggler_factor < 1:
            raise LocalProtocolError(f"impossible gatherer config {self!r}")


@dataclass(frozen=True, slots=True)
class StunTarget:
    """One server to ask over UDP from one local socket."""

    #: The server as the user named it (for reports).
    label: str
    #: The server's address (IPv4 for the NAT64 path).
    server: Endpoint
    #: Where datagrams go (the synthesised address on the NAT64 path).
    destination: Endpoint
    #: Index of the local socket to send from.
    socket: int
    #: The local address and port the request leaves from (the base).
    base: Endpoint
    path: PathKind = PathKind.DIRECT
    prefix: ipaddress.IPv6Network | None = None


@dataclass(frozen=True, slots=True)
class StreamTarget:
    """One server to ask over TCP or TLS (the driver makes the connection)."""

    label: str
    server: Endpoint
    destination: Endpoint
    transport: CandidateTransport
    path: PathKind = PathKind.DIRECT
    prefix: ipaddress.IPv6Network | None = None
    #: Name to verify the TLS certificate against (``None``: the address).
    server_name: str | None = None

    def __post_init__(self) -> None:
        if self.transport is CandidateTransport.UDP:
            raise LocalProtocolError("a stream target is TCP or TLS")


# -- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReflexiveAddressFound:
    """A server answered with a mapped address (usable at once: trickle)."""

    observation: ServerObservation


@dataclass(frozen=True, slots=True)
class ServerFailed:
    """A server will not give an address (error, timeout, cut off)."""

    observation: ServerObservation


@dataclass(frozen=True, slots=True)
class GatheringCompleted:
    """Every target is settled; nothing more will be sent."""

    observations: tuple[ServerObservation, ...]
    duration: float


GathererEvent = ReflexiveAddressFound | ServerFailed | GatheringCompleted


# -- the core ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    """One target's state; ``result`` is set once it is settled."""

    observation: ServerObservation
    sent_at: float
    transaction_id: bytes
    #: The stream request's id, for TCP/TLS targets.
    stream: int | None = None
    result: ServerObservation | None = None


class ReflexiveGatherer:
    """Sans-IO gathering of server-reflexive addresses (module docstring)."""

    def __init__(
        self,
        sockets: Sequence[Endpoint],
        now: float,
        config: GathererConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or GathererConfig()
        self.sockets = tuple(sockets)
        self._started = now
        self._deadline = now + self.config.timeout
        self._client = StunClient(policy=self.config.policy, rng=rng)
        self._pending: list[_Pending] = []
        self._by_transaction: dict[bytes, _Pending] = {}
        self._seen: set[tuple[object, ...]] = set()
        self._outbox: list[Datagram] = []
        self._events: deque[GathererEvent] = deque()
        self._streams: list[StreamRequest] = []
        self._by_stream: dict[int, _Pending] = {}
        self._max_rtt: float | None = None
        self._complete_list = False
        self._done = False

    # -- inputs --------------------------------------------------------------------

    def add_target(self, target: StunTarget, now: float) -> bool:
        """Ask ``target`` now; ``False`` (ignored) for a duplicate or after the end."""
        if not 0 <= target.socket < len(self.sockets):
            raise LocalProtocolError(f"no socket {target.socket}")
        key = ("udp", target.socket, target.destination)
        if self._done or key in self._seen:
            return False
        self._seen.add(key)
        tid = self._client.new_transaction_id()
        self._client.send_request(
            binding_request(tid), target.destination, now, socket=target.socket
        )
        pending = _Pending(
            ServerObservation(
                server=target.label,
                address=target.server,
                destination=target.destination,
                transport=CandidateTransport.UDP,
                path=target.path,
                outcome=ServerOutcome.CUT_OFF,
                base=target.base,
                prefix=target.prefix,
            ),
            now,
            tid,
        )
        self._pending.append(pending)
        self._by_transaction[tid] = pending
        self._advance(now)
        return True

    def add_stream_target(self, target: StreamTarget, now: float) -> bool:
        """Ask ``target`` over TCP/TLS (a :class:`~natkit.sansio.StreamRequest`)."""
        key = (target.transport, target.destination)
        if self._done or key in self._seen:
            return False
        self._seen.add(key)
        tid = self._client.new_transaction_id()
        request_id = len(self._by_stream)
        pending = _Pending(
            ServerObservation(
                server=target.label,
                address=target.server,
                destination=target.destination,
                transport=target.transport,
                path=target.path,
                outcome=ServerOutcome.CUT_OFF,
                prefix=target.prefix,
            ),
            now,
            tid,
            stream=request_id,
        )
        self._pending.append(pending)
        self._by_stream[request_id] = pending
        tls = target.transport is CandidateTransport.TLS
        self._streams.append(
            StreamRequest(
                request_id,
                target.destination,
                encode_message(binding_request(tid)),
                # What is left of the gathering (never nothing: a late target still goes).
                timeout=max(0.05, self._deadline - now),
                transport=StreamTransport.TLS if tls else StreamTransport.TCP,
                # A NAT64 path's certificate still names the IPv4 server.
                server_name=(target.server_name or str(target.server.address)) if tls else None,
            )
        )
        self._advance(now)
        return True

    def no_more_targets(self, now: float) -> None:
        """The target list is complete: gathering may end once they settle."""
        self._complete_list = True
        self._advance(now)

    # -- streams (natkit.sansio.StreamAware) ---------------------------------------------

    def stream_requests(self) -> list[StreamRequest]:
        """The TCP/TLS exchanges to make now, one per stream target."""
        out, self._streams = self._streams, []
        return out

    def stream_answered(self, request_id: int, result: StreamResult, now: float) -> None:
        """The outcome of a stream request: the reply bytes (``None``: no
        connection or no reply, ``detail`` says why), the RTT of the request
        on the open connection, and the connection's local end."""
        pending = self._by_stream.get(request_id)
        if pending is None:
            raise LocalProtocolError(f"no stream request {request_id} was made")
        if pending.result is not None or self._done:
            return
        detail, local = result.detail, result.local
        base = replace(pending.observation, base=local, rtt=result.rtt)
        if result.reply is None:
            outcome = ServerOutcome.UNREACHABLE if local is None else ServerOutcome.TIMED_OUT
            self._settle(pending, replace(base, outcome=outcome, detail=detail or "no reply"))
        else:
            try:
                message = parse_message(result.reply)
            except StunDecodeError as exc:
                message = None
                detail = f"malformed reply: {exc}"
            if message is None or message.transaction_id != pending.transaction_id:
                self._settle(
                    pending,
                    replace(
                        base,
                        outcome=ServerOutcome.ERROR_RESPONSE,
                        detail=detail or "reply to another transaction",
                    ),
                )
            else:
                self._settle(pending, _answered(base, message, transmissions=1))
        self._advance(now)

    # -- SansIOCore ------------------------------------------------------------------

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        if self._done:
            return
        self._client.receive_datagram(data, remote, socket, now)
        self._advance(now)

    def handle_timer(self, now: float) -> None:
        if self._done:
            return
        self._client.handle_timer(now)
        self._advance(now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self._outbox = self._outbox, []
        return out

    def get_timer(self) -> float | None:
        if self._done:
            return None
        times = [self._deadline]
        client = self._client.get_timer()
        if client is not None:
            times.append(client)
        if self._max_rtt is not None:
            times.extend(self._cutoff(p) for p in self._pending if p.result is None)
        return min(times)

    def next_event(self) -> GathererEvent | None:
        return self._events.popleft() if self._events else None

    # -- results -----------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._done

    @property
    def observations(self) -> tuple[ServerObservation, ...]:
        """Settled targets as they are, unsettled ones as cut off so far."""
        return tuple(p.result or p.observation for p in self._pending)

    # -- internals -----------------------------------------------------------------------

    def _cutoff(self, pending: _Pending) -> float:
        slowest = self._max_rtt or 0.0
        wait = max(self.config.straggler_min_wait, self.config.straggler_factor * slowest)
        return pending.sent_at + wait

    def _settle(self, pending: _Pending, observation: ServerObservation) -> None:
        pending.result = observation
        if observation.answered:
            if observation.rtt is not None:
                self._max_rtt = max(self._max_rtt or 0.0, observation.rtt)
            self._events.append(ReflexiveAddressFound(observation))
        else:
            self._events.append(ServerFailed(observation))

    def _drain_client(self) -> None:
        while (event := self._client.next_event()) is not None:
            if isinstance(event, RequestReceived):
                continue  # nobody sends us requests during gathering
            pending = self._by_transaction.get(event.transaction_id)
            if pending is None or pending.result is not None:
                continue
            if isinstance(event, TransactionTimedOut):
                self._settle(
                    pending,
                    replace(
                        pending.observation,
                        outcome=ServerOutcome.TIMED_OUT,
                        transmissions=event.transmissions,
                        detail=f"no answer to {event.transmissions} transmissions",
                    ),
                )
            elif isinstance(event, ResponseReceived):
                # Karn: a retransmitted request's RTT is ambiguous; the time
                # to the first answer is still the best upper bound there is.
                rtt = event.rtt if event.rtt is not None else event.elapsed
                observed = replace(pending.observation, rtt=rtt)
                self._settle(pending, _answered(observed, event.response, event.transmissions))

    def _advance(self, now: float) -> None:
        if self._done:
            return
        self._drain_client()
        self._outbox.extend(self._client.datagrams_to_send(now))
        open_ = [p for p in self._pending if p.result is None]
        if self._max_rtt is not None:
            for pending in open_:
                if now >= self._cutoff(pending):
                    self._cut(pending, "no answer while others answered")
        if now >= self._deadline:
            # The end, even if the driver never completed the target list.
            for pending in self._pending:
                if pending.result is None:
                    self._cut(pending, f"no answer within {self.config.timeout:g} s")
            self._finish(now)
        elif self._complete_list and all(p.result is not None for p in self._pending):
            self._finish(now)

    def _cut(self, pending: _Pending, why: str) -> None:
        self._client.cancel(pending.transaction_id)
        self._settle(
            pending, replace(pending.observation, outcome=ServerOutcome.CUT_OFF, detail=why)
        )

    def _finish(self, now: float) -> None:
        self._done = True
        self._outbox.clear()
        self._events.append(GatheringCompleted(self.observations, now - self._started))


def _answered(
    observation: ServerObservation, message: Message, transmissions: int
) -> ServerObservation:
    """The observation of a response (success or error)."""
    software = message.text(AttributeType.SOFTWARE)
    if message.message_class is MessageClass.ERROR_RESPONSE:
        error = message.error_code
        text = "error response" if error is None else f"error {error.code} {error.reason}".strip()
        return replace(
            observation,
            outcome=ServerOutcome.ERROR_RESPONSE,
            detail=text,
            transmissions=transmissions,
            software=software,
        )
    xor, plain = message.xor_mapped_address, message.mapped_address
    mapped = xor or plain
    if mapped is None:
        return replace(
            observation,
            outcome=ServerOutcome.NO_ADDRESS,
            detail="success response without a mapped address",
            transmissions=transmissions,
            software=software,
        )
    alg = None if xor is None or plain is None else xor != plain
    return replace(
        observation,
        outcome=ServerOutcome.ANSWERED,
        mapped=mapped,
        transmissions=transmissions,
        alg=alg,
        software=software,
        detail="" if transmissions == 1 else f"after {transmissions} transmissions",
    )
