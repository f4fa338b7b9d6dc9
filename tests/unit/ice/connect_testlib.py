"""Shared by the connect tests: a scripted fake peer, and simulated pairs of agents.

:class:`FakePeer` plays the other agent by hand: it announces credentials the
test knows, and builds (or forges) checks and answers with natkit's STUN
codec, so a test can feed one :class:`ConnectAgent` exactly the bytes it
wants and read exactly what comes out. The simulated helpers run two real
agents on the simulator (:mod:`natkit.simulations.connect`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from natkit.endpoint import Endpoint
from natkit.ice import (
    Announcement,
    ConnectAgent,
    ConnectConfig,
    ConnectEvent,
    SignalCandidate,
    SignalReady,
)
from natkit.ice.candidates import Candidate, CandidateKind, priority_of
from natkit.sansio import Datagram
from natkit.simulations.connect import ConnectNode, Multihomed, SignalHub, multihomed
from natkit.stun.attributes import (
    ErrorCodeAttribute,
    FlagAttribute,
    IntegerAttribute,
    TextAttribute,
    XorAddressAttribute,
)
from natkit.stun.codec import Message, encode_message, parse_message
from natkit.stun.constants import AttributeType, MessageClass, Method
from natkit.stun.integrity import short_term_key

LOCAL = Endpoint.parse("192.0.2.1:40000")
PEER = Endpoint.parse("198.51.100.7:50000")
ELSEWHERE = Endpoint.parse("203.0.113.66:50000")


def host(address: Endpoint, preference: int = 65535) -> Candidate:
    """A host candidate whose base is itself."""
    return Candidate(
        CandidateKind.HOST,
        address,
        address,
        "test",
        priority=priority_of(CandidateKind.HOST, preference),
    )


@dataclass
class FakePeer:
    """The other agent, scripted by the test (see the module doc)."""

    ufrag: str = "fakeUfrag"
    pwd: str = "fakePasswordFakePassword"
    tie_breaker: int = 1000
    address: Endpoint = PEER
    generation: int = 42
    rng: random.Random = field(default_factory=lambda: random.Random(99))

    @property
    def key(self) -> bytes:
        return short_term_key(self.pwd)

    def candidate(self) -> SignalCandidate:
        return SignalCandidate(
            CandidateKind.HOST, self.address, priority_of(CandidateKind.HOST), "peer1"
        )

    def announcement(self, agent: ConnectAgent, peer: str, **changes: object) -> Announcement:
        """What the fake peer announces (naming the agent's generation)."""
        values: dict[str, object] = {
            "generation": self.generation,
            "ufrag": self.ufrag,
            "pwd": self.pwd,
            "tie_breaker": self.tie_breaker,
            "candidates": (self.candidate(),),
            "peer_generation": generation_of(agent, peer),
            "peer_candidates": len(agent.announced),
        }
        values.update(changes)
        return Announcement(**values)  # type: ignore[arg-type]

    def request(
        self,
        agent_ufrag: str,
        *,
        key: bytes | None = None,
        controlling: bool = False,
        tie_breaker: int | None = None,
        use_candidate: bool = False,
        priority: int | None = 1853824767,
        username: str | None = None,
        transaction_id: bytes | None = None,
    ) -> bytes:
        """A check from the fake peer to the agent (keyed with the agent's pwd)."""
        role = AttributeType.ICE_CONTROLLING if controlling else AttributeType.ICE_CONTROLLED
        attributes: list[object] = [
            TextAttribute(AttributeType.USERNAME, username or f"{agent_ufrag}:{self.ufrag}"),
            IntegerAttribute(role, self.tie_breaker if tie_breaker is None else tie_breaker),
        ]
        if priority is not None:
            attributes.append(IntegerAttribute(AttributeType.PRIORITY, priority))
        if use_candidate:
            attributes.append(FlagAttribute(AttributeType.USE_CANDIDATE))
        message = Message(
            Method.BINDING,
            MessageClass.REQUEST,
            transaction_id or self.rng.randbytes(12),
            tuple(attributes),  # type: ignore[arg-type]
        )
        return encode_message(message, integrity_key=key, fingerprint=True)

    def answer(
        self,
        request: bytes,
        mapped: Endpoint,
        *,
        key: bytes | None = None,
        error: int | None = None,
    ) -> bytes:
        """The fake peer's answer to one of the agent's checks."""
        tid = parse_message(request).transaction_id
        if error is not None:
            message = Message(
                Method.BINDING,
                MessageClass.ERROR_RESPONSE,
                tid,
                (ErrorCodeAttribute(error, "Role Conflict"),),
            )
        else:
            message = Message(
                Method.BINDING,
                MessageClass.SUCCESS_RESPONSE,
                tid,
                (XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, mapped),),
            )
        return encode_message(message, integrity_key=key or self.key, fingerprint=True)


