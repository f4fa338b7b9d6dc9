"""natkit's connect core on the simulator: nodes, a signalling channel, pair runs.

* :class:`SignalHub` carries signal messages between nodes with a delay,
  as bytes through natkit's codec (``encode_signal``/``decode_signal``),
  the way the rendezvous carries them sealed. A node can be taken offline
  (its messages are dropped, as a rendezvous drops messages for a peer
  that is not connected); ``delivered`` and ``dropped`` count.
* :class:`ConnectNode` is one peer: a :class:`~natkit.ice.ConnectAgent`
  on its simulated sockets, driven by a :class:`~natkit.simulations.driver.CoreDriver`
  (through ``wrap``, a core around the agent, when a test demultiplexes
  first, e.g. a relay's traffic),
  whose ``SignalReady`` events go to the hub. Candidates are added the way
  the gatherer makes them: host candidates of its sockets, server-reflexive
  ones learnt from the sites' STUN server (:mod:`natkit.simulations.reflexive`).
* :func:`connect_pair` connects the two peers of a
  :func:`~natkit.simulations.sites.two_sites` pair of NAT types and says whether
  they found a direct path (used by the traversal tests and the benchmark).

Peer ids are strings; the smaller one is controlling, as natkit's public
keys order the real thing.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from natkit.endpoint import Endpoint, IPAddress
from natkit.ice import (
    ConnectAgent,
    ConnectConfig,
    ConnectEvent,
    PathSelected,
    PeerUnreachable,
    SignalReady,
    decode_signal,
    encode_signal,
)
from natkit.ice.candidates import Candidate, CandidateKind, LocalCandidate, priority_of
from natkit.ice.events import BirthdaySocketsReleased, BirthdaySocketsWanted
from natkit.sansio import SansIOCore
from natkit.simulations.clock import EventLoop
from natkit.simulations.driver import CoreDriver
from natkit.simulations.errors import SimulationError
from natkit.simulations.link import Link
from natkit.simulations.network import Host, Network, Realm, SimSocket
from natkit.simulations.reflexive import mapped_endpoint, start_stun_server
from natkit.simulations.sites import TwoSites, two_sites
from natkit.simulations.traversal import SITE_DELAY, NatType, pair_seed

#: One-way delay of the simulated signalling channel (a rendezvous on the internet).
SIGNAL_DELAY = 0.05


class SignalHub:
    """A signalling channel with a fixed one-way delay (see the module doc)."""

    def __init__(self, loop: EventLoop, delay: float = SIGNAL_DELAY) -> None:
        self.loop = loop
        self.delay = delay
        self.nodes: dict[str, ConnectNode] = {}
        #: Nodes whose messages (both ways) are dropped.
        self.offline: set[str] = set()
        self.delivered = 0
        self.dropped = 0
        #: Every message carried: (time sent, sender, recipient, bytes).
        self.log: list[tuple[float, str, str, bytes]] = []

    def attach(self, node: ConnectNode) -> None:
        self.nodes[node.name] = node

    def send(self, sender: str, recipient: str, data: bytes) -> None:
        self.log.append((self.loop.now, sender, recipient, data))
        if sender in self.offline or recipient in self.offline:
            self.dropped += 1
            return
        self.loop.call_later(self.delay, self._deliver, (sender, recipient, data))

    def _deliver(self, item: tuple[str, str, bytes]) -> None:
        sender, recipient, data = item
        node = self.nodes.get(recipient)
        if node is None or recipient in self.offline or sender not in node.agent.peers:
            self.dropped += 1
            return
        self.delivered += 1
        message = decode_signal(data)
        node.driver.invoke(lambda now: node.agent.receive_signal(sender, message, now))


class ConnectNode:
    """One peer: a connect agent on simulated sockets (see the module doc)."""

    def __init__(
        self,
        name: str,
        sockets: Sequence[SimSocket],
        hub: SignalHub,
        *,
        config: ConnectConfig | None = None,
        seed: int = 0,
        on_event: Callable[[ConnectEvent], object] | None = None,
        log_checks: bool = True,
        wrap: Callable[[ConnectAgent], SansIOCore[ConnectEvent]] | None = None,
    ) -> None:
        self.name = name
        self.sockets = list(sockets)
        self.hub = hub
        self.agent = ConnectAgent(
            name,
            rng=random.Random(seed),
            config=config,
            sockets=[s.local for s in sockets],
            log_checks=log_checks,
        )
        self._extra = on_event
        #: Every event with the virtual time it was collected.
        self.timeline: list[tuple[float, ConnectEvent]] = []
        core: SansIOCore[ConnectEvent] = self.agent if wrap is None else wrap(self.agent)
        self.driver: CoreDriver[ConnectEvent] = CoreDriver(
            core, self.sockets, on_event=self._on_event
        )
        hub.attach(self)

    @property
    def events(self) -> list[ConnectEvent]:
        return self.driver.events

    def _on_event(self, event: ConnectEvent) -> None:
        self.timeline.append((self.driver.now, event))
        if isinstance(event, SignalReady):
            self.hub.send(self.name, str(event.peer), encode_signal(event.message))
        elif isinstance(event, BirthdaySocketsWanted):
            self._bind_for_birthday(event)
        elif isinstance(event, BirthdaySocketsReleased):
            self.driver.release_sockets(event.sockets)
        if self._extra is not None:
            self._extra(event)

    def _bind_for_birthday(self, event: BirthdaySocketsWanted) -> None:
        """What a driver does for a birthday search: bind sockets (any port,
        the seeded network picks), drive them, and hand them to the agent."""
        host, ip = self.sockets[0].host, self.sockets[0].local.address
        sockets = [host.bind(ip, 0) for _ in range(event.count)]
        indices = self.driver.add_sockets(sockets)
        given = [(i, s.local) for i, s in zip(indices, sockets, strict=True)]
        peer, attempt = event.peer, event.attempt
        self.driver.invoke_later(
            0.0, lambda now: self.agent.birthday_sockets(peer, attempt, given, now)
        )

    def add_host_candidates(self, *, preferences: Sequence[int] = ()) -> list[LocalCandidate]:
        """One host candidate per socket (``preferences``: local preference per socket)."""
        added = []
        for index, sock in enumerate(self.sockets):
            preference = preferences[index] if index < len(preferences) else 65535
            candidate = Candidate(
                CandidateKind.HOST,
                sock.local,
                sock.local,
                "sim",
                priority=priority_of(CandidateKind.HOST, preference),
            )
            added.append(self.add_candidate(candidate, index))
        return added

    def add_srflx(self, index: int, mapped: Endpoint) -> LocalCandidate:
        """The server-reflexive candidate of socket ``index``."""
        sock = self.sockets[index]
        candidate = Candidate(CandidateKind.SRFLX, mapped, sock.local, "stun")
        return self.add_candidate(candidate, index)

    def add_candidate(self, candidate: Candidate, socket: int) -> LocalCandidate:
        found: list[LocalCandidate] = []
        self.driver.invoke(
            lambda now: found.append(self.agent.add_local_candidate(candidate, now, socket=socket))
        )
        return found[0]

    def connect(self, peer: str) -> None:
        self.driver.invoke(lambda now: self.agent.add_peer(peer, now))

    def selections(self, peer: str | None = None) -> list[PathSelected]:
        return [
            e
            for e in self.events
            if isinstance(e, PathSelected) and (peer is None or e.peer == peer)
        ]

    def unreachable(self, peer: str | None = None) -> list[PeerUnreachable]:
        return [
            e
            for e in self.events
            if isinstance(e, PeerUnreachable) and (peer is None or e.peer == peer)
        ]


@dataclass(frozen=True)
class Multihomed:
    """Peers on the internet, each with several interfaces (one host each)."""

    network: Network
    internet: Realm
    #: Per peer, its interfaces' hosts (whose links carry the delays).
    hosts: tuple[tuple[Host, ...], ...]

    @property
    def loop(self) -> EventLoop:
        return self.network.loop

    def sockets(self, peer: int, port: int = 40000) -> list[SimSocket]:
        """One socket per interface of ``peer``."""
        return [host.bind(host.ips[0], port) for host in self.hosts[peer]]

    def set_delay(self, peer: int, interface: int, delay: float) -> None:
        """Change an interface's one-way delay (both directions) from now on."""
        self.hosts[peer][interface].interface.link = Link.symmetric(delay)

    def cut(self, peer: int, interface: int) -> None:
        """Lose everything an interface sends or receives from now on."""
        self.hosts[peer][interface].interface.link = Link.symmetric(loss=1.0)


