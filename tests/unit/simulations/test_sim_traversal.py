"""The traversal matrix, spot checked, and compared whole with the classic table."""

from __future__ import annotations

import pytest

from natkit.birthday.wire import Kind
from natkit.endpoint import Endpoint
from natkit.simulations.errors import SimulationError
from natkit.simulations.punch import direct_plan
from natkit.simulations.traversal import (
    BirthdayBudget,
    Method,
    NatType,
    Outcome,
    attempt_birthday,
    attempt_port_mapping,
    attempt_stun,
    evaluate_pair,
    is_hard,
)
from natkit.simulations.traversal_matrix import Classic, classic_expectation, main


@pytest.mark.parametrize(
    ("a", "b"), [(NatType.FULL_CONE, NatType.SYMMETRIC), (NatType.SYMMETRIC, NatType.FULL_CONE)]
)
def test_full_cone_and_symmetric_connect_with_stun_only(a: NatType, b: NatType) -> None:
    attempt = attempt_stun(a, b)
    assert attempt.outcome is Outcome.CONNECTED
    assert attempt.seconds is not None
    assert attempt.seconds < 0.5


def test_symmetric_pairs_need_a_both_hard_search_or_a_relay() -> None:
    result = evaluate_pair(NatType.SYMMETRIC, NatType.SYMMETRIC)
    assert result.stun.outcome is Outcome.FAILED
    assert result.birthday.method is Method.BIRTHDAY_BOTH_HARD
    # A minute of both-hard probing, 0.8 % by the model: it fails here.
    assert result.birthday.outcome is Outcome.FAILED
    probes = BirthdayBudget().both_hard_probes
    assert result.birthday.probes == (probes, probes)
    assert result.without_port_mapping in {Method.BIRTHDAY_BOTH_HARD, Method.RELAY}


def test_port_mapping_on_one_nat_rescues_symmetric_pairs() -> None:
    assert attempt_port_mapping(NatType.SYMMETRIC, NatType.SYMMETRIC).connected
    assert attempt_port_mapping(NatType.SYMMETRIC, NatType.PORT_RESTRICTED).connected


def test_port_restricted_and_symmetric_need_one_hard_birthday() -> None:
    assert not attempt_stun(NatType.PORT_RESTRICTED, NatType.SYMMETRIC).connected
    attempt = attempt_birthday(NatType.PORT_RESTRICTED, NatType.SYMMETRIC)
    assert attempt.method is Method.BIRTHDAY_ONE_HARD
    assert attempt.connected
    # The row peer is the easy side: it sprays; the hard side only opens.
    easy, hard = attempt.probes
    assert 0 < easy <= BirthdayBudget().one_hard_probes
    assert hard == 0


def test_birthday_does_not_apply_without_a_hard_side() -> None:
    attempt = attempt_birthday(NatType.PORT_RESTRICTED, NatType.RESTRICTED)
    assert attempt.outcome is Outcome.NOT_APPLICABLE


def test_hard_sides_come_from_natkits_classifier() -> None:
    assert [t for t in NatType if is_hard(t)] == [NatType.ADDRESS_DEPENDENT, NatType.SYMMETRIC]


def test_the_classic_table() -> None:
    assert classic_expectation(NatType.OPEN, NatType.SYMMETRIC) is Classic.DIRECT
    assert classic_expectation(NatType.SYMMETRIC, NatType.PORT_RESTRICTED) is Classic.BIRTHDAY
    assert classic_expectation(NatType.ADDRESS_DEPENDENT, NatType.SYMMETRIC) is Classic.RELAY


def test_the_whole_matrix_agrees_with_the_classic_table(capsys: pytest.CaptureFixture[str]) -> None:
    # Shorter both-hard searches than the script's minute: they fail either way
    # (the symmetric pair above runs the full one).
    assert main(["--both-hard-probes", "500"]) == 0
    out = capsys.readouterr().out
    assert "36 of 36 ordered pairs agree with the classic table" in out
    assert "Port mapping on A's NAT alone connects 36 of 36 ordered pairs." in out


def test_a_punch_plan_aims_every_probe_at_one_endpoint() -> None:
    peer = Endpoint.parse("198.51.100.1:4000")
    plan = direct_plan(peer, 1.0, attempts=3, interval=0.5)
    assert plan.kind is Kind.PROBE
    assert [(s.at, s.socket, plan.remote(i)) for i, s in enumerate(plan.sends)] == [
        (1.0, 0, peer),
        (1.5, 0, peer),
        (2.0, 0, peer),
    ]
    with pytest.raises(SimulationError, match="bad punch schedule"):
        direct_plan(peer, 0.0, attempts=0)
