"""Birthday searches between the two sites of a lab, one run at a time.

Shared by ``test_birthday_lab.py`` and ``benchmarks/birthday_lab.py``, so
the numbers the benchmark prints come from the code the tests check.

Each side runs natkit's asyncio driver (:mod:`natkit.aio.birthday`) on its
own event loop (:class:`EventLoop`: ``select()``-based unless the setup
says otherwise), on a thread inside its site's client namespace
(``Lab.call_in``). Three witnesses are kept per side:

* the terminal event the core reported (:class:`PairFound` or
  :class:`SearchExhausted`; ``None`` for a hard side stopped once the
  search was over);
* every datagram the core sent, stamped with the core's own send time
  (``on_send``), from which budget, rate and time to punch are counted;
* the packets the site's router forwarded toward the other site's public
  address, counted by an nftables rule (``nk_bcount``) put on each router
  for the run: it must equal the datagrams sent, to the packet.

A one-hard run (site A, the client, is the hard side):

1. client-b learns its mapped endpoint from the lab's STUN server, on the
   port it then sprays from (:func:`learn_mapped_endpoint`);
2. the client opens ``ports`` mappings toward it (OPENs at ``rate``);
3. once its last OPEN is out, client-b sprays ``budget`` probes at random
   ports of A's public address, so every probe meets all the mappings, as
   the model assumes;
4. the run ends with client-b's run: after a hit the hard side ends by
   itself (the probe reached it first), after a miss it is stopped.

A both-hard run: both clients spray each other's public address from
``ports`` sockets each, from one common start time.

Two hosts emulated in one process, and what that takes for honest timing:

* nothing special for the timers: every paced send wakes a little late
  (epoll rounds waits up to whole milliseconds, parallel tests share the
  CPUs), and the prober catches up with its plan within the rate cap
  (:class:`natkit.birthday.schedule.RateWindow`), so lateness does not add
  up over a search. Runs use asyncio's default loop, as ``natkit birthday
  probe`` does; a ``select()`` loop and SCHED_FIFO threads
  (:class:`EventLoop`, :attr:`Setup.realtime`) stay for the benchmark to
  compare;
* both sides share the GIL, which real hosts do not: a side that has just
  finished spends milliseconds of Python closing its sockets, and with the
  default 5 ms switch interval the other side, woken by the very ACK that
  ends its run, would wait that long. Runs use a 0.2 ms switch interval
  (:data:`SWITCH_INTERVAL_S`);
* a cyclic garbage collection stops both sides at once, for tens of
  milliseconds once the caller holds many runs' records (a prober process
  of its own has a small heap): the collector pauses during a run.

Nothing here runs unbounded: probes are budgeted and paced by the cores,
and every side is also bounded in time (:data:`SIDE_LIMIT_S`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import os
import random
import re
import secrets
import selectors
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address
from typing import Any

from natkit.aio.birthday import learn_mapped_endpoint, probe_easy, probe_hard, run_prober
from natkit.birthday import (
    BirthdayDropReason,
    BirthdayEvent,
    BirthdayScenario,
    Kind,
    Mode,
    PairFound,
    PortRange,
    ProberConfig,
    SendPlan,
    Side,
    max_sends_in_window,
    pacing_gap,
    spray_plan,
)
from natkit.birthday.wire import parse_packet
from natkit.endpoint import Endpoint
from natkit.lab import Lab
from natkit.sansio import Datagram

#: Any one side of a run gives up after this long (far beyond any plan here).
SIDE_LIMIT_S = 60.0
#: Both-hard: how far ahead the common start is set, so both sides have bound
#: their sockets by then.
BOTH_HARD_LEAD_S = 0.3
#: How long a hard side gets to end by itself after the easy side's hit.
HARD_GRACE_S = 5.0
#: The issue's bound: time to punch <= this x probes / rate.
PUNCH_FACTOR = 1.2
#: SCHED_FIFO priority of the side threads (:attr:`Setup.realtime`); low,
#: so kernel threads with real-time priorities still come first.
REALTIME_PRIORITY = 10
#: FD_SETSIZE, with room for the loop's own descriptors.
SELECT_MAX_SOCKETS = 1000
#: The GIL switch interval during a run (the default is 5 ms).
SWITCH_INTERVAL_S = 0.0002
#: Drops that would mean a stranger's or a forged packet reached a prober.
FOREIGN_DROPS = (
    BirthdayDropReason.MALFORMED,
    BirthdayDropReason.UNAUTHENTICATED,
    BirthdayDropReason.WRONG_SESSION,
)

COUNT_TABLE = "nk_bcount"
ANY_V4 = "0.0.0.0"


class EventLoop(Enum):
    """The asyncio loop each side runs on.

    ``EPOLL`` is asyncio's default on Linux (what ``natkit birthday probe``
    uses): ``epoll_wait`` takes whole milliseconds, so a paced send wakes up
    to a millisecond late, which the prober then catches up with.
    ``SELECT`` waits with microsecond resolution (``select()``, fine below
    1,024 sockets) and loses only the wake-up.
    """

    EPOLL = "epoll"
    SELECT = "select"

    def factory(self) -> Callable[[], asyncio.AbstractEventLoop] | None:
        if self is EventLoop.SELECT:
            return lambda: asyncio.SelectorEventLoop(selectors.SelectSelector())
        return None  # asyncio's default


@dataclass(frozen=True, slots=True)
class Setup:
    """One configuration of runs: what both peers agree on, and the NAT's range."""

    mode: Mode
    #: k: the hard side's mappings (one-hard), or each side's sockets (both-hard).
    ports: int
    #: Probes per spraying side.
    budget: int
    rate: float
    #: The hard NAT's external UDP ports (what gets sprayed).
    port_range: PortRange
    answer_timeout: float = 0.25
    loop: EventLoop = EventLoop.EPOLL
    #: Run each side's thread SCHED_FIFO, as a host of its own would run it:
    #: other work on the machine then cannot hold its timers back. The
    #: threads sleep between sends, and every run is bounded.
    realtime: bool = False
    #: One-hard: the hard side's own cap for its OPENs (``None``: ``rate``).
    #: Each peer caps itself; the model only needs the mappings open first.
    open_rate: float | None = None

    def __post_init__(self) -> None:
        if self.loop is EventLoop.SELECT and self.ports >= SELECT_MAX_SOCKETS:
            raise ValueError(f"select() serves fewer than {SELECT_MAX_SOCKETS} sockets")

    def side_rate(self, side: Side) -> float:
        """The cap a side's paced sends keep to."""
        if self.mode is Mode.ONE_HARD and side is Side.A and self.open_rate is not None:
            return self.open_rate
        return self.rate

    @property
    def model(self) -> BirthdayScenario:
        return BirthdayScenario(
            ports=self.ports, port_range=self.port_range, mode=self.mode, rate=self.rate
        )

    @property
    def success_probability(self) -> float:
        return self.model.success_probability(self.budget)