#: Where :func:`multihomed` numbers interfaces from (documentation ranges).
_IPV4_POOL = ("198.51.100.0/24", "203.0.113.0/24")
_IPV6_BASE = ipaddress.IPv6Address("2001:db8::1")


def _interface_addresses(count: int, ipv6: bool) -> list[IPAddress]:
    if ipv6:
        return [_IPV6_BASE + n for n in range(count)]
    pool = [a for net in _IPV4_POOL for a in ipaddress.IPv4Network(net).hosts()]
    if count > len(pool):
        raise SimulationError(f"{count} IPv4 interfaces do not fit; use ipv6=True")
    return list(pool[:count])


def multihomed(
    delays: Sequence[Sequence[float]], seed: int = 0, *, ipv6: bool = False
) -> Multihomed:
    """Peers on one internet; ``delays[p][i]`` is the one-way delay of peer
    ``p``'s interface ``i``. Interfaces are numbered in order from
    198.51.100.1 (and on through 203.0.113.0/24), or from 2001:db8::1 with
    ``ipv6`` (enough for any number of peers)."""
    network = Network(random.Random(seed))
    internet = network.add_realm("internet")
    addresses = iter(_interface_addresses(sum(len(d) for d in delays), ipv6))
    hosts = tuple(
        tuple(
            network.add_host(
                f"p{peer}i{index}", internet, [next(addresses)], link=Link.symmetric(delay)
            )
            for index, delay in enumerate(interfaces)
        )
        for peer, interfaces in enumerate(delays)
    )
    return Multihomed(network, internet, hosts)


