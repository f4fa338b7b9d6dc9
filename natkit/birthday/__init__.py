"""Birthday-paradox hole punching through hard (APDM, "symmetric") NATs.

When a NAT gives every destination a new random port, the port STUN reports
is useless to the peer. Instead the hard side opens many mappings toward
the easy side (k sockets, one packet each), and the easy side probes random
ports of the hard side's IP: by the birthday paradox a probe soon lands on
one of the k. With both sides hard, both spray and the search space squares.

Modules, one job each:

* :mod:`~natkit.birthday.model`: the urn probabilities, exact, in log space;
* :mod:`~natkit.birthday.planner`: scenarios, what is assumed, and the
  :class:`Estimate` (success probability, expected time, probes for p);
* :mod:`~natkit.birthday.wire`: the authenticated 40-byte probe packet;
* :mod:`~natkit.birthday.schedule`: send plans as plain data, pacing;
* :mod:`~natkit.birthday.prober`: the sans-IO core that carries a plan out;
* :mod:`~natkit.birthday.events`: what the core reports.

``natkit.aio.birthday`` runs the core on real sockets.
"""

from natkit.birthday.events import (
    BirthdayDropReason,
    BirthdayEvent,
    ExhaustReason,
    PairFound,
    ProberStats,
    SearchExhausted,
    WinningPair,
)
from natkit.birthday.planner import BirthdayScenario, Estimate, Mode, Sampling, estimate
from natkit.birthday.ports import PortRange
from natkit.birthday.prober import BirthdayProber, ProberConfig
from natkit.birthday.schedule import (
    DEFAULT_RATE,
    MAX_RATE,
    PlannedSend,
    SendPlan,
    max_sends_in_window,
    opener_plan,
    pacing_gap,
    spray_plan,
)
from natkit.birthday.wire import BirthdayRole, Kind, Packet, PacketError, PacketFailure, Side

__all__ = [
    "DEFAULT_RATE",
    "MAX_RATE",
    "BirthdayDropReason",
    "BirthdayEvent",
    "BirthdayProber",
    "BirthdayRole",
    "BirthdayScenario",
    "Estimate",
    "ExhaustReason",
    "Kind",
    "Mode",
    "Packet",
    "PacketError",
    "PacketFailure",
    "PairFound",
    "PlannedSend",
    "PortRange",
    "ProberConfig",
    "ProberStats",
    "Sampling",
    "SearchExhausted",
    "SendPlan",
    "Side",
    "WinningPair",
    "estimate",
    "max_sends_in_window",
    "opener_plan",
    "pacing_gap",
    "spray_plan",
]
