""" "Why relayed?": the issue's example sentences, predictions, live sessions, fields."""

from __future__ import annotations

import dataclasses

import pytest

from natkit.birthday.ports import PortRange
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.ice.explain import (
    BirthdayStatus,
    Observed,
    Outcome,
    explain,
    explain_session,
)
from natkit.ice.ladder import Sides, Step, plan_ladder
from natkit.ice.report import (
    BirthdayCapability,
    RelayInUse,
    ReportDecodeError,
    TraversalReport,
    encode_report,
)
from natkit.probe.report import FilteringBehavior, MappingBehavior, PortAllocation
from natkit.simulations.classification import simulate_classification
from natkit.simulations.traversal import NatType
from natkit.turn.config import TurnTransport

UDP_RELAY = RelayInUse("turn:192.0.2.30:3478?transport=udp", TurnTransport.UDP)
TLS_RELAY = RelayInUse("turns:relay.example.org:5349", TurnTransport.TLS)
#: Both sides symmetric with random ports in 2,020 ports: 2,048 probes each
#: give the planner's 64 %.
HARD = TraversalReport(
    mapping=MappingBehavior.APDM,
    filtering=FilteringBehavior.APDF,
    port_allocation=PortAllocation.RANDOM,
    port_range=PortRange(40000, 42019),
    udp_blocked=False,
    behind_nat=True,
    birthday=BirthdayCapability(16, 2048, 100),
    relays=(UDP_RELAY,),
)
EASY = TraversalReport(
    mapping=MappingBehavior.EIM,
    filtering=FilteringBehavior.APDF,
    port_allocation=PortAllocation.PRESERVING,
    udp_blocked=False,
    behind_nat=True,
    birthday=BirthdayCapability(16, 2048, 100),
)


def test_both_hard_with_the_birthday_budget_spent() -> None:
    ladder = plan_ladder(HARD, HARD, sides=Sides("this site", "the peer's site"))
    plan = ladder.decision(Step.BIRTHDAY).birthday
    assert plan is not None
    observed = Observed(
        relayed=True,
        relay=UDP_RELAY.name,
        transport=TurnTransport.UDP,
        birthday=BirthdayStatus.EXHAUSTED,
        birthday_plan=plan,
        birthday_probes=2048,
    )
    why = explain_session(ladder, observed)
    assert why.sentence == (
        "both sides APDM with random ports, no port mapping on either gateway,"
        " birthday budget of 2,048 probes spent (expected success 64 %); relayed over UDP"
    )
    assert (why.outcome, why.relayed, why.relay) == (Outcome.RELAY, True, UDP_RELAY.name)


def test_udp_blocked_at_site_b_relayed_over_tls() -> None:
    blocked = TraversalReport(udp_blocked=True, behind_nat=True, relays=(TLS_RELAY,))
    why = explain(EASY, blocked)
    assert why.sentence == "UDP blocked at site B; relayed over TLS"
    assert (why.outcome, why.relay, why.transport) == (
        Outcome.RELAY,
        TLS_RELAY.name,
        TurnTransport.TLS,
    )
    fields = why.to_dict()
    assert fields["reason"] == why.sentence
    assert fields["relay"] == TLS_RELAY.name
    assert fields["transport"] == "tls"
    assert [step["step"] for step in fields["ladder"]] == [
        "direct",
        "port_mapping",
        "birthday",
        "relay",
    ]


def test_a_relay_that_stays_says_what_is_rechecked_and_when_next() -> None:
    ladder = plan_ladder(EASY, EASY, sides=Sides("this site", "the peer's site"))
    observed = Observed(
        direct_pairs=2,
        direct_lost="no answer to keepalives for 2.5 s",
        relayed=True,
        transport=TurnTransport.UDP,
        rechecked=2,
        last_recheck=12.4,
        next_recheck=29.6,
    )
    why = explain_session(ladder, observed)
    assert why.sentence == (
        "the direct path was lost (no answer to keepalives for 2.5 s); relayed over UDP;"
        " 2 direct pairs re-checked 12 s ago, next in 30 s"
    )
    fields = why.to_dict()
    assert (fields["rechecked"], fields["next_recheck_s"], fields["last_recheck_s"]) == (
        2,
        29.6,
        12.4,
    )


