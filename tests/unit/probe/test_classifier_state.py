"""The classifier's phases (natkit.probe.state): one table, illegal moves raise."""

from __future__ import annotations

import random

import pytest

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.probe.classifier import ClassifierConfig, NatClassifier
from natkit.probe.state import (
    TRANSITIONS,
    ClassifierStateError,
    Phase,
    PhaseEvent,
    RunPhase,
)


def test_both_decisions_in_either_order_lead_to_testing() -> None:
    for first, second in (
        (PhaseEvent.DISCOVERY_DECIDED, PhaseEvent.HAIRPIN_DECIDED),
        (PhaseEvent.HAIRPIN_DECIDED, PhaseEvent.DISCOVERY_DECIDED),
    ):
        run = RunPhase(hairpin=True)
        run.process(first)
        assert run.process(second) is Phase.TESTING
        assert run.discovery_decided
        assert run.hairpin_decided
        assert run.process(PhaseEvent.TESTS_SETTLED) is Phase.SETTLING
        assert run.process(PhaseEvent.FINISHED) is Phase.FINISHED


def test_without_hairpinning_only_discovery_is_awaited() -> None:
    run = RunPhase(hairpin=False)
    assert run.phase is Phase.AWAITING_DISCOVERY
    assert run.hairpin_decided
    assert not run.discovery_decided


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("event", list(PhaseEvent))
def test_every_move_outside_the_table_raises_naming_the_phase(
    phase: Phase, event: PhaseEvent
) -> None:
    run = RunPhase(hairpin=True)
    run.phase = phase
    if (phase, event) in TRANSITIONS:
        assert run.process(event) is TRANSITIONS[phase, event]
        return
    with pytest.raises(ClassifierStateError) as caught:
        run.process(event)
    assert isinstance(caught.value, LocalProtocolError)
    assert (caught.value.phase, caught.value.event) == (phase, event)
    assert phase.value in str(caught.value)
    assert run.phase is phase  # an illegal event changes nothing


def test_nothing_leaves_finished() -> None:
    assert not [key for key in TRANSITIONS if key[0] is Phase.FINISHED]


def test_a_run_goes_through_the_phases_and_ignores_input_once_finished() -> None:
    servers = [Endpoint.parse("203.0.113.10:3478")]
    config = ClassifierConfig(hop_limit=0, timeout=1.0)
    sockets = [Endpoint.parse(f"192.168.1.2:{4000 + i}") for i in range(config.sockets_needed)]
    core = NatClassifier(servers, sockets, 0.0, config, random.Random(1))
    assert core.phase is Phase.STARTING
    core.handle_timer(1.0)  # nobody answered: the deadline finishes the run
    assert core.phase is Phase.FINISHED
    report = core.report
    core.receive_datagram(b"late", servers[0], 0, 1.5)
    core.handle_timer(2.0)
    assert core.report is report
    assert core.get_timer() is None
