"""Which traversal method connects two peers, decided by simulation.

For a pair of NAT types (:class:`NatType`), each method is tried on a
fresh pair of sites (:func:`natkit.simulations.sites.two_sites`, 10 ms from each
site to the internet), with natkit's cores doing the work:

* **STUN only**: each peer learns its mapped endpoint with natkit's STUN
  client against natkit's STUN server, the two are swapped out of band, and
  both punch at once toward the other's (:mod:`natkit.simulations.punch`).
* **Port mapping**: the row peer's NAT grants a port mapping (what PCP or
  UPnP IGD would), modelled as a static EIM/EIF port on that NAT
  (:meth:`natkit.simulations.nat.Nat.add_static_mapping`); the row peer announces
  that endpoint, the column peer its STUN-mapped one, and both punch. The
  column peer's NAT grants nothing: one mapping is all it takes.
* **Birthday**: each peer's NAT is first classified by natkit's RFC 5780
  classifier (:mod:`natkit.simulations.classification`); a peer whose mapping is
  not endpoint-independent is *hard*. One hard side: the hard peer opens
  k = 256 mappings toward the easy peer's STUN-mapped endpoint and the easy
  peer sprays 2048 probes (99.97 % by the model); both hard: both spray for
  a minute at 100 probes/s (6000 probes each, within the NATs' 120 s
  mapping lifetime). With no hard side there is nothing to search for.
  :class:`BirthdayBudget` holds these numbers.
* **Relay** always works (given UDP to the relay); it is not simulated.

Every run is seeded and deterministic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum
from functools import cache

from natkit.aio.birthday import opener_rounds, spray_seconds
from natkit.birthday.planner import BirthdayScenario, Mode
from natkit.birthday.ports import FULL_RANGE
from natkit.birthday.prober import BirthdayProber, ProberConfig
from natkit.birthday.schedule import DEFAULT_RATE, opener_plan, pacing_gap, spray_plan
from natkit.birthday.wire import Side
from natkit.endpoint import Endpoint
from natkit.probe.report import MappingBehavior as ReportedMapping
from natkit.simulations.classification import simulate_classification
from natkit.simulations.nat import FilteringBehavior, MappingBehavior, NatConfig, PortAllocation
from natkit.simulations.network import SimSocket
from natkit.simulations.punch import PUNCH_ATTEMPTS, PUNCH_INTERVAL, PairRun, direct_plan, run_pair
from natkit.simulations.reflexive import mapped_endpoint, start_stun_server
from natkit.simulations.sites import TwoSites, two_sites

#: One-way delay between each site and the internet.
SITE_DELAY = 0.01
#: The peers' shared secret and session (agreed out of band).
KEY = b"natkit traversal matrix key 0001"
SESSION = b"matrix01"
#: Probe rate of every birthday search, and the hard side's re-open period
#: (natkit's defaults).
RATE = DEFAULT_RATE
KEEPALIVE = 15.0
#: First local port the peers bind.
_FIRST_PORT = 40000


@dataclass(frozen=True, slots=True)
class BirthdayBudget:
    """How hard the birthday method tries."""

    #: One hard side: the mappings the hard peer opens (k)...
    one_hard_ports: int = 256
    #: ...and the easy peer's probes (2048: 99.97 % by the model).
    one_hard_probes: int = 2048
    #: Both hard: sockets per side...
    both_hard_ports: int = 256
    #: ...and probes per side (a minute at 100/s, within a NAT's 120 s
    #: mapping lifetime: every probe's mapping must stay open throughout).
    both_hard_probes: int = 6000

    def one_hard(self) -> BirthdayScenario:
        """The model of the one-hard attempt."""
        return BirthdayScenario(self.one_hard_ports, FULL_RANGE, Mode.ONE_HARD, RATE)

    def both_hard(self) -> BirthdayScenario:
        """The model of the both-hard attempt."""
        return BirthdayScenario(self.both_hard_ports, FULL_RANGE, Mode.BOTH_HARD, RATE)


class NatType(Enum):
    """The rows and columns of the matrix: RFC 4787 mapping x filtering."""

    #: No NAT: the peer holds a public address.
    OPEN = "open"
    #: EIM/EIF.
    FULL_CONE = "full cone"
    #: EIM/ADF.
    RESTRICTED = "restricted"
    #: EIM/APDF.
    PORT_RESTRICTED = "port-restricted"
    #: ADM/APDF, random ports.
    ADDRESS_DEPENDENT = "address-dependent"
    #: APDM/APDF, random ports.
    SYMMETRIC = "symmetric"

    @property
    def config(self) -> NatConfig | None:
        """The simulated NAT (``None``: no NAT)."""
        return _CONFIGS[self]

    @property
    def rfc4787(self) -> str:
        """E.g. ``"EIM/APDF"``, or ``"no NAT"``."""
        config = self.config
        return "no NAT" if config is None else f"{config.mapping.name}/{config.filtering.name}"


_CONFIGS: dict[NatType, NatConfig | None] = {
    NatType.OPEN: None,
    NatType.FULL_CONE: NatConfig.full_cone(),
    NatType.RESTRICTED: NatConfig.restricted_cone(),
    NatType.PORT_RESTRICTED: NatConfig.port_restricted_cone(),
    NatType.ADDRESS_DEPENDENT: NatConfig(
        MappingBehavior.ADM, FilteringBehavior.APDF, PortAllocation.RANDOM
    ),
    NatType.SYMMETRIC: NatConfig.symmetric(),
}


class Method(Enum):
    """How two peers get a direct path, cheapest first."""

    STUN = "STUN only"
    PORT_MAPPING = "port mapping"
    BIRTHDAY_ONE_HARD = "birthday, one hard"
    BIRTHDAY_BOTH_HARD = "birthday, both hard"
    RELAY = "relay"


class Outcome(Enum):
    CONNECTED = "connected"
    FAILED = "failed"
    #: The method does not apply to this pair (birthday with no hard side).
    NOT_APPLICABLE = "n/a"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One method tried on one pair."""

    method: Method
    outcome: Outcome
    #: Virtual seconds from the start of punching or probing until both
    #: peers had the path (``None`` unless connected).
    seconds: float | None = None
    #: PROBEs each side sent.
    probes: tuple[int, int] = (0, 0)
    #: The model's success probability for this attempt (birthday only).
    model: float | None = None

    @property
    def connected(self) -> bool:
        return self.outcome is Outcome.CONNECTED


