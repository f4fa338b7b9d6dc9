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
* HOPS (:mod:`natkit.probe.hop_trace`): the allocation sockets also send
  the same Binding to the same server with IP TTL 1, 2, ... (one TTL per
  socket), and the ICMP Time Exceeded answers name the routers on the way
  (:mod:`natkit.probe.hops`), which is how a carrier-grade NAT shows itself.
  These sockets talk to that one server alone, so a TTL-limited packet that
  gets past a NAT makes or refreshes the very mapping the socket's own first
  packet makes: the probe creates no other NAT state. They go out in the
  first burst, after every socket's first packet (so the order in which a
  NAT hands out ports is unchanged), and before the hairpinning test can
  draw ICMP errors from the NAT: routers send few ICMP errors per second to
  one host, and the hop probe should get them.

A test is a :class:`Probe`: it sends attempts, each a fresh one-shot STUN
transaction, until answered or until "no answer" is conclusive. Conclusive
means the loss measured on working paths (:mod:`natkit.probe.evidence`)
makes it improbable, below ``false_negative_target``, that every attempt was
lost although an answer was sent. Tests whose silence is a verdict (filtering,
hairpin) are paired with a *control* probe on the same socket to a known-good
destination, so loss is sampled on that very path while they run. Timing
follows the measured RTT, so a negative answer costs a few RTTs, not a
fixed multi-second timeout.

Module map: one test's bookkeeping and pacing is :mod:`natkit.probe.probes`;
the RTT estimates pacing follows are :mod:`natkit.probe.rtt`; the run's
phases and their transition table are :mod:`natkit.probe.state`; turning a
finished run into verdicts and reasons is :mod:`natkit.probe.findings`.

UDP blocked is decided with help from TCP: the driver is asked to run one
Binding over TCP (a :class:`~natkit.sansio.StreamRequest`, several staggered
connections, first reply wins); if TCP answers and UDP stays
silent for ``udp_blocked_min_attempts`` attempts and ``udp_blocked_min_wait``,
UDP is blocked. With neither, the run ends at ``timeout`` as "unreachable".

The hop probe never holds the report up by more than one attempt window:
once everything else is settled, TTLs still unanswered get that long.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.probe.events import ClassificationCompleted, ClassifierEvent
from natkit.probe.evidence import LossEvidence
from natkit.probe.findings import Findings, ServerInfo, build_report
from natkit.probe.hop_trace import HopPacing, HopProbe, HopTrace
from natkit.probe.hops import Hop, HopReply
from natkit.probe.probes import (
    Attempt,
    Pacing,
    Probe,
    ProbeName,
    TcpCheck,
    first_mapped,
    loss_evidence,
)
from natkit.probe.report import (
    Answer,
    ClassificationReport,
    ProbeOutcome,
    usable_other_address,
)
from natkit.probe.rtt import PathRtt
from natkit.probe.state import Phase, PhaseEvent, RunPhase
from natkit.sansio import Datagram, IcmpError, IcmpKind, StreamRequest, StreamResult
from natkit.stun.attributes import ChangeRequest
from natkit.stun.client import StunClient
from natkit.stun.codec import (
    StunDecodeError,
    binding_request,
    encode_message,
    parse_message,
)
from natkit.stun.constants import (
    HEADER_LENGTH,
    MAGIC_COOKIE_BYTES,
    AttributeType,
    ChangeFlags,
    MessageClass,
)
from natkit.stun.events import RequestReceived, ResponseReceived, TransactionTimedOut
from natkit.stun.transaction import RetransmissionPolicy

#: The TCP check's connection attempts start this far apart (seconds), so a
#: lost SYN or SYN-ACK costs a fraction of a second, not the kernel's 1 s RTO.
TCP_ATTEMPT_DELAYS = (0.0, 0.1, 0.2, 0.4, 0.6, 0.9)

#: The id of the TCP check's stream request (the classifier makes only one).
TCP_CHECK = 0

