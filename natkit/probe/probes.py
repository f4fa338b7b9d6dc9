"""One RFC 5780 test as the classifier runs it: attempts until answered or
until silence is conclusive (see :mod:`natkit.probe.evidence`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from natkit.endpoint import Endpoint
from natkit.probe.evidence import LossEvidence
from natkit.probe.report import Answer, ProbeName, ProbeOutcome
from natkit.probe.verdicts import CheckResult

__all__ = ["Attempt", "Pacing", "Probe", "ProbeName", "TcpCheck", "first_mapped", "loss_evidence"]
from natkit.stun.constants import ChangeFlags


@dataclass(frozen=True, slots=True)
class Pacing:
    """The timing every probe follows at one moment of a run."""

    #: Spacing of a probe's attempts.
    interval: float
    #: An unanswered attempt counts as lost after this long.
    window: float
    #: Silence is conclusive once P(every attempt lost) is below this.
    target: float
    #: Attempts before a probe is called inconclusive.
    max_attempts: int


@dataclass(slots=True)
class Attempt:
    """One one-shot STUN transaction of a probe."""

    transaction_id: bytes
    sent_at: float
    answered_at: float | None = None


@dataclass(eq=False, slots=True)
class Probe:
    """A test: where it is sent from and to, and everything that came back."""

    test: ProbeName
    socket: int
    destination: Endpoint
    change: ChangeFlags = ChangeFlags.NONE
    #: Where the answer must come from to count (CHANGE-REQUEST tests).
    expected_source: Endpoint | None = None
    #: A probe on the same socket that samples loss while this one runs.
    control: Probe | None = None
    #: The answer is our own request arriving on this socket (hairpinning).
    hairpin_target: int | None = None
    attempts: list[Attempt] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    outcome: ProbeOutcome | None = None
    false_negative: float | None = None
    #: When the first attempt may go out; later ones follow the last by the
    #: current interval (re-read at every look, so a stall's long interval
    #: is dropped as soon as the RTT estimate recovers).
    next_at: float = 0.0
    #: When the probe next needs attention (next attempt, or its last window ending).
    wake_at: float = 0.0
    #: Attempts still allowed to measure this answered test's route again
    #: (its first answer looked stalled: :meth:`resample`).
    resample_left: int = 0
    #: Answers it had when the new measurement was asked for.
    resample_after: int = 0

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

    def expired(self, now: float, window: float) -> int:
        """Attempts unanswered for longer than ``window``: overdue, so lost or
        never answered (an open probe has no answered attempt)."""
        return sum(1 for attempt in self.attempts if now >= attempt.sent_at + window)

    def due(self, now: float, evidence: LossEvidence, pacing: Pacing) -> bool:
        """Whether an attempt must go out now; otherwise note when to look
        again (``wake_at``), or conclude SILENT / INCONCLUSIVE.

        Silence is concluded as soon as the *overdue* attempts alone make
        it improbable that an answer was sent and lost; attempts still
        within their window can only add to that, so they are not waited
        for (an attempt sent into a stall need not hold the verdict up).
        Whether to send more counts every attempt sent, so a test never has
        more in flight than its verdict needs.
        """
        sent = len(self.attempts)
        window = pacing.window
        p_overdue = evidence.false_negative_probability(self.expired(now, window))
        if sent and p_overdue < pacing.target:
            self.false_negative = p_overdue
            self.outcome = ProbeOutcome.SILENT
            return False
        # Compare exactly the deadlines we sleep until, or float rounding can
        # leave a probe waiting for a moment that has already passed.
        waiting = [a.sent_at + window for a in self.attempts if now < a.sent_at + window]
        p_sent = evidence.false_negative_probability(sent)
        if (sent == 0 or p_sent >= pacing.target) and sent < pacing.max_attempts:
            ready_at = self.last_sent + pacing.interval if sent else self.next_at
            sending = now >= ready_at
            if sending:
                ready_at = now + pacing.interval
            self.wake_at = min([ready_at, *waiting])
            return sending
        if waiting:
            self.wake_at = min(waiting)  # an answer may still come, or silence be proven
            return False
        self.false_negative = p_overdue
        self.outcome = ProbeOutcome.INCONCLUSIVE
        return False

    def resample(self, attempts: int) -> None:
        """Measure the route again: up to ``attempts`` more attempts, until one
        is answered (the verdict keeps using the first answer)."""
        self.resample_left = attempts
        self.resample_after = len(self.answers)

    def resample_due(self, now: float, interval: float) -> bool:
        """Whether a re-measuring attempt must go out now (see :meth:`resample`)."""
        if len(self.answers) > self.resample_after:
            self.resample_left = 0  # measured again
        if not self.resample_left:
            return False
        ready_at = self.last_sent + interval
        if now < ready_at:
            self.wake_at = ready_at
            return False
        self.resample_left -= 1
        self.wake_at = now + interval
        return True

    def record(self, attempt: Attempt, answer: Answer, now: float) -> None:
        """An answer arrived; a late one overrides a "silent" conclusion."""
        if attempt.answered_at is None:
            attempt.answered_at = now
        self.answers.append(answer)
        self.outcome = ProbeOutcome.ANSWERED
        self.false_negative = None

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
class TcpCheck:
    """The one Binding over TCP that tells "UDP blocked" from "nothing there"."""

    server: Endpoint
    transaction_id: bytes
    sent_at: float
    rtt: float | None = None
    mapped: Endpoint | None = None
    done: bool = False


def loss_evidence(probes: Iterable[Probe], now: float, window: float) -> LossEvidence:
    """Answered and lost attempts, counted only on paths shown to work."""
    answered = lost = 0
    for probe in probes:
        if not probe.answers:
            continue
        for attempt in probe.attempts:
            if attempt.answered_at is not None:
                answered += 1
            elif now >= attempt.sent_at + window:
                lost += 1
    return LossEvidence(answered, lost)


def first_mapped(
    servers: Sequence[Endpoint], bindings: Mapping[Endpoint, Probe]
) -> Endpoint | None:
    """A socket's mapped address: as seen by the first server that answered."""
    for server in servers:
        found = bindings[server].mapped
        if found is not None:
            return found
    return None
