"""Which protocol maps: the port mapper's decision table, as pure data.

All three protocols are asked at once; only one may map, because two
mappings of one port through one gateway fight (miniupnpd lets the newer
take the port over). Preference is PCP, then NAT-PMP, then UPnP IGD. Each
protocol is in one :class:`Phase`; reading them in preference order, the
first one that is not out of play decides (:data:`TABLE`):

* out of play (not wanted, or done without a mapping): look at the next;
* still waiting for its answer, or mapping: wait for it;
* available (answered, could map): map with it;
* mapped: it won.

PCP is mapping from the start (its MAP request is its probe). Its waiting
ends at the probe deadline, or ``fallback_grace`` after NAT-PMP answered,
whichever is first; the port mapper then marks it done (no answer) and the
table lets NAT-PMP map. Those deadlines are the port mapper's; the table
only reads the phases.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingType
from dataclasses import dataclass
from enum import Enum

from natkit.portmap.mapping import MappingProtocol

#: Most preferred first.
PREFERENCE = (MappingProtocol.PCP, MappingProtocol.NAT_PMP, MappingProtocol.UPNP_IGD)


class Phase(Enum):
    """Where one protocol stands in the race."""

    NOT_WANTED = "not wanted"
    #: Its probe (or, PCP, its MAP request) is out; no answer yet.
    WAITING = "waiting"
    #: It answered and could map.
    AVAILABLE = "available"
    MAPPING = "mapping"
    MAPPED = "mapped"
    #: Finished without a mapping: refused, unsupported, no answer, abandoned.
    DONE = "done"


class Verdict(Enum):
    """What a phase means for the protocols after it."""

    PASS = "look at the next"
    WAIT = "wait"
    MAP = "map with this one"
    WON = "this one won"


#: The decision table.
TABLE: dict[Phase, Verdict] = {
    Phase.NOT_WANTED: Verdict.PASS,
    Phase.DONE: Verdict.PASS,
    Phase.WAITING: Verdict.WAIT,
    Phase.MAPPING: Verdict.WAIT,
    Phase.AVAILABLE: Verdict.MAP,
    Phase.MAPPED: Verdict.WON,
}

#: Phases that may still change by themselves.
OPEN = frozenset({Phase.WAITING, Phase.MAPPING})


@dataclass(frozen=True, slots=True)
class Decision:
    """What the port mapper does next."""

    #: Start mapping with this protocol.
    map: MappingProtocol | None = None
    #: The one that holds the mapping, once one does.
    winner: MappingProtocol | None = None
    #: The race is over: the result can be reported.
    settled: bool = False
    #: Protocols still open that the result will not wait for.
    cut_short: tuple[MappingProtocol, ...] = ()


def decide(phases: MappingType[MappingProtocol, Phase], *, wait_for_all: bool = False) -> Decision:
    """Read ``phases`` through :data:`TABLE` (module docstring).

    Once a protocol won, the race is settled at once, cutting the protocols
    still open short, unless ``wait_for_all`` (for reports of what every
    protocol answered): then when none is open any more.
    """
    for protocol in PREFERENCE:
        verdict = TABLE[phases.get(protocol, Phase.NOT_WANTED)]
        if verdict is Verdict.PASS:
            continue
        if verdict is Verdict.WAIT:
            return Decision()
        if verdict is Verdict.MAP:
            return Decision(map=protocol)
        still_open = tuple(p for p in PREFERENCE if phases.get(p) in OPEN)
        if wait_for_all:
            return Decision(winner=protocol, settled=not still_open)
        return Decision(winner=protocol, settled=True, cut_short=still_open)
    return Decision(settled=True)
