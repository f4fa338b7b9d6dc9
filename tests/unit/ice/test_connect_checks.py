"""One agent against a scripted peer: checks, answers, forgeries, roles.

Every forged or misdirected message must be dropped, counted, never
answered, and never lead to a selected path.
"""

from __future__ import annotations

import itertools

import pytest
from connect_testlib import ELSEWHERE, LOCAL, PEER, FakePeer, Harness, connected_to_fake, host

from natkit.endpoint import Endpoint
from natkit.ice import (
    ConnectConfig,
    PathSelected,
    Role,
    RoleChanged,
)
from natkit.ice.candidates import CandidateKind, priority_of
from natkit.ice.pairs import CheckPurpose, PairState
from natkit.ice.signals import SignalCandidate
from natkit.stun.codec import parse_message
from natkit.stun.constants import AttributeType, ErrorCode, MessageClass
from natkit.stun.integrity import short_term_key, verify_integrity


def first_check(harness: Harness) -> bytes:
    """Let the pacer send the agent's first check; return its bytes."""
    harness.advance(harness.now + 0.001)
    sent = harness.take()
    assert len(sent) == 1
    assert sent[0].remote == PEER
    return sent[0].data


def test_the_agent_checks_with_short_term_credentials_and_its_role() -> None:
    harness, fake = connected_to_fake()
    ufrag, _ = harness.agent.credentials("b")
    request = parse_message(first_check(harness))
    verify_integrity(request, fake.key)  # keyed with the peer's password
    assert request.message_class is MessageClass.REQUEST
    assert request.text(AttributeType.USERNAME) == f"{fake.ufrag}:{ufrag}"
    assert request.has_fingerprint
    controlling = request.find(AttributeType.ICE_CONTROLLING)
    assert controlling is not None
    assert controlling.value == harness.agent.tie_breaker  # type: ignore[union-attr]
    assert request.find(AttributeType.PRIORITY) is not None
    assert request.find(AttributeType.USE_CANDIDATE) is None


def test_an_answered_check_then_a_nomination_select_the_path() -> None:
    harness, fake = connected_to_fake()
    check = first_check(harness)
    harness.now += 0.03
    harness.deliver(fake.answer(check, LOCAL))
    # Every pair checked and answered: the agent nominates at once.
    harness.advance(harness.now + 0.05)
    (nomination,) = harness.take()
    parsed = parse_message(nomination.data)
    assert parsed.find(AttributeType.USE_CANDIDATE) is not None
    assert parsed.transaction_id != parse_message(check).transaction_id
    harness.now += 0.02
    harness.deliver(fake.answer(nomination.data, LOCAL))
    (selected,) = harness.of(PathSelected)
    assert isinstance(selected, PathSelected)
    assert (selected.local, selected.remote, selected.previous) == (LOCAL, PEER, None)
    # RTT of each exact attempt (answer time minus that attempt's send time),
    # smoothed as RFC 6298 says.
    log = harness.agent.check_log
    assert log is not None
    first = 0.031 - log[0].at
    second = harness.now - log[1].at
    assert log[1].at == pytest.approx(0.05)  # the next pacing slot
    assert selected.rtt == pytest.approx(0.875 * first + 0.125 * second)
    assert harness.agent.selected("b") is not None
    assert harness.agent.state("b") == "connected"


def test_requests_are_answered_from_where_they_came_and_trigger_a_check() -> None:
    harness, fake = connected_to_fake(ConnectConfig(ta=1.0))
    first_check(harness)  # the pacer's slot is now taken for a second
    ufrag, pwd = harness.agent.credentials("b")
    request = fake.request(ufrag, key=short_term_key(pwd))
    elsewhere = ELSEWHERE
    harness.deliver(request, source=elsewhere)
    (answer,) = harness.take()
    assert answer.remote == elsewhere
    response = parse_message(answer.data)
    verify_integrity(response, short_term_key(pwd))
    assert response.transaction_id == parse_message(request).transaction_id
    assert response.xor_mapped_address == elsewhere
    # A peer-reflexive candidate, and a triggered check toward it at the next slot.
    rows = {row.remote: row for row in harness.agent.pairs("b")}
    assert rows[elsewhere].remote_kind.value == "prflx"
    harness.advance(harness.now + 1.0)
    (triggered,) = harness.take()
    assert triggered.remote == elsewhere