@dataclass(frozen=True, slots=True)
class Sent:
    """One datagram a core sent."""

    at: float
    kind: Kind
    socket: int
    remote: Endpoint


@dataclass(frozen=True, slots=True)
class SideRun:
    """What one side did in one run."""

    role: str
    #: ``None``: a hard side stopped because the search was over.
    event: BirthdayEvent | None
    sent: tuple[Sent, ...]
    #: Packets its router forwarded toward the other site (nftables counter).
    forwarded: int

    @property
    def found(self) -> PairFound | None:
        return self.event if isinstance(self.event, PairFound) else None

    @property
    def probes(self) -> list[Sent]:
        return [s for s in self.sent if s.kind is Kind.PROBE]

    @property
    def paced_times(self) -> list[float]:
        """Send times of what the rate cap covers: everything but ACKs."""
        return [s.at for s in self.sent if s.kind is not Kind.ACK]

    @property
    def punch_seconds(self) -> float | None:
        """A sprayer's time from its first probe to its hit."""
        probes = self.probes
        if self.found is None or not probes:
            return None
        return self.found.at - probes[0].at

    @property
    def winning_probe(self) -> int | None:
        """1-based index of our probe the peer answered (a hit by ACK)."""
        found = self.found
        if found is None or found.via is not Kind.ACK:
            return None
        for index, sent in enumerate(self.probes, 1):
            if (sent.socket, sent.remote) == (found.pair.socket, found.pair.remote):
                return index
        return None