def generation_of(agent: ConnectAgent, peer: str) -> int:
    """The agent's generation toward ``peer`` (from its first announcement)."""
    return agent._session(peer, "test").signal.generation


class Harness:
    """One agent on socket ``LOCAL``, a manual clock, and everything it emitted."""

    def __init__(self, config: ConnectConfig | None = None, *, name: str = "a") -> None:
        self.now = 0.0
        self.agent = ConnectAgent(
            name, rng=random.Random(5), config=config, sockets=[LOCAL], log_checks=True
        )
        self.sent: list[Datagram] = []
        self.events: list[ConnectEvent] = []

    def call(self, action: object) -> None:
        action(self.now)  # type: ignore[operator]
        self.collect()

    def collect(self) -> None:
        self.sent += self.agent.datagrams_to_send(self.now)
        event = self.agent.next_event()
        while event is not None:
            self.events.append(event)
            event = self.agent.next_event()

    def advance(self, until: float) -> None:
        """Run the timer up to ``until``."""
        while True:
            deadline = self.agent.get_timer()
            if deadline is None or deadline > until:
                break
            self.now = max(self.now, deadline)
            self.agent.handle_timer(self.now)
            self.collect()
        self.now = until

    def deliver(self, data: bytes, source: Endpoint = PEER, socket: int = 0) -> None:
        self.call(lambda now: self.agent.receive_datagram(data, source, socket, now))

    def take(self) -> list[Datagram]:
        sent, self.sent = self.sent, []
        return sent

    def of(self, kind: type) -> list[ConnectEvent]:
        return [e for e in self.events if isinstance(e, kind)]

    def signals(self) -> list[object]:
        return [e.message for e in self.events if isinstance(e, SignalReady)]


def connected_to_fake(
    config: ConnectConfig | None = None, fake: FakePeer | None = None
) -> tuple[Harness, FakePeer]:
    """An agent (controlling toward "b") that knows the fake peer's announcement."""
    harness = Harness(config)
    fake = fake or FakePeer()
    harness.call(lambda now: harness.agent.add_local_candidate(host(LOCAL), now))
    harness.call(lambda now: harness.agent.add_peer("b", now))
    harness.call(
        lambda now: harness.agent.receive_signal("b", fake.announcement(harness.agent, "b"), now)
    )
    return harness, fake


@dataclass
class SimPair:
    """Two (or more) real agents on the simulator, one socket per interface."""

    topology: Multihomed
    hub: SignalHub
    nodes: list[ConnectNode]

    @property
    def loop(self):  # type: ignore[no-untyped-def]
        return self.topology.loop

    def run(self, seconds: float) -> None:
        self.loop.run_until(self.loop.now + seconds)


def sim_peers(
    delays: Sequence[Sequence[float]],
    *,
    config: ConnectConfig | None = None,
    preferences: Sequence[Sequence[int]] = (),
    seed: int = 1,
    connect: bool = True,
    without_candidates: Sequence[int] = (),
) -> SimPair:
    """Peers ``p0``, ``p1``, ... on one internet; ``delays[p]`` per interface;
    host candidates for every socket except of the peers ``without_candidates``."""
    topology = multihomed(delays, seed)
    hub = SignalHub(topology.loop)
    nodes = []
    for index in range(len(delays)):
        node = ConnectNode(
            f"p{index}", topology.sockets(index), hub, config=config, seed=seed + index
        )
        wanted = preferences[index] if index < len(preferences) else ()
        if index not in without_candidates:
            node.add_host_candidates(preferences=wanted)
        nodes.append(node)
    if connect:
        for node in nodes:
            for other in nodes:
                if other is not node:
                    node.connect(other.name)
    return SimPair(topology, hub, nodes)
