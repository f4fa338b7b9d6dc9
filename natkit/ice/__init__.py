"""Connect: authenticated connectivity checks, RTT-ranked path selection, signalling.

A sans-IO core (:class:`ConnectAgent`, one per node, one session per peer)
that takes local candidates (natkit's gatherer), the peers' candidates
through signalling, and datagrams; and gives datagrams to send, one timer,
and events (:mod:`natkit.ice.events`): the path to use per peer, kept
alive, switched when clearly better or lost. See :mod:`natkit.ice.agent`
for the API, :mod:`natkit.ice.config` for the timings and their
defaults, :mod:`natkit.ice.signals` for the signalling messages.

Modules, one job each:

=============== ==============================================================
``agent``       the core: sockets, demultiplexing, pacing, the timer heap
``session``     one peer: signalling state, check list, selection, keepalive
``pairs``       candidate pairs, their states, RTT; pair formation and pruning
``selection``   ranking and hysteresis (pure functions)
``checks``      STUN Binding checks on the wire (RFC 8445 §7)
``candidates``  kinds, priorities, foundations, bases (sockets and relays)
``signals``     signal messages and their strict bytes codec
``events``      what the core reports
``config``      timings and limits
``relays``      TURN allocations as relayed bases (one per node, nearest server)
``report``      the traversal report peers exchange, and its strict codec
``ladder``      the escalation ladder: direct, port mapping, birthday, relay
``birthday``    birthday probing coordinated through signalling
``explain``     "why relayed?": ``explain()`` and live explanations
``mux``         the agent and helper cores (the gatherer) on the same sockets
=============== ==============================================================

The asyncio node on top (sockets, gathering, signalling) is
:mod:`natkit.aio.connect`.
"""

from natkit.ice.agent import ConnectAgent
from natkit.ice.candidates import Relay
from natkit.ice.config import ConnectConfig
from natkit.ice.counters import ConnectCounters, ConnectStats
from natkit.ice.events import (
    BirthdayFinished,
    BirthdaySocketsReleased,
    BirthdaySocketsWanted,
    BirthdayStarted,
    ConnectEvent,
    EscalationDecided,
    LossReason,
    PairChecked,
    Path,
    PathLost,
    PathSelected,
    PeerReportReceived,
    PeerRestarted,
    PeerUnreachable,
    RelayAllocated,
    RelayedDataReceived,
    RelayFailed,
    RelayStreamIdle,
    Role,
    RoleChanged,
    SignalReady,
    UnreachableReason,
)
from natkit.ice.explain import BirthdayStatus, Explanation, Observed, Outcome, explain
from natkit.ice.ladder import (
    Action,
    BirthdayPlan,
    Decision,
    Expect,
    Ladder,
    LadderConfig,
    Sides,
    Step,
    plan_ladder,
)
from natkit.ice.pairs import PairState, PairStatus
from natkit.ice.relays import RelayPolicy, RelayServer
from natkit.ice.report import (
    BirthdayCapability,
    RelayInUse,
    ReportDecodeError,
    TraversalReport,
    decode_report,
    encode_report,
)
from natkit.ice.signals import (
    Acknowledgement,
    Announcement,
    BirthdayDone,
    BirthdayOffer,
    BirthdayReady,
    BirthdayRole,
    CandidatesAdded,
    SignalCandidate,
    SignalDecodeError,
    SignalFailure,
    SignalMessage,
    decode_signal,
    encode_signal,
)

__all__ = [
    "Acknowledgement",
    "Action",
    "Announcement",
    "BirthdayCapability",
    "BirthdayDone",
    "BirthdayFinished",
    "BirthdayOffer",
    "BirthdayPlan",
    "BirthdayReady",
    "BirthdayRole",
    "BirthdaySocketsReleased",
    "BirthdaySocketsWanted",
    "BirthdayStarted",
    "BirthdayStatus",
    "CandidatesAdded",
    "ConnectAgent",
    "ConnectConfig",
    "ConnectCounters",
    "ConnectEvent",
    "ConnectStats",
    "Decision",
    "EscalationDecided",
    "Expect",
    "Explanation",
    "Ladder",
    "LadderConfig",
    "LossReason",
    "Observed",
    "Outcome",
    "PairChecked",
    "PairState",
    "PairStatus",
    "Path",
    "PathLost",
    "PathSelected",
    "PeerReportReceived",
    "PeerRestarted",
    "PeerUnreachable",
    "Relay",
    "RelayAllocated",
    "RelayFailed",
    "RelayInUse",
    "RelayPolicy",
    "RelayServer",
    "RelayStreamIdle",
    "RelayedDataReceived",
    "ReportDecodeError",
    "Role",
    "RoleChanged",
    "Sides",
    "SignalCandidate",
    "SignalDecodeError",
    "SignalFailure",
    "SignalMessage",
    "SignalReady",
    "Step",
    "TraversalReport",
    "UnreachableReason",
    "decode_report",
    "decode_signal",
    "encode_report",
    "encode_signal",
    "explain",
    "plan_ladder",
]