@dataclass(frozen=True, slots=True)
class Run:
    """One search between site A (the lab's client) and site B (client-b)."""

    setup: Setup
    a: SideRun
    b: SideRun
    #: One-hard: client-b's endpoint as bound, and as mapped by its NAT.
    easy_local: Endpoint | None
    easy_mapped: Endpoint | None

    @property
    def sprayers(self) -> tuple[SideRun, ...]:
        return (self.b,) if self.setup.mode is Mode.ONE_HARD else (self.a, self.b)

    @property
    def hit(self) -> bool:
        return self.a.found is not None and self.b.found is not None

    @property
    def probes_to_hit(self) -> int | None:
        """Probes (per spraying side) up to the one that got through."""
        for side in self.sprayers:
            if side.winning_probe is not None:
                return side.winning_probe
        return None


def problems(run: Run, lab: Lab) -> list[str]:
    """Every rule a run broke, as readable lines (empty: none).

    Budget and rate cap, counted from the cores' send times and cross-checked
    with the routers' counters; a hit authenticated on both sides and naming
    the right endpoints. Time to punch is a speed target, not a rule: the
    benchmark (``benchmarks/birthday_lab.py``) measures it against
    :data:`PUNCH_FACTOR`, where no other test competes for the CPUs.
    """
    public = {"a": lab.site().public_address, "b": lab.site("b").public_address}
    found = _side_problems(f"a ({run.a.role})", run.a, run.setup, Side.A, public["b"])
    found += _side_problems(f"b ({run.b.role})", run.b, run.setup, Side.B, public["a"])
    found += _hit_problems(run)
    return found


def _side_problems(
    label: str, side: SideRun, setup: Setup, which: Side, peer: IPv4Address
) -> list[str]:
    found: list[str] = []
    probes = len(side.probes)
    if probes > setup.budget:
        found.append(f"{label}: {probes} probes over the budget of {setup.budget}")
    if side.event is not None and side.event.stats.probes_sent != probes:
        found.append(f"{label}: stats say {side.event.stats.probes_sent} probes, sent {probes}")
    busiest, cap = max_sends_in_window(side.paced_times), setup.side_rate(which)
    if busiest > cap:
        found.append(f"{label}: {busiest} paced sends within one second, cap {cap:g}")
    if side.forwarded != len(side.sent):
        found.append(
            f"{label}: its router forwarded {side.forwarded} packets to the other site,"
            f" its core sent {len(side.sent)}"
        )
    if side.event is not None:
        dropped = side.event.stats.dropped
        foreign = {r.value: n for r, n in dropped.items() if r in FOREIGN_DROPS and n}
        if foreign:
            found.append(f"{label}: foreign packets reached the prober: {foreign}")
    if side.found is not None and side.found.pair.remote.address != peer:
        found.append(f"{label}: hit names {side.found.pair.remote}, not the peer's {peer}")
    return found


def _hit_problems(run: Run) -> list[str]:
    """A hit is an authentic PROBE in on one side and its ACK back on the other."""
    a, b = run.a.found, run.b.found
    if a is None or b is None:
        return ["only one side saw the hit"] if (a is None) != (b is None) else []
    found: list[str] = []
    if {a.via, b.via} != {Kind.PROBE, Kind.ACK}:
        found.append(f"a hit is one PROBE in and its ACK back, got {a.via!r}, {b.via!r}")
    if run.setup.mode is Mode.ONE_HARD:
        if a.pair.remote != run.easy_mapped:
            found.append(f"the hard side met {a.pair.remote}, not {run.easy_mapped}")
        if b.pair.local != run.easy_local:
            found.append(f"the easy side hit on {b.pair.local}, not {run.easy_local}")
    for side in (a, b):
        if side.pair.remote.port not in run.setup.port_range and (
            run.setup.mode is Mode.BOTH_HARD or side is b
        ):
            found.append(f"{side.pair.remote} is outside the NAT's ports {run.setup.port_range}")
    return found


