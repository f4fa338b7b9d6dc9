"""The birthday prober: a sans-IO core that carries out one send plan.

Theory of operation
-------------------
One class serves every role; the plan decides what it does:

* the **hard side** (one-hard mode) gets an :func:`~natkit.birthday.schedule.opener_plan`:
  k sockets each send OPEN to the easy side's endpoint, which makes k
  mappings on its NAT, and again every keepalive interval to keep them;
* the **easy side** gets a :func:`~natkit.birthday.schedule.spray_plan`
  with one socket: PROBEs to distinct random ports of the hard side's IP;
* in **both-hard** mode each side gets a spray plan over its k sockets; every
  probe also opens a mapping, which is what the other side's probes hit.

Rules the core enforces, whatever the plan says:

1. At most ``config.budget`` PROBEs, ever.
2. Paced sends (plan items and probes it decides on itself) obey a
   :class:`~natkit.birthday.schedule.RateWindow` measured on the actual
   send times: no one-second window holds more than ``rate`` of them, and
   no two are closer than half the plan's gap, however late the driver's
   timer fires. A late timer is caught up with (a plan is a schedule, not
   a list of gaps), so the search runs at the rate it was planned for and
   the planner's times hold. One paced send per call.
3. Only ACKs are unpaced: ``ack_copies`` of them, once, in reply to the
   probe that ends the run.
4. Every received datagram is parsed strictly and authenticated; anything
   else is counted under a :class:`~natkit.birthday.events.BirthdayDropReason` and
   otherwise ignored. Nothing a peer sends can raise.
5. The run ends at the first authentic PROBE (answered with ACKs) or ACK of
   one of our probes (:class:`~natkit.birthday.events.PairFound`), or
   ``answer_timeout`` after the last paced send once nothing is left to
   send (:class:`~natkit.birthday.events.SearchExhausted`). After that the
   core is inert.

An authentic OPEN reaching the sprayer (its NAT lets the hard side's mapping
in, e.g. endpoint-independent filtering) is a shortcut: the prober probes
that exact endpoint next, once per endpoint, within the budget.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass

from natkit.birthday.events import (
    BirthdayDropReason,
    BirthdayEvent,
    ExhaustReason,
    PairFound,
    ProberStats,
    SearchExhausted,
    WinningPair,
)
from natkit.birthday.schedule import DEFAULT_RATE, RateWindow, SendPlan, pacing_gap
from natkit.birthday.wire import (
    MAX_SEQUENCE,
    SESSION_LENGTH,
    Kind,
    Packet,
    PacketError,
    PacketFailure,
    Side,
    check_key,
    encode_packet,
    parse_packet,
)
from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError
from natkit.sansio import Datagram


@dataclass(frozen=True, slots=True)
class ProberConfig:
    """What both peers agree on out of band, and this side's limits."""

    #: Shared secret (at least 16 bytes); only the two peers know it.
    key: bytes
    #: 8-byte session id, the same on both peers.
    session: bytes
    #: This peer's side; the other peer has the other one.
    side: Side
    #: Cap on paced sends (PROBEs and OPENs) per second.
    rate: float = DEFAULT_RATE
    #: Most PROBEs this side will ever send.
    budget: int = 2048
    #: ACKs sent back-to-back in reply to the winning probe (they are not retried).
    ack_copies: int = 3
    #: How long an ACK to a probe is still accepted, and how long the run
    #: waits for one after its last send.
    answer_timeout: float = 2.0
    #: Drop packets from any other address (``None``: accept any source).
    peer_address: IPAddress | None = None

    def __post_init__(self) -> None:
        check_key(self.key)
        if len(self.session) != SESSION_LENGTH:
            raise LocalProtocolError(f"session id must be 8 bytes, got {len(self.session)}")
        pacing_gap(self.rate)  # validates the rate
        if self.budget < 0:
            raise LocalProtocolError(f"negative budget {self.budget}")
        if not 1 <= self.ack_copies <= 16:
            raise LocalProtocolError(f"ack_copies must be 1..16, got {self.ack_copies}")
        if not (math.isfinite(self.answer_timeout) and self.answer_timeout >= 0):
            raise LocalProtocolError(f"bad answer_timeout {self.answer_timeout}")


