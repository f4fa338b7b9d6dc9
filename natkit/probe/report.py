"""The classification report: verdicts, and the observations behind them.

One flat, frozen report (after tailscale's netcheck ``Report``). Verdict
enums carry their JSON spelling as values. "Not tested" (``None``) is kept
apart from "tested, could not tell" (``UNKNOWN``), and every verdict has a
reason string saying which observations decided it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, TypeGuard

from natkit.endpoint import Endpoint
from natkit.nat64 import Nat64Discovery, Nat64Status, nat64_to_dict
from natkit.probe.hops import Hop

#: Version of the JSON document ``natkit classify --json`` prints. Keys are
#: only ever added; a change in meaning bumps this number.
SCHEMA_VERSION = 1


class MappingBehavior(Enum):
    """RFC 4787 §4.1 mapping behaviour."""

    EIM = "EIM"
    ADM = "ADM"
    APDM = "APDM"
    UNKNOWN = "unknown"


class FilteringBehavior(Enum):
    """RFC 4787 §5 filtering behaviour."""

    EIF = "EIF"
    ADF = "ADF"
    APDF = "APDF"
    UNKNOWN = "unknown"


class PortAllocation(Enum):
    """How the NAT picks external ports (RFC 4787 §4.2)."""

    PRESERVING = "preserving"
    SEQUENTIAL = "sequential"
    RANDOM = "random"
    UNKNOWN = "unknown"


class RunStatus(Enum):
    """Could the run reach a server at all?"""

    OK = "ok"
    #: TCP reached the server, UDP did not: UDP is blocked on this path.
    UDP_BLOCKED = "udp_blocked"
    #: Neither UDP nor TCP got an answer: nothing could be determined.
    UNREACHABLE = "unreachable"


class ProbeName(StrEnum):
    """Which test a probe is; the value is its name in the report's observations.

    A ``StrEnum``, so code that compared the former plain strings
    (``observation.test == "filtering-II"``) keeps working."""

    BINDING = "binding"
    MAPPING_ALT_ADDRESS = "mapping-II"
    MAPPING_ALT_ADDRESS_PORT = "mapping-III"
    FILTERING_CONTROL = "filtering-I"
    FILTERING_CHANGE_IP_PORT = "filtering-II"
    FILTERING_CHANGE_PORT = "filtering-III"
    HAIRPIN_CONTROL = "hairpin-control"
    HAIRPIN = "hairpin"
    ALLOCATION = "allocation"


class Verdict(StrEnum):
    """What a reason in :attr:`ClassificationReport.reasons` explains; the
    value is its key in the JSON ``reasons`` (a ``StrEnum``, so
    ``reasons["mapping"]`` keeps working)."""

    UDP_BLOCKED = "udp_blocked"
    BEHIND_NAT = "behind_nat"
    MAPPING = "mapping"
    FILTERING = "filtering"
    HAIRPIN = "hairpin"
    PORT_ALLOCATION = "port_allocation"
    CGNAT = "cgnat"
    DOUBLE_NAT = "double_nat"
    PATH = "path"
    #: Added by the driver that ran NAT64 discovery (``natkit classify``).
    NAT64 = "nat64"
    #: Added with ``--lifetime`` (RFC 5780 §4.6).
    BINDING_LIFETIME = "binding_lifetime"


class ProbeOutcome(Enum):
    """How one test ended."""

    ANSWERED = "answered"
    #: No answer, and the loss measured on working paths makes that conclusive.
    SILENT = "silent"
    #: No answer, but too much loss (or too little time) to call it.
    INCONCLUSIVE = "inconclusive"
    NOT_RUN = "not run"


@dataclass(frozen=True, slots=True)
class Answer:
    """One response (or, for hairpinning, our own request coming back)."""

    source: Endpoint
    rtt: float
    mapped_address: Endpoint | None = None
    #: MAPPED-ADDRESS when the server also sent it (differs under a rewriting ALG).
    plain_mapped_address: Endpoint | None = None
    response_origin: Endpoint | None = None
    other_address: Endpoint | None = None
    error_code: int | None = None


@dataclass(frozen=True, slots=True)
class ProbeObservation:
    """The raw record of one test: what was sent, what came back."""

    test: ProbeName
    local: Endpoint
    destination: Endpoint
    change_ip: bool
    change_port: bool
    attempts: int
    outcome: ProbeOutcome
    answers: tuple[Answer, ...] = ()
    #: P(every attempt was lost although an answer was sent), for silent tests.
    false_negative_probability: float | None = None

    @property
    def first(self) -> Answer | None:
        return self.answers[0] if self.answers else None


def usable_other_address(other: Endpoint | None, server: Endpoint) -> TypeGuard[Endpoint]:
    """Whether a server's OTHER-ADDRESS can run the RFC 5780 tests: a second
    address of the server's own family. A client's socket reaches one family
    only, so an alternate of the other family could never answer filtering
    test II (RFC 5780 §4.4), and its silence would read as ADF."""
    return (
        other is not None
        and other.address != server.address
        and other.address.version == server.address.version
    )


@dataclass(frozen=True, slots=True)
class ServerReport:
    address: Endpoint
    answered: bool
    #: As the server sent it, usable or not (:attr:`rfc5780` says).
    other_address: Endpoint | None = None
    software: str | None = None

    @property
    def rfc5780(self) -> bool:
        return usable_other_address(self.other_address, self.address)


@dataclass(frozen=True, slots=True)
class ClassificationReport:
    """Everything ``natkit classify`` found out."""

    status: RunStatus
    udp_blocked: bool
    behind_nat: bool | None
    mapping: MappingBehavior
    filtering: FilteringBehavior
    hairpin: bool | None
    port_allocation: PortAllocation
    port_allocation_delta: int | None
    mapped_address: Endpoint | None
    local_address: Endpoint | None
    alg_detected: bool | None
    servers: tuple[ServerReport, ...]
    rtt: float | None
    #: Fraction of attempts lost on paths that answered (round trip).
    loss_estimate: float | None
    duration: float
    reasons: dict[Verdict, str] = field(default_factory=dict)
    observations: tuple[ProbeObservation, ...] = ()
    tcp_mapped_address: Endpoint | None = None
    #: RFC 5780 §4.6 (opt-in): longest idle time a mapping was seen to survive...
    binding_lifetime: float | None = None
    #: ...and the shortest after which it was gone.
    binding_lifetime_expired_after: float | None = None
    #: A carrier-grade NAT (RFC 6598) is on the path; ``None``: no evidence
    #: either way (``natkit.probe.layering``; reason in ``reasons``).
    cgnat: bool | None = None
    #: More than one NAT is on the path; ``None``: no evidence either way.
    double_nat: bool | None = None
    #: NAT64 discovery (RFC 7050), when the driver ran it.
    nat64: Nat64Discovery | None = None
    #: The routers toward the first server, by TTL, up to the first public
    #: one or the server (:mod:`natkit.probe.hops`); ``None``: not probed.
    path: tuple[Hop, ...] | None = None

    @property
    def determined(self) -> bool:
        """False when no server answered at all (``natkit classify`` exits 2)."""
        return self.status is not RunStatus.UNREACHABLE

    @property
    def nat_type(self) -> str:
        """The classic RFC 3489 name, for people who think in cones."""
        return classic_nat_type(self)


def classic_nat_type(report: ClassificationReport) -> str:
    if report.status is RunStatus.UDP_BLOCKED:
        return "UDP blocked"
    if report.status is RunStatus.UNREACHABLE:
        return "unknown"
    if report.behind_nat is False:
        return {
            FilteringBehavior.EIF: "open internet",
            FilteringBehavior.UNKNOWN: "no NAT",
        }.get(report.filtering, "no NAT, firewalled")
    if report.mapping in (MappingBehavior.ADM, MappingBehavior.APDM):
        return "symmetric"
    if report.mapping is MappingBehavior.EIM:
        return {
            FilteringBehavior.EIF: "full cone",
            FilteringBehavior.ADF: "restricted cone",
            FilteringBehavior.APDF: "port-restricted cone",
        }.get(report.filtering, "cone (filtering unknown)")
    return "unknown"


def _endpoint(value: Endpoint | None) -> str | None:
    return None if value is None else str(value)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


def hop_to_dict(hop: Hop) -> dict[str, Any]:
    """One entry of the JSON ``path``: ``address`` and ``kind`` are ``null``
    for a TTL nothing answered."""
    kind = hop.kind
    return {
        "ttl": hop.ttl,
        "address": None if hop.address is None else str(hop.address),
        "kind": None if kind is None else kind.value,
        "reply": hop.reply.value,
    }


def report_to_dict(report: ClassificationReport) -> dict[str, Any]:
    """The versioned JSON document (schema ``natkit.classify`` v1)."""
    return {
        "schema": "natkit.classify",
        "schema_version": SCHEMA_VERSION,
        "status": report.status.value,
        "udp_blocked": report.udp_blocked,
        "behind_nat": report.behind_nat,
        "mapping": report.mapping.value,
        "filtering": report.filtering.value,
        "hairpin": report.hairpin,
        "port_allocation": report.port_allocation.value,
        "port_allocation_delta": report.port_allocation_delta,
        "mapped_address": _endpoint(report.mapped_address),
        "local_address": _endpoint(report.local_address),
        "tcp_mapped_address": _endpoint(report.tcp_mapped_address),
        "nat_type": report.nat_type,
        "alg_detected": report.alg_detected,
        "binding_lifetime": report.binding_lifetime,
        "binding_lifetime_expired_after": report.binding_lifetime_expired_after,
        "cgnat": report.cgnat,
        "double_nat": report.double_nat,
        "path": None if report.path is None else [hop_to_dict(hop) for hop in report.path],
        "nat64": nat64_to_dict(
            report.nat64 or Nat64Discovery(Nat64Status.NOT_TESTED, reason="not tested")
        ),
        "rtt_ms": _ms(report.rtt),
        "loss_estimate": None if report.loss_estimate is None else round(report.loss_estimate, 4),
        "duration_ms": _ms(report.duration),
        "servers": [
            {
                "address": str(s.address),
                "answered": s.answered,
                "rfc5780": s.rfc5780,
                "other_address": _endpoint(s.other_address),
                "software": s.software,
            }
            for s in report.servers
        ],
        "reasons": {verdict.value: text for verdict, text in report.reasons.items()},
        "observations": [
            {
                "test": o.test.value,
                "local": str(o.local),
                "destination": str(o.destination),
                "change_ip": o.change_ip,
                "change_port": o.change_port,
                "attempts": o.attempts,
                "outcome": o.outcome.value,
                "false_negative_probability": o.false_negative_probability,
                "answers": [
                    {
                        "source": str(a.source),
                        "rtt_ms": _ms(a.rtt),
                        "mapped_address": _endpoint(a.mapped_address),
                        "response_origin": _endpoint(a.response_origin),
                        "other_address": _endpoint(a.other_address),
                        "error_code": a.error_code,
                    }
                    for a in o.answers
                ],
            }
            for o in report.observations
        ],
    }
