"""The escalation ladder: how to reach a peer, decided from both sides' reports, as data.

:func:`plan_ladder` reads two :class:`~natkit.ice.report.TraversalReport`
values and returns a :class:`Ladder`: one :class:`Decision` per step, in
order, each saying whether the step is tried or skipped, what is expected
of it, why (one clause for people) and the numbers behind it. The agent
acts on the decisions (it starts birthday probing when that step says
``TRY``), logs them (:class:`~natkit.ice.events.EscalationDecided`),
and :mod:`natkit.ice.explain` turns them into "why relayed?".

The steps, cheapest first:

1. **direct**: the candidates' connectivity checks; always tried. Expected
   to fail when UDP is blocked on either side, when both NATs map per
   destination (ADM/APDM, "hard"), or when one is hard and the other
   filters by address and port (APDF): then the port the hard side's NAT
   opens toward the peer is not the one the peer learnt and its filter
   drops the other's checks (the traversal matrix of ``simulations/``
   finds exactly this).
2. **port mapping**: a mapped candidate (PCP, NAT-PMP, UPnP IGD) is an
   endpoint-independent port on the gateway, so either side having one
   makes the pair direct. Tried whenever a side has one.
3. **birthday**: when direct and port mapping are expected to fail, both
   sides do birthday probing, UDP passes, and the odds are good enough:
   one hard side facing an EIM one (one-hard mode), or both hard (only on a
   port range small enough). natkit's planner
   (:mod:`natkit.birthday.planner`) gives the success probability for the
   budget at the rate cap; the step is tried when that is at least
   ``LadderConfig.min_success`` and the expected run fits
   ``LadderConfig.max_seconds``.
4. **relay**: the floor; tried whenever a side has a relay that it can
   reach (UDP blocked: only over TCP or TLS).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from natkit.birthday.planner import BirthdayScenario, Mode, budget_odds
from natkit.birthday.ports import PortRange
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.ice.report import RelayInUse, TraversalReport
from natkit.probe.report import FilteringBehavior, MappingBehavior, PortAllocation
from natkit.turn.config import TurnTransport

#: The range assumed when a report does not know its NAT's (1024-65535:
#: Linux and most NATs never hand out well-known ports).
DEFAULT_PORT_RANGE = PortRange(1024, 65535)


class Step(Enum):
    """The rungs of the ladder, cheapest first."""

    DIRECT = "direct"
    PORT_MAPPING = "port_mapping"
    BIRTHDAY = "birthday"
    RELAY = "relay"


class Action(Enum):
    """Whether a step is tried."""

    TRY = "try"
    SKIP = "skip"


class Expect(Enum):
    """What the reports say a step will do."""

    WORKS = "works"
    FAILS = "fails"
    #: The reports cannot tell (something unknown), or it is a matter of
    #: chance (birthday: see its ``probability``).
    UNKNOWN = "unknown"


class Hard(Enum):
    """Which side is hard in a birthday plan, seen from the ladder's first side."""

    LOCAL = "local"
    REMOTE = "remote"
    BOTH = "both"


@dataclass(frozen=True, slots=True)
class BirthdayPlan:
    """The numbers of a birthday attempt (per side)."""

    mode: Mode
    hard: Hard
    #: Mappings the hard side opens (each side's sockets when both are hard).
    ports: int
    #: The hard NAT's port range the model assumes.
    port_range: PortRange
    #: Probes the sprayer sends at most (each side's when both are hard).
    probes: int
    #: Probes per second (the lower of the two caps).
    rate: float
    #: The planner's P(hit within ``probes``).
    probability: float
    #: Expected seconds to the hit, given a hit (``None``: none possible).
    expected_seconds: float | None
    #: Expected seconds the run takes, hit or not.
    run_seconds: float


@dataclass(frozen=True, slots=True)
class Decision:
    """One step of the ladder."""

    step: Step
    action: Action
    expect: Expect
    #: One clause for people ("site B filters by address and port (APDF)").
    reason: str
    #: The birthday step's numbers (also when skipped for its odds).
    birthday: BirthdayPlan | None = None
    #: The port-mapping step's mapped candidate.
    mapped: Endpoint | None = None
    #: The relay step's server and transport.
    relay: str | None = None
    transport: TurnTransport | None = None


@dataclass(frozen=True, slots=True)
class Ladder:
    """Every step's decision, in order."""

    decisions: tuple[Decision, ...]

    def decision(self, step: Step) -> Decision:
        for decision in self.decisions:
            if decision.step is step:
                return decision
        raise LocalProtocolError(f"the ladder has no {step.value} step")

    @property
    def predicted(self) -> Step | None:
        """The first step expected to connect (birthday: when tried), else
        the first tried whose outcome is unknown, else ``None``."""
        for decision in self.decisions:
            if decision.expect is Expect.WORKS:
                return decision.step
        for decision in self.decisions:
            if decision.action is Action.TRY and decision.expect is Expect.UNKNOWN:
                return decision.step
        return None


