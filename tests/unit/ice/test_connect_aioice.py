"""Interop at the message level with aioice (0.13), the third-party ICE agent.

aioice's ``Connection`` builds the checks (``build_request``: USERNAME,
PRIORITY, ICE-CONTROLLING/-CONTROLLED, USE-CANDIDATE; MESSAGE-INTEGRITY and
FINGERPRINT as its transactions add them) and its STUN module builds the
answers; natkit's agent must answer the one and accept the other, and
aioice must accept what natkit sends. No sockets: the bytes are handed over
by hand. The full ``Connection`` interop through a real NAT is a lab test.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import aioice
from aioice import stun as aioice_stun
from connect_testlib import LOCAL, PEER, Harness, host

from natkit.ice import Announcement, PathSelected, Role, SignalCandidate
from natkit.ice.candidates import CandidateKind, priority_of


def aioice_agent(controlling: bool) -> aioice.Connection:
    return aioice.Connection(ice_controlling=controlling)


def natkit_agent(peer: aioice.Connection, role: Role) -> Harness:
    """A natkit agent that holds ``peer``'s credentials and host candidate."""
    harness = Harness()
    harness.call(lambda now: harness.agent.add_local_candidate(host(LOCAL), now))
    harness.call(lambda now: harness.agent.add_peer("aioice", now, role=role))
    announcement = Announcement(
        generation=1,
        ufrag=peer.local_username,
        pwd=peer.local_password,
        tie_breaker=0,
        candidates=(
            SignalCandidate(CandidateKind.HOST, PEER, priority_of(CandidateKind.HOST), "a1"),
        ),
    )
    harness.call(lambda now: harness.agent.receive_signal("aioice", announcement, now))
    ufrag, pwd = harness.agent.credentials("aioice")
    peer.remote_username = ufrag
    peer.remote_password = pwd
    return harness


def aioice_check(peer: aioice.Connection, nominate: bool) -> bytes:
    """A check exactly as aioice's ``check_start`` sends it."""
    request = peer.build_request(SimpleNamespace(component=1), nominate=nominate)
    request.add_message_integrity(peer.remote_password.encode("utf8"))
    return bytes(request)


def aioice_answer(peer: aioice.Connection, request: bytes, source: tuple[str, int]) -> bytes:
    """An answer exactly as aioice's ``request_received`` builds it."""
    parsed = aioice_stun.parse_message(request)
    response = aioice_stun.Message(
        message_method=aioice_stun.Method.BINDING,
        message_class=aioice_stun.Class.RESPONSE,
        transaction_id=parsed.transaction_id,
    )
    response.attributes["XOR-MAPPED-ADDRESS"] = source
    response.add_message_integrity(peer.local_password.encode("utf8"))
    return bytes(response)


def test_an_aioice_check_is_answered_so_aioice_accepts_the_answer() -> None:
    peer = aioice_agent(controlling=True)
    harness = natkit_agent(peer, Role.CONTROLLED)
    harness.take()
    harness.deliver(aioice_check(peer, nominate=True))
    answers = [d for d in harness.take() if d.remote == PEER]
    parsed = [aioice_stun.parse_message(d.data) for d in answers]
    (answer,) = [m for m in parsed if m.message_class == aioice_stun.Class.RESPONSE]
    assert answer.check_message_integrity(peer.remote_password.encode("utf8"))
    assert answer.attributes["XOR-MAPPED-ADDRESS"] == (str(PEER.address), PEER.port)
    assert "FINGERPRINT" in answer.attributes  # aioice checked it while parsing
    assert harness.agent.counters.bad_integrity == 0


def test_natkit_checks_carry_what_aioice_expects() -> None:
    peer = aioice_agent(controlling=False)
    harness = natkit_agent(peer, Role.CONTROLLING)
    (check,) = harness.take()
    parsed = aioice_stun.parse_message(check.data)
    assert parsed.message_class == aioice_stun.Class.REQUEST
    assert parsed.check_message_integrity(peer.local_password.encode("utf8"))
    assert parsed.attributes["USERNAME"] == f"{peer.local_username}:{peer.remote_username}"
    assert parsed.attributes["ICE-CONTROLLING"] == harness.agent.tie_breaker
    assert parsed.attributes["PRIORITY"] > 0


def test_aioice_answers_are_accepted_and_select_the_path() -> None:
    peer = aioice_agent(controlling=False)
    harness = natkit_agent(peer, Role.CONTROLLING)
    (check,) = harness.take()
    mapped = (str(LOCAL.address), LOCAL.port)
    harness.deliver(aioice_answer(peer, check.data, mapped))
    harness.advance(harness.now + 0.05)
    (nomination,) = harness.take()
    assert "USE-CANDIDATE" in aioice_stun.parse_message(nomination.data).attributes
    harness.deliver(aioice_answer(peer, nomination.data, mapped))
    (selected,) = harness.of(PathSelected)
    assert isinstance(selected, PathSelected)
    assert (selected.local, selected.remote) == (LOCAL, PEER)


def test_an_aioice_nomination_is_followed_once_our_check_is_answered() -> None:
    peer = aioice_agent(controlling=True)
    harness = natkit_agent(peer, Role.CONTROLLED)
    (check,) = harness.take()
    harness.deliver(aioice_check(peer, nominate=True))
    harness.deliver(aioice_answer(peer, check.data, (str(LOCAL.address), LOCAL.port)))
    (selected,) = harness.of(PathSelected)
    assert selected.remote == PEER  # type: ignore[union-attr]


def test_an_aioice_role_conflict_answer_switches_our_role() -> None:
    peer = aioice_agent(controlling=True)
    harness = natkit_agent(peer, Role.CONTROLLING)
    (check,) = harness.take()
    parsed = aioice_stun.parse_message(check.data)
    error = aioice_stun.Message(
        message_method=aioice_stun.Method.BINDING,
        message_class=aioice_stun.Class.ERROR,
        transaction_id=parsed.transaction_id,
    )
    error.attributes["ERROR-CODE"] = (487, "Role Conflict")
    error.add_message_integrity(peer.local_password.encode("utf8"))
    harness.deliver(bytes(error))
    assert harness.agent.role("aioice") is Role.CONTROLLED


def test_an_aioice_check_with_the_wrong_password_is_dropped() -> None:
    peer = aioice_agent(controlling=True)
    harness = natkit_agent(peer, Role.CONTROLLED)
    harness.take()
    request = peer.build_request(SimpleNamespace(component=1), nominate=False)
    request.add_message_integrity(random.Random(1).randbytes(16))
    harness.deliver(bytes(request))
    assert harness.take() == []
    assert harness.agent.counters.bad_integrity == 1
