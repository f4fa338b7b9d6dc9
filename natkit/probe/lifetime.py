"""Binding lifetime discovery (RFC 5780 §4.6), as a sans-IO core.

The RFC's test with a control socket Y and a tested socket X: X makes a
mapping and then stays silent; T seconds later Y asks the server, with
RESPONSE-PORT set to X's mapped port, to answer to X's mapping. X hears the
answer while its mapping lives. A binary search would cost one full wait
per step, so natkit runs the waits side by side instead: sockets X1..Xn
are checked after growing delays T1 < T2 < ... (each ~25 % longer), all
counted from their own last answer, and the run stops at the first
conclusively dead mapping. The result brackets the lifetime between the
longest wait that was answered and the first that was not; the run lasts
about the lifetime itself, not the sum of the waits.

Silence only counts with evidence (:mod:`natkit.probe.evidence`): with
every RESPONSE-PORT attempt Y also sends a plain Binding, whose answers
measure the loss on Y's path.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.probe.evidence import LossEvidence
from natkit.sansio import Datagram
from natkit.stun.attributes import ResponsePort
from natkit.stun.client import StunClient
from natkit.stun.codec import binding_request
from natkit.stun.events import ResponseReceived
from natkit.stun.transaction import RetransmissionPolicy

CONTROL_SOCKET = 0


@dataclass(frozen=True, slots=True)
class LifetimeConfig:
    """Schedule of the checks (seconds)."""

    first_check: float = 2.0
    growth: float = 1.25
    min_step: float = 1.0
    max_lifetime: float = 180.0
    false_negative_target: float = 1e-4
    attempt_interval: float = 0.05
    #: An attempt is lost once this long passed without an answer.
    window: float = 0.5
    max_attempts: int = 30

    def schedule(self) -> list[float]:
        """The waits T1 < T2 < ... up to ``max_lifetime``."""
        waits = [self.first_check]
        while waits[-1] < self.max_lifetime:
            waits.append(
                min(self.max_lifetime, max(waits[-1] + self.min_step, waits[-1] * self.growth))
            )
        return [round(w, 3) for w in waits]


class CheckOutcome(Enum):
    ALIVE = "alive"
    EXPIRED = "expired"
    INCONCLUSIVE = "inconclusive"
    NOT_RUN = "not run"


@dataclass(frozen=True, slots=True)
class LifetimeResult:
    """``lifetime`` is a lower bound: the longest wait still answered."""

    lifetime: float | None
    #: The shortest wait after which the mapping was gone (upper bound).
    expired_after: float | None
    reason: str
    checks: tuple[tuple[float, CheckOutcome], ...] = ()


@dataclass(frozen=True, slots=True)
class LifetimeCompleted:
    result: LifetimeResult


@dataclass(eq=False, slots=True)
class _Socket:
    index: int
    wait: float
    mapped: Endpoint | None = None
    quiet_since: float | None = None
    outcome: CheckOutcome = CheckOutcome.NOT_RUN
    attempts: list[tuple[bytes, float]] = field(default_factory=list)
    next_at: float = 0.0


class BindingLifetimeProber:
    """Socket 0 is the control socket Y; sockets 1..n are X1..Xn."""

    def __init__(
        self,
        server: Endpoint,
        sockets: Sequence[Endpoint],
        now: float,
        config: LifetimeConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or LifetimeConfig()
        waits = self.config.schedule()
        if len(sockets) < len(waits) + 1:
            raise LocalProtocolError(f"{len(waits) + 1} sockets needed, {len(sockets)} given")
        self.server = server
        self._client = StunClient(
            policy=RetransmissionPolicy(rto=self.config.window, rc=1, rm=1),
            require_matching_source=False,
            rng=rng,
        )
        self._tested = [_Socket(i + 1, wait) for i, wait in enumerate(waits)]
        self._control_mapped: Endpoint | None = None
        self._answered: set[bytes] = set()
        self._evidence_sent: list[tuple[bytes, float]] = []
        self._outbox: list[Datagram] = []
        self._events: deque[LifetimeCompleted] = deque()
        self._pending_setup: dict[bytes, int] = {}
        self._check_of: dict[bytes, _Socket] = {}
        self._result: LifetimeResult | None = None
        self._started = now
        self._now = now
        for tested in self._tested:
            self._setup(tested.index, now)
        self._setup(CONTROL_SOCKET, now)

    @staticmethod
    def sockets_needed(config: LifetimeConfig | None = None) -> int:
        return len((config or LifetimeConfig()).schedule()) + 1

    # -- SansIOCore ---------------------------------------------------------------

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        if self._result is None:
            self._client.receive_datagram(data, remote, socket, now)
            self._advance(now)

    def handle_timer(self, now: float) -> None:
        if self._result is None:
            self._client.handle_timer(now)
            self._advance(now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self._outbox = self._outbox, []
        return out

    def get_timer(self) -> float | None:
        if self._result is not None:
            return None
        times = [t for t in self._wakeups() if t > self._now]
        return min(times, default=None)

    def next_event(self) -> LifetimeCompleted | None:
        return self._events.popleft() if self._events else None

    @property
    def result(self) -> LifetimeResult | None:
        return self._result

    # -- internals ----------------------------------------------------------------

    def _send(self, socket: int, now: float, response_port: int | None = None) -> bytes:
        attributes = (ResponsePort(response_port),) if response_port is not None else ()
        request = binding_request(self._client.new_transaction_id(), *attributes)
        tid = self._client.send_request(request, self.server, now, socket=socket)
        self._outbox.extend(self._client.datagrams_to_send(now))
        return tid

    def _setup(self, socket: int, now: float) -> None:
        self._pending_setup[self._send(socket, now)] = socket

    def _wakeups(self) -> list[float]:
        times = [self._started + self.config.max_lifetime * 2]
        timer = self._client.get_timer()
        if timer is not None:
            times.append(timer)
        for tested in self._tested:
            if tested.outcome is CheckOutcome.NOT_RUN and tested.quiet_since is not None:
                times.append(max(tested.next_at, tested.quiet_since + tested.wait))
                if tested.attempts:
                    times.append(tested.attempts[-1][1] + self.config.window)
        return times

    def _advance(self, now: float) -> None:
        self._now = now
        while (event := self._client.next_event()) is not None:
            if isinstance(event, ResponseReceived):
                self._on_response(event, now)
        # Setup requests that went unanswered are simply sent again.
        for tid, socket in list(self._pending_setup.items()):
            if self._client.transaction(tid) is None:
                del self._pending_setup[tid]
                self._setup(socket, now)
        if self._control_mapped is not None:
            self._run_checks(now)
        if now - self._started > self.config.max_lifetime * 2:
            self._finish("ran out of time")

    def _on_response(self, event: ResponseReceived, now: float) -> None:
        tid = event.transaction_id
        self._answered.add(tid)
        socket = self._pending_setup.pop(tid, None)
        if socket is not None:
            mapped = event.response.reflexive_address
            if socket == CONTROL_SOCKET:
                self._control_mapped = mapped
            else:
                tested = self._tested[socket - 1]
                tested.mapped, tested.quiet_since = mapped, now
            return
        checked = self._check_of.get(tid)
        if checked is None or checked.outcome is not CheckOutcome.NOT_RUN:
            return
        if event.response.error_code is not None:
            self._finish(f"server refused RESPONSE-PORT (error {event.response.error_code.code})")
        elif event.socket == checked.index:
            checked.outcome = CheckOutcome.ALIVE
        else:
            # The answer reached another socket: the NAT reused the port.
            checked.outcome = CheckOutcome.EXPIRED

    def _evidence(self, now: float) -> LossEvidence:
        answered = sum(1 for tid, _ in self._evidence_sent if tid in self._answered)
        lost = sum(
            1
            for tid, sent in self._evidence_sent
            if tid not in self._answered and now >= sent + self.config.window
        )
        return LossEvidence(answered, lost)

    def _run_checks(self, now: float) -> None:
        control = self._control_mapped
        assert control is not None
        evidence = self._evidence(now)
        for tested in self._tested:
            if tested.outcome is not CheckOutcome.NOT_RUN or tested.quiet_since is None:
                continue
            if tested.mapped is None or tested.mapped.address != control.address:
                self._finish("the NAT gave the control socket another public address")
                return
            if now < tested.quiet_since + tested.wait:
                continue
            sent = len(tested.attempts)
            p_lost = evidence.false_negative_probability(sent)
            if sent == 0 or (
                p_lost >= self.config.false_negative_target and sent < self.config.max_attempts
            ):
                if now >= tested.next_at:
                    tid = self._send(CONTROL_SOCKET, now, response_port=tested.mapped.port)
                    self._check_of[tid] = tested
                    tested.attempts.append((tid, now))
                    self._evidence_sent.append((self._send(CONTROL_SOCKET, now), now))
                    tested.next_at = now + self.config.attempt_interval
                continue
            if now < tested.attempts[-1][1] + self.config.window:
                continue
            tested.outcome = (
                CheckOutcome.EXPIRED
                if p_lost < self.config.false_negative_target
                else CheckOutcome.INCONCLUSIVE
            )
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self._result is not None:
            return
        expired = [t for t in self._tested if t.outcome is CheckOutcome.EXPIRED]
        if expired or all(t.outcome is not CheckOutcome.NOT_RUN for t in self._tested):
            self._finish("")

    def _finish(self, problem: str) -> None:
        if self._result is not None:
            return
        alive = [t.wait for t in self._tested if t.outcome is CheckOutcome.ALIVE]
        expired = [t.wait for t in self._tested if t.outcome is CheckOutcome.EXPIRED]
        lifetime = max(alive, default=None)
        expired_after = min(expired, default=None)
        if problem:
            reason = problem
        elif expired_after is None:
            reason = f"still alive after the longest wait ({lifetime} s)"
        elif lifetime is None:
            reason = f"already gone after the shortest wait ({expired_after} s)"
        else:
            reason = f"alive after {lifetime} s, gone after {expired_after} s"
        self._result = LifetimeResult(
            lifetime=None if problem else lifetime,
            expired_after=None if problem else expired_after,
            reason=reason,
            checks=tuple((t.wait, t.outcome) for t in self._tested),
        )
        for tid in list(self._check_of) + [tid for tid, _ in self._evidence_sent]:
            self._client.cancel(tid)
        self._events.append(LifetimeCompleted(self._result))