@dataclass(frozen=True, slots=True)
class LadderConfig:
    """When birthday probing is worth it."""

    #: Least success probability (per the planner) to try it.
    min_success: float = 0.5
    #: Longest expected run to try it (seconds).
    max_seconds: float = 120.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_success <= 1.0 or not self.max_seconds > 0:
            raise LocalProtocolError(f"impossible ladder config {self}")


@dataclass(frozen=True, slots=True)
class Sides:
    """How sentences name the two sides: "site A"/"site B" for a prediction,
    "this site"/"the peer's site" in a live session."""

    local: str = "site A"
    remote: str = "site B"

    def name(self, local: bool) -> str:
        return self.local if local else self.remote


_NAT_WORDS = {
    MappingBehavior.EIM: "EIM",
    MappingBehavior.ADM: "ADM",
    MappingBehavior.APDM: "APDM",
}
_ALLOCATION_WORDS = {
    PortAllocation.RANDOM: "random ports",
    PortAllocation.SEQUENTIAL: "sequential ports",
    PortAllocation.PRESERVING: "preserved ports",
}
_PROTOCOL_WORDS = {"pcp": "PCP", "nat-pmp": "NAT-PMP", "upnp-igd": "UPnP IGD"}


def describe_nat(report: TraversalReport) -> str:
    """ "APDM with random ports", "EIM (APDF)", "no NAT", "unknown NAT"."""
    if report.behind_nat is False:
        return "no NAT"
    mapping = _NAT_WORDS.get(report.mapping)
    if mapping is None:
        return "unknown NAT"
    if report.hard:
        allocation = _ALLOCATION_WORDS.get(report.port_allocation)
        return f"{mapping} with {allocation}" if allocation else mapping
    if report.filtering is FilteringBehavior.UNKNOWN:
        return mapping
    return f"{mapping} ({report.filtering.value})"


def plan_ladder(
    local: TraversalReport | None,
    remote: TraversalReport | None,
    config: LadderConfig | None = None,
    sides: Sides | None = None,
) -> Ladder:
    """The ladder for two sides' reports (``None``: that side sent none)."""
    config = config or LadderConfig()
    sides = sides or Sides()
    a = local or TraversalReport()
    b = remote or TraversalReport()
    direct = _direct(a, b, sides)
    mapping = _port_mapping(a, b, sides, direct)
    birthday = _birthday(a, b, config, sides, direct=direct, mapping=mapping)
    relay = _relay(a, b, sides)
    return Ladder((direct, mapping, birthday, relay))


# -- the steps ------------------------------------------------------------------------


def _blocked(a: TraversalReport, b: TraversalReport, sides: Sides) -> str | None:
    if a.udp_blocked and b.udp_blocked:
        return "UDP blocked at both sites"
    if a.udp_blocked or b.udp_blocked:
        return f"UDP blocked at {sides.name(bool(a.udp_blocked))}"
    return None


#: One side's NAT as the direct step sees it.
Nat = tuple[MappingBehavior, FilteringBehavior]
_M, _F = MappingBehavior, FilteringBehavior
_HARD_MAPPINGS = (_M.ADM, _M.APDM)
_KNOWN_MAPPINGS = (_M.EIM, _M.ADM, _M.APDM)
_KNOWN_FILTERINGS = (_F.EIF, _F.ADF, _F.APDF)


def _fails_directly(a: Nat, b: Nat) -> bool:
    """Whether checks between NATs ``a`` and ``b`` cannot find a path.

    A decision table, derived by running natkit's connect agents through the
    simulator's RFC 4787 NATs for all 81 combinations (the ladder's tests do
    it again): a side whose mapping depends on the destination ("hard")
    facing address-and-port filtering fails; two hard sides fail unless one
    of them maps per address only (ADM) and either of the two filters nothing
    (EIF): then the peer-reflexive endpoints each side learns stay the ones
    the other's NAT lets in."""
    for hard, other in ((a, b), (b, a)):
        if hard[0] in _HARD_MAPPINGS and other[1] is _F.APDF:
            return True
    if a[0] in _HARD_MAPPINGS and b[0] in _HARD_MAPPINGS:
        for adm, other in ((a, b), (b, a)):
            if adm[0] is _M.ADM and _F.EIF in (adm[1], other[1]):
                return False
        return True
    return False


