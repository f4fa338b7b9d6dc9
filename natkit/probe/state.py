"""The classifier's phases, as one transition table (after h11's ``_state.py``).

Theory of operation
-------------------
A run starts every test it can at once (bindings, filtering control,
hairpin control, allocation); two decisions start the rest, in whichever
order the answers allow:

* **discovery**: which server runs RFC 5780 tests (the first, in the order
  given, that sent OTHER-ADDRESS), or that none does. Starts RFC 5780 §4.3
  tests II and III and §4.4 tests II and III.
* **hairpin**: where hairpinning is aimed (the MAPPING socket's mapped
  address), or that it cannot be tested. Starts the hairpin test.

Once both are decided and every test is settled, the hop probe's unanswered
TTLs get one more window (SETTLING); then the report is made (FINISHED).
The deadline, or UDP found blocked, finishes the run from any phase.

Rules:

1. :data:`TRANSITIONS` is the only place that says which phase follows
   which; the classifier only names the event.
2. An event the table has no entry for in the current phase is a bug in
   the caller, raised as :class:`ClassifierStateError` naming both.
3. FINISHED has no way out: after the report, inputs are ignored (answers
   still in flight arrive after it, and that is not misuse).
"""

from __future__ import annotations

from enum import Enum

from natkit.errors import LocalProtocolError


class Phase(Enum):
    """Where a classification run is."""

    #: Neither the discovery server nor the hairpin target is decided.
    STARTING = "starting"
    #: The discovery server is decided; the hairpin target is not.
    AWAITING_HAIRPIN = "awaiting hairpin"
    #: The hairpin target is decided (or hairpinning is off); discovery is not.
    AWAITING_DISCOVERY = "awaiting discovery"
    #: Every test that will run has started.
    TESTING = "testing"
    #: Every test is settled; unanswered TTLs of the hop probe get one window.
    SETTLING = "settling"
    #: The report is made; nothing more is sent.
    FINISHED = "finished"


class PhaseEvent(Enum):
    """What moves a run from one phase to the next."""

    DISCOVERY_DECIDED = "discovery decided"
    HAIRPIN_DECIDED = "hairpin decided"
    TESTS_SETTLED = "tests settled"
    #: The report is made (tests settled and grace over, deadline, UDP blocked).
    FINISHED = "finished"


_ANY_RUNNING = (
    Phase.STARTING,
    Phase.AWAITING_HAIRPIN,
    Phase.AWAITING_DISCOVERY,
    Phase.TESTING,
    Phase.SETTLING,
)

#: (phase, event) -> next phase. Everything else is a :class:`ClassifierStateError`.
TRANSITIONS: dict[tuple[Phase, PhaseEvent], Phase] = {
    (Phase.STARTING, PhaseEvent.DISCOVERY_DECIDED): Phase.AWAITING_HAIRPIN,
    (Phase.STARTING, PhaseEvent.HAIRPIN_DECIDED): Phase.AWAITING_DISCOVERY,
    (Phase.AWAITING_HAIRPIN, PhaseEvent.HAIRPIN_DECIDED): Phase.TESTING,
    (Phase.AWAITING_DISCOVERY, PhaseEvent.DISCOVERY_DECIDED): Phase.TESTING,
    (Phase.TESTING, PhaseEvent.TESTS_SETTLED): Phase.SETTLING,
    **{(phase, PhaseEvent.FINISHED): Phase.FINISHED for phase in _ANY_RUNNING},
}


class ClassifierStateError(LocalProtocolError):
    """An event that cannot happen in the run's current phase."""

    def __init__(self, phase: Phase, event: PhaseEvent) -> None:
        super().__init__(f"{event.value!r} cannot happen while the run is {phase.value!r}")
        self.phase = phase
        self.event = event


class RunPhase:
    """The current phase of one run; moves only along :data:`TRANSITIONS`."""

    def __init__(self, *, hairpin: bool) -> None:
        #: Without the hairpin test, its target is decided from the start.
        self.phase = Phase.STARTING if hairpin else Phase.AWAITING_DISCOVERY

    def process(self, event: PhaseEvent) -> Phase:
        """Apply ``event``; raise :class:`ClassifierStateError` if it is illegal here."""
        try:
            self.phase = TRANSITIONS[self.phase, event]
        except KeyError:
            raise ClassifierStateError(self.phase, event) from None
        return self.phase

    @property
    def discovery_decided(self) -> bool:
        return self.phase not in (Phase.STARTING, Phase.AWAITING_DISCOVERY)

    @property
    def hairpin_decided(self) -> bool:
        return self.phase not in (Phase.STARTING, Phase.AWAITING_HAIRPIN)

    @property
    def finished(self) -> bool:
        return self.phase is Phase.FINISHED
