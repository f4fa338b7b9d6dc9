"""Candidates: every address at which a peer might reach one local socket.

The types of candidate gathering and its report (``natkit candidates``),
after ICE's candidates (RFC 8445 §5.1.1) with two kinds ICE has no name
for: *mapped* (a port mapping a gateway granted, RFC 6887/6886/UPnP) and
*nat64* (the public IPv4 address and port a NAT64 gives this host's IPv6
socket, learnt by STUN through the NAT64 prefix).

Every candidate says where it came from (an interface, a server, a
protocol), the local socket behind it (its *base*), and the round-trip
time measured on the way. The report keeps what every server answered, so
servers that disagree about the mapped address are shown, not hidden; the
JSON document is versioned like ``natkit classify``'s (keys are only ever
added; a change of meaning bumps :data:`SCHEMA_VERSION`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from natkit.endpoint import Endpoint, Family, IPAddress
from natkit.gather.host import ClatDetection
from natkit.nat64 import Nat64Discovery, nat64_to_dict
from natkit.probe.layering import NatLayering

#: Version of the JSON document ``natkit candidates --json`` prints.
SCHEMA_VERSION = 1


class CandidateKind(Enum):
    """Where a candidate address comes from."""

    #: An address of one of this host's interfaces.
    HOST = "host"
    #: What a STUN server saw this socket as (server-reflexive, RFC 8445 §5.1.1.2).
    SRFLX = "srflx"
    #: A port mapping the gateway granted (PCP, NAT-PMP, UPnP IGD).
    MAPPED = "mapped"
    #: The public IPv4 endpoint a NAT64 gives this host's IPv6 socket.
    NAT64 = "nat64"
    #: Configured by the user (a manual port forward, a known public address).
    STATIC = "static"
    #: Learnt from a connectivity check's source address (RFC 8445 §7.2.5.3.1, §7.3.1.3).
    PEER_REFLEXIVE = "prflx"
    #: A relayed transport address on a TURN server (RFC 8656).
    RELAY = "relay"


class CandidateTransport(Enum):
    """How a candidate is reached; TCP and TLS ones only carry relayed or
    TCP traffic (RFC 6544), so a UDP tunnel cannot use them directly."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


class PathKind(Enum):
    """How a server was reached."""

    DIRECT = "direct"
    #: Through a NAT64: an IPv4 server at its address synthesised in a prefix.
    NAT64 = "nat64"


class ServerOutcome(Enum):
    """What one server did."""

    ANSWERED = "answered"
    #: It sent an error response (e.g. 420, 400).
    ERROR_RESPONSE = "error_response"
    #: A success response without (XOR-)MAPPED-ADDRESS.
    NO_ADDRESS = "no_address"
    #: No answer before the retransmissions ran out.
    TIMED_OUT = "timed_out"
    #: No answer yet when gathering stopped waiting (others had answered).
    CUT_OFF = "cut_off"
    #: A TCP/TLS connection could not be made (refused, reset, handshake).
    UNREACHABLE = "unreachable"


def family_name(family: Family) -> str:
    """``ipv4`` or ``ipv6`` (the JSON spelling)."""
    return "ipv4" if family is Family.IPV4 else "ipv6"


@dataclass(frozen=True, slots=True)
class Candidate:
    """One address a peer may send to, and the local socket it reaches."""

    kind: CandidateKind
    #: Where peers send.
    address: Endpoint
    #: The local socket (address and port) the traffic arrives at.
    base: Endpoint | None
    #: What produced it: an interface name, a server, a protocol, ``static``.
    source: str
    transport: CandidateTransport = CandidateTransport.UDP
    #: Round-trip time to the source (servers, gateways), seconds.
    rtt: float | None = None
    #: Every server that reported this address, ``source`` first.
    sources: tuple[str, ...] = ()
    #: The NAT64 prefix a ``nat64`` candidate was learnt through.
    prefix: ipaddress.IPv6Network | None = None
    #: RFC 8445 §5.1.2.1 priority (higher is preferred).
    priority: int = 0

    @property
    def family(self) -> Family:
        return self.address.family


@dataclass(frozen=True, slots=True)
class ServerObservation:
    """What one server said to one local socket over one transport."""

    #: The server as the user named it.
    server: str
    #: Its address (an IPv4 one for the NAT64 path).
    address: Endpoint
    #: Where the request went (the synthesised IPv6 address on the NAT64 path).
    destination: Endpoint
    transport: CandidateTransport
    path: PathKind
    outcome: ServerOutcome
    #: The local socket the request left from (``None``: no connection).
    base: Endpoint | None = None
    mapped: Endpoint | None = None
    rtt: float | None = None
    transmissions: int = 0
    prefix: ipaddress.IPv6Network | None = None
    #: MAPPED-ADDRESS differed from XOR-MAPPED-ADDRESS (a rewriting ALG).
    alg: bool | None = None
    software: str | None = None
    detail: str = ""

    @property
    def answered(self) -> bool:
        return self.outcome is ServerOutcome.ANSWERED and self.mapped is not None


class DisagreementKind(Enum):
    """How servers disagreed about one socket's mapped address."""

    #: Same public address, different ports: the mapping depends on the
    #: destination (RFC 4787 ADM/APDM); srflx candidates are per server.
    PORT = "port"
    #: Different public addresses: pooled addresses or several exits.
    ADDRESS = "address"