def forgeries(harness: Harness, fake: FakePeer) -> dict[str, bytes]:
    ufrag, pwd = harness.agent.credentials("b")
    good = short_term_key(pwd)
    return {
        "wrong integrity": fake.request(ufrag, key=short_term_key("x" * 24)),
        "no integrity": fake.request(ufrag, key=None),
        "wrong USERNAME": fake.request("nobodyXX", key=good),
        "USERNAME without colon": fake.request(ufrag, key=good, username=ufrag),
        "no PRIORITY": fake.request(ufrag, key=good, priority=None),
        "not STUN": b"\x01" * 48,
        "truncated STUN": fake.request(ufrag, key=good)[:-4],
    }


EXPECTED_COUNTER = {
    "wrong integrity": "bad_integrity",
    "no integrity": "bad_integrity",
    "wrong USERNAME": "unknown_username",
    "USERNAME without colon": "unknown_username",
    "no PRIORITY": "bad_check",
    "not STUN": "not_stun",
    "truncated STUN": "not_stun",
}


@pytest.mark.parametrize("name", list(EXPECTED_COUNTER))
def test_forged_requests_are_dropped_counted_and_unanswered(name: str) -> None:
    harness, fake = connected_to_fake(ConnectConfig(ta=1.0))
    first_check(harness)
    data = forgeries(harness, fake)[name]
    harness.deliver(data, source=ELSEWHERE)
    assert harness.take() == []
    assert getattr(harness.agent.counters, EXPECTED_COUNTER[name]) == 1
    assert ELSEWHERE not in {row.remote for row in harness.agent.pairs("b")}


def test_forged_and_misdirected_answers_never_select_a_path() -> None:
    harness, fake = connected_to_fake()
    check = first_check(harness)
    counters = harness.agent.counters
    harness.deliver(fake.answer(check, LOCAL, key=short_term_key("y" * 24)))
    assert counters.bad_integrity == 1
    harness.deliver(fake.answer(check, LOCAL), source=ELSEWHERE)
    assert counters.wrong_source == 1
    harness.deliver(fake.answer(check, LOCAL), socket=1)
    assert counters.wrong_source == 2
    stranger = fake.request("whatever", key=fake.key)  # a transaction we never started
    harness.deliver(fake.answer(stranger, LOCAL))
    assert counters.unknown_transaction == 1
    (row,) = harness.agent.pairs("b")
    assert row.state is PairState.IN_PROGRESS
    # Retransmissions run their course; no forged answer counts.
    harness.advance(harness.now + 30)
    assert harness.of(PathSelected) == []
    assert harness.agent.selected("b") is None


def test_a_replayed_answer_is_counted_late_and_changes_nothing() -> None:
    harness, fake = connected_to_fake()
    check = first_check(harness)
    answer = fake.answer(check, LOCAL)
    harness.deliver(answer)
    (row,) = harness.agent.pairs("b")
    assert (row.state, row.answers) == (PairState.SUCCEEDED, 1)
    harness.deliver(answer)
    assert harness.agent.counters.late_response == 1
    (row,) = harness.agent.pairs("b")
    assert row.answers == 1


def test_a_role_conflict_with_a_larger_tie_breaker_makes_us_controlled() -> None:
    harness, fake = connected_to_fake()
    ufrag, pwd = harness.agent.credentials("b")
    larger = harness.agent.tie_breaker + 1
    assert harness.agent.role("b") is Role.CONTROLLING
    harness.deliver(
        fake.request(ufrag, key=short_term_key(pwd), controlling=True, tie_breaker=larger)
    )
    assert harness.agent.role("b") is Role.CONTROLLED
    assert harness.of(RoleChanged) == [RoleChanged("b", Role.CONTROLLED)]
    answers = [parse_message(d.data) for d in harness.take()]
    assert [a.message_class for a in answers if a.message_class is not MessageClass.REQUEST] == [
        MessageClass.SUCCESS_RESPONSE
    ]
    assert harness.agent.counters.role_conflicts == 1