class BirthdayProber:
    """Sans-IO birthday prober (see the module docstring).

    ``sockets`` are the bound local endpoints, indexed as the plan indexes
    them; ``plan`` is absolute in the driver's clock, like ``now``.
    """

    def __init__(
        self, config: ProberConfig, sockets: Sequence[Endpoint], plan: SendPlan, now: float
    ) -> None:
        if not sockets:
            raise LocalProtocolError("the prober needs at least one socket")
        if plan.sockets_used > len(sockets):
            raise LocalProtocolError(f"plan uses {plan.sockets_used} sockets, {len(sockets)} given")
        self.config = config
        self.sockets = tuple(sockets)
        self.plan = plan
        self._window = RateWindow.for_rate(config.rate)
        self._started = now
        self._next_index = 0
        #: Send times of the last paced sends, as many as the window counts.
        self._paced: deque[float] = deque(maxlen=self._window.count)
        #: Probes the prober decided on itself: (queued at, socket, remote).
        self._shortcuts: deque[tuple[float, int, Endpoint]] = deque()
        self._shortcut_targets: set[Endpoint] = set()
        #: Our probes still open to an ACK: sequence -> (socket, remote).
        self._awaiting: dict[int, tuple[int, Endpoint]] = {}
        self._awaiting_order: deque[tuple[float, int]] = deque()
        self._sequence = 0
        self._probes_sent = 0
        self._opens_sent = 0
        self._acks_sent = 0
        self._received = 0
        self._dropped: Counter[BirthdayDropReason] = Counter()
        self._outbox: list[Datagram] = []
        self._events: deque[BirthdayEvent] = deque()
        self._finished = False
        self._advance(now)

    # -- SansIOCore ---------------------------------------------------------------

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        if not 0 <= socket < len(self.sockets):
            raise LocalProtocolError(f"no socket {socket}")
        self._received += 1
        if self._finished:
            self._dropped[BirthdayDropReason.LATE] += 1
            return
        self._on_datagram(data, remote, socket, now)
        self._advance(now)

    def handle_timer(self, now: float) -> None:
        self._advance(now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self._outbox = self._outbox, []
        return out

    def get_timer(self) -> float | None:
        if self._finished:
            return None
        due = self._next_paced_at()
        return due if due is not None else self._quiet_since + self.config.answer_timeout

    def next_event(self) -> BirthdayEvent | None:
        return self._events.popleft() if self._events else None

    # -- introspection ----------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def stats(self) -> ProberStats:
        return ProberStats(
            probes_sent=self._probes_sent,
            opens_sent=self._opens_sent,
            acks_sent=self._acks_sent,
            received=self._received,
            dropped=dict(self._dropped),
        )

    # -- receiving --------------------------------------------------------------------

    def _on_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        try:
            packet = parse_packet(data, self.config.key)
        except PacketError as exc:
            reason = (
                BirthdayDropReason.UNAUTHENTICATED
                if exc.reason is PacketFailure.TAG
                else BirthdayDropReason.MALFORMED
            )
            self._dropped[reason] += 1
            return
        if packet.session != self.config.session:
            self._dropped[BirthdayDropReason.WRONG_SESSION] += 1
        elif packet.side is self.config.side:
            self._dropped[BirthdayDropReason.REFLECTED] += 1
        elif self.config.peer_address is not None and remote.address != self.config.peer_address:
            self._dropped[BirthdayDropReason.WRONG_SOURCE] += 1
        elif packet.kind is Kind.PROBE:
            for _ in range(self.config.ack_copies):
                self._emit(Kind.ACK, socket, remote, echo=packet.sequence)
                self._acks_sent += 1
            self._found(socket, remote, Kind.PROBE, now)
        elif packet.kind is Kind.ACK:
            if self._awaiting.get(packet.echo) != (socket, remote):
                self._dropped[BirthdayDropReason.UNMATCHED_ACK] += 1
            else:
                self._found(socket, remote, Kind.ACK, now)
        elif remote not in self._shortcut_targets and self._probes_left > len(self._shortcuts):
            # An OPEN got through our NAT: probe its very source next.
            self._shortcut_targets.add(remote)
            self._shortcuts.append((now, socket, remote))

    def _found(self, socket: int, remote: Endpoint, via: Kind, now: float) -> None:
        self._finished = True
        pair = WinningPair(socket, self.sockets[socket], remote)
        self._events.append(PairFound(pair, via, now, self.stats))

    # -- sending ----------------------------------------------------------------------

    @property
    def _probes_left(self) -> int:
        return self.config.budget - self._probes_sent

    @property
    def _quiet_since(self) -> float:
        return self._paced[-1] if self._paced else self._started

    def _next_paced_at(self) -> float | None:
        """When the next paced send may go, or ``None`` when none is left."""
        floor = self._window.next_allowed(self._paced)
        if self._shortcuts and self._probes_left > 0:
            return max(floor, self._shortcuts[0][0])
        if self._next_index < len(self.plan.sends):
            if self.plan.kind is Kind.PROBE and self._probes_left <= 0:
                return None  # rule 1: the budget is spent
            return max(floor, self.plan.sends[self._next_index].at)
        return None

    def _advance(self, now: float) -> None:
        if self._finished:
            return
        self._forget_old_probes(now)
        due = self._next_paced_at()
        if due is not None and now >= due:
            self._send_next(now)
            due = self._next_paced_at()
        if due is None and now >= self._quiet_since + self.config.answer_timeout:
            self._finished = True
            reason = (
                ExhaustReason.BUDGET_SPENT
                if self.plan.kind is Kind.PROBE and self._probes_left <= 0
                else ExhaustReason.SCHEDULE_ENDED
            )
            self._events.append(SearchExhausted(reason, now, self.stats))

    def _send_next(self, now: float) -> None:
        if self._shortcuts and self._probes_left > 0:
            _, socket, remote = self._shortcuts.popleft()
            self._send_probe(socket, remote, now)
        else:
            index = self._next_index
            self._next_index += 1
            socket, remote = self.plan.sends[index].socket, self.plan.remote(index)
            if self.plan.kind is Kind.PROBE:
                self._send_probe(socket, remote, now)
            else:
                self._emit(Kind.OPEN, socket, remote)
                self._opens_sent += 1
        self._paced.append(now)

    def _send_probe(self, socket: int, remote: Endpoint, now: float) -> None:
        sequence = self._emit(Kind.PROBE, socket, remote)
        self._probes_sent += 1
        self._awaiting[sequence] = (socket, remote)
        self._awaiting_order.append((now, sequence))

    def _forget_old_probes(self, now: float) -> None:
        # Keeps the ACK table at about rate * answer_timeout entries.
        horizon = now - self.config.answer_timeout
        while self._awaiting_order and self._awaiting_order[0][0] < horizon:
            _, sequence = self._awaiting_order.popleft()
            del self._awaiting[sequence]

    def _emit(self, kind: Kind, socket: int, remote: Endpoint, echo: int = 0) -> int:
        if self._sequence >= MAX_SEQUENCE:
            raise LocalProtocolError("sequence numbers exhausted")
        self._sequence += 1
        packet = Packet(kind, self.config.side, self.config.session, self._sequence, echo)
        self._outbox.append(Datagram(encode_packet(packet, self.config.key), remote, socket))
        return self._sequence
