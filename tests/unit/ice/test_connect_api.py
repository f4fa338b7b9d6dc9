"""The agent's contract with its caller: illegal calls raise naming the problem
(and the session's state), impossible configurations are refused, and the
core package stays sans-IO."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest
from connect_testlib import LOCAL, PEER, FakePeer, Harness, connected_to_fake, host

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.ice import ConnectAgent, ConnectConfig, Role
from natkit.ice.candidates import Candidate, CandidateKind

CONNECT = Path(__file__).resolve().parents[3] / "natkit" / "ice"


def agent(**kwargs: object) -> ConnectAgent:
    return ConnectAgent("a", rng=random.Random(1), sockets=[LOCAL], **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a: (a.add_peer("b", 0.0), a.add_peer("b", 0.0)), "already a peer"),
        (lambda a: a.add_peer("a", 0.0), "own id"),
        (lambda a: a.add_peer(3, 0.0), "cannot order"),
        (lambda a: a.remove_peer("zz", 0.0), "not a peer"),
        (lambda a: a.receive_signal("zz", None, 0.0), "not a peer"),
        (lambda a: a.pairs("zz"), "not a peer"),
        (lambda a: (a.add_peer("b", 0.0), a.path_unusable("b", 0.0)), "waiting for the peer"),
        (
            lambda a: (a.add_peer("b", 0.0), a.add_known_pair("b", 1, LOCAL, PEER, 0.0)),
            "no announcement",
        ),
        (
            lambda a: a.add_local_candidate(Candidate(CandidateKind.HOST, PEER, PEER, "x"), 0.0),
            "no socket of this agent is bound to",
        ),
        (
            lambda a: a.add_local_candidate(Candidate(CandidateKind.HOST, PEER, None, "x"), 0.0),
            "has no base",
        ),
        (
            lambda a: (
                a.add_local_candidate(host(LOCAL), 0.0),
                a.add_local_candidate(host(LOCAL), 0.0),
            ),
            "already known",
        ),
        (
            lambda a: a.add_local_candidate(Candidate(CandidateKind.RELAY, PEER, None, "x"), 0.0),
            "needs its relay",
        ),
        (lambda a: a.add_local_candidate(host(LOCAL), 0.0, socket=-1), "< 0"),
        (lambda a: a.remove_local_candidate(PEER, 0.0), "not a local candidate"),
    ],
)
def test_illegal_calls_raise_local_protocol_errors(call: object, message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        call(agent())  # type: ignore[operator]


def test_path_unusable_names_the_state_when_nothing_is_selected() -> None:
    harness, _ = connected_to_fake()
    with pytest.raises(LocalProtocolError, match=r"no path is selected .* \(checking\)"):
        harness.agent.path_unusable("b", harness.now)


def test_a_relay_never_added_cannot_feed_datagrams() -> None:
    class Stranger:
        name = "stranger"

        def wrap(self, data: bytes, peer: Endpoint, now: float) -> None:
            return None

    with pytest.raises(LocalProtocolError, match="not a base"):
        agent().receive_relayed(Stranger(), b"", PEER, 0.0)


def test_a_wildcard_socket_is_the_base_of_its_family_and_port() -> None:
    wildcard = ConnectAgent("a", rng=random.Random(1), sockets=[Endpoint.parse("0.0.0.0:40000")])
    local = wildcard.add_local_candidate(host(LOCAL), 0.0)
    assert local.base == 0


def test_roles_follow_the_order_of_ids_unless_given() -> None:
    harness = Harness(name="m")
    harness.call(lambda now: harness.agent.add_peer("z", now))
    harness.call(lambda now: harness.agent.add_peer("c", now))
    harness.call(lambda now: harness.agent.add_peer("d", now, role=Role.CONTROLLING))
    assert harness.agent.role("z") is Role.CONTROLLING
    assert harness.agent.role("c") is Role.CONTROLLED
    assert harness.agent.role("d") is Role.CONTROLLING


def test_a_removed_peer_gets_nothing_more() -> None:
    harness, fake = connected_to_fake()
    ufrag, _ = harness.agent.credentials("b")
    harness.call(lambda now: harness.agent.remove_peer("b", now))
    assert harness.agent.peers == ()
    harness.take()
    harness.deliver(fake.request(ufrag, key=fake.key))
    assert harness.take() == []
    assert harness.agent.counters.unknown_username == 1
    harness.advance(600.0)
    assert harness.take() == []


def test_the_same_generation_with_other_credentials_is_ignored() -> None:
    harness, _fake = connected_to_fake()
    liar = FakePeer(pwd="anotherPasswordAnotherPw")
    harness.call(
        lambda now: harness.agent.receive_signal("b", liar.announcement(harness.agent, "b"), now)
    )
    assert harness.agent.counters.signals_ignored == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"ta": 0.001},
        {"ta": float("nan")},
        {"loss_retransmit": 0.0},
        {"binding_lifetime": 0.0},
        {"keepalive_jitter": 1.0},
        {"switch_ratio": -0.1},
        {"switch_confirmations": 0},
        {"recheck_max": 1.0},
        {"signal_retry_max": 0.5},
        {"max_pairs": 0},
    ],
)
def test_impossible_configurations_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        ConnectConfig(**changes)  # type: ignore[arg-type]


def test_the_keepalive_fits_the_nat_binding_lifetime() -> None:
    assert ConnectConfig().keepalive_interval == 15.0
    assert ConnectConfig(binding_lifetime=30.0).keepalive_interval == pytest.approx(13.5)
    assert ConnectConfig(binding_lifetime=600.0).keepalive_interval == 15.0
    assert ConnectConfig(binding_lifetime=1.0).keepalive_interval == 1.0  # the floor
    assert ConnectConfig().loss_bound == pytest.approx(17.5)


#: What a sans-IO core may not import (natkit/ice is one, HELPER_BRIEF.md).
FORBIDDEN = {"asyncio", "socket", "time", "threading", "subprocess", "os", "io", "selectors"}


@pytest.mark.parametrize("path", sorted(CONNECT.glob("*.py")), ids=lambda p: p.name)
def test_the_core_does_no_io_and_draws_no_randomness_of_its_own(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = {node.module.split(".")[0]}
            if names == {"random"}:
                names = {"random." + alias.name for alias in node.names}
        else:
            continue
        assert not names & FORBIDDEN, f"{path.name} imports {names & FORBIDDEN}"
    # ``random`` is only named as the type of the injected generator.
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "random"
        ):
            assert node.attr == "Random", f"{path.name} uses random.{node.attr}"