# ------------------------------------------------------------------ running


def run_once(lab: Lab, setup: Setup, seed: int) -> Run:
    """One search on a clean lab (the caller resets NAT state first)."""
    if not lab.scenario.sites:
        raise ValueError(f"scenario {lab.scenario.name!r} has no second site")
    key, session = secrets.token_bytes(32), secrets.token_bytes(8)
    _install_counters(lab)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    collecting = gc.isenabled()
    gc.disable()
    try:
        if setup.mode is Mode.ONE_HARD:
            return _one_hard(lab, setup, key, session, random.Random(seed))
        return _both_hard(lab, setup, key, session, random.Random(seed))
    finally:
        if collecting:
            gc.enable()
        sys.setswitchinterval(interval)
        _remove_counters(lab)


def stun_server(lab: Lab) -> Endpoint:
    """The lab STUN server client-b asks (natkit's, else coturn)."""
    servers = lab.stun_servers
    return (servers.get("natkit") or next(iter(servers.values()))).primary


class _Recorder:
    """Collects what one core sends; calls ``on_count`` once ``count`` are out."""

    def __init__(self, count: int = 0, on_count: Callable[[], None] | None = None) -> None:
        self.sent: list[tuple[float, Datagram]] = []
        self._count = count
        self._on_count = on_count

    def __call__(self, at: float, datagram: Datagram) -> None:
        self.sent.append((at, datagram))
        if self._on_count is not None and len(self.sent) == self._count:
            self._on_count()

    def records(self, key: bytes) -> tuple[Sent, ...]:
        return tuple(
            Sent(at, parse_packet(d.data, key).kind, d.socket, d.remote) for at, d in self.sent
        )


def _make_realtime() -> None:
    """Run the calling thread SCHED_FIFO (see :attr:`Setup.realtime`), if allowed."""
    with contextlib.suppress(OSError):  # no CAP_SYS_NICE: keep the normal policy
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))


class _SideThread:
    """One side's coroutine on its own event loop, on a thread in its
    namespace, that another thread can stop."""

    def __init__(
        self,
        lab: Lab,
        role: str,
        setup: Setup,
        make: Callable[[], Coroutine[Any, Any, BirthdayEvent]],
    ) -> None:
        self._lab = lab
        self._role = role
        self._loop_kind = setup.loop
        self._realtime = setup.realtime
        self._make = make
        self._running = threading.Event()
        self._stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[BirthdayEvent] | None = None

    def __call__(self) -> BirthdayEvent | None:
        def body() -> BirthdayEvent | None:
            if self._realtime:
                _make_realtime()
            with asyncio.Runner(loop_factory=self._loop_kind.factory()) as runner:
                return runner.run(self._main())

        return self._lab.call_in(self._role, body)

    async def _main(self) -> BirthdayEvent | None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.ensure_future(self._make())
        self._running.set()
        try:
            async with asyncio.timeout(SIDE_LIMIT_S):
                return await self._task
        except asyncio.CancelledError:
            if self._stopped:
                return None
            raise

    def stop(self) -> None:
        """Cancel the side's run if it is still going (its sockets close)."""
        self._stopped = True
        if not self._running.wait(SIDE_LIMIT_S):
            return
        assert self._loop is not None
        assert self._task is not None
        task = self._task
        with contextlib.suppress(RuntimeError):  # its loop has closed: it is over
            self._loop.call_soon_threadsafe(task.cancel)