@dataclass(frozen=True, slots=True)
class PairResult:
    """Every method tried on the pair (row ``a``, column ``b``)."""

    a: NatType
    b: NatType
    stun: Attempt
    port_mapping: Attempt
    birthday: Attempt

    @property
    def without_port_mapping(self) -> Method:
        """The first method that connected: STUN, then birthday, else relay."""
        if self.stun.connected:
            return Method.STUN
        if self.birthday.connected:
            return self.birthday.method
        return Method.RELAY


@cache
def is_hard(nat_type: NatType) -> bool:
    """What natkit's classifier says: a mapping that is not endpoint-independent."""
    report = simulate_classification(nat_type.config).report
    return report.mapping is not ReportedMapping.EIM


def _attempt(method: Method, run: PairRun, model: float | None = None) -> Attempt:
    outcome = Outcome.CONNECTED if run.connected else Outcome.FAILED
    return Attempt(method, outcome, run.seconds, run.probes_sent, model)


def _sites(a: NatType, b: NatType, seed: int) -> tuple[TwoSites, random.Random]:
    rng = random.Random(seed)
    sites = two_sites(a.config, b.config, rng=random.Random(rng.getrandbits(64)), delay=SITE_DELAY)
    start_stun_server(sites)
    return sites, rng


def _stun(sock: SimSocket, rng: random.Random) -> Endpoint:
    endpoint = mapped_endpoint(sock, random.Random(rng.getrandbits(64)))
    if endpoint is None:
        raise AssertionError(f"{sock} got no STUN answer on a lossless network")
    return endpoint


def _punch(sites: TwoSites, sockets: list[SimSocket], targets: list[Endpoint]) -> PairRun:
    """Both peers punch at once, each toward what it was told about the other."""
    now = sites.loop.now
    cores = []
    for side, sock, target in zip((Side.A, Side.B), sockets, targets, strict=True):
        config = ProberConfig(KEY, SESSION, side, budget=PUNCH_ATTEMPTS)
        cores.append((BirthdayProber(config, [sock.local], direct_plan(target, now), now), [sock]))
    answer_wait = ProberConfig(KEY, SESSION, Side.A).answer_timeout
    return run_pair(sites.loop, cores, PUNCH_ATTEMPTS * PUNCH_INTERVAL + 2 * answer_wait)


def attempt_stun(a: NatType, b: NatType, seed: int = 1) -> Attempt:
    """Both punch toward the other's STUN-mapped endpoint."""
    sites, rng = _sites(a, b, seed)
    sockets = [site.bind(1, _FIRST_PORT)[0] for site in sites.sites]
    mapped = [_stun(sock, rng) for sock in sockets]
    return _attempt(Method.STUN, _punch(sites, sockets, [mapped[1], mapped[0]]))


def attempt_port_mapping(a: NatType, b: NatType, seed: int = 1) -> Attempt:
    """The row peer's NAT grants a port mapping; then both punch."""
    sites, rng = _sites(a, b, seed)
    sockets = [site.bind(1, _FIRST_PORT)[0] for site in sites.sites]
    nat = sites.a.nat
    if nat is None:
        announced = sockets[0].local  # a public host needs no mapping
    else:
        announced = nat.add_static_mapping(sockets[0].local, None, sites.loop.now)
    peer = _stun(sockets[1], rng)
    return _attempt(Method.PORT_MAPPING, _punch(sites, sockets, [peer, announced]))