def learn_mapped(sockets: Sequence[SimSocket], rng: random.Random) -> list[Endpoint | None]:
    """What the sites' STUN server sees each socket as (before a node drives them)."""
    return [mapped_endpoint(sock, random.Random(rng.getrandbits(64))) for sock in sockets]


def gather(node: ConnectNode, mapped: Sequence[Endpoint | None]) -> None:
    """Host candidates, then a server-reflexive one per socket whose mapped
    endpoint differs from it (the gatherer drops one equal to the host's)."""
    node.add_host_candidates()
    for index, (sock, endpoint) in enumerate(zip(node.sockets, mapped, strict=True)):
        if endpoint is not None and endpoint != sock.local:
            node.add_srflx(index, endpoint)


@dataclass(frozen=True)
class PairConnection:
    """How :func:`connect_pair` ended."""

    a: NatType
    b: NatType
    sites: TwoSites
    nodes: tuple[ConnectNode, ConnectNode]
    #: Virtual seconds from the first announcement to the end of the run.
    seconds: float

    @property
    def direct(self) -> bool:
        """Both sides selected a path, and the same one."""
        first, second = self.nodes
        a, b = first.selections(second.name), second.selections(first.name)
        if not a or not b:
            return False
        return a[-1].remote == b[-1].local and b[-1].remote == a[-1].local

    @property
    def claimed(self) -> bool:
        """Either side claimed a path."""
        first, second = self.nodes
        return bool(first.selections() or second.selections())

    @property
    def unreachable(self) -> bool:
        """Both sides reported the peer unreachable."""
        return all(node.unreachable() for node in self.nodes)


#: Long enough for every check of a pair to fail (9.5 s) plus signalling.
PAIR_TIMEOUT = 20.0


def connect_pair(
    a: NatType,
    b: NatType,
    seed: int = 1,
    *,
    config: ConnectConfig | None = None,
    timeout: float = PAIR_TIMEOUT,
) -> PairConnection:
    """Two peers behind NATs of types ``a`` and ``b`` gather, signal and connect."""
    rng = random.Random(pair_seed(a, b, seed))
    sites = two_sites(a.config, b.config, rng=random.Random(rng.getrandbits(64)), delay=SITE_DELAY)
    start_stun_server(sites)
    hub = SignalHub(sites.loop)
    nodes = []
    for name, site in zip(("a", "b"), sites.sites, strict=True):
        sockets = site.bind(1, 40000)
        mapped = learn_mapped(sockets, rng)
        node = ConnectNode(name, sockets, hub, config=config, seed=rng.getrandbits(64))
        gather(node, mapped)
        nodes.append(node)
    first, second = nodes
    start = sites.loop.now
    first.connect("b")
    second.connect("a")

    def settled() -> bool:
        return all(n.selections() or n.unreachable() for n in nodes)

    sites.loop.run_until(settled, timeout=timeout)
    # Give the controlled side time to follow the nomination.
    sites.loop.run_until(sites.loop.now + 1.0)
    return PairConnection(a, b, sites, (first, second), sites.loop.now - start)
