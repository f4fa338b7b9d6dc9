"""The NAT classifier: RFC 5780's tests as one sans-IO core.

Theory of operation
-------------------
The core owns ``3 + allocation_sockets`` local UDP sockets with fixed roles
(:class:`Role`), and runs the RFC 5780 tests concurrently, each on the
socket whose NAT state it must not disturb:

* MAPPING (RFC 5780 §4.3): binding to every server's primary address; once
  a server reveals OTHER-ADDRESS, tests II (alternate IP, primary port) and
  III (alternate IP and port).
* FILTERING (§4.4): this socket only ever talks to the discovery server's
  primary address, so the NAT holds no state for the alternate one; tests II
  (CHANGE-REQUEST IP+port) and III (change port).
* HAIRPIN (§4.5 of the issue, RFC 5780 §3.4): a request to the MAPPING
  socket's own mapped address.
* ALLOCATION: more sockets whose first packets, with the other sockets'
  first packets to the same server, show how the NAT picks ports.

A test is a :class:`_Probe`: it sends attempts, each a fresh one-shot STUN
transaction, until answered or until "no answer" is conclusive. Conclusive
means the loss measured on working paths (:mod:`natkit.probe.evidence`)
makes it improbable, below ``false_negative_target``, that every attempt was
lost although an answer was sent. Tests whose silence is a verdict (filtering,
hairpin) are paired with a *control* probe on the same socket to a known-good
destination, so loss is sampled on that very path while they run. Timing
follows the measured RTT, so a negative answer costs a few RTTs, not a
fixed multi-second timeout.

UDP blocked is decided with help from TCP: the driver is asked to run one
Binding over TCP (:class:`TcpCheckRequested`); if TCP answers and UDP stays
silent for ``udp_blocked_min_attempts`` attempts and ``udp_blocked_min_wait``,
UDP is blocked. With neither, the run ends at ``timeout`` as "unreachable".
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum, IntEnum

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.probe.events import ClassificationCompleted, ClassifierEvent, TcpCheckRequested
from natkit.probe.evidence import LossEvidence
from natkit.probe.report import (
    Answer,
    ClassificationReport,
    FilteringBehavior,
    MappingBehavior,
    ProbeObservation,
    ProbeOutcome,
    RunStatus,
    ServerReport,
)
from natkit.probe.verdicts import (
    CheckResult,
    filtering_from_rfc5780,
    hairpin_from_test,
    mapping_from_rfc5780,
    mapping_from_servers,
    port_allocation,
)
from natkit.sansio import Datagram
from natkit.stun.attributes import ChangeRequest
from natkit.stun.client import StunClient
from natkit.stun.codec import (
    StunDecodeError,
    binding_request,
    encode_message,
    parse_message,
)
from natkit.stun.constants import AttributeType, ChangeFlags, MessageClass
from natkit.stun.events import RequestReceived, ResponseReceived, TransactionTimedOut
from natkit.stun.transaction import RetransmissionPolicy


class Role(IntEnum):
    """Socket index of each role; allocation sockets follow ``ALLOCATION``."""

    MAPPING = 0
    FILTERING = 1
    HAIRPIN = 2
    ALLOCATION = 3


class ProbeName(Enum):
    BINDING = "binding"
    MAPPING_ALT_ADDRESS = "mapping-II"
    MAPPING_ALT_ADDRESS_PORT = "mapping-III"
    FILTERING_CONTROL = "filtering-I"
    FILTERING_CHANGE_IP_PORT = "filtering-II"
    FILTERING_CHANGE_PORT = "filtering-III"
    HAIRPIN_CONTROL = "hairpin-control"
    HAIRPIN = "hairpin"
    ALLOCATION = "allocation"


@dataclass(frozen=True, slots=True)
class ClassifierConfig:
    """Knobs of a classification run (times in seconds)."""

    #: Extra sockets used only to observe port allocation.
    allocation_sockets: int = 4
    #: Run the hairpinning test.
    test_hairpin: bool = True
    #: A silent test is conclusive when P(all attempts lost | evidence) is below this.
    false_negative_target: float = 1e-5
    #: Attempts per test before it is called inconclusive.
    max_attempts: int = 40
    #: Spacing of attempts: the smoothed RTT, clamped to [min, max]...
    min_interval: float = 0.010
    max_interval: float = 0.5
    #: ...or this while no UDP answer has been seen.
    initial_interval: float = 0.05
    #: An attempt counts as lost once this long passed (or 2x the worst RTT seen)...
    min_window: float = 0.025
    #: ...or this while no RTT is known.
    initial_window: float = 0.5
    #: Give up on everything still open after this long.
    timeout: float = 5.0
    #: UDP is blocked when TCP answered and at least this many UDP attempts...
    udp_blocked_min_attempts: int = 12
    #: ...spread over at least this long got no answer at all.
    udp_blocked_min_wait: float = 0.15

    @property
    def sockets_needed(self) -> int:
        return Role.ALLOCATION + self.allocation_sockets


@dataclass(slots=True)
class _Attempt:
    transaction_id: bytes
    sent_at: float
    answered_at: float | None = None


@dataclass(eq=False, slots=True)
class _Probe:
    test: ProbeName
    socket: int
    destination: Endpoint
    change: ChangeFlags = ChangeFlags.NONE
    #: Where the answer must come from to count (CHANGE-REQUEST tests).
    expected_source: Endpoint | None = None
    #: A probe on the same socket that samples loss while this one runs.
    control: _Probe | None = None
    #: The answer is our own request arriving on this socket (hairpinning).
    hairpin_target: int | None = None
    attempts: list[_Attempt] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    outcome: ProbeOutcome | None = None
    false_negative: float | None = None
    #: When the next attempt may go out.
    next_at: float = 0.0
    #: When the probe next needs attention (next attempt, or its last window ending).
    wake_at: float = 0.0

    @property
    def open(self) -> bool:
        return self.outcome is None

    @property
    def last_sent(self) -> float:
        return self.attempts[-1].sent_at if self.attempts else 0.0

    @property
    def mapped(self) -> Endpoint | None:
        for answer in self.answers:
            if answer.mapped_address is not None:
                return answer.mapped_address
        return None

    def result(self) -> CheckResult:
        if self.outcome is ProbeOutcome.ANSWERED:
            first = self.answers[0]
            if first.error_code is not None:
                return CheckResult.REFUSED
            if self.expected_source is not None and first.source != self.expected_source:
                return CheckResult.WRONG_SOURCE
            return CheckResult.ANSWERED
        return {
            ProbeOutcome.SILENT: CheckResult.SILENT,
            ProbeOutcome.INCONCLUSIVE: CheckResult.INCONCLUSIVE,
        }.get(self.outcome or ProbeOutcome.NOT_RUN, CheckResult.NOT_RUN)


@dataclass(slots=True)
class _TcpCheck:
    server: Endpoint
    transaction_id: bytes
    sent_at: float
    rtt: float | None = None
    mapped: Endpoint | None = None
    done: bool = False


class NatClassifier:
    """Sans-IO RFC 5780 classifier (see the module docstring).

    ``sockets`` are the bound local endpoints, in :class:`Role` order;
    ``servers`` the STUN servers, the first being the reference for port
    allocation and the mapped address.
    """

    def __init__(
        self,
        servers: Sequence[Endpoint],
        sockets: Sequence[Endpoint],
        now: float,
        config: ClassifierConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or ClassifierConfig()
        if not servers:
            raise LocalProtocolError("at least one STUN server is needed")
        if len(sockets) < self.config.sockets_needed:
            raise LocalProtocolError(
                f"{self.config.sockets_needed} sockets needed, {len(sockets)} given"
            )
        self.servers = tuple(dict.fromkeys(servers))
        self.sockets = tuple(sockets)
        self._started = now
        self._now = now
        self._deadline = now + self.config.timeout
        # One-shot transactions that never retransmit: the probe decides when
        # to try again, and a late answer is still matched until the end.
        self._client = StunClient(
            policy=RetransmissionPolicy(rto=self.config.timeout, rc=1, rm=1),
            require_matching_source=False,
            rng=rng,
        )
        self._probes: list[_Probe] = []
        self._by_transaction: dict[bytes, tuple[_Probe, _Attempt]] = {}
        self._events: deque[ClassifierEvent] = deque()
        self._outbox: list[Datagram] = []
        self._server_info: dict[Endpoint, tuple[Endpoint | None, str | None]] = {}
        self._max_rtt = 0.0
        self._any_udp_answer = False
        self._discovery: Endpoint | None = None
        self._discovery_decided = False
        self._hairpin_decided = not self.config.test_hairpin
        self._report: ClassificationReport | None = None

        reference = self.servers[0]
        self._bindings = {
            server: self._add(ProbeName.BINDING, Role.MAPPING, server) for server in self.servers
        }
        self._filtering_first = self._add(ProbeName.FILTERING_CONTROL, Role.FILTERING, reference)
        self._hairpin_control = self._add(ProbeName.HAIRPIN_CONTROL, Role.HAIRPIN, reference)
        self._allocation = [
            self._add(ProbeName.ALLOCATION, Role.ALLOCATION + i, reference)
            for i in range(self.config.allocation_sockets)
        ]
        self._mapping_tests: tuple[_Probe, _Probe] | None = None
        self._filtering_tests: tuple[_Probe, _Probe] | None = None
        self._hairpin: _Probe | None = None

        tid = self._client.new_transaction_id()
        self._tcp = _TcpCheck(reference, tid, now)
        self._events.append(TcpCheckRequested(reference, encode_message(binding_request(tid))))
        self._advance(now)

    # -- SansIOCore ---------------------------------------------------------------

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        if self._report is not None:
            return
        self._client.receive_datagram(data, remote, socket, now)
        self._advance(now)

    def handle_timer(self, now: float) -> None:
        if self._report is not None:
            return
        self._client.handle_timer(now)
        self._advance(now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self._outbox = self._outbox, []
        return out

    def get_timer(self) -> float | None:
        if self._report is not None:
            return None
        return min(self._wakeups(), default=self._deadline)

    def next_event(self) -> ClassifierEvent | None:
        return self._events.popleft() if self._events else None

    # -- inputs from the driver ---------------------------------------------------

    def tcp_check_completed(self, reply: bytes | None, now: float) -> None:
        """The reply to :class:`TcpCheckRequested` (``None``: connect or read failed)."""
        check = self._tcp
        if check.done:
            return
        check.done = True
        if reply is not None:
            try:
                message = parse_message(reply)
            except StunDecodeError:
                message = None
            if (
                message is not None
                and message.transaction_id == check.transaction_id
                and message.message_class is MessageClass.SUCCESS_RESPONSE
            ):
                check.rtt = now - check.sent_at
                check.mapped = message.reflexive_address
        self._advance(now)

    @property
    def report(self) -> ClassificationReport | None:
        return self._report

    # -- probes ------------------------------------------------------------------

    def _add(
        self,
        test: ProbeName,
        socket: int,
        destination: Endpoint,
        *,
        change: ChangeFlags = ChangeFlags.NONE,
        expected_source: Endpoint | None = None,
        control: _Probe | None = None,
        hairpin_target: int | None = None,
    ) -> _Probe:
        probe = _Probe(
            test,
            socket,
            destination,
            change,
            expected_source,
            control,
            hairpin_target,
            next_at=self._now,
            wake_at=self._now,
        )
        self._probes.append(probe)
        return probe

    def _send_attempt(self, probe: _Probe, now: float) -> None:
        attributes = (ChangeRequest(probe.change),) if probe.change else ()
        request = binding_request(self._client.new_transaction_id(), *attributes)
        tid = self._client.send_request(request, probe.destination, now, socket=probe.socket)
        attempt = _Attempt(tid, now)
        probe.attempts.append(attempt)
        self._by_transaction[tid] = (probe, attempt)
        self._outbox.extend(self._client.datagrams_to_send(now))

    def _drain_client(self, now: float) -> None:
        while (event := self._client.next_event()) is not None:
            if isinstance(event, ResponseReceived):
                self._on_response(event, now)
            elif isinstance(event, RequestReceived):
                self._on_request(event, now)
            elif isinstance(event, TransactionTimedOut):
                pass  # probes keep their own account of lost attempts

    def _on_response(self, event: ResponseReceived, now: float) -> None:
        found = self._by_transaction.get(event.transaction_id)
        if found is None:
            return
        probe, attempt = found
        response = event.response
        error = response.error_code
        answer = Answer(
            source=event.source,
            rtt=event.elapsed,
            mapped_address=response.xor_mapped_address or response.mapped_address,
            plain_mapped_address=response.mapped_address,
            response_origin=response.response_origin,
            other_address=response.other_address,
            error_code=None if error is None else error.code,
        )
        self._record_answer(probe, attempt, answer, now)
        self._any_udp_answer = True
        if probe.test is ProbeName.BINDING and probe.destination not in self._server_info:
            self._server_info[probe.destination] = (
                answer.other_address,
                response.text(AttributeType.SOFTWARE),
            )

    def _on_request(self, event: RequestReceived, now: float) -> None:
        found = self._by_transaction.get(event.message.transaction_id)
        if found is None:
            return
        probe, attempt = found
        if probe.hairpin_target != event.socket:
            return
        self._client.cancel(attempt.transaction_id)
        self._record_answer(probe, attempt, Answer(event.source, now - attempt.sent_at), now)

    def _record_answer(self, probe: _Probe, attempt: _Attempt, answer: Answer, now: float) -> None:
        if attempt.answered_at is None:
            attempt.answered_at = now
            self._max_rtt = max(self._max_rtt, now - attempt.sent_at)
        probe.answers.append(answer)
        # A late answer overrides a "silent" conclusion: the report says what happened.
        probe.outcome = ProbeOutcome.ANSWERED
        probe.false_negative = None

    # -- the schedule ------------------------------------------------------------

    def _evidence(self, now: float, window: float) -> LossEvidence:
        answered = lost = 0
        for probe in self._probes:
            if not probe.answers:
                continue  # loss is only measured on paths shown to work
            for attempt in probe.attempts:
                if attempt.answered_at is not None:
                    answered += 1
                elif now >= attempt.sent_at + window:
                    lost += 1
        return LossEvidence(answered, lost)

    def _srtt(self) -> float | None:
        estimator = self._client.rto_estimator
        return estimator.srtt if estimator.samples else None

    def _interval(self) -> float:
        srtt = self._srtt()
        if srtt is None:
            return self.config.initial_interval
        return min(self.config.max_interval, max(self.config.min_interval, srtt))

    def _window(self) -> float:
        estimator = self._client.rto_estimator
        if not estimator.samples or estimator.srtt is None or estimator.rttvar is None:
            return self.config.initial_window
        return max(
            self.config.min_window,
            2 * self._max_rtt,
            estimator.srtt + 4 * estimator.rttvar,
        )

    def _advance(self, now: float) -> None:
        if self._report is not None:
            return
        self._now = now
        self._drain_client(now)
        self._start_dependent_tests()
        window = self._window()
        evidence = self._evidence(now, window)
        interval = self._interval()
        for probe in self._probes:
            if probe.open:
                self._service(probe, now, evidence, window, interval)
        if self._udp_blocked(now) or now >= self._deadline:
            self._finish(now, evidence)
            return
        settled = self._discovery_decided and self._hairpin_decided
        if settled and not any(probe.open for probe in self._probes):
            self._finish(now, evidence)

    def _service(
        self, probe: _Probe, now: float, evidence: LossEvidence, window: float, interval: float
    ) -> None:
        sent = len(probe.attempts)
        p_lost = evidence.false_negative_probability(sent)
        need_more = sent == 0 or p_lost >= self.config.false_negative_target
        if need_more and sent < self.config.max_attempts:
            if now >= probe.next_at:
                self._send_attempt(probe, now)
                probe.next_at = now + interval
                control = probe.control
                if control is not None and now - control.last_sent >= interval / 2:
                    self._send_attempt(control, now)
            probe.wake_at = probe.next_at
            return
        # Compare exactly the deadline we sleep until, or float rounding can
        # leave a probe waiting for a moment that has already passed.
        settled_at = probe.last_sent + window
        if now < settled_at:
            probe.wake_at = settled_at  # the last attempt may still be answered
            return
        probe.false_negative = p_lost
        if p_lost < self.config.false_negative_target:
            probe.outcome = ProbeOutcome.SILENT
        else:
            probe.outcome = ProbeOutcome.INCONCLUSIVE

    def _wakeups(self) -> Iterable[float]:
        """Future moments something is due; anything due already was handled
        by the last :meth:`_advance`, so past times are left out (no busy loop)."""
        now = self._now
        candidates = [self._deadline]
        client_timer = self._client.get_timer()
        if client_timer is not None:
            candidates.append(client_timer)
        candidates.extend(p.wake_at for p in self._probes if p.open)
        if not self._any_udp_answer and self._tcp.rtt is not None:
            candidates.append(self._started + self.config.udp_blocked_min_wait)
        return (t for t in candidates if t > now)

    def _start_dependent_tests(self) -> None:
        if not self._discovery_decided:
            self._decide_discovery_server()
        if not self._hairpin_decided:
            self._decide_hairpin()

    def _decide_discovery_server(self) -> None:
        """The first server (in the order given) that sent OTHER-ADDRESS runs
        the RFC 5780 tests; earlier servers must have answered or gone silent."""
        for server in self.servers:
            probe = self._bindings[server]
            if probe.open:
                return
            other = self._server_info.get(server, (None, None))[0]
            if other is None or other.address == server.address:
                continue
            self._discovery = server
            self._discovery_decided = True
            mapping = Role.MAPPING
            self._mapping_tests = (
                self._add(
                    ProbeName.MAPPING_ALT_ADDRESS, mapping, Endpoint(other.address, server.port)
                ),
                self._add(ProbeName.MAPPING_ALT_ADDRESS_PORT, mapping, other),
            )
            control = self._filtering_first
            if server != self.servers[0]:
                control = self._add(ProbeName.FILTERING_CONTROL, Role.FILTERING, server)
            self._filtering_tests = (
                self._add(
                    ProbeName.FILTERING_CHANGE_IP_PORT,
                    Role.FILTERING,
                    server,
                    change=ChangeFlags.CHANGE_IP | ChangeFlags.CHANGE_PORT,
                    expected_source=other,
                    control=control,
                ),
                self._add(
                    ProbeName.FILTERING_CHANGE_PORT,
                    Role.FILTERING,
                    server,
                    change=ChangeFlags.CHANGE_PORT,
                    expected_source=Endpoint(server.address, other.port),
                    control=control,
                ),
            )
            return
        self._discovery_decided = True  # nobody offers RFC 5780

    def _decide_hairpin(self) -> None:
        mapped = self._mapping_socket_address()
        if mapped is None:
            if not any(self._bindings[s].open for s in self.servers):
                self._hairpin_decided = True  # no mapped address to aim at
            return
        self._hairpin_decided = True
        if mapped == self.sockets[Role.MAPPING]:
            return  # not behind a NAT: nothing to hairpin through
        self._hairpin = self._add(
            ProbeName.HAIRPIN,
            Role.HAIRPIN,
            mapped,
            control=self._hairpin_control,
            hairpin_target=Role.MAPPING,
        )

    def _mapping_socket_address(self) -> Endpoint | None:
        for server in self.servers:
            mapped = self._bindings[server].mapped
            if mapped is not None:
                return mapped
        return None

    def _udp_blocked(self, now: float) -> bool:
        """TCP answered, UDP never did: enough UDP attempts are old enough
        (several TCP round trips) to have been answered if UDP worked."""
        if self._any_udp_answer or self._tcp.rtt is None:
            return False
        settle = max(4 * self.config.min_window, 3 * self._tcp.rtt)
        expired = sum(1 for p in self._probes for a in p.attempts if now >= a.sent_at + settle)
        return (
            expired >= self.config.udp_blocked_min_attempts
            and now - self._started >= self.config.udp_blocked_min_wait
        )

    # -- the report --------------------------------------------------------------

    def _finish(self, now: float, evidence: LossEvidence) -> None:
        for probe in self._probes:
            if probe.open:
                probe.false_negative = evidence.false_negative_probability(len(probe.attempts))
                probe.outcome = ProbeOutcome.INCONCLUSIVE
            for attempt in probe.attempts:
                self._client.cancel(attempt.transaction_id)
        self._outbox.clear()
        self._report = self._build_report(now, evidence)
        self._events.append(ClassificationCompleted(self._report))

    def _build_report(self, now: float, evidence: LossEvidence) -> ClassificationReport:
        reasons: dict[str, str] = {}
        local = self.sockets[Role.MAPPING]
        reference = self._bindings[self.servers[0]]
        mapped = reference.mapped or self._mapping_socket_address()

        if self._any_udp_answer:
            status = RunStatus.OK
        elif self._tcp.rtt is not None:
            status = RunStatus.UDP_BLOCKED
        else:
            status = RunStatus.UNREACHABLE
        reasons["udp_blocked"] = {
            RunStatus.OK: "UDP answers received",
            RunStatus.UDP_BLOCKED: "the server answered over TCP but never over UDP",
            RunStatus.UNREACHABLE: "no answer over UDP or TCP from any server",
        }[status]

        behind_nat: bool | None
        if mapped is not None:
            behind_nat = mapped != local
            reasons["behind_nat"] = f"local {local}, mapped {mapped}"
        elif self._tcp.mapped is not None:
            behind_nat = self._tcp.mapped.address != local.address
            reasons["behind_nat"] = f"local {local.address}, TCP mapped {self._tcp.mapped}"
        else:
            behind_nat = None
            reasons["behind_nat"] = "no mapped address"

        mapping, reasons["mapping"] = self._mapping_verdict(mapped, local)
        filtering, reasons["filtering"] = self._filtering_verdict()
        if self._hairpin is not None:
            hairpin, reasons["hairpin"] = hairpin_from_test(self._hairpin.result())
        else:
            hairpin = None
            reasons["hairpin"] = (
                "not behind a NAT" if behind_nat is False else "not tested: no mapped address"
            )
            if not self.config.test_hairpin:
                reasons["hairpin"] = "not tested"
        samples = [
            (self.sockets[p.socket].port, p.mapped.port)
            for p in (reference, self._filtering_first, self._hairpin_control, *self._allocation)
            if p.mapped is not None
        ]
        allocation, delta, reasons["port_allocation"] = port_allocation(samples)

        both = [
            a
            for p in self._probes
            for a in p.answers
            if a.mapped_address is not None and a.plain_mapped_address is not None
        ]
        alg = any(a.mapped_address != a.plain_mapped_address for a in both) if both else None
        srtt = self._srtt()
        return ClassificationReport(
            status=status,
            udp_blocked=not self._any_udp_answer,
            behind_nat=behind_nat,
            mapping=mapping,
            filtering=filtering,
            hairpin=hairpin,
            port_allocation=allocation,
            port_allocation_delta=delta,
            mapped_address=mapped,
            local_address=local,
            alg_detected=alg,
            servers=tuple(
                ServerReport(
                    address=server,
                    answered=bool(self._bindings[server].answers),
                    other_address=self._server_info.get(server, (None, None))[0],
                    software=self._server_info.get(server, (None, None))[1],
                )
                for server in self.servers
            ),
            rtt=srtt if srtt is not None else self._tcp.rtt,
            loss_estimate=evidence.observed_loss,
            duration=now - self._started,
            reasons=reasons,
            observations=tuple(self._observe(p) for p in self._probes),
            tcp_mapped_address=self._tcp.mapped,
        )

    def _mapping_verdict(
        self, mapped: Endpoint | None, local: Endpoint
    ) -> tuple[MappingBehavior, str]:
        if mapped is None:
            return MappingBehavior.UNKNOWN, "no UDP mapping was seen"
        if mapped == local:
            # RFC 5780 §4.3: not NATed, so the effective mapping is endpoint-independent.
            return MappingBehavior.EIM, "not behind a NAT: the mapped address is the local one"
        if self._discovery is not None and self._mapping_tests is not None:
            test_ii, test_iii = self._mapping_tests
            return mapping_from_rfc5780(
                self._bindings[self._discovery].mapped, test_ii.mapped, test_iii.mapped
            )
        mapped_by_server: dict[object, Endpoint] = {}
        for server in self.servers:
            found = self._bindings[server].mapped
            if found is not None:
                mapped_by_server.setdefault(server.address, found)
        return mapping_from_servers(list(mapped_by_server.values()))

    def _filtering_verdict(self) -> tuple[FilteringBehavior, str]:
        if self._filtering_tests is None:
            return FilteringBehavior.UNKNOWN, "no server offered RFC 5780 (OTHER-ADDRESS)"
        change_both, change_port = self._filtering_tests
        return filtering_from_rfc5780(change_both.result(), change_port.result())

    def _observe(self, probe: _Probe) -> ProbeObservation:
        return ProbeObservation(
            test=probe.test.value,
            local=self.sockets[probe.socket],
            destination=probe.destination,
            change_ip=bool(probe.change & ChangeFlags.CHANGE_IP),
            change_port=bool(probe.change & ChangeFlags.CHANGE_PORT),
            attempts=len(probe.attempts),
            outcome=probe.outcome or ProbeOutcome.NOT_RUN,
            answers=tuple(probe.answers),
            false_negative_probability=probe.false_negative,
        )