def attempt_birthday(
    a: NatType, b: NatType, seed: int = 1, budget: BirthdayBudget = BirthdayBudget()
) -> Attempt:
    """One-hard or both-hard birthday probing, by what the classifier says."""
    hard = (is_hard(a), is_hard(b))
    if hard == (False, False):
        return Attempt(Method.BIRTHDAY_ONE_HARD, Outcome.NOT_APPLICABLE)
    if all(hard):
        return _both_hard(a, b, seed, budget)
    return _one_hard(a, b, seed, budget, hard_is_a=hard[0])


def _one_hard(
    a: NatType, b: NatType, seed: int, budget: BirthdayBudget, *, hard_is_a: bool
) -> Attempt:
    sites, rng = _sites(a, b, seed)
    hard_site, easy_site = (sites.a, sites.b) if hard_is_a else (sites.b, sites.a)
    hard_side, easy_side = (Side.A, Side.B) if hard_is_a else (Side.B, Side.A)
    ports, probes = budget.one_hard_ports, budget.one_hard_probes
    hard_sockets = hard_site.bind(ports, _FIRST_PORT)
    easy_socket = easy_site.bind(1, _FIRST_PORT)[0]
    # Each learns its public address (and the easy one its endpoint) by STUN.
    hard_ip = _stun(hard_sockets[0], rng).address
    easy_mapped = _stun(easy_socket, rng)
    now = sites.loop.now
    # As `natkit birthday probe` does: the easy side waits for the openers,
    # the hard side re-opens every 15 s until 10 s after the spray's end.
    start_delay = ports * pacing_gap(RATE) + 2 * SITE_DELAY
    duration = start_delay + spray_seconds(probes, RATE) + 10.0
    rounds = opener_rounds(duration, KEEPALIVE)
    openers = opener_plan(easy_mapped, ports, RATE, start=now, keepalive=KEEPALIVE, rounds=rounds)
    spray = spray_plan(hard_ip, FULL_RANGE, probes, RATE, rng, start=now + start_delay)
    hard_config = ProberConfig(KEY, SESSION, hard_side, budget=0, peer_address=easy_mapped.address)
    easy_config = ProberConfig(KEY, SESSION, easy_side, budget=probes, peer_address=hard_ip)
    hard = BirthdayProber(hard_config, [s.local for s in hard_sockets], openers, now)
    easy = BirthdayProber(easy_config, [easy_socket.local], spray, now)
    pair = [(hard, hard_sockets), (easy, [easy_socket])]
    if not hard_is_a:
        pair.reverse()  # the run reports site A first
    run = run_pair(sites.loop, pair, duration + 5)
    model = budget.one_hard().success_probability(probes)
    return _attempt(Method.BIRTHDAY_ONE_HARD, run, model)


def _both_hard(a: NatType, b: NatType, seed: int, budget: BirthdayBudget) -> Attempt:
    sites, rng = _sites(a, b, seed)
    ports, probes = budget.both_hard_ports, budget.both_hard_probes
    sockets = [site.bind(ports, _FIRST_PORT) for site in sites.sites]
    public = [_stun(socks[0], rng).address for socks in sockets]
    now = sites.loop.now
    cores = []
    for side, socks, peer_ip in zip((Side.A, Side.B), sockets, reversed(public), strict=True):
        config = ProberConfig(KEY, SESSION, side, budget=probes, peer_address=peer_ip)
        plan = spray_plan(peer_ip, FULL_RANGE, probes, RATE, rng, sockets=ports, start=now)
        cores.append((BirthdayProber(config, [s.local for s in socks], plan, now), socks))
    run = run_pair(sites.loop, cores, probes * pacing_gap(RATE) + 5)
    model = budget.both_hard().success_probability(probes)
    return _attempt(Method.BIRTHDAY_BOTH_HARD, run, model)


def pair_seed(a: NatType, b: NatType, seed: int) -> int:
    """A seed of the pair's own, so cells are independent draws (and stable)."""
    return random.Random(f"{seed}/{a.name}/{b.name}").getrandbits(63)


def evaluate_pair(
    a: NatType, b: NatType, seed: int = 1, budget: BirthdayBudget = BirthdayBudget()
) -> PairResult:
    """Every method on the pair (row ``a``, column ``b``)."""
    seed = pair_seed(a, b, seed)
    return PairResult(
        a,
        b,
        attempt_stun(a, b, seed),
        attempt_port_mapping(a, b, seed),
        attempt_birthday(a, b, seed, budget),
    )


def traversal_matrix(
    types: tuple[NatType, ...] = tuple(NatType),
    seed: int = 1,
    budget: BirthdayBudget = BirthdayBudget(),
) -> dict[tuple[NatType, NatType], PairResult]:
    """Every ordered pair of ``types``."""
    return {(a, b): evaluate_pair(a, b, seed, budget) for a in types for b in types}