def test_a_role_conflict_with_a_smaller_tie_breaker_is_answered_487() -> None:
    harness, fake = connected_to_fake()
    ufrag, pwd = harness.agent.credentials("b")
    harness.deliver(fake.request(ufrag, key=short_term_key(pwd), controlling=True, tie_breaker=0))
    assert harness.agent.role("b") is Role.CONTROLLING
    (answer,) = [
        d
        for d in harness.take()
        if d.remote == PEER and parse_message(d.data).message_class is MessageClass.ERROR_RESPONSE
    ]
    parsed = parse_message(answer.data)
    verify_integrity(parsed, short_term_key(pwd))
    assert parsed.error_code is not None
    assert parsed.error_code.code == ErrorCode.ROLE_CONFLICT


def test_a_487_answer_switches_the_role_and_checks_again() -> None:
    harness, fake = connected_to_fake()
    check = first_check(harness)
    harness.deliver(fake.answer(check, LOCAL, error=ErrorCode.ROLE_CONFLICT))
    assert harness.agent.role("b") is Role.CONTROLLED
    harness.advance(harness.now + 0.05)
    (again,) = harness.take()
    parsed = parse_message(again.data)
    assert parsed.find(AttributeType.ICE_CONTROLLED) is not None


def test_the_controlled_side_follows_the_latest_answered_nomination() -> None:
    harness, fake = connected_to_fake(fake=FakePeer(tie_breaker=2**64 - 1))
    harness.call(lambda now: harness.agent._session("b", "t").set_role(Role.CONTROLLED, now))
    ufrag, pwd = harness.agent.credentials("b")
    key = short_term_key(pwd)
    # The peer nominates its host pair; our own check of it must be answered first.
    harness.deliver(fake.request(ufrag, key=key, controlling=True, use_candidate=True))
    assert harness.of(PathSelected) == []
    checks = [
        d for d in harness.take() if parse_message(d.data).message_class is MessageClass.REQUEST
    ]
    harness.advance(harness.now + 0.06)
    checks += [
        d for d in harness.take() if parse_message(d.data).message_class is MessageClass.REQUEST
    ]
    assert checks
    harness.deliver(fake.answer(checks[-1].data, LOCAL))
    (selected,) = harness.of(PathSelected)
    assert selected.remote == PEER  # type: ignore[union-attr]
    # A re-nomination of another pair (the peer seen elsewhere) moves us once answered.
    harness.deliver(
        fake.request(ufrag, key=key, controlling=True, use_candidate=True), source=ELSEWHERE
    )
    harness.advance(harness.now + 0.1)
    toward = [
        d
        for d in harness.take()
        if d.remote == ELSEWHERE and parse_message(d.data).message_class is MessageClass.REQUEST
    ]
    harness.deliver(fake.answer(toward[-1].data, LOCAL), source=ELSEWHERE)
    last = harness.of(PathSelected)[-1]
    assert isinstance(last, PathSelected)
    assert last.remote == ELSEWHERE
    assert last.previous is not None
    assert last.previous.remote == PEER


def test_a_nomination_before_the_peers_announcement_counts_once_it_arrives() -> None:
    """Slow signalling (a DNS directory polled every few seconds): the
    controlling peer's nomination reaches us before its announcement. It is
    answered (so the peer selects the pair) and must count once the
    announcement comes, as the peer will not nominate again."""
    harness = Harness()
    fake = FakePeer(tie_breaker=2**64 - 1)
    harness.call(lambda now: harness.agent.add_local_candidate(host(LOCAL), now))
    harness.call(lambda now: harness.agent.add_peer("b", now))
    harness.call(lambda now: harness.agent._session("b", "t").set_role(Role.CONTROLLED, now))
    ufrag, pwd = harness.agent.credentials("b")
    harness.take()
    harness.deliver(
        fake.request(ufrag, key=short_term_key(pwd), controlling=True, use_candidate=True)
    )
    (answer,) = harness.take()
    assert parse_message(answer.data).message_class is MessageClass.SUCCESS_RESPONSE
    harness.call(
        lambda now: harness.agent.receive_signal("b", fake.announcement(harness.agent, "b"), now)
    )
    harness.advance(harness.now + 0.06)
    checks = [
        d for d in harness.take() if parse_message(d.data).message_class is MessageClass.REQUEST
    ]
    assert checks
    harness.deliver(fake.answer(checks[-1].data, LOCAL))
    (selected,) = harness.of(PathSelected)
    assert selected.remote == PEER  # type: ignore[union-attr]