def test_predictions_for_the_other_outcomes() -> None:
    assert explain(EASY, EASY).sentence == (
        "direct: site A EIM (APDF), site B EIM (APDF): punching works"
    )
    assert explain(EASY, EASY).outcome is Outcome.DIRECT
    wider = dataclasses.replace(HARD, port_range=None, birthday=BirthdayCapability(64, 2048, 100))
    one_hard = explain(wider, EASY)
    assert one_hard.outcome is Outcome.BIRTHDAY
    assert one_hard.sentence == (
        "site A APDM with random ports and site B filters by address and port (APDF),"
        " no port mapping on either gateway, birthday probing: one hard side, 64 mappings in"
        " 64,512 ports, 2,048 probes at 100/s: expected success 87 %; relayed over UDP until"
        " it finds a path"
    )
    # With 16 mappings the odds fall under the threshold: relayed, and why.
    narrow = explain(dataclasses.replace(HARD, port_range=None), EASY)
    assert narrow.outcome is Outcome.RELAY
    assert "birthday probing not worth it (one hard side, 16 mappings" in narrow.sentence
    assert "expected success 40 %, below 50 %); relayed over UDP" in narrow.sentence
    mapped = dataclasses.replace(EASY, mapped=Endpoint.parse("198.51.100.1:41000"))
    why = explain(HARD, mapped)
    assert why.outcome is Outcome.PORT_MAPPING
    assert why.sentence.endswith(
        "but site B's gateway maps a port (198.51.100.1:41000): direct through the mapped port"
    )
    hopeless = dataclasses.replace(HARD, relays=(), port_range=None)
    why = explain(hopeless, hopeless)
    assert why.outcome is Outcome.NONE
    assert why.sentence.endswith("; no relay configured on either side: no path")
    assert "birthday probing not worth it" in why.sentence


def test_explain_takes_classification_reports_and_bytes_and_refuses_junk() -> None:
    hard = simulate_classification(NatType.SYMMETRIC.config).report
    easy = simulate_classification(NatType.PORT_RESTRICTED.config).report
    why = explain(hard, easy)
    assert why.sentence.startswith(
        "site A APDM with random ports and site B filters by address and port (APDF)"
    )
    assert explain(encode_report(EASY), encode_report(EASY)).outcome is Outcome.DIRECT
    with pytest.raises(ReportDecodeError):
        explain(b"NKr\x01\x01\x00\x01\x07", None)
    with pytest.raises(LocalProtocolError, match="not str"):
        explain("EIM", None)  # type: ignore[arg-type]


def test_a_relayed_path_is_pending_while_a_direct_one_is_still_tried() -> None:
    easy = plan_ladder(EASY, EASY, sides=Sides("this site", "the peer's site"))
    running = explain_session(easy, Observed(direct_pairs=3, relayed=True))
    assert running.sentence == "direct checks still running; relayed"
    assert running.pending
    assert running.to_dict()["pending"] is True
    failed = explain_session(easy, Observed(direct_pairs=3, direct_failed=True, relayed=True))
    assert not failed.pending
    hard = plan_ladder(HARD, HARD, sides=Sides("this site", "the peer's site"))
    probing = Observed(relayed=True, birthday=BirthdayStatus.RUNNING, direct_failed=True)
    assert explain_session(hard, probing).pending
    spent = dataclasses.replace(probing, birthday=BirthdayStatus.EXHAUSTED)
    assert not explain_session(hard, spent).pending
    assert not explain_session(easy, Observed(direct_pairs=3)).pending  # direct: final


def test_relayed_while_checks_through_a_mapped_port_run_is_pending() -> None:
    # Both sides APDM, but this site's gateway maps a port: the checks through
    # it decide, so the relayed path is not final yet (connect-upnp).
    from natkit.portmap.mapping import MappingProtocol  # noqa: PLC0415

    mapped = dataclasses.replace(
        HARD, port_mapping=MappingProtocol.PCP, mapped=Endpoint.parse("198.51.100.1:44674")
    )
    ladder = plan_ladder(mapped, HARD, sides=Sides("this site", "the peer's site"))
    running = explain_session(ladder, Observed(direct_pairs=4, relayed=True))
    assert running.pending
    assert "checks through the mapped port still running; relayed" in running.sentence
    failed = explain_session(ladder, Observed(direct_pairs=4, direct_failed=True, relayed=True))
    assert not failed.pending
    assert "no direct pair answered (4 checked)" in failed.sentence
