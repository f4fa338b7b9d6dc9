"""The connect core at scale, simulated: 1,000 peers x 8 candidates on one agent.

One *hub* agent (one socket, the way a VPN node with many peers runs it)
connects to ``--peers`` peers, each a real agent of its own, all on the
simulator's virtual clock (:mod:`natkit.simulations.connect`), signalling through
the simulated hub with a delay. Each peer announces 8 candidates: 2 host
candidates on two interfaces with different delays, and 6 that nothing
reaches (addresses of private networks), so the hub forms, checks and
keeps re-checking 8 pairs per peer.

Printed:

* **memory per peer** of the hub agent, measured with ``tracemalloc`` as
  what is freed when the converged hub agent is dropped (the simulator and
  the peers' agents excluded), and cross-checked by walking the agent's
  object graph;
* **CPU time to converge** (until the hub has selected a path to every
  peer): the hub agent's own CPU (each call timed with ``process_time``,
  the cost of timing a call measured and subtracted) and the whole run's
  (1,001 agents plus the simulator);
* **checks per second**: the hub's paced checks per second of its own CPU;
* **steady state**: the hub's CPU per virtual second while it only keeps
  paths alive (keepalives every 15 s, re-checks on their backoff, measured
  after ``--warmup`` when the backoff has reached its caps), as a share of
  one core.

Targets (issue 11): at most 20 KB per peer; steady state under 2 % of one
core. ``ta`` defaults to 5 ms here (RFC 8445 §14.2's floor): an agent with
1,000 peers at 50 ms would take ~7 virtual minutes to check 8,000 pairs, not
more CPU. As a reference (not like for like: no local candidates, no pairs,
no checks), the memory of aioice ``Connection`` objects holding the same
8 remote candidates is measured in the same run.

In the lab (``--lab``, root; ``--lab-only`` skips the simulation): time
from start to the first confirmed direct path between two real ``natkit
connect`` processes on the two sites of ``connect-eim`` (EIM ↔ EIM, real
kernel NAT, the lab's rendezvous and STUN server), ``--runs`` times with NAT
state reset before each, beside the physical floor measured in the same
run: the signalling round trip through the rendezvous (a sealed message
there and back between the two sites, ``--runs`` times) plus one check RTT
(the path's RTT as natkit's checks measured it). Each run reports, per
side, from its sockets being bound (``started``) to signalling up and to
its ``path_selected``, and from the process being spawned (Python start-up
included).

    .venv/bin/python benchmarks/connect.py [--peers 1000] [--steady 600] [--warmup 900] [--ta 0.005]
    sudo .venv/bin/python benchmarks/connect.py --lab-only [--runs 10]
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import os
import sys
import time
import tracemalloc
from dataclasses import dataclass
from types import FunctionType, ModuleType

import aioice

from natkit.endpoint import Endpoint
from natkit.ice import ConnectAgent, ConnectConfig, ConnectEvent, PathSelected
from natkit.ice.candidates import Candidate, CandidateKind, priority_of
from natkit.sansio import Datagram
from natkit.simulations.connect import ConnectNode, SignalHub, multihomed

TARGET_BYTES = 20 * 1024
TARGET_SHARE = 0.02
CANDIDATES = 8
#: One-way delays of a peer's two reachable interfaces, and the hub's.
PEER_DELAYS = (0.020, 0.035)
HUB_DELAY = 0.005


class TimedCore:
    """Passes every call to the agent, adding up the process CPU time it takes."""

    def __init__(self, agent: ConnectAgent) -> None:
        self.agent = agent
        self.cpu = 0.0
        self.calls = 0

    def _timed(self, started: float) -> None:
        self.cpu += time.process_time() - started
        self.calls += 1

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        started = time.process_time()
        self.agent.receive_datagram(data, remote, socket, now)
        self._timed(started)

    def handle_timer(self, now: float) -> None:
        started = time.process_time()
        self.agent.handle_timer(now)
        self._timed(started)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        started = time.process_time()
        out = self.agent.datagrams_to_send(now)
        self._timed(started)
        return out

    def get_timer(self) -> float | None:
        started = time.process_time()
        deadline = self.agent.get_timer()
        self._timed(started)
        return deadline

    def next_event(self) -> ConnectEvent | None:
        started = time.process_time()
        event = self.agent.next_event()
        self._timed(started)
        return event


class _Idle:
    """A core that does nothing, to measure what timing a call costs."""

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        pass

    def handle_timer(self, now: float) -> None:
        pass

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        return []

    def get_timer(self) -> float | None:
        return None

    def next_event(self) -> ConnectEvent | None:
        return None


def timing_overhead(calls: int = 200_000) -> float:
    """CPU seconds :class:`TimedCore` adds to its total per call (subtracted)."""
    timed = TimedCore(_Idle())  # type: ignore[arg-type]
    for _ in range(calls):
        timed.get_timer()
    return timed.cpu / calls


@dataclass
class World:
    hub: ConnectNode
    timed: TimedCore
    peers: list[ConnectNode]
    topology: object
    signals: SignalHub
    #: Peers the hub has selected a path to.
    selected: set[object]

    @property
    def loop(self):  # type: ignore[no-untyped-def]
        return self.signals.loop


def build(peers: int, config: ConnectConfig, seed: int) -> World:
    """The hub, its peers, their candidates; nobody has connected yet."""
    delays = [[HUB_DELAY]] + [list(PEER_DELAYS) for _ in range(peers)]
    topology = multihomed(delays, seed, ipv6=True)
    signals = SignalHub(topology.loop)
    timed: list[TimedCore] = []

    def wrap(agent: ConnectAgent) -> TimedCore:
        timed.append(TimedCore(agent))
        return timed[0]

    selected: set[object] = set()

    def note(event: ConnectEvent) -> None:
        if isinstance(event, PathSelected):
            selected.add(event.peer)

    hub = ConnectNode(
        "hub",
        topology.sockets(0),
        signals,
        config=config,
        seed=seed,
        log_checks=False,
        wrap=wrap,
        on_event=note,
    )
    hub.add_host_candidates()
    nodes = []
    for index in range(1, peers + 1):
        node = ConnectNode(
            f"peer{index:05d}",
            topology.sockets(index),
            signals,
            config=config,
            seed=seed + index,
            log_checks=False,
        )
        node.add_host_candidates(preferences=[65535, 65000])
        for extra in range(CANDIDATES - 2):
            # Private addresses nothing routes to: checks to them fail.
            address = Endpoint(ipaddress.IPv6Address(f"fd00:{index:x}::{extra + 1}"), 40000)
            candidate = Candidate(
                CandidateKind.HOST,
                address,
                node.sockets[0].local,
                f"lan{extra}",
                priority=priority_of(CandidateKind.HOST, 60000 - extra),
            )
            node.add_candidate(candidate, 0)
        nodes.append(node)
    return World(hub, timed[0], nodes, topology, signals, selected)


def connect_all(world: World) -> float:
    """Everybody announces; run until the hub has a path to every peer.
    Returns the virtual seconds it took."""
    start = world.loop.now
    for node in world.peers:
        world.hub.connect(node.name)
        node.connect("hub")
    selected = world.selected
    world.loop.run_until(lambda: len(selected) == len(world.peers), timeout=3600.0)
    if len(selected) != len(world.peers):
        raise SystemExit(f"only {len(selected)} of {len(world.peers)} peers connected")
    return world.loop.now - start


def forget_harness_state(world: World) -> None:
    """The events the harness kept are its memory, not the agent's."""
    for node in (world.hub, *world.peers):
        node.timeline.clear()
        node.driver.events.clear()
    world.signals.log.clear()