def test_keepalives_carry_the_nomination_and_are_not_paced() -> None:
    harness, fake = connected_to_fake()
    check = first_check(harness)
    harness.deliver(fake.answer(check, LOCAL))
    harness.advance(harness.now + 0.05)
    (nomination,) = harness.take()
    harness.deliver(fake.answer(nomination.data, LOCAL))
    selected_at = harness.now
    interval = ConnectConfig().keepalive_interval
    harness.advance(selected_at + interval)
    keepalive = harness.take()[0]
    assert parse_message(keepalive.data).find(AttributeType.USE_CANDIDATE) is not None
    log = harness.agent.check_log
    assert log is not None
    assert [entry.purpose for entry in log][:3] == [
        CheckPurpose.CHECK,
        CheckPurpose.NOMINATE,
        CheckPurpose.KEEPALIVE,
    ]
    assert [entry.paced for entry in log][:3] == [True, True, False]
    # Jittered early by up to 20 %, never late (RFC 7675 §5.1 randomises too).
    assert selected_at + 0.8 * interval <= log[2].at <= selected_at + interval
    # Unanswered, it is resent every loss_retransmit.
    assert all(entry.purpose is CheckPurpose.KEEPALIVE for entry in log[2:])
    gaps = {round(b.at - a.at, 6) for a, b in itertools.pairwise(log[2:])}
    assert gaps <= {ConnectConfig().loss_retransmit}


def test_one_lucky_sample_never_switches_three_in_a_row_do() -> None:
    config = ConnectConfig()
    other = Endpoint.parse("198.51.100.8:50000")
    fake = FakePeer()
    second = SignalCandidate(
        CandidateKind.HOST, other, priority_of(CandidateKind.HOST, 60000), "p2"
    )
    harness = Harness()
    harness.call(lambda now: harness.agent.add_local_candidate(host(LOCAL), now))
    harness.call(lambda now: harness.agent.add_peer("b", now))
    announcement = fake.announcement(harness.agent, "b", candidates=(fake.candidate(), second))
    harness.call(lambda now: harness.agent.receive_signal("b", announcement, now))

    def answer_next(to: Endpoint, rtt: float, until: float = 60.0) -> bytes:
        """Run until a check goes to ``to``; answer it after ``rtt`` (and
        answer whatever goes to the selected path at once)."""
        while harness.now < until:
            for datagram in harness.take():
                if datagram.remote == to:
                    sent_at = harness.now
                    harness.now = sent_at + rtt
                    harness.deliver(fake.answer(datagram.data, LOCAL), source=to)
                    return datagram.data
                harness.deliver(fake.answer(datagram.data, LOCAL), source=datagram.remote)
            harness.advance(harness.now + 0.01)
        raise AssertionError(f"no check to {to}")

    answer_next(PEER, 0.050)
    answer_next(other, 0.060)
    answer_next(PEER, 0.050)  # the nomination
    assert [e.remote for e in harness.of(PathSelected)] == [PEER]  # type: ignore[union-attr]
    log = harness.agent.check_log
    assert log is not None

    def nominated(to: Endpoint) -> bool:
        return any(e.purpose is CheckPurpose.NOMINATE and e.remote == to for e in log)  # type: ignore[union-attr]

    # One clear win (20 ms against 50), then a plain sample: no switch.
    answer_next(other, 0.020)
    answer_next(other, 0.060)
    assert not nominated(other)
    assert len(harness.of(PathSelected)) == 1
    # Three clear wins in a row, a confirmation interval apart: the switch.
    samples = [answer_next(other, 0.020) for _ in range(config.switch_confirmations)]
    assert [e.purpose for e in log if e.remote == other][-3:] == [
        CheckPurpose.RECHECK,
        CheckPurpose.CONFIRM,
        CheckPurpose.CONFIRM,
    ]
    assert parse_message(samples[-1]).find(AttributeType.USE_CANDIDATE) is None
    assert len(harness.of(PathSelected)) == 1
    nomination = answer_next(other, 0.020)
    assert nominated(other)
    assert parse_message(nomination).find(AttributeType.USE_CANDIDATE) is not None
    last = harness.of(PathSelected)[-1]
    assert isinstance(last, PathSelected)
    assert (last.remote, last.previous and last.previous.remote) == (other, PEER)