def _config(
    lab: Lab, setup: Setup, side: Side, *, key: bytes, session: bytes, budget: int
) -> ProberConfig:
    """One side's prober config: the shared secrets, the other site as the only peer."""
    peer = lab.site("b" if side is Side.A else "").public_address
    return ProberConfig(
        key=key,
        session=session,
        side=side,
        rate=setup.side_rate(side),
        budget=budget,
        answer_timeout=setup.answer_timeout,
        peer_address=peer,
    )


def _one_hard(lab: Lab, setup: Setup, key: bytes, session: bytes, rng: random.Random) -> Run:
    site_a, site_b = lab.site(), lab.site("b")
    server = stun_server(lab)
    bound, mapped = lab.call_in(
        site_b.client_role,
        lambda: asyncio.run(learn_mapped_endpoint(server, Endpoint.of(ANY_V4, 0))),
    )
    opened = threading.Event()
    hard_sent = _Recorder(setup.ports, opened.set)
    easy_sent = _Recorder()
    # Listen through the openers, the easy side's start and its whole spray.
    duration = (
        setup.ports * pacing_gap(setup.side_rate(Side.A))
        + setup.budget * pacing_gap(setup.rate)
        + setup.answer_timeout
        + 2.0
    )
    hard = _SideThread(
        lab,
        site_a.client_role,
        setup,
        lambda: probe_hard(
            _config(lab, setup, Side.A, key=key, session=session, budget=0),
            mapped,
            ports=setup.ports,
            duration=duration,
            keepalive=duration + 1.0,  # one round: the whole search is shorter than a timeout
            local_address=ANY_V4,
            on_send=hard_sent,
        ),
    )
    easy = _SideThread(
        lab,
        site_b.client_role,
        setup,
        lambda: probe_easy(
            _config(lab, setup, Side.B, key=key, session=session, budget=setup.budget),
            site_a.public_address,
            rng,
            port_range=setup.port_range,
            local=bound,
            on_send=easy_sent,
        ),
    )
    with ThreadPoolExecutor(2) as pool:
        hard_future = pool.submit(hard)
        # Spray only once every mapping is open (3. in the module docstring).
        if not opened.wait(SIDE_LIMIT_S):
            hard.stop()
            raise TimeoutError(f"the hard side never sent its {setup.ports} OPENs")
        easy_event = pool.submit(easy).result()
        if not isinstance(easy_event, PairFound):
            hard.stop()  # the search is over; it would listen out its duration
        # After a hit the hard side has its PairFound already (the probe
        # reached it before its ACK came back): it ends by itself.
        try:
            hard_event = hard_future.result(timeout=HARD_GRACE_S)
        except FuturesTimeout:
            hard.stop()
            hard_event = hard_future.result()
    counts = _read_counters(lab)
    return Run(
        setup,
        SideRun(site_a.client_role, hard_event, hard_sent.records(key), counts[site_a.name]),
        SideRun(site_b.client_role, easy_event, easy_sent.records(key), counts[site_b.name]),
        bound,
        mapped,
    )


def _both_hard(lab: Lab, setup: Setup, key: bytes, session: bytes, rng: random.Random) -> Run:
    sites = (lab.site(), lab.site("b"))
    start = time.monotonic() + BOTH_HARD_LEAD_S  # loop.time() is time.monotonic()
    recorders = (_Recorder(), _Recorder())
    threads = [
        _sprayer(
            lab,
            site.client_role,
            setup,
            config=_config(lab, setup, side, key=key, session=session, budget=setup.budget),
            rng=random.Random(rng.random()),
            start=start,
            recorder=recorder,
        )
        for side, site, recorder in zip((Side.A, Side.B), sites, recorders, strict=True)
    ]
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(thread) for thread in threads]
        events = [future.result() for future in futures]
    counts = _read_counters(lab)
    a, b = (
        SideRun(site.client_role, event, recorder.records(key), counts[site.name])
        for site, event, recorder in zip(sites, events, recorders, strict=True)
    )
    return Run(setup, a, b, None, None)


