"""An RTT that jumps at the start and recovers (issue 9, item 3).

A stall at start-up (a blocked event loop, Wi-Fi, bufferbloat, a NAT busy
after a conntrack flush) delays the first burst's answers by far more than
the path's RTT. Before the fix, the worst RTT ever seen set every later
attempt's window and the pacing followed a smoothed RTT still full of the
stall, so silent tests waited out seconds and ran into the timeout as
"inconclusive" although their false-negative probability was far below the
target. The stall must be forgotten once the path answers quickly again.
Durations here are virtual (the simulator's clock), so exact and stable.
"""

from __future__ import annotations

import random

import pytest

from natkit.endpoint import Endpoint
from natkit.probe.classifier import ClassifierConfig, NatClassifier
from natkit.probe.report import FilteringBehavior, MappingBehavior, ProbeOutcome, RunStatus
from natkit.sansio import Datagram
from natkit.simulations import FilteringBehavior as SimFiltering
from natkit.simulations import Link, NatConfig
from natkit.simulations import MappingBehavior as SimMapping
from natkit.simulations import PortAllocation as SimAllocation
from natkit.simulations.classification import simulate_classification
from natkit.stun.attributes import AddressAttribute, Attribute, XorAddressAttribute
from natkit.stun.codec import Message, encode_message
from natkit.stun.constants import AttributeType, MessageClass, Method

DELAY = 0.005
MAPPED = Endpoint.parse("198.51.100.1:40000")
#: For the first 100 ms every datagram takes 200 ms more each way, then the
#: path is back to 5 ms: the answers sent into the stall come 0.4 s late.
STALL, EXTRA = 0.1, 0.2


def spike(loss: float) -> tuple[tuple[float, Link], ...]:
    return (
        (0.0, Link.symmetric(DELAY + EXTRA, loss=loss)),
        (STALL, Link.symmetric(DELAY, loss=loss)),
    )


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    ("filtering", "expected"),
    [(SimFiltering.APDF, FilteringBehavior.APDF), (SimFiltering.EIF, FilteringBehavior.EIF)],
)
@pytest.mark.parametrize("loss", [0.0, 0.2])
def test_a_start_up_spike_is_forgotten_once_the_path_recovers(
    seed: int,
    filtering: SimFiltering,
    expected: FilteringBehavior,
    loss: float,
) -> None:
    nat = NatConfig(SimMapping.EIM, filtering, SimAllocation.RANDOM)
    run = simulate_classification(nat, delay=DELAY, seed=seed, link_changes=spike(loss))
    report = run.report
    assert report.status is RunStatus.OK
    assert report.mapping is MappingBehavior.EIM
    assert report.filtering is expected
    for observation in report.observations:
        assert observation.outcome is not ProbeOutcome.INCONCLUSIVE, observation
    # Done before the stalled answers even arrive (0.1 + 0.4 s): the stall
    # does not set the pace once the path answers quickly again.
    assert run.seconds < STALL + 2 * EXTRA
    # What the report calls the RTT is the path's (10 ms), not the stall's.
    assert report.rtt is not None
    assert report.rtt < 4 * DELAY


def test_a_route_test_whose_only_answer_was_stalled_measures_its_route_again() -> None:
    """The alternate address's route has no samples but the mapping tests'
    first answers: one stalled answer there, with the primary's answers as
    fast as ever, is measured again rather than trusted for the whole run."""
    server, alternate = Endpoint.parse("203.0.113.10:3478"), Endpoint.parse("203.0.113.11:3479")
    config = ClassifierConfig(hop_limit=0)
    sockets = [Endpoint.parse(f"192.168.1.2:{4000 + i}") for i in range(config.sockets_needed)]
    core = NatClassifier([server], sockets, 0.0, config, random.Random(1))

    def answer(request: Datagram, *extra: Attribute) -> bytes:
        mapped = XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, MAPPED)
        return encode_message(
            Message(
                Method.BINDING, MessageClass.SUCCESS_RESPONSE, request.data[8:20], (mapped, *extra)
            )
        )

    other = AddressAttribute(AttributeType.OTHER_ADDRESS, alternate)
    for request in core.datagrams_to_send(0.0):  # the first burst, answered in 2 ms
        core.receive_datagram(answer(request, other), server, request.socket, 0.002)
    mapping_ii = Endpoint(alternate.address, server.port)
    (sent,) = [d for d in core.datagrams_to_send(0.002) if d.remote == mapping_ii]
    core.receive_datagram(answer(sent), mapping_ii, sent.socket, 1.0)  # a second late
    again = [d for d in core.datagrams_to_send(1.0) if d.remote == mapping_ii]
    assert len(again) == 1
    assert again[0].data[8:20] != sent.data[8:20]  # a new transaction