@dataclass(frozen=True, slots=True)
class MappedDisagreement:
    """Servers that saw one socket as different endpoints."""

    base: Endpoint | None
    path: PathKind
    kind: DisagreementKind
    #: (server, the mapped endpoint it reported), in the order asked.
    mapped: tuple[tuple[str, Endpoint], ...]
    reason: str


class PortMapStatus(Enum):
    """What the port-mapping step came to."""

    MAPPED = "mapped"
    #: A gateway answered but granted nothing (refused, unsupported).
    NO_MAPPING = "no_mapping"
    #: Nothing answered PCP, NAT-PMP or UPnP (or there is no IPv4 gateway).
    NO_GATEWAY = "no_gateway"
    FAILED = "failed"
    NOT_TESTED = "not_tested"


@dataclass(frozen=True, slots=True)
class PortMapObservation:
    """What the port mapper found, as far as candidates care."""

    status: PortMapStatus
    #: The mapped endpoint (the candidate), when one was granted.
    external: Endpoint | None = None
    #: The local endpoint the gateway forwards to.
    base: Endpoint | None = None
    #: The external address the gateway reported, with or without a mapping.
    gateway_external: IPAddress | None = None
    #: ``pcp``, ``nat-pmp``, ``upnp-igd``.
    protocol: str | None = None
    #: Seconds from the start of port mapping to the grant (or the end).
    elapsed: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CandidateReport:
    """Everything ``natkit candidates`` found out."""

    candidates: tuple[Candidate, ...]
    servers: tuple[ServerObservation, ...]
    disagreements: tuple[MappedDisagreement, ...]
    nat64: Nat64Discovery
    clat: ClatDetection
    layering: NatLayering
    port_mapping: PortMapObservation
    #: True: UDP got no answer but TCP/TLS did; ``None``: nothing answered.
    udp_blocked: bool | None
    duration: float
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def relay_only(self) -> bool:
        """Only a relay over TCP/TLS (TURN, RFC 8656) can carry traffic."""
        return self.udp_blocked is True

    def of_kind(self, kind: CandidateKind) -> tuple[Candidate, ...]:
        return tuple(c for c in self.candidates if c.kind is kind)


# -- JSON ---------------------------------------------------------------------------


def _str(value: object | None) -> str | None:
    return None if value is None else str(value)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


def candidate_to_dict(candidate: Candidate) -> dict[str, Any]:
    """One ``candidates`` item."""
    return {
        "kind": candidate.kind.value,
        "transport": candidate.transport.value,
        "family": family_name(candidate.family),
        "address": str(candidate.address.address),
        "port": candidate.address.port,
        "base": _str(candidate.base),
        "source": candidate.source,
        "sources": list(candidate.sources or (candidate.source,)),
        "rtt_ms": _ms(candidate.rtt),
        "prefix": _str(candidate.prefix),
        "priority": candidate.priority,
    }


def _nat64_document(discovery: Nat64Discovery, clat: ClatDetection | None) -> dict[str, Any]:
    """The ``nat64`` object: classify's (:func:`natkit.nat64.nat64_to_dict`) plus ``clat``."""
    document = nat64_to_dict(discovery)
    if clat is not None:
        document["clat"] = {
            "present": clat.present,
            "interface": clat.interface,
            "address": _str(clat.address),
            "reason": clat.reason,
        }
    return document


def report_to_dict(report: CandidateReport) -> dict[str, Any]:
    """The versioned JSON document (schema ``natkit.candidates`` v1)."""
    layering = report.layering
    mapping = report.port_mapping
    return {
        "schema": "natkit.candidates",
        "schema_version": SCHEMA_VERSION,
        "candidates": [candidate_to_dict(c) for c in report.candidates],
        "nat64": _nat64_document(report.nat64, report.clat),
        "cgnat": layering.cgnat,
        "double_nat": layering.double_nat,
        "udp_blocked": report.udp_blocked,
        "relay_only": report.relay_only,
        "servers": [
            {
                "server": s.server,
                "address": str(s.address),
                "destination": str(s.destination),
                "transport": s.transport.value,
                "path": s.path.value,
                "prefix": _str(s.prefix),
                "base": _str(s.base),
                "outcome": s.outcome.value,
                "mapped_address": _str(s.mapped),
                "rtt_ms": _ms(s.rtt),
                "transmissions": s.transmissions,
                "alg_detected": s.alg,
                "software": s.software,
                "detail": s.detail,
            }
            for s in report.servers
        ],
        "disagreements": [
            {
                "base": _str(d.base),
                "path": d.path.value,
                "kind": d.kind.value,
                "mapped": [{"server": s, "mapped_address": str(m)} for s, m in d.mapped],
                "reason": d.reason,
            }
            for d in report.disagreements
        ],
        "port_mapping": {
            "status": mapping.status.value,
            "protocol": mapping.protocol,
            "external_address": _str(mapping.external),
            "base": _str(mapping.base),
            "gateway_external_address": _str(mapping.gateway_external),
            "elapsed_ms": _ms(mapping.elapsed),
            "detail": mapping.detail,
        },
        "reasons": {
            **report.reasons,
            "cgnat": layering.cgnat_reason,
            "double_nat": layering.double_nat_reason,
            "nat64": report.nat64.reason,
        },
        "duration_ms": _ms(report.duration),
    }