def _sprayer(
    lab: Lab,
    role: str,
    setup: Setup,
    *,
    config: ProberConfig,
    rng: random.Random,
    start: float,
    recorder: _Recorder,
) -> _SideThread:
    """A both-hard side: ``config.budget`` probes from ``setup.ports``
    sockets at random (socket, port) pairs of the peer, from ``start`` on."""

    def make_plan(_: list[Endpoint], now: float) -> SendPlan:
        assert config.peer_address is not None
        return spray_plan(
            config.peer_address,
            setup.port_range,
            config.budget,
            config.rate,
            rng,
            sockets=setup.ports,
            start=max(now, start),
        )

    sockets = [Endpoint.of(ANY_V4, 0)] * setup.ports
    return _SideThread(
        lab, role, setup, lambda: run_prober(config, sockets, make_plan, on_send=recorder)
    )


# --------------------------------------------------------- router counters


def _count_ruleset(toward: str) -> str:
    """Count what a router forwards toward the other site (declare, delete, redeclare)."""
    return "\n".join(
        [
            f"table ip {COUNT_TABLE}",
            f"delete table ip {COUNT_TABLE}",
            f"table ip {COUNT_TABLE} {{",
            "\tchain forward {",
            "\t\ttype filter hook forward priority filter - 10; policy accept;",
            f"\t\tip daddr {toward} meta l4proto udp counter",
            "\t}",
            "}",
            "",
        ]
    )


def _outer_router(lab: Lab, site: str) -> str:
    return lab.site(site).router_roles[0]


def _install_counters(lab: Lab) -> None:
    for site, other in (("", "b"), ("b", "")):
        ruleset = _count_ruleset(str(lab.site(other).public_address))
        lab.exec(_outer_router(lab, site), ["nft", "-f", "-"], input=ruleset, check=True)


def _remove_counters(lab: Lab) -> None:
    for site in ("", "b"):
        lab.exec(_outer_router(lab, site), ["nft", "delete", "table", "ip", COUNT_TABLE])


def _read_counters(lab: Lab) -> dict[str, int]:
    """Site name -> packets its router forwarded toward the other site."""
    counts: dict[str, int] = {}
    for site in ("", "b"):
        argv = ["nft", "-j", "list", "table", "ip", COUNT_TABLE]
        listing = json.loads(lab.exec(_outer_router(lab, site), argv, check=True).stdout)
        counts[site] = sum(
            expr["counter"]["packets"]
            for item in listing["nftables"]
            if "rule" in item
            for expr in item["rule"]["expr"]
            if "counter" in expr
        )
    return counts


def mapped_ports(lab: Lab, site: str = "") -> set[int]:
    """The external UDP ports ``site``'s NAT holds toward the other site: the
    destination ports of its conntrack entries' reply tuples."""
    here, there = (
        str(lab.site(site).public_address),
        str(lab.site("b" if not site else "").public_address),
    )
    listing = lab.exec(_outer_router(lab, site), ["conntrack", "-L", "-p", "udp"], check=True)
    ports = set()
    for line in listing.stdout.splitlines():
        tuples = _CONNTRACK_TUPLE.findall(line)
        if len(tuples) == 2 and tuples[1][:2] == (there, here):
            ports.add(int(tuples[1][3]))
    return ports


#: ``src=A dst=B sport=P dport=Q``: conntrack -L prints the original tuple, then the reply.
_CONNTRACK_TUPLE = re.compile(r"src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)")


# -------------------------------------------------------------- statistics


def binomial_p_value(hits: int, runs: int, p: float) -> float:
    """Exact two-sided binomial test: the chance of an outcome no likelier
    than ``hits`` successes in ``runs`` trials of probability ``p``."""
    pmf = [math.comb(runs, k) * p**k * (1 - p) ** (runs - k) for k in range(runs + 1)]
    observed = pmf[hits] * (1 + 1e-9)  # ties count as "no likelier"
    return min(1.0, math.fsum(q for q in pmf if q <= observed))