def _possible(report: TraversalReport) -> list[Nat]:
    """Every NAT the report allows (an unknown verdict: all of them)."""
    if report.behind_nat is False:
        mappings: tuple[MappingBehavior, ...] = (_M.EIM,)
    elif report.mapping is _M.UNKNOWN:
        mappings = _KNOWN_MAPPINGS
    else:
        mappings = (report.mapping,)
    if report.filtering is _F.UNKNOWN:
        filterings: tuple[FilteringBehavior, ...] = (
            (_F.EIF,) if report.behind_nat is False else _KNOWN_FILTERINGS
        )
    else:
        filterings = (report.filtering,)
    return [(m, f) for m in mappings for f in filterings]


def _direct(a: TraversalReport, b: TraversalReport, sides: Sides) -> Decision:
    blocked = _blocked(a, b, sides)
    if blocked is not None:
        return Decision(Step.DIRECT, Action.TRY, Expect.FAILS, blocked)
    verdicts = {_fails_directly(x, y) for x in _possible(a) for y in _possible(b)}
    if verdicts == {True}:
        return Decision(Step.DIRECT, Action.TRY, Expect.FAILS, _why_not(a, b, sides))
    if verdicts == {False}:
        if a.behind_nat is False and b.behind_nat is False:
            reason = "neither side is behind a NAT"
        else:
            reason = (
                f"{sides.local} {describe_nat(a)}, {sides.remote} {describe_nat(b)}: punching works"
            )
        return Decision(Step.DIRECT, Action.TRY, Expect.WORKS, reason)
    unknown = [sides.name(side is a) for side in (a, b) if len(_possible(side)) > 1]
    reason = (
        f"the NATs at {' and '.join(unknown)} are not classified"
        if len(unknown) == 2
        else f"the NAT at {unknown[0]} is not classified"
    )
    return Decision(Step.DIRECT, Action.TRY, Expect.UNKNOWN, reason)


def _why_not(a: TraversalReport, b: TraversalReport, sides: Sides) -> str:
    """Why the table says no, in the words of the reports."""
    for hard, other, hard_is_local in ((a, b, True), (b, a, False)):
        if hard.hard and other.filtering is _F.APDF and not other.hard:
            return (
                f"{sides.name(hard_is_local)} {describe_nat(hard)} and"
                f" {sides.name(not hard_is_local)} filters by address and port (APDF)"
            )
    if describe_nat(a) == describe_nat(b):
        return f"both sides {describe_nat(a)}"
    return f"{sides.local} {describe_nat(a)}, {sides.remote} {describe_nat(b)}"


def _port_mapping(
    a: TraversalReport, b: TraversalReport, sides: Sides, direct: Decision
) -> Decision:
    blocked = _blocked(a, b, sides)
    for side, local in ((a, True), (b, False)):
        if side.mapped is not None and blocked is None:
            protocol = side.port_mapping.value if side.port_mapping is not None else ""
            how = f" by {_PROTOCOL_WORDS[protocol]}" if protocol else ""
            reason = f"{sides.name(local)}'s gateway maps a port{how} ({side.mapped})"
            return Decision(Step.PORT_MAPPING, Action.TRY, Expect.WORKS, reason, mapped=side.mapped)
    if blocked is not None:
        return Decision(Step.PORT_MAPPING, Action.SKIP, Expect.FAILS, blocked)
    offered = [(side, local) for side, local in ((a, True), (b, False)) if side.port_mapping]
    if offered:
        side, local = offered[0]
        assert side.port_mapping is not None
        protocol = _PROTOCOL_WORDS[side.port_mapping.value]
        reason = f"{sides.name(local)}'s gateway offers {protocol} but granted no mapping"
    else:
        reason = "no port mapping on either gateway"
    return Decision(Step.PORT_MAPPING, Action.SKIP, Expect.FAILS, reason)


def _birthday(
    a: TraversalReport,
    b: TraversalReport,
    config: LadderConfig,
    sides: Sides,
    *,
    direct: Decision,
    mapping: Decision,
) -> Decision:
    def skip(reason: str, plan: BirthdayPlan | None = None) -> Decision:
        return Decision(Step.BIRTHDAY, Action.SKIP, Expect.FAILS, reason, birthday=plan)

    if direct.expect is not Expect.FAILS:
        return skip("not needed: direct checks may work")
    if mapping.expect is Expect.WORKS:
        return skip("not needed: a mapped port makes the pair direct")
    blocked = _blocked(a, b, sides)
    if blocked is not None:
        return skip(f"birthday probing needs UDP ({blocked})")
    missing = [sides.name(side is a) for side in (a, b) if side.birthday is None]
    if missing:
        verb = "does" if len(missing) == 1 else "do"
        return skip(f"{' and '.join(missing)} {verb} no birthday probing")
    if not (a.hard or b.hard):
        return skip("no side maps per destination: nothing to search for")
    plan = _plan(a, b)
    if plan is None:
        hard = sides.name(a.hard)
        easy = sides.name(not a.hard)
        return skip(
            f"{hard} maps per destination but {easy} is not EIM: no fixed endpoint to open toward"
        )
    numbers = _numbers(plan)
    if plan.probability < config.min_success:
        return skip(f"{numbers}, below {percent(config.min_success)}", plan)
    if plan.run_seconds > config.max_seconds:
        return skip(f"{numbers}, but the run exceeds {config.max_seconds:g} s", plan)
    return Decision(Step.BIRTHDAY, Action.TRY, Expect.UNKNOWN, numbers, birthday=plan)