def graph_size(root: object) -> int:
    """Bytes of every object reachable from ``root``, each counted once
    (classes, modules and functions are shared, and not counted)."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type | ModuleType | FunctionType):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def measure(
    peers: int, config: ConnectConfig, seed: int, steady: float, warmup: float
) -> dict[str, float]:
    overhead = timing_overhead()
    world = build(peers, config, seed)
    timed = world.timed
    cpu_start = time.process_time()
    virtual = connect_all(world)
    converge_total = time.process_time() - cpu_start
    converge_hub = timed.cpu - timed.calls * overhead
    checks = timed.agent.stats.checks_sent
    # Re-check intervals back off from 5 s to their caps (2 and 5 min) over
    # the first ~10 minutes; steady state is what comes after.
    world.loop.run_until(world.loop.now + warmup)
    forget_harness_state(world)
    hub_before, calls_before, total_before = timed.cpu, timed.calls, time.process_time()
    stats = timed.agent.stats
    keepalives_before = stats.keepalives_sent
    world.loop.run_until(world.loop.now + steady)
    steady_hub = timed.cpu - hub_before - (timed.calls - calls_before) * overhead
    return {
        "overhead_us": overhead * 1e6,
        "virtual_converge": virtual,
        "converge_hub": converge_hub,
        "converge_total": converge_total,
        "checks": checks,
        "steady_hub": steady_hub / steady,
        "steady_total": (time.process_time() - total_before) / steady,
        "keepalives_per_s": (stats.keepalives_sent - keepalives_before) / steady,
        "selected": sum(1 for p in world.peers if world.timed.agent.selected(p.name) is not None),
    }


def memory_per_peer(peers: int, config: ConnectConfig, seed: int) -> tuple[float, float]:
    """tracemalloc: what freeing the converged hub agent releases, per peer."""
    tracemalloc.start()
    world = build(peers, config, seed)
    connect_all(world)
    world.loop.run_until(world.loop.now + 30.0)
    forget_harness_state(world)
    agent = world.timed.agent
    graph = graph_size(agent) / peers
    hub = world.hub
    hub.driver.close()
    del world.signals.nodes["hub"]
    heap = world.loop._heap
    heap[:] = [item for item in heap if getattr(item[2], "__self__", None) is not hub.driver]
    world.hub = None  # type: ignore[assignment]
    world.timed = None  # type: ignore[assignment]
    gc.collect()
    with_hub = tracemalloc.get_traced_memory()[0]
    del hub, agent
    gc.collect()
    without_hub = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (with_hub - without_hub) / peers, graph


def aioice_reference(peers: int) -> float:
    """Bytes per aioice ``Connection`` holding 8 remote candidates (reference)."""
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    connections = []
    for index in range(peers):
        connection = aioice.Connection(ice_controlling=True)
        connection.remote_username = "abcd"
        connection.remote_password = "p" * 22
        for extra in range(CANDIDATES):
            connection._remote_candidates.append(
                aioice.Candidate(
                    foundation=str(extra),
                    component=1,
                    transport="udp",
                    priority=priority_of(CandidateKind.HOST),
                    host=f"2001:db8::{index:x}:{extra + 1}",
                    port=40000,
                    type="host",
                )
            )
        connections.append(connection)
    used = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    return used / peers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", action="store_true", help="also measure in the lab (root)")
    parser.add_argument("--lab-only", action="store_true", help="only measure in the lab")
    parser.add_argument("--runs", type=int, default=10, help="lab runs")
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--steady", type=float, default=600.0, help="virtual seconds measured")
    parser.add_argument(
        "--warmup", type=float, default=900.0, help="virtual seconds before steady state"
    )
    parser.add_argument("--ta", type=float, default=0.005)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    config = ConnectConfig(ta=args.ta)
    cpus = len(os.sched_getaffinity(0))
    print(f"{cpus} CPU(s), load average {os.getloadavg()[0]:.2f} (above 0: others share them)")
    if args.lab or args.lab_only:
        from connect_lab import lab_table  # noqa: PLC0415 (root and the lab only here)

        status = lab_table(args.runs)
        if args.lab_only:
            return status
        print()
    print(
        f"{args.peers} peers x {CANDIDATES} candidates, one hub agent on one socket,"
        f" ta {1000 * args.ta:g} ms, keepalive {config.keepalive_interval:g} s\n"
    )
    result = measure(args.peers, config, args.seed, args.steady, args.warmup)
    traced, graph = memory_per_peer(args.peers, config, args.seed)
    reference = aioice_reference(args.peers)

    rows = [
        (
            "memory per peer (tracemalloc)",
            f"{traced / 1024:.1f} KB",
            f"<= {TARGET_BYTES // 1024} KB",
            traced <= TARGET_BYTES,
        ),
        ("memory per peer (object graph)", f"{graph / 1024:.1f} KB", "", None),
        ("virtual time to converge", f"{result['virtual_converge']:.1f} s", "", None),
        ("CPU to converge, hub agent", f"{result['converge_hub']:.2f} s", "", None),
        ("CPU to converge, whole run", f"{result['converge_total']:.2f} s", "", None),
        ("paced checks sent by the hub", f"{result['checks']:.0f}", "", None),
        (
            "checks per CPU second (hub)",
            f"{result['checks'] / result['converge_hub']:,.0f}",
            "",
            None,
        ),
        ("keepalives per second (hub)", f"{result['keepalives_per_s']:.1f}", "", None),
        (
            "steady state CPU, hub agent",
            f"{100 * result['steady_hub']:.2f} % of a core",
            f"< {100 * TARGET_SHARE:g} %",
            result["steady_hub"] < TARGET_SHARE,
        ),
        ("timing cost subtracted per call", f"{result['overhead_us']:.2f} us", "", None),
        (
            "steady state CPU, whole run",
            f"{100 * result['steady_total']:.2f} % of a core",
            "",
            None,
        ),
    ]
    rows.append(
        (
            "aioice Connection + 8 candidates",
            f"{reference / 1024:.1f} KB",
            f"natkit/aioice {traced / reference:.2f}",
            None,
        )
    )
    width = max(len(r[0]) for r in rows)
    for name, value, target, met in rows:
        verdict = "" if met is None else ("met" if met else "MISSED")
        print(f"{name:<{width}}  {value:>20}  {target:<18} {verdict}")
    if result["selected"] != args.peers:
        print(f"only {result['selected']} peers still have a path at the end")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
