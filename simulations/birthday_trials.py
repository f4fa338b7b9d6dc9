"""Birthday-paradox searches, packet by packet, with natkit's real prober.

Each trial runs :class:`~natkit.birthday.prober.BirthdayProber` on both
peers of :func:`~natkit.simulations.sites.two_sites`, behind simulated RFC 4787
NATs, and records *when the search first succeeded*, in probes, so that one
trial gives the whole curve P(hit within n) for every n up to the budget.

One hard side (:func:`run_one_hard`)
------------------------------------
Site A is the hard side, behind an APDM/APDF NAT that allocates ports at
random over the whole range. Site B is the easy side, behind an EIM NAT
with APDF filtering: a port-restricted cone, the Linux/netfilter default
and the most common home router. (With EIF the hard side's openers would
get straight through, the prober would answer the first one directly, and
there would be no birthday search to measure.)

1. B learns its mapped endpoint E from natkit's STUN client and server.
2. A's prober sends one OPEN from each of its k sockets to E. The hard NAT
   makes k mappings with random ports, each admitting E only; B's NAT drops
   the OPENs (B has not sent to those ports).
3. B's prober sprays PROBEs from E's socket to distinct random ports of A's
   address. A probe to one of the k ports passes A's NAT; A's prober answers
   with ACKs, which pass B's NAT because B just sent to that very endpoint.
4. The trial's value is the position of the probe whose ACK ended B's run:
   the first probe that hit. The hard side must have answered from the
   mapping toward E (checked).

Both sides hard (:func:`run_both_hard`)
---------------------------------------
Both sites are behind APDM/APDF NATs with random, *shared* ports (Linux
style: a port may carry mappings toward different remotes; see
:mod:`natkit.simulations.nat`). Both spray from k sockets with natkit's
:func:`~natkit.birthday.schedule.spray_plan`, at the same rate from the
same instant, and every probe opens a mapping that the other side's probes
can hit. The first side to receive a PROBE records the sender's probe
number i (its sequence number: a sprayer sends nothing but probes until
its run ends) and its own probe number j that had opened the cell; the
trial's value is max(i, j), the number of probes each side had sent when
the colliding pair was complete, which is the model's n.

What is made cheap, and why it changes nothing measured
-------------------------------------------------------
Every datagram still goes through the real cores and the real simulator;
only virtual time and bookkeeping are cut.

* **Rate and delay.** Probes go at natkit's maximum rate (1000/s) over
  links without delay. The model counts probes, not seconds; rate and delay
  only decide how many extra probes leave before the winning ACK returns,
  and those come after the first hit. Mapping lifetimes (120 s) outlast
  every trial, as the model assumes.
* **One hard site, many one-hard trials** (``trials_per_site``; 1 = a fresh
  pair of sites per trial). The k mappings are opened once, by a prober
  sending OPENs; each later trial runs a fresh easy prober, with a fresh
  random spray, and a fresh hard prober that only listens on the same
  sockets (an empty plan). This is exact, not approximate: for *any* k
  ports inside the sprayed range, a uniformly random spray of distinct
  ports first hits at probe n with the model's probability
  ``C(N-k, n-1)/C(N, n-1) * k/(N-n+1)``, so which ports are open does not
  change the distribution and trials sharing them are still independent.
  Sharing saves k OPENs per trial, half of all datagrams.
* **The spray in stages.** Building a 2048-probe plan costs about as much as
  sending 150 probes, yet half the trials hit within 174. So the easy side
  draws its random sequence of distinct ports a stage at a time (N/k
  probes, then twice as many each time, up to the budget) and runs one
  prober per stage; a stage that ends without a hit is followed by the next
  part of the *same* sequence. The probes sent are the ones a single
  2048-probe plan would have sent, in the same order.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from natkit.birthday.events import BirthdayEvent, PairFound
from natkit.birthday.planner import BirthdayScenario, Mode
from natkit.birthday.ports import FULL_RANGE, PortRange
from natkit.birthday.prober import BirthdayProber, ProberConfig
from natkit.birthday.schedule import (
    MAX_RATE,
    PlannedSend,
    SendPlan,
    opener_plan,
    pacing_gap,
    spray_plan,
)
from natkit.birthday.wire import Kind, PacketError, Side, parse_packet
from natkit.endpoint import Endpoint, IPAddress
from natkit.simulations.driver import CoreDriver
from natkit.simulations.errors import SimulationError
from natkit.simulations.nat import FilteringBehavior, MappingBehavior, NatConfig, PortAllocation
from natkit.simulations.reflexive import mapped_endpoint, start_stun_server
from natkit.simulations.sites import two_sites

#: The peers' shared secret (any 16+ bytes; both simulated peers know it).
KEY = b"natkit simulations shared key 01"
#: Links have no delay, so an ACK arrives at the instant its probe is sent;
#: this is how long a prober waits for it after its last send anyway.
ANSWER_WAIT = 0.1
#: Virtual seconds added to every wait, so no deadline is met exactly.
_MARGIN = 1.0
#: First local port of the sockets a site binds.
_FIRST_PORT = 40000


def hard_nat(port_range: PortRange, *, sharing: bool = False) -> NatConfig:
    """APDM/APDF with random ports over ``port_range``: the "hard" NAT."""
    return NatConfig(
        MappingBehavior.APDM,
        FilteringBehavior.APDF,
        PortAllocation.RANDOM,
        port_range=(port_range.low, port_range.high),
        port_sharing=sharing,
    )


def easy_nat() -> NatConfig:
    """EIM/APDF with port preservation: the "easy" NAT, a port-restricted cone."""
    return NatConfig(MappingBehavior.EIM, FilteringBehavior.APDF, PortAllocation.PRESERVING)


@dataclass(frozen=True, slots=True)
class OneHardSetup:
    """What one-hard trials vary."""

    #: k: sockets, hence mappings, the hard side opens.
    ports: int = 256
    #: Most probes the easy side sends in a trial (the curve ends there).
    budget: int = 2048
    #: The hard NAT's allocation range, which is also the range sprayed.
    port_range: PortRange = FULL_RANGE
    rate: float = MAX_RATE
    #: One-hard trials run on one pair of sites (see the module doc).
    trials_per_site: int = 32

    def __post_init__(self) -> None:
        if not 1 <= self.ports <= self.port_range.size:
            raise SimulationError(f"{self.ports} mappings do not fit in {self.port_range}")
        if not 1 <= self.budget <= self.port_range.size:
            raise SimulationError(f"budget {self.budget} is outside 1..{self.port_range.size}")
        if self.trials_per_site < 1:
            raise SimulationError(f"trials_per_site must be >= 1, not {self.trials_per_site}")

    def scenario(self) -> BirthdayScenario:
        """The model of these trials (``natkit.birthday``'s planner)."""
        return BirthdayScenario(self.ports, self.port_range, Mode.ONE_HARD, self.rate)

    def stages(self) -> tuple[int, ...]:
        """How many probes each stage of a spray sends (they sum to the budget)."""
        size = max(1, math.ceil(self.port_range.size / self.ports))
        sizes: list[int] = []
        left = self.budget
        while left > 0:
            sizes.append(min(size, left))
            left -= sizes[-1]
            size *= 2
        return tuple(sizes)


@dataclass(frozen=True, slots=True)
class BothHardSetup:
    """What both-hard trials vary."""

    #: Range of both NATs, and the range each side sprays.
    port_range: PortRange
    #: Most probes each side sends.
    budget: int
    #: k: sockets per side.
    ports: int = 16
    rate: float = MAX_RATE

    def __post_init__(self) -> None:
        if self.ports < 1 or not 1 <= self.budget <= self.ports * self.port_range.size:
            raise SimulationError(
                f"budget {self.budget} does not fit {self.ports} sockets x {self.port_range}"
            )
        if self.ports > self.port_range.size:
            # A NAT gives mappings toward one remote endpoint distinct ports,
            # so k sockets aiming at the same remote port need k ports.
            raise SimulationError(f"{self.ports} sockets need more than {self.port_range}")

    def scenario(self) -> BirthdayScenario:
        """The model of these trials (``natkit.birthday``'s planner)."""
        return BirthdayScenario(self.ports, self.port_range, Mode.BOTH_HARD, self.rate)


class _EndingProbe:
    """Notes the datagram that ended a prober's run, to read its sequence number.

    An ``on_receive`` observer of the prober's driver: the last datagram that
    arrived while the prober was still running is the one that ended it
    (when a datagram did); only that one is parsed, and only when asked.
    """

    def __init__(self, core: BirthdayProber) -> None:
        self.core = core
        self._last: bytes | None = None

    def __call__(self, now: float, data: bytes, remote: Endpoint, socket: int) -> None:
        if not self.core.finished:
            self._last = data

    @property
    def sequence(self) -> int | None:
        """The sequence number of the peer's PROBE that ended the run, if one did."""
        if self._last is None or not self.core.finished:
            return None
        try:
            packet = parse_packet(self._last, self.core.config.key)
        except PacketError:
            return None
        return packet.sequence if packet.kind is Kind.PROBE else None


def _session(number: int) -> bytes:
    # A session per prober run: a datagram from an earlier run on the same
    # sockets could never count (none is left in flight, but cheap to be sure).
    return struct.pack("!Q", number)


def _finished(core: BirthdayProber) -> Callable[[], bool]:
    """A ``run_until`` predicate: ``core``'s run has ended."""
    return lambda: core.finished


def _only_event(driver: CoreDriver[BirthdayEvent]) -> BirthdayEvent:
    if len(driver.events) != 1:
        raise SimulationError(f"a prober run did not end exactly once: {driver.events}")
    event = driver.events.pop()
    return event


# -- one hard side -----------------------------------------------------------------


def run_one_hard(setup: OneHardSetup, seed: int, trials: int) -> list[int | None]:
    """``trials`` one-hard trials; each value is the probe that first hit (1-based),
    or ``None`` when the budget ran out first. Same seed, same values."""
    rng = random.Random(seed)
    results: list[int | None] = []
    while len(results) < trials:
        results.extend(_OneHardSite(setup, rng).run(trials - len(results)))
    return results


class _Spray:
    """A uniformly random sequence of distinct ports of a range, drawn as needed.

    Each port is uniform over those not yet drawn, so the sequence has the
    distribution of ``rng.sample(range, n)`` (what natkit's spray_plan
    uses) however it is cut into stages.
    """

    def __init__(self, port_range: PortRange, rng: random.Random) -> None:
        self._low = port_range.low
        self._size = port_range.size
        self._rng = rng
        self._drawn: set[int] = set()

    def take(self, count: int) -> list[int]:
        if len(self._drawn) + count > self._size:
            raise SimulationError(f"cannot draw {count} more distinct ports")
        low, size, draw, drawn = self._low, self._size, self._rng.random, self._drawn
        ports: list[int] = []
        while len(ports) < count:
            port = low + int(draw() * size)
            if port not in drawn:
                drawn.add(port)
                ports.append(port)
        return ports


def _probe_plan(target: IPAddress, ports: Sequence[int], rate: float, start: float) -> SendPlan:
    """PROBEs from socket 0 to ``ports`` in order, paced as natkit's plans are."""
    gap = pacing_gap(rate)
    at = start
    sends: list[PlannedSend] = []
    for port in ports:
        sends.append(PlannedSend(at, 0, port))
        at = at + gap  # accumulated, as schedule.spray_plan does
    return SendPlan(Kind.PROBE, target, tuple(sends))


class _OneHardSite:
    """One pair of sites: the k mappings opened once, then trials on them."""

    def __init__(self, setup: OneHardSetup, rng: random.Random) -> None:
        self.setup = setup
        self.rng = rng
        config = hard_nat(setup.port_range)
        self.sites = two_sites(config, easy_nat(), rng=random.Random(rng.getrandbits(64)))
        self.loop = self.sites.loop
        start_stun_server(self.sites)
        self.hard_sockets = self.sites.a.bind(setup.ports, _FIRST_PORT)
        self.easy_socket = self.sites.b.bind(1, _FIRST_PORT)[0]
        mapped = mapped_endpoint(self.easy_socket, random.Random(rng.getrandbits(64)))
        if mapped is None:
            raise SimulationError("the easy side got no STUN answer")
        self.easy_mapped = mapped
        gap = pacing_gap(setup.rate)
        # The longest a trial can take: every stage, each waiting for ACKs.
        self.longest = setup.budget * gap + len(setup.stages()) * (ANSWER_WAIT + gap) + _MARGIN
        if 2 * self.longest >= config.mapping_timeout:
            raise SimulationError("a trial would outlive the hard NAT's mappings")
        self.expiry = self.loop.now + config.mapping_timeout
        self.runs = 0
        hard_locals = [s.local for s in self.hard_sockets]
        openers = opener_plan(mapped, setup.ports, setup.rate, start=self.loop.now)
        self.spray_start = openers.sends[-1].at + gap
        self.hard = BirthdayProber(self._hard_config(), hard_locals, openers, self.loop.now)
        self.hard_driver: CoreDriver[BirthdayEvent] = CoreDriver(self.hard, self.hard_sockets)
        self.hard_driver.flush()
        # The easy side gets a driver per prober (one socket: cheap).
        self.easy_driver: CoreDriver[BirthdayEvent] | None = None

    def _hard_config(self) -> ProberConfig:
        setup = self.setup
        self.runs += 1
        # The hard side listens through the longest trial after its last OPEN.
        return ProberConfig(
            KEY,
            _session(self.runs),
            Side.A,
            rate=setup.rate,
            budget=0,
            answer_timeout=self.longest,
            peer_address=self.sites.b.public_ip,
        )

    def run(self, wanted: int) -> list[int | None]:
        """Up to ``wanted`` trials (fewer once the mappings would time out)."""
        results: list[int | None] = []
        for index in range(min(wanted, self.setup.trials_per_site)):
            if index and self.loop.now + 2 * self.longest >= self.expiry:
                break  # the openers would time out in the NAT during this trial
            if index:
                # The mappings are open: a listening hard prober will do.
                now = self.loop.now
                listener = SendPlan(Kind.OPEN, self.easy_mapped.address, ())
                locals_ = [s.local for s in self.hard_sockets]
                self.hard = BirthdayProber(self._hard_config(), locals_, listener, now)
                self.hard_driver.install(self.hard)
                self.hard_driver.flush()
                self.spray_start = now
            results.append(self._trial())
        return results

    def _trial(self) -> int | None:
        setup, loop = self.setup, self.loop
        spray = _Spray(setup.port_range, self.rng)
        target = self.sites.a.public_ip
        sent = 0
        for stage in setup.stages():
            plan = _probe_plan(target, spray.take(stage), setup.rate, self.spray_start)
            config = ProberConfig(
                KEY,
                _session(self.runs),
                Side.B,
                rate=setup.rate,
                budget=stage,
                answer_timeout=ANSWER_WAIT,
                peer_address=target,
            )
            easy = BirthdayProber(config, [self.easy_socket.local], plan, loop.now)
            driver = self._install_easy(easy)
            loop.run_until(_finished(easy), timeout=self.longest)
            event = _only_event(driver)
            if isinstance(event, PairFound):
                return sent + self._hit_position(event, plan)
            sent += stage
            self.spray_start = loop.now
        return None

    def _install_easy(self, core: BirthdayProber) -> CoreDriver[BirthdayEvent]:
        if self.easy_driver is not None:
            self.easy_driver.close()
        driver: CoreDriver[BirthdayEvent] = CoreDriver(core, [self.easy_socket])
        driver.flush()
        self.easy_driver = driver
        return driver

    def _hit_position(self, event: PairFound, plan: SendPlan) -> int:
        """Where in ``plan`` the probe that the ACK answered was; checks the hard side."""
        loop = self.loop
        loop.run_until(_finished(self.hard), timeout=self.longest)
        hard_event = _only_event(self.hard_driver)
        if not isinstance(hard_event, PairFound) or hard_event.pair.remote != self.easy_mapped:
            raise SimulationError(f"the easy side found {event.pair}, the hard side {hard_event}")
        # Let the spare ACK copies land (on the finished prober) before the
        # sockets change hands.
        loop.run_until_idle(limit=self.longest)
        if event.via is not Kind.ACK:
            raise SimulationError(f"the easy side ended by {event.via.name}, not ACK")
        port = event.pair.remote.port
        position = next((i for i, s in enumerate(plan.sends, start=1) if s.port == port), None)
        if position is None:
            raise SimulationError(f"the easy side never probed port {port}")
        return position


# -- both sides hard ------------------------------------------------------------------


def run_both_hard(setup: BothHardSetup, seed: int, trials: int) -> list[int | None]:
    """``trials`` both-hard trials; each value is the probes per side at the
    first hit (see the module doc), or ``None`` when both budgets ran out."""
    rng = random.Random(seed)
    return [_both_hard_trial(setup, rng, number) for number in range(trials)]


def _both_hard_trial(setup: BothHardSetup, rng: random.Random, number: int) -> int | None:
    nat = hard_nat(setup.port_range, sharing=True)
    sites = two_sites(nat, nat, rng=random.Random(rng.getrandbits(64)))
    loop = sites.loop
    timeout = setup.budget * pacing_gap(setup.rate) + 2 * ANSWER_WAIT + _MARGIN
    runs: list[tuple[_EndingProbe, SendPlan, CoreDriver[BirthdayEvent]]] = []
    for side, me, peer in ((Side.A, sites.a, sites.b), (Side.B, sites.b, sites.a)):
        config = ProberConfig(
            KEY,
            _session(number),
            side,
            rate=setup.rate,
            budget=setup.budget,
            answer_timeout=ANSWER_WAIT,
            peer_address=peer.public_ip,
        )
        sockets = me.bind(setup.ports, _FIRST_PORT)
        plan = spray_plan(
            peer.public_ip,
            setup.port_range,
            setup.budget,
            setup.rate,
            rng,
            sockets=setup.ports,
            start=loop.now,
        )
        core = BirthdayProber(config, [s.local for s in sockets], plan, loop.now)
        ending = _EndingProbe(core)
        runs.append((ending, plan, CoreDriver(core, sockets, on_receive=ending)))
    for _, _, driver in runs:
        driver.flush()
    first, second = (ending.core for ending, _, _ in runs)
    loop.run_until(lambda: first.finished and second.finished, timeout=timeout)
    return _both_hard_value(_collisions(runs))


def _collisions(
    runs: Sequence[tuple[_EndingProbe, SendPlan, CoreDriver[BirthdayEvent]]],
) -> Iterator[tuple[int, int] | None]:
    """Per side: (the sender's probe number, ours) if a PROBE ended its run, else None."""
    for ending, plan, driver in runs:
        event = _only_event(driver)
        if not isinstance(event, PairFound):
            yield None
            continue
        if event.via is not Kind.PROBE:
            yield None  # our probe was answered: the other side saw the collision
            continue
        sender_probe = ending.sequence
        if sender_probe is None:
            raise SimulationError("a PROBE ended the run but was not seen")
        # Our probe that opened the cell went from this socket to that port.
        pair = event.pair
        own = next(
            (
                position
                for position, send in enumerate(plan.sends, start=1)
                if send.socket == pair.socket and send.port == pair.remote.port
            ),
            None,
        )
        if own is None:
            raise SimulationError(f"no probe of ours opened {pair}")
        yield sender_probe, own


def _both_hard_value(collisions: Iterator[tuple[int, int] | None]) -> int | None:
    """min over the detected collisions of max(i, j): probes per side when complete."""
    values = [max(pair) for pair in collisions if pair is not None]
    return min(values) if values else None