#: Tests whose answers are the only samples of the alternate address's route
#: (RFC 5780 §4.3 tests II and III)...
ROUTE_TESTS = frozenset({ProbeName.MAPPING_ALT_ADDRESS, ProbeName.MAPPING_ALT_ADDRESS_PORT})
#: ...and how many attempts may measure it again after a stalled first answer.
RESAMPLE_ATTEMPTS = 3


class Role(IntEnum):
    """Socket index of each role; allocation sockets follow ``ALLOCATION``."""

    MAPPING = 0
    FILTERING = 1
    HAIRPIN = 2
    ALLOCATION = 3


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
    #: Spacing of attempts: the current RTT (:mod:`natkit.probe.rtt`),
    #: clamped to [min, max]...
    min_interval: float = 0.005
    max_interval: float = 0.5
    #: ...or this while no UDP answer has been seen.
    initial_interval: float = 0.05
    #: An attempt counts as lost once this long passed (or twice the current
    #: RTTs plus the slowest route's excess)...
    min_window: float = 0.015
    #: ...or this while no RTT is known.
    initial_window: float = 0.5
    #: Give up on everything still open after this long.
    timeout: float = 5.0
    #: UDP is blocked when TCP answered and at least this many UDP attempts...
    udp_blocked_min_attempts: int = 12
    #: ...spread over at least this long got no answer at all.
    udp_blocked_min_wait: float = 0.15
    #: Probe the routers on the way with TTL 1..hop_limit, one TTL per
    #: allocation socket (so at most ``allocation_sockets``); 0: no hop probe.
    hop_limit: int = 4
    #: Attempts per TTL (ICMP is rate-limited: few, and a gap is tolerated).
    hop_attempts: int = 2
    #: Start times of the TCP check's parallel connections (first reply wins).
    tcp_attempt_delays: tuple[float, ...] = TCP_ATTEMPT_DELAYS
    #: RTT samples of attempts sent this much earlier than the newest
    #: answered one no longer pace the run: a stall is forgotten this soon
    #: after the path answers quickly again (:mod:`natkit.probe.rtt`).
    rtt_memory: float = 0.1

    @property
    def sockets_needed(self) -> int:
        return Role.ALLOCATION + self.allocation_sockets


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
        self._probes: list[Probe] = []
        self._by_transaction: dict[bytes, tuple[Probe, Attempt]] = {}
        self._events: deque[ClassifierEvent] = deque()
        self._outbox: list[Datagram] = []
        self._server_info: dict[Endpoint, ServerInfo] = {}
        self._rtt = PathRtt(self.config.rtt_memory)
        self._any_udp_answer = False
        self._discovery: Endpoint | None = None
        self._phase = RunPhase(hairpin=self.config.test_hairpin)
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
        hop_sockets = [
            Role.ALLOCATION + i
            for i in range(min(self.config.hop_limit, self.config.allocation_sockets))
        ]
        self._trace = HopTrace(reference, hop_sockets, self.config.hop_attempts)
        self._hop_by_transaction: dict[bytes, HopProbe] = {}
        # When the run entered Phase.SETTLING (the hop probe's grace starts).
        self._settled_at = now
        self._mapping_tests: tuple[Probe, Probe] | None = None
        self._filtering_tests: tuple[Probe, Probe] | None = None
        self._hairpin: Probe | None = None

        tid = self._client.new_transaction_id()
        self._tcp = TcpCheck(reference, tid, now)
        self._streams = [
            StreamRequest(
                TCP_CHECK,
                reference,
                encode_message(binding_request(tid)),
                timeout=self.config.timeout,
                stagger=self.config.tcp_attempt_delays,
            )
        ]
        self._advance(now)

    # -- SansIOCore ---------------------------------------------------------------

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        if self._phase.finished:
            return
        hop_probe = self._hop_by_transaction.get(data[8:HEADER_LENGTH])
        if hop_probe is not None:
            self._hop_answered(hop_probe, data, remote)
        else:
            self._client.receive_datagram(data, remote, socket, now)
        self._advance(now)

    def handle_timer(self, now: float) -> None:
        if self._phase.finished:
            return
        self._client.handle_timer(now)
        self._advance(now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self._outbox = self._outbox, []
        return out

    def get_timer(self) -> float | None:
        if self._phase.finished:
            return None
        return min(self._wakeups(), default=self._deadline)

    def next_event(self) -> ClassifierEvent | None:
        return self._events.popleft() if self._events else None

    def receive_icmp_error(self, error: IcmpError, socket: int, now: float) -> None:
        """An ICMP error about one of our datagrams (:mod:`natkit.sansio`);
        only the hop probe's are used."""
        if self._phase.finished:
            return
        probe = self._trace.on_socket(socket)
        if probe is None or not probe.attempts or error.destination != self._trace.destination:
            return
        if not self._quotes_hop_attempt(error.quoted):
            return
        if error.kind is IcmpKind.TIME_EXCEEDED:
            reply = HopReply.TIME_EXCEEDED
        elif error.kind is IcmpKind.OTHER:
            return
        else:
            reply = HopReply.UNREACHABLE
        self._trace.record(probe, Hop(probe.ttl, reply, error.offender))
        self._advance(now)

    # -- streams (natkit.sansio.StreamAware) ------------------------------------------

    def stream_requests(self) -> list[StreamRequest]:
        """The TCP check, once (the Binding over TCP that tells "UDP blocked"
        from "nothing there" without waiting out a timeout)."""
        out, self._streams = self._streams, []
        return out

    def stream_answered(self, request_id: int, result: StreamResult, now: float) -> None:
        """The TCP check's outcome. Its ``rtt`` is the exchange itself; without
        one the time since the request is used, which a lost SYN inflates."""
        if request_id != TCP_CHECK:
            raise LocalProtocolError(f"no stream request {request_id} was made")
        check = self._tcp
        if check.done or self._phase.finished:
            return
        check.done = True
        reply = result.reply
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
                check.rtt = now - check.sent_at if result.rtt is None else result.rtt
                check.mapped = message.reflexive_address
        self._advance(now)

    @property
    def report(self) -> ClassificationReport | None:
        return self._report

    @property
    def phase(self) -> Phase:
        """Where the run is (:mod:`natkit.probe.state`)."""
        return self._phase.phase

    # -- probes ------------------------------------------------------------------

    def _add(
        self,
        test: ProbeName,
        socket: int,
        destination: Endpoint,
        *,
        change: ChangeFlags = ChangeFlags.NONE,
        expected_source: Endpoint | None = None,
        control: Probe | None = None,
        hairpin_target: int | None = None,
    ) -> Probe:
        probe = Probe(
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

    def _send_attempt(self, probe: Probe, now: float) -> None:
        attributes = (ChangeRequest(probe.change),) if probe.change else ()
        request = binding_request(self._client.new_transaction_id(), *attributes)
        tid = self._client.send_request(request, probe.destination, now, socket=probe.socket)
        attempt = Attempt(tid, now)
        probe.attempts.append(attempt)
        self._by_transaction[tid] = (probe, attempt)
        self._outbox.extend(self._client.datagrams_to_send(now))

    # The hop probe keeps out of the STUN client: its answers must not feed
    # the RTT estimator that paces the RFC 5780 tests, nor its transactions
    # count as theirs.

    def _send_hop_attempt(self, probe: HopProbe, now: float) -> None:
        tid = self._client.new_transaction_id()
        self._hop_by_transaction[tid] = probe
        self._trace.sent(probe, now)
        data = encode_message(binding_request(tid))
        self._outbox.append(Datagram(data, self._trace.destination, probe.socket, ttl=probe.ttl))

    def _hop_answered(self, probe: HopProbe, data: bytes, remote: Endpoint) -> None:
        """The server answered a hop-limited request: it is this far away."""
        try:
            message = parse_message(data)
        except StunDecodeError:
            return
        if message.message_class in (MessageClass.SUCCESS_RESPONSE, MessageClass.ERROR_RESPONSE):
            self._trace.record(probe, Hop(probe.ttl, HopReply.DESTINATION, remote.address))

    def _quotes_hop_attempt(self, quoted: bytes) -> bool:
        """Whether an ICMP error's quote may be of a hop attempt: a quote
        long enough to hold a STUN header must carry one of their IDs (the
        socket's own test used other ones); a shorter one cannot tell."""
        if len(quoted) < HEADER_LENGTH or quoted[4:8] != MAGIC_COOKIE_BYTES:
            return True
        return quoted[8:HEADER_LENGTH] in self._hop_by_transaction

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
            self._server_info[probe.destination] = ServerInfo(
                answer.other_address, response.text(AttributeType.SOFTWARE)
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

    def _record_answer(self, probe: Probe, attempt: Attempt, answer: Answer, now: float) -> None:
        first = not probe.answers
        if attempt.answered_at is None:
            rtt = now - attempt.sent_at
            # A route test's first answer far beyond what the path does now
            # is a stall or a slow route; its route is measured again so that
            # one stalled sample cannot set the waits (natkit.probe.rtt).
            current_max = self._rtt.current_max
            stalled = current_max is not None and rtt > self._window_for(current_max)
            self._rtt.add(attempt.sent_at, rtt, answer.source.address)
            if first and stalled and probe.test in ROUTE_TESTS:
                probe.record(attempt, answer, now)
                probe.resample(RESAMPLE_ATTEMPTS)
                return
        probe.record(attempt, answer, now)

    # -- the schedule ------------------------------------------------------------

    def _interval(self) -> float:
        current = self._rtt.current
        if current is None:
            return self.config.initial_interval
        return min(self.config.max_interval, max(self.config.min_interval, current))

    def _window(self) -> float:
        """How long an attempt's answer is waited for (:mod:`natkit.probe.rtt`):
        twice what the path does now plus how much slower the slowest route is."""
        current_max = self._rtt.current_max
        if current_max is None:
            return self.config.initial_window
        return self._window_for(current_max + self._rtt.route_excess)

    def _window_for(self, rtt: float) -> float:
        return max(self.config.min_window, 2 * rtt)

    def _advance(self, now: float) -> None:
        if self._phase.finished:
            return
        self._now = now
        self._drain_client(now)
        self._start_dependent_tests()
        pacing = Pacing(
            interval=self._interval(),
            window=self._window(),
            target=self.config.false_negative_target,
            max_attempts=self.config.max_attempts,
        )
        evidence = loss_evidence(self._probes, now, pacing.window)
        for probe in self._probes:
            if probe.open and probe.due(now, evidence, pacing):
                self._send_attempt(probe, now)
                # The control samples loss on the same socket, at most once a round.
                control = probe.control
                if control is not None and now - control.last_sent >= pacing.interval / 2:
                    self._send_attempt(control, now)
            elif probe.resample_left and probe.resample_due(now, pacing.interval):
                self._send_attempt(probe, now)
        # A TTL is retried only once its attempt counts as lost (a window):
        # routers rate-limit ICMP, and a needless retry spends their budget.
        hop_pacing = HopPacing(interval=pacing.window, window=pacing.window)
        for hop_probe in self._trace.due(now, hop_pacing, self._hop_ready):
            self._send_hop_attempt(hop_probe, now)
        if self._udp_blocked(now) or now >= self._deadline:
            self._finish(now, evidence)
            return
        phase = self._phase.phase
        if phase is Phase.TESTING and not any(probe.open for probe in self._probes):
            phase = self._phase.process(PhaseEvent.TESTS_SETTLED)
            self._settled_at = now
        # Unanswered TTLs get one more window, never more.
        if phase is Phase.SETTLING and (
            self._trace.done or now >= self._settled_at + pacing.window
        ):
            self._finish(now, evidence)

    def _hop_ready(self, probe: HopProbe) -> bool:
        """A TTL goes out on an allocation socket after that socket's own first packet."""
        return bool(self._allocation[probe.socket - Role.ALLOCATION].attempts)

    def _wakeups(self) -> Iterable[float]:
        """Future moments something is due; anything due already was handled
        by the last :meth:`_advance`, so past times are left out (no busy loop)."""
        now = self._now
        candidates = [self._deadline]
        client_timer = self._client.get_timer()
        if client_timer is not None:
            candidates.append(client_timer)
        candidates.extend(p.wake_at for p in self._probes if p.open or p.resample_left)
        candidates.extend(self._trace.wakeups())
        if self._phase.phase is Phase.SETTLING:
            candidates.append(self._settled_at + self._window())
        if not self._any_udp_answer and self._tcp.rtt is not None:
            candidates.append(self._started + self.config.udp_blocked_min_wait)
        return (t for t in candidates if t > now)

    def _start_dependent_tests(self) -> None:
        if not self._phase.discovery_decided:
            self._decide_discovery_server()
        if not self._phase.hairpin_decided:
            self._decide_hairpin()

    def _decide_discovery_server(self) -> None:
        """The first server (in the order given) that sent OTHER-ADDRESS runs
        the RFC 5780 tests; earlier servers must have answered or gone silent."""
        for server in self.servers:
            probe = self._bindings[server]
            if probe.open:
                return
            info = self._server_info.get(server)
            other = None if info is None else info.other_address
            if not usable_other_address(other, server):
                continue
            self._discovery = server
            self._phase.process(PhaseEvent.DISCOVERY_DECIDED)
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
        self._phase.process(PhaseEvent.DISCOVERY_DECIDED)  # nobody offers RFC 5780

    def _decide_hairpin(self) -> None:
        mapped = first_mapped(self.servers, self._bindings)
        if mapped is None:
            if not any(self._bindings[s].open for s in self.servers):
                self._phase.process(PhaseEvent.HAIRPIN_DECIDED)  # no mapped address to aim at
            return
        self._phase.process(PhaseEvent.HAIRPIN_DECIDED)
        if mapped == self.sockets[Role.MAPPING]:
            return  # not behind a NAT: nothing to hairpin through
        self._hairpin = self._add(
            ProbeName.HAIRPIN,
            Role.HAIRPIN,
            mapped,
            control=self._hairpin_control,
            hairpin_target=Role.MAPPING,
        )

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
        window = self._window()
        for probe in self._probes:
            if probe.open:
                # Only attempts whose answer is overdue are evidence of silence.
                expired = probe.expired(now, window)
                probe.false_negative = evidence.false_negative_probability(expired)
                probe.outcome = ProbeOutcome.INCONCLUSIVE
            for attempt in probe.attempts:
                self._client.cancel(attempt.transaction_id)
        self._outbox.clear()
        reference = self._bindings[self.servers[0]]
        findings = Findings(
            servers=self.servers,
            sockets=self.sockets,
            local=self.sockets[Role.MAPPING],
            bindings=self._bindings,
            server_info=self._server_info,
            discovery=self._discovery,
            mapping_tests=self._mapping_tests,
            filtering_tests=self._filtering_tests,
            hairpin=self._hairpin,
            hairpin_wanted=self.config.test_hairpin,
            allocation_probes=(
                reference,
                self._filtering_first,
                self._hairpin_control,
                *self._allocation,
            ),
            probes=tuple(self._probes),
            tcp=self._tcp,
            any_udp_answer=self._any_udp_answer,
            rtt=self._rtt.typical,
            evidence=evidence,
            duration=now - self._started,
            hops=self._trace.hops(),
        )
        self._report = build_report(findings)
        self._phase.process(PhaseEvent.FINISHED)
        self._events.append(ClassificationCompleted(self._report))
