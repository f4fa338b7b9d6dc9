"""A deliberately tiny virtual-clock network for the birthday tests.

Two or more hosts, each behind its own NAT (or none), on one "internet"
with a fixed one-way delay. No loss, no mapping timeouts. The NAT is just
what the birthday model needs:

* easy: endpoint-independent mapping (one external port per internal
  endpoint), address-and-port-dependent filtering unless ``open_filter``;
* hard: address-and-port-dependent mapping with random ports (a new one per
  remote endpoint; a port may serve different remotes, never the same one
  twice) and address-and-port-dependent filtering.

The real simulator, with every RFC 4787 behaviour, is ``simulations/``.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from natkit.birthday.events import BirthdayEvent
from natkit.birthday.ports import PortRange
from natkit.birthday.prober import BirthdayProber
from natkit.endpoint import Endpoint
from natkit.sansio import Datagram


@dataclass
class FakeNat:
    public: IPv4Address
    port_range: PortRange
    rng: random.Random
    hard: bool
    open_filter: bool = False
    _by_key: dict[object, int] = field(default_factory=dict)
    #: hard: (port, remote) -> internal; easy: port -> internal.
    _inbound: dict[object, Endpoint] = field(default_factory=dict)
    _permits: set[tuple[int, Endpoint]] = field(default_factory=set)

    def outbound(self, internal: Endpoint, remote: Endpoint) -> Endpoint:
        key = (internal, remote) if self.hard else internal
        port = self._by_key.get(key)
        if port is None:
            port = self._allocate(remote)
            self._by_key[key] = port
            self._inbound[(port, remote) if self.hard else port] = internal
        self._permits.add((port, remote))
        return Endpoint(self.public, port)

    def inbound(self, port: int, remote: Endpoint) -> Endpoint | None:
        if self.hard:
            return self._inbound.get((port, remote))
        internal = self._inbound.get(port)
        if internal is None or not (self.open_filter or (port, remote) in self._permits):
            return None
        return internal

    def mapped_port(self, internal: Endpoint, remote: Endpoint) -> int | None:
        return self._by_key.get((internal, remote) if self.hard else internal)

    def open_ports(self) -> set[int]:
        return set(self._by_key.values())

    def _allocate(self, remote: Endpoint) -> int:
        def taken(port: int) -> bool:
            return ((port, remote) if self.hard else port) in self._inbound

        for _ in range(4 * self.port_range.size):
            port = self.rng.randint(self.port_range.low, self.port_range.high)
            if not taken(port):
                return port
        raise RuntimeError("NAT out of ports")


@dataclass
class Host:
    core: BirthdayProber
    nat: FakeNat | None
    sent: list[tuple[float, Datagram]] = field(default_factory=list)
    events: list[BirthdayEvent] = field(default_factory=list)


class FakeNet:
    """Runs probers until every one has ended (or ``until``)."""

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.now = 0.0
        self.hosts: dict[str, Host] = {}
        self.dropped: Counter[str] = Counter()
        self._queue: list[tuple[float, int, Endpoint, Endpoint, bytes]] = []
        self._seq = 0

    def add(self, name: str, core: BirthdayProber, nat: FakeNat | None) -> Host:
        host = Host(core, nat)
        self.hosts[name] = host
        self._flush(host)
        return host

    def run(self, until: float, max_steps: int = 200_000) -> None:
        for _ in range(max_steps):
            timers = [
                (t, name) for name, h in self.hosts.items() if (t := h.core.get_timer()) is not None
            ]
            next_timer = min(timers, default=None)
            next_packet = self._queue[0][0] if self._queue else None
            if next_timer is None and next_packet is None:
                return
            if next_packet is not None and (next_timer is None or next_packet <= next_timer[0]):
                at, _, source, destination, data = heapq.heappop(self._queue)
                if at > until:
                    return
                self.now = at
                self._deliver(source, destination, data)
            else:
                assert next_timer is not None
                if next_timer[0] > until:
                    return
                self.now = max(self.now, next_timer[0])
                host = self.hosts[next_timer[1]]
                host.core.handle_timer(self.now)
                self._flush(host)
        raise AssertionError("the network did not settle: a core loops")

    def _deliver(self, source: Endpoint, destination: Endpoint, data: bytes) -> None:
        for host in self.hosts.values():
            internal: Endpoint | None = destination
            if host.nat is not None:
                if host.nat.public != destination.address:
                    continue
                internal = host.nat.inbound(destination.port, source)
            if internal in host.core.sockets:
                host.core.receive_datagram(
                    data, source, host.core.sockets.index(internal), self.now
                )
                self._flush(host)
                return
            if host.nat is not None:
                self.dropped["filtered"] += 1
                return
        self.dropped["no route"] += 1

    def _flush(self, host: Host) -> None:
        for datagram in host.core.datagrams_to_send(self.now):
            host.sent.append((self.now, datagram))
            internal = host.core.sockets[datagram.socket]
            source = internal if host.nat is None else host.nat.outbound(internal, datagram.remote)
            self._seq += 1
            heapq.heappush(
                self._queue,
                (self.now + self.delay, self._seq, source, datagram.remote, datagram.data),
            )
        while (event := host.core.next_event()) is not None:
            host.events.append(event)