def _plan(a: TraversalReport, b: TraversalReport) -> BirthdayPlan | None:
    assert a.birthday is not None
    assert b.birthday is not None
    rate = float(min(a.birthday.rate, b.birthday.rate))
    if a.hard and b.hard:
        ports = min(a.birthday.ports, b.birthday.ports)
        probes = min(a.birthday.probes, b.birthday.probes)
        port_range = min(
            (r.port_range or DEFAULT_PORT_RANGE for r in (a, b)), key=lambda r: -r.size
        )
        mode, hard = Mode.BOTH_HARD, Hard.BOTH
    else:
        hard_report, easy = (a, b) if a.hard else (b, a)
        if easy.mapping is not MappingBehavior.EIM and easy.behind_nat is not False:
            return None
        assert hard_report.birthday is not None
        assert easy.birthday is not None
        port_range = hard_report.port_range or DEFAULT_PORT_RANGE
        ports = min(hard_report.birthday.ports, port_range.size)
        probes = min(easy.birthday.probes, port_range.size)
        mode, hard = Mode.ONE_HARD, Hard.LOCAL if a.hard else Hard.REMOTE
    scenario = BirthdayScenario(ports, port_range, mode, rate)
    limit = scenario.max_probes
    if limit is not None:
        probes = min(probes, limit)
    result = budget_odds(scenario, probes)
    return BirthdayPlan(
        mode=mode,
        hard=hard,
        ports=ports,
        port_range=port_range,
        probes=probes,
        rate=rate,
        probability=result.success_probability,
        expected_seconds=result.expected_seconds,
        run_seconds=result.expected_run_seconds,
    )


def _numbers(plan: BirthdayPlan) -> str:
    who = "both sides hard" if plan.hard is Hard.BOTH else "one hard side"
    return (
        f"{who}, {plan.ports:,} mappings in {plan.port_range.size:,} ports,"
        f" {plan.probes:,} probes at {plan.rate:g}/s: expected success"
        f" {percent(plan.probability)}"
    )


def percent(probability: float) -> str:
    """64 %, 99.97 %, 0.8 % (enough digits to tell it from 0 and 100)."""
    value = probability * 100
    if value >= 99.5 and value < 100:
        digits = 2
        while round(value, digits) >= 100 and digits < 6:
            digits += 1
        return f"{value:.{digits}f} %"
    if value < 1 and value > 0:
        return f"{value:.1g} %" if value < 0.1 else f"{value:.1f} %"
    return f"{value:.0f} %"


def _usable(report: TraversalReport) -> RelayInUse | None:
    """The first relay ``report``'s side can reach (UDP blocked: over TCP or TLS)."""
    for relay in report.relays:
        if not report.udp_blocked or relay.transport is not TurnTransport.UDP:
            return relay
    return None


def _relay(a: TraversalReport, b: TraversalReport, sides: Sides) -> Decision:
    usable = {True: _usable(a), False: _usable(b)}
    blocked = {True: bool(a.udp_blocked), False: bool(b.udp_blocked)}
    # A relayed path needs one side's allocation, which the other side reaches
    # over UDP or through its own allocation (relay to relay). The side with
    # blocked UDP is the interesting one to name.
    order = (False, True) if blocked[False] and not blocked[True] else (True, False)
    for local in order:
        relay = usable[local]
        if relay is not None and (not blocked[not local] or usable[not local] is not None):
            return Decision(
                Step.RELAY,
                Action.TRY,
                Expect.WORKS,
                f"relayed over {relay.transport.value.upper()}",
                relay=relay.name,
                transport=relay.transport,
            )
    if a.relays or b.relays:
        reason = "no relay both sides can reach (UDP is blocked: a relay over TCP or TLS is needed)"
        return Decision(Step.RELAY, Action.SKIP, Expect.FAILS, reason)
    return Decision(Step.RELAY, Action.SKIP, Expect.FAILS, "no relay configured on either side")
