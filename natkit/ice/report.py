"""The traversal report: what a node tells its peers about its own network.

Both peers send one, sealed through signalling (it rides in the
announcement, :attr:`~natkit.ice.signals.Announcement.report`), so the
escalation ladder (:mod:`natkit.ice.ladder`) and "why relayed?"
(:mod:`natkit.ice.explain`) see both sides. It is a summary of
natkit's :class:`~natkit.probe.report.ClassificationReport` and the
gatherer's :class:`~natkit.gather.candidates.CandidateReport`, plus what the
node is willing to do (relays in use, birthday probing), built by
:meth:`TraversalReport.from_reports`.

Wire format (version 1)
-----------------------
``"NKr" | version (1 byte) | fields``, each ``tag (1) | length (2, big
endian) | value``, like the signal messages. Every field is optional
(absent = not known); unknown tags are skipped (a later minor revision may
add fields, a change of meaning bumps :data:`VERSION`); known tags are
strict: exact lengths, known enum codes, no repeats except relays (at most
:data:`MAX_RELAYS`), relay names printable text of at most
:data:`MAX_NAME` bytes (they end up in sentences and logs), at most
:data:`MAX_REPORT` bytes in all. Anything else raises
:class:`ReportDecodeError` (a ``RemoteProtocolError``) and nothing else.

======  ===================  ============================================
tag     field                value
======  ===================  ============================================
1       mapping              1 byte: 1 EIM, 2 ADM, 3 APDM
2       filtering            1 byte: 1 EIF, 2 ADF, 3 APDF
3       port allocation      1 byte: 1 preserving, 2 sequential, 3 random
4       allocation delta     4 bytes, signed
5       NAT port range       2 + 2 bytes: low, high
6-9     udp_blocked,         1 byte each: 0 no, 1 yes
        behind_nat, cgnat,
        double_nat
10      public address       family (1: IPv4, 2: IPv6) + 4 or 16 bytes
11      port mapping         1 byte: 1 PCP, 2 NAT-PMP, 3 UPnP IGD
12      mapped candidate     family + port (2) + address
13      relay (repeatable)   transport (1: udp, 2: tcp, 3: tls) + name
14      birthday             ports (2), probes (4), rate (2, per second)
15      binding lifetime     4 bytes, milliseconds
======  ===================  ============================================
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from natkit.birthday.ports import PortRange
from natkit.endpoint import Endpoint, Family, IPAddress
from natkit.errors import LocalProtocolError, MalformedInput
from natkit.ice.candidates import CandidateKind, CandidateReport
from natkit.ice.tlv import encode_field, iter_fields
from natkit.portmap.mapping import MappingProtocol
from natkit.probe.report import (
    ClassificationReport,
    FilteringBehavior,
    MappingBehavior,
    PortAllocation,
    RunStatus,
)
from natkit.turn.config import TurnTransport

MAGIC = b"NKr"
VERSION = 1
#: Largest report produced or accepted (well within a signal message's 4,096).
MAX_REPORT = 1024
MAX_RELAYS = 8
MAX_NAME = 200

__all__ = [
    "BirthdayCapability",
    "RelayInUse",
    "ReportDecodeError",
    "ReportFailure",
    "TraversalReport",
    "decode_report",
    "encode_report",
]


@dataclass(frozen=True, slots=True)
class BirthdayCapability:
    """What a node will do for birthday probing (issue 12's ladder)."""

    #: Sockets (mappings) it opens as the hard side, or sprays from when both are.
    ports: int
    #: Probes it sends at most as a sprayer.
    probes: int
    #: Its cap on probes per second.
    rate: int

    def __post_init__(self) -> None:
        if not 1 <= self.ports <= 0xFFFF or not 0 <= self.probes <= 0xFFFFFFFF:
            raise LocalProtocolError(f"birthday ports/probes out of range: {self}")
        if not 1 <= self.rate <= 0xFFFF:
            raise LocalProtocolError(f"birthday rate out of range: {self.rate}")


@dataclass(frozen=True, slots=True)
class RelayInUse:
    """A relay server the node has (or tries) an allocation on."""

    name: str
    transport: TurnTransport

    def __post_init__(self) -> None:
        _check_name(self.name)


@dataclass(frozen=True, slots=True)
class TraversalReport:
    """One node's summary of its network (``None`` everywhere: not known)."""

    mapping: MappingBehavior = MappingBehavior.UNKNOWN
    filtering: FilteringBehavior = FilteringBehavior.UNKNOWN
    port_allocation: PortAllocation = PortAllocation.UNKNOWN
    #: The allocation delta of a sequential NAT (RFC 4787 §4.2.2).
    port_delta: int | None = None
    #: The external ports the NAT allocates from, when known (birthday odds).
    port_range: PortRange | None = None
    #: UDP does not pass at all (only a relay over TCP/TLS works).
    udp_blocked: bool | None = None
    behind_nat: bool | None = None
    #: A carrier-grade NAT is on the path (RFC 6598).
    cgnat: bool | None = None
    #: More than one NAT is on the path.
    double_nat: bool | None = None
    #: The public address the STUN servers saw.
    public_address: IPAddress | None = None
    #: The protocol the gateway offers port mappings by (``None``: none found).
    port_mapping: MappingProtocol | None = None
    #: The mapped candidate the gateway granted, if any.
    mapped: Endpoint | None = None
    relays: tuple[RelayInUse, ...] = ()
    #: ``None``: this node does not do birthday probing.
    birthday: BirthdayCapability | None = None
    #: Longest idle time a UDP mapping was seen to survive (seconds).
    binding_lifetime: float | None = None

    def __post_init__(self) -> None:
        if self.port_delta is not None and not -(1 << 31) <= self.port_delta < 1 << 31:
            raise LocalProtocolError(f"port delta out of range: {self.port_delta}")
        if len(self.relays) > MAX_RELAYS:
            raise LocalProtocolError(f"{len(self.relays)} relays (limit {MAX_RELAYS})")
        if self.binding_lifetime is not None and not (
            0 <= self.binding_lifetime * 1000 <= 0xFFFFFFFF
        ):
            raise LocalProtocolError(f"binding lifetime out of range: {self.binding_lifetime}")

    @property
    def hard(self) -> bool:
        """The mapping depends on the destination (ADM or APDM): the port a
        STUN server sees is not the one a peer would (birthday territory)."""
        return self.mapping in (MappingBehavior.ADM, MappingBehavior.APDM)

    @classmethod
    def from_reports(
        cls,
        classification: ClassificationReport | None = None,
        candidates: CandidateReport | None = None,
        *,
        relays: tuple[RelayInUse, ...] = (),
        birthday: BirthdayCapability | None = None,
        port_range: PortRange | None = None,
    ) -> TraversalReport:
        """The summary of natkit's classification and gatherer reports (either
        may be missing), with the relays and birthday limits of this node."""
        values: dict[str, object] = {
            "relays": relays,
            "birthday": birthday,
            "port_range": port_range,
        }
        if classification is not None:
            values.update(
                mapping=classification.mapping,
                filtering=classification.filtering,
                port_allocation=classification.port_allocation,
                port_delta=classification.port_allocation_delta,
                # Only a run that reached a server over TCP knows UDP is blocked;
                # one that reached nothing (a dead server) knows nothing.
                udp_blocked={
                    RunStatus.OK: False,
                    RunStatus.UDP_BLOCKED: True,
                }.get(classification.status),
                behind_nat=classification.behind_nat,
                cgnat=classification.cgnat,
                double_nat=classification.double_nat,
                binding_lifetime=classification.binding_lifetime,
            )
            if classification.mapped_address is not None:
                values["public_address"] = classification.mapped_address.address
        if candidates is not None:
            layering = candidates.layering
            observation = candidates.port_mapping
            if candidates.udp_blocked is not None:
                values["udp_blocked"] = candidates.udp_blocked
            if values.get("cgnat") is None:
                values["cgnat"] = layering.cgnat
            if values.get("double_nat") is None:
                values["double_nat"] = layering.double_nat
            if observation.protocol is not None:
                values["port_mapping"] = MappingProtocol(observation.protocol)
            mapped = candidates.of_kind(CandidateKind.MAPPED)
            if mapped:
                values["mapped"] = mapped[0].address
            elif observation.external is not None:
                values["mapped"] = observation.external
            if values.get("public_address") is None:
                srflx = candidates.of_kind(CandidateKind.SRFLX)
                if srflx:
                    values["public_address"] = srflx[0].address.address
        return cls(**values)  # type: ignore[arg-type]


class ReportFailure(Enum):
    """Why bytes were not accepted as a traversal report."""

    TOO_LONG = "report too long"
    TRUNCATED = "report truncated"
    BAD_MAGIC = "not a natkit traversal report"
    UNSUPPORTED_VERSION = "unsupported report version"
    BAD_FIELD = "malformed report field"
    DUPLICATE_FIELD = "report field repeated"


class ReportDecodeError(MalformedInput[ReportFailure]):
    """Bytes that are not a valid traversal report (``reason``, ``detail``)."""


class _Tag:
    MAPPING = 1
    FILTERING = 2
    ALLOCATION = 3
    DELTA = 4
    PORT_RANGE = 5
    UDP_BLOCKED = 6
    BEHIND_NAT = 7
    CGNAT = 8
    DOUBLE_NAT = 9
    PUBLIC = 10
    PORT_MAPPING = 11
    MAPPED = 12
    RELAY = 13
    BIRTHDAY = 14
    LIFETIME = 15


E = TypeVar("E", bound=Enum)

_MAPPINGS = {MappingBehavior.EIM: 1, MappingBehavior.ADM: 2, MappingBehavior.APDM: 3}
_FILTERINGS = {FilteringBehavior.EIF: 1, FilteringBehavior.ADF: 2, FilteringBehavior.APDF: 3}
_ALLOCATIONS = {
    PortAllocation.PRESERVING: 1,
    PortAllocation.SEQUENTIAL: 2,
    PortAllocation.RANDOM: 3,
}
_PROTOCOLS = {MappingProtocol.PCP: 1, MappingProtocol.NAT_PMP: 2, MappingProtocol.UPNP_IGD: 3}
_TRANSPORTS = {TurnTransport.UDP: 1, TurnTransport.TCP: 2, TurnTransport.TLS: 3}
_FLAGS = (
    (_Tag.UDP_BLOCKED, "udp_blocked"),
    (_Tag.BEHIND_NAT, "behind_nat"),
    (_Tag.CGNAT, "cgnat"),
    (_Tag.DOUBLE_NAT, "double_nat"),
)


def _check_name(name: str) -> None:
    raw = name.encode("utf-8", "surrogatepass")
    if not 1 <= len(raw) <= MAX_NAME or not name.isprintable():
        raise LocalProtocolError(f"a relay name is 1-{MAX_NAME} bytes of printable text")


# -- encoding ------------------------------------------------------------------------


def _truncated(detail: str) -> ReportDecodeError:
    return ReportDecodeError(ReportFailure.TRUNCATED, detail)


def _address(address: IPAddress) -> bytes:
    family = Family.IPV4 if address.version == 4 else Family.IPV6
    return bytes((family,)) + address.packed


def encode_report(report: TraversalReport) -> bytes:
    """The wire form of ``report``."""
    fields = []
    codes = (
        (_Tag.MAPPING, _MAPPINGS.get(report.mapping)),
        (_Tag.FILTERING, _FILTERINGS.get(report.filtering)),
        (_Tag.ALLOCATION, _ALLOCATIONS.get(report.port_allocation)),
    )
    for tag, code in codes:
        if code is not None:
            fields.append(encode_field(tag, bytes((code,))))
    if report.port_delta is not None:
        fields.append(encode_field(_Tag.DELTA, struct.pack("!i", report.port_delta)))
    if report.port_range is not None:
        fields.append(
            encode_field(
                _Tag.PORT_RANGE, struct.pack("!HH", report.port_range.low, report.port_range.high)
            )
        )
    for tag, name in _FLAGS:
        flag = getattr(report, name)
        if flag is not None:
            fields.append(encode_field(tag, bytes((1 if flag else 0,))))
    if report.public_address is not None:
        fields.append(encode_field(_Tag.PUBLIC, _address(report.public_address)))
    if report.port_mapping is not None:
        fields.append(encode_field(_Tag.PORT_MAPPING, bytes((_PROTOCOLS[report.port_mapping],))))
    if report.mapped is not None:
        mapped = report.mapped
        packed = bytes((mapped.family,)) + struct.pack("!H", mapped.port) + mapped.address.packed
        fields.append(encode_field(_Tag.MAPPED, packed))
    for relay in report.relays:
        packed = bytes((_TRANSPORTS[relay.transport],)) + relay.name.encode("utf-8")
        fields.append(encode_field(_Tag.RELAY, packed))
    if report.birthday is not None:
        birthday = report.birthday
        packed = struct.pack("!HIH", birthday.ports, birthday.probes, birthday.rate)
        fields.append(encode_field(_Tag.BIRTHDAY, packed))
    if report.binding_lifetime is not None:
        millis = round(report.binding_lifetime * 1000)
        fields.append(encode_field(_Tag.LIFETIME, struct.pack("!I", millis)))
    data = MAGIC + bytes((VERSION,)) + b"".join(fields)
    if len(data) > MAX_REPORT:
        raise LocalProtocolError(f"report of {len(data)} bytes (limit {MAX_REPORT})")
    return data


# -- decoding ------------------------------------------------------------------------

_HEADER = len(MAGIC) + 1
_WIDTH = {
    _Tag.MAPPING: 1,
    _Tag.FILTERING: 1,
    _Tag.ALLOCATION: 1,
    _Tag.DELTA: 4,
    _Tag.PORT_RANGE: 4,
    _Tag.UDP_BLOCKED: 1,
    _Tag.BEHIND_NAT: 1,
    _Tag.CGNAT: 1,
    _Tag.DOUBLE_NAT: 1,
    _Tag.PORT_MAPPING: 1,
    _Tag.BIRTHDAY: 8,
    _Tag.LIFETIME: 4,
}


def _bad(detail: str) -> ReportDecodeError:
    return ReportDecodeError(ReportFailure.BAD_FIELD, detail)


def _code(codes: dict[E, int], value: bytes, what: str) -> E:
    for member, code in codes.items():
        if code == value[0]:
            return member
    raise _bad(f"unknown {what} code {value[0]}")


def _decode_address(value: bytes, what: str) -> IPAddress:
    family, raw = value[:1], value[1:]
    if family == b"\x01" and len(raw) == 4:
        return ipaddress.IPv4Address(raw)
    if family == b"\x02" and len(raw) == 16:
        return ipaddress.IPv6Address(raw)
    raise _bad(f"{what}: family {family.hex()} with {len(raw)} address bytes")


def decode_report(data: bytes) -> TraversalReport:
    """Parse one report; raises :class:`ReportDecodeError` and nothing else."""
    if len(data) > MAX_REPORT:
        raise ReportDecodeError(ReportFailure.TOO_LONG, f"{len(data)} bytes")
    if len(data) < _HEADER:
        raise ReportDecodeError(ReportFailure.TRUNCATED, f"{len(data)} bytes")
    if data[: len(MAGIC)] != MAGIC:
        raise ReportDecodeError(ReportFailure.BAD_MAGIC)
    if data[len(MAGIC)] != VERSION:
        raise ReportDecodeError(ReportFailure.UNSUPPORTED_VERSION, str(data[len(MAGIC)]))
    values: dict[str, object] = {}
    relays: list[RelayInUse] = []
    seen: set[int] = set()
    for tag, value in iter_fields(data, _HEADER, _truncated):
        length = len(value)
        if tag == _Tag.RELAY:
            if len(relays) == MAX_RELAYS:
                raise _bad(f"more than {MAX_RELAYS} relays")
            relays.append(_decode_relay(value))
            continue
        if tag in seen:
            raise ReportDecodeError(ReportFailure.DUPLICATE_FIELD, str(tag))
        seen.add(tag)
        width = _WIDTH.get(tag)
        if width is not None and length != width:
            raise _bad(f"field {tag} of {length} bytes, want {width}")
        _decode_field(tag, value, values)
    values["relays"] = tuple(relays)
    try:
        return TraversalReport(**values)  # type: ignore[arg-type]
    except LocalProtocolError as exc:
        raise _bad(str(exc)) from None


def _decode_relay(value: bytes) -> RelayInUse:
    if len(value) < 2:
        raise _bad(f"relay of {len(value)} bytes")
    transport = _code(_TRANSPORTS, value[:1], "relay transport")
    try:
        name = value[1:].decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("relay name is not UTF-8") from None
    try:
        return RelayInUse(name, transport)
    except LocalProtocolError as exc:
        raise _bad(str(exc)) from None


def _decode_field(tag: int, value: bytes, values: dict[str, object]) -> None:
    """Decode one known field into ``values`` (unknown tags are skipped)."""
    if tag == _Tag.MAPPING:
        values["mapping"] = _code(_MAPPINGS, value, "mapping")
    elif tag == _Tag.FILTERING:
        values["filtering"] = _code(_FILTERINGS, value, "filtering")
    elif tag == _Tag.ALLOCATION:
        values["port_allocation"] = _code(_ALLOCATIONS, value, "allocation")
    elif tag == _Tag.DELTA:
        values["port_delta"] = struct.unpack("!i", value)[0]
    elif tag == _Tag.PORT_RANGE:
        low, high = struct.unpack("!HH", value)
        try:
            values["port_range"] = PortRange(low, high)
        except LocalProtocolError:
            raise _bad(f"port range {low}-{high}") from None
    elif tag in dict(_FLAGS):
        if value[0] > 1:
            raise _bad(f"flag {tag} = {value[0]}")
        values[dict(_FLAGS)[tag]] = value[0] == 1
    elif tag == _Tag.PUBLIC:
        values["public_address"] = _decode_address(value, "public address")
    elif tag == _Tag.PORT_MAPPING:
        values["port_mapping"] = _code(_PROTOCOLS, value, "port-mapping protocol")
    elif tag == _Tag.MAPPED:
        if len(value) < 3:
            raise _bad(f"mapped candidate of {len(value)} bytes")
        (port,) = struct.unpack_from("!H", value, 1)
        address = _decode_address(value[:1] + value[3:], "mapped candidate")
        if port == 0:
            raise _bad("mapped candidate with port 0")
        values["mapped"] = Endpoint(address, port)
    elif tag == _Tag.BIRTHDAY:
        ports, probes, rate = struct.unpack("!HIH", value)
        try:
            values["birthday"] = BirthdayCapability(ports, probes, rate)
        except LocalProtocolError as exc:
            raise _bad(str(exc)) from None
    elif tag == _Tag.LIFETIME:
        values["binding_lifetime"] = struct.unpack("!I", value)[0] / 1000
