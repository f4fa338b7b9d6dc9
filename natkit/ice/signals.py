"""Signal messages between two connect agents, and their strict bytes codec.

Signalling is symmetric (no offer/answer): each side *announces* its ICE
credentials, tie-breaker, session generation and candidates, trickles more
candidates later, and acknowledges what it holds of the other's. The agent
(:mod:`natkit.ice.agent`) decides when to send which; the asyncio layer
seals the bytes to the peer's key and carries them. This module only says
what the messages are and how they look on the wire.

Messages
--------
* :class:`Announcement`: everything a peer needs to check paths to us
  (credentials, tie-breaker, generation, every candidate so far, the
  classification report) plus what we hold of *its* announcement
  (``peer_generation``, ``peer_candidates``), which doubles as an
  acknowledgement. Re-sent with backoff until the peer acknowledges it.
* :class:`CandidatesAdded`: candidates trickled after the announcement,
  numbered from ``first_index`` in the sender's list, so a receiver notices
  a gap (a lost message) and the sender re-announces.
* :class:`Acknowledgement`: what the sender holds of the receiver's
  announcement, sent in reply to one the sender already knew (a re-send) or
  to trickled candidates.
* Birthday probing (issue 12, :mod:`natkit.ice.birthday`):
  :class:`BirthdayOffer` (the controlling side's plan: the shared probe key
  and session, the receiver's role and target, ports, range, budget, rate,
  how long), :class:`BirthdayReady` (the hard side's mappings are open: the
  sprayer starts) and :class:`BirthdayDone` (a run ended: hit or not, probes
  sent). Added in a minor revision as message types 4-6; a version 1
  decoder without them rejects them as an unknown type.

Wire format (version 1)
-----------------------
``"NKs" | version (1 byte) | type (1 byte) | fields``, each field
``tag (1 byte) | length (2 bytes, big endian) | value``. Unknown tags are
skipped (a later minor revision may add fields; a change of meaning bumps
:data:`VERSION`), known tags are checked strictly: exact lengths, text in
the ICE character set, no duplicates except candidates, required fields
present, at most :data:`MAX_SIGNAL` bytes in all. Anything else raises
:class:`SignalDecodeError` (a ``RemoteProtocolError``) with a
:class:`SignalFailure` reason; decoding never raises anything else.

A compact binary form rather than JSON because part 3 carries these sealed
in DNS TXT records, where every byte counts; an announcement with eight
IPv4 candidates takes ~200 bytes.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass, field
from enum import Enum

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError, MalformedInput
from natkit.ice.candidates import CandidateKind, CandidateTransport
from natkit.ice.tlv import encode_field, iter_fields

MAGIC = b"NKs"
#: Bumped only when a field changes meaning; new fields get new tags.
VERSION = 1
#: Largest message accepted or produced.
MAX_SIGNAL = 8192
#: Most candidates in one message (RFC 8445 §6.1.2.5 caps pairs at 100).
MAX_CANDIDATES = 64
#: Largest opaque classification report carried (part 2 fills it).
MAX_REPORT = 4096
#: RFC 8445 §5.3 / RFC 8839 §5.4: ice-ufrag 4-256, ice-pwd 22-256 ice-chars.
UFRAG_LENGTH = (4, 256)
PWD_LENGTH = (22, 256)
#: RFC 8839 §5.1: a foundation is 1-32 ice-chars.
FOUNDATION_LENGTH = (1, 32)
_ICE_CHARS = re.compile(r"[A-Za-z0-9+/]+")


class SignalType(Enum):
    ANNOUNCEMENT = 1
    CANDIDATES_ADDED = 2
    ACKNOWLEDGEMENT = 3
    BIRTHDAY_OFFER = 4
    BIRTHDAY_READY = 5
    BIRTHDAY_DONE = 6


class _Tag:
    GENERATION = 1
    PEER_GENERATION = 2
    PEER_CANDIDATES = 3
    UFRAG = 4
    PWD = 5
    TIE_BREAKER = 6
    CANDIDATE = 7
    FIRST_INDEX = 8
    REPORT = 9
    ATTEMPT = 10
    BIRTHDAY_KEY = 11
    BIRTHDAY_SESSION = 12
    BIRTHDAY_ROLE = 13
    TARGET = 14
    PORTS = 15
    PORT_RANGE = 16
    PROBES = 17
    RATE = 18
    DURATION = 19
    FOUND = 20


_KIND_CODES: dict[CandidateKind, int] = {
    CandidateKind.HOST: 1,
    CandidateKind.SRFLX: 2,
    CandidateKind.MAPPED: 3,
    CandidateKind.NAT64: 4,
    CandidateKind.STATIC: 5,
    CandidateKind.PEER_REFLEXIVE: 6,
    CandidateKind.RELAY: 7,
}
_KINDS = {code: kind for kind, code in _KIND_CODES.items()}
_TRANSPORT_CODES: dict[CandidateTransport, int] = {
    CandidateTransport.UDP: 1,
    CandidateTransport.TCP: 2,
    CandidateTransport.TLS: 3,
}
_TRANSPORTS = {code: transport for transport, code in _TRANSPORT_CODES.items()}


class SignalFailure(Enum):
    """Why bytes were not accepted as a signal message."""

    TOO_LONG = "message too long"
    TRUNCATED = "message truncated"
    BAD_MAGIC = "not a natkit signal message"
    UNSUPPORTED_VERSION = "unsupported version"
    UNKNOWN_TYPE = "unknown message type"
    BAD_FIELD = "malformed field"
    DUPLICATE_FIELD = "field repeated"
    MISSING_FIELD = "required field missing"
    TOO_MANY_CANDIDATES = "too many candidates"


class SignalDecodeError(MalformedInput[SignalFailure]):
    """Bytes that are not a valid signal message (``reason``, ``detail``)."""


@dataclass(frozen=True, slots=True)
class SignalCandidate:
    """A candidate as the peer announces it (RFC 8445 §5.1, component 1)."""

    kind: CandidateKind
    #: Where the peer wants checks and data sent.
    address: Endpoint
    #: RFC 8445 §5.1.2 priority, 1..2^31-1.
    priority: int
    #: RFC 8445 §5.1.1.3 foundation (1-32 ice-chars).
    foundation: str
    transport: CandidateTransport = CandidateTransport.UDP

    def __post_init__(self) -> None:
        if not 1 <= self.priority <= 0x7FFFFFFF:
            raise LocalProtocolError(f"candidate priority out of range: {self.priority}")
        _check_ice_chars("foundation", self.foundation, FOUNDATION_LENGTH)


@dataclass(frozen=True, slots=True)
class Announcement:
    """A peer's credentials, generation and candidates (see the module doc)."""

    #: The sender's session generation; a new one means an ICE restart.
    generation: int
    #: RFC 8445 §5.3 ICE username fragment and password of the sender.
    ufrag: str
    pwd: str = field(repr=False)
    #: RFC 8445 §7.3.1.1 tie-breaker of the sender.
    tie_breaker: int
    #: Every candidate the sender has so far, in its order.
    candidates: tuple[SignalCandidate, ...] = ()
    #: The receiver's generation the sender holds (``None``: none yet).
    peer_generation: int | None = None
    #: How many of the receiver's candidates the sender holds.
    peer_candidates: int = 0
    #: The sender's classification report, opaque here (part 2 defines it).
    report: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        _check_u32("generation", self.generation)
        if self.peer_generation is not None:
            _check_u32("peer_generation", self.peer_generation)
        _check_ice_chars("ufrag", self.ufrag, UFRAG_LENGTH)
        _check_ice_chars("pwd", self.pwd, PWD_LENGTH)
        if not 0 <= self.tie_breaker < 1 << 64:
            raise LocalProtocolError(f"tie-breaker out of range: {self.tie_breaker}")
        _check_count(self.peer_candidates)
        _check_candidates(self.candidates)
        if len(self.report) > MAX_REPORT:
            raise LocalProtocolError(f"report of {len(self.report)} bytes (limit {MAX_REPORT})")


@dataclass(frozen=True, slots=True)
class CandidatesAdded:
    """Candidates trickled after the announcement of ``generation``."""

    generation: int
    #: Index of ``candidates[0]`` in the sender's candidate list.
    first_index: int
    candidates: tuple[SignalCandidate, ...]

    def __post_init__(self) -> None:
        _check_u32("generation", self.generation)
        _check_count(self.first_index)
        if not self.candidates:
            raise LocalProtocolError("CandidatesAdded without candidates")
        _check_candidates(self.candidates)


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """What the sender (of ``generation``) holds of the receiver's announcement."""

    generation: int
    #: The receiver's generation the sender holds (``None``: none).
    peer_generation: int | None
    peer_candidates: int = 0

    def __post_init__(self) -> None:
        _check_u32("generation", self.generation)
        if self.peer_generation is not None:
            _check_u32("peer_generation", self.peer_generation)
        _check_count(self.peer_candidates)


class BirthdayRole(Enum):
    """What the receiver of a :class:`BirthdayOffer` does."""

    #: The hard side of one-hard mode: open ``ports`` mappings toward
    #: ``target`` (the easy side's mapped endpoint) and keep them open.
    OPENER = 1
    #: The easy side: spray probes from its one socket at ``target``'s IP.
    SPRAYER = 2
    #: Both hard: spray from ``ports`` sockets at ``target``'s IP.
    BOTH = 3


#: RFC-free limits of a birthday offer: the key and session of
#: :mod:`natkit.birthday.wire`, and bounds that keep a hostile offer harmless.
BIRTHDAY_KEY_LENGTH = 32
BIRTHDAY_SESSION_LENGTH = 8
MAX_BIRTHDAY_PORTS = 1024
MAX_BIRTHDAY_RATE = 1000


@dataclass(frozen=True, slots=True)
class BirthdayOffer:
    """The controlling side's birthday plan, and the receiver's part in it."""

    #: The sender's generation (an offer of an old generation is ignored).
    generation: int
    #: Which attempt this is (the sender counts).
    attempt: int
    #: The probe packets' shared key and session (:mod:`natkit.birthday.wire`).
    key: bytes = field(repr=False)
    session: bytes
    role: BirthdayRole
    #: OPENER: the endpoint to open mappings toward; sprayers: the address
    #: to probe (its port unused).
    target: Endpoint
    #: Mappings to open (OPENER) or sockets to spray from (BOTH).
    ports: int
    #: The external ports the target's NAT allocates from (what is probed).
    port_low: int
    port_high: int
    #: Probes the receiver sends at most, and its rate cap (per second).
    probes: int
    rate: int
    #: How long the run may take, milliseconds.
    duration_ms: int

    def __post_init__(self) -> None:
        _check_u32("generation", self.generation)
        _check_u32("attempt", self.attempt)
        if len(self.key) != BIRTHDAY_KEY_LENGTH or len(self.session) != BIRTHDAY_SESSION_LENGTH:
            raise LocalProtocolError("a birthday key is 32 bytes and its session 8")
        if not 1 <= self.ports <= MAX_BIRTHDAY_PORTS:
            raise LocalProtocolError(f"birthday ports out of range: {self.ports}")
        if not 1 <= self.port_low <= self.port_high <= 0xFFFF:
            raise LocalProtocolError(f"bad port range {self.port_low}-{self.port_high}")
        if not 1 <= self.rate <= MAX_BIRTHDAY_RATE:
            raise LocalProtocolError(f"birthday rate out of range: {self.rate}")
        _check_u32("probes", self.probes)
        _check_u32("duration", self.duration_ms)


@dataclass(frozen=True, slots=True)
class BirthdayReady:
    """The sender (an OPENER) has opened its mappings: spray now."""

    generation: int
    attempt: int

    def __post_init__(self) -> None:
        _check_u32("generation", self.generation)
        _check_u32("attempt", self.attempt)


@dataclass(frozen=True, slots=True)
class BirthdayDone:
    """The sender's part of attempt ``attempt`` ended."""

    generation: int
    attempt: int
    found: bool
    #: Probes the sender sent.
    probes: int = 0

    def __post_init__(self) -> None:
        _check_u32("generation", self.generation)
        _check_u32("attempt", self.attempt)
        _check_u32("probes", self.probes)


BirthdayMessage = BirthdayOffer | BirthdayReady | BirthdayDone
SignalMessage = Announcement | CandidatesAdded | Acknowledgement | BirthdayMessage


# -- validation shared by construction and decoding ------------------------------------


def _check_u32(name: str, value: int) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise LocalProtocolError(f"{name} out of range: {value}")


def _check_count(value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise LocalProtocolError(f"candidate count out of range: {value}")


def _check_ice_chars(name: str, value: str, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if not low <= len(value) <= high or not _ICE_CHARS.fullmatch(value):
        raise LocalProtocolError(f"{name} must be {low}-{high} ice-chars (RFC 8839 §5.1)")


def _check_candidates(candidates: tuple[SignalCandidate, ...]) -> None:
    if len(candidates) > MAX_CANDIDATES:
        raise LocalProtocolError(f"{len(candidates)} candidates (limit {MAX_CANDIDATES})")


# -- encoding --------------------------------------------------------------------------


def _truncated(detail: str) -> SignalDecodeError:
    return SignalDecodeError(SignalFailure.TRUNCATED, detail)


def _encode_candidate(candidate: SignalCandidate) -> bytes:
    address = candidate.address
    return (
        struct.pack(
            "!BBIHB",
            _KIND_CODES[candidate.kind],
            _TRANSPORT_CODES[candidate.transport],
            candidate.priority,
            address.port,
            address.family,
        )
        + address.address.packed
        + candidate.foundation.encode("ascii")
    )


def _encode_endpoint(endpoint: Endpoint) -> bytes:
    return bytes((endpoint.family,)) + struct.pack("!H", endpoint.port) + endpoint.address.packed


def _encode_birthday(message: BirthdayMessage) -> tuple[SignalType, list[bytes]]:
    fields = [encode_field(_Tag.ATTEMPT, struct.pack("!I", message.attempt))]
    if isinstance(message, BirthdayOffer):
        fields += [
            encode_field(_Tag.BIRTHDAY_KEY, message.key),
            encode_field(_Tag.BIRTHDAY_SESSION, message.session),
            encode_field(_Tag.BIRTHDAY_ROLE, bytes((message.role.value,))),
            encode_field(_Tag.TARGET, _encode_endpoint(message.target)),
            encode_field(_Tag.PORTS, struct.pack("!H", message.ports)),
            encode_field(_Tag.PORT_RANGE, struct.pack("!HH", message.port_low, message.port_high)),
            encode_field(_Tag.PROBES, struct.pack("!I", message.probes)),
            encode_field(_Tag.RATE, struct.pack("!H", message.rate)),
            encode_field(_Tag.DURATION, struct.pack("!I", message.duration_ms)),
        ]
        return SignalType.BIRTHDAY_OFFER, fields
    if isinstance(message, BirthdayReady):
        return SignalType.BIRTHDAY_READY, fields
    fields += [
        encode_field(_Tag.FOUND, bytes((1 if message.found else 0,))),
        encode_field(_Tag.PROBES, struct.pack("!I", message.probes)),
    ]
    return SignalType.BIRTHDAY_DONE, fields


def encode_signal(message: SignalMessage) -> bytes:
    """The wire form of ``message`` (raises ``LocalProtocolError`` if too long)."""
    fields = [encode_field(_Tag.GENERATION, struct.pack("!I", message.generation))]
    if isinstance(message, Announcement):
        kind = SignalType.ANNOUNCEMENT
        fields += [
            encode_field(_Tag.UFRAG, message.ufrag.encode("ascii")),
            encode_field(_Tag.PWD, message.pwd.encode("ascii")),
            encode_field(_Tag.TIE_BREAKER, struct.pack("!Q", message.tie_breaker)),
            encode_field(_Tag.PEER_CANDIDATES, struct.pack("!H", message.peer_candidates)),
        ]
        if message.peer_generation is not None:
            fields.append(
                encode_field(_Tag.PEER_GENERATION, struct.pack("!I", message.peer_generation))
            )
        if message.report:
            fields.append(encode_field(_Tag.REPORT, message.report))
        candidates = message.candidates
    elif isinstance(message, CandidatesAdded):
        kind = SignalType.CANDIDATES_ADDED
        fields.append(encode_field(_Tag.FIRST_INDEX, struct.pack("!H", message.first_index)))
        candidates = message.candidates
    elif isinstance(message, BirthdayMessage):
        kind, birthday_fields = _encode_birthday(message)
        fields += birthday_fields
        candidates = ()
    else:
        kind = SignalType.ACKNOWLEDGEMENT
        fields.append(
            encode_field(_Tag.PEER_CANDIDATES, struct.pack("!H", message.peer_candidates))
        )
        if message.peer_generation is not None:
            fields.append(
                encode_field(_Tag.PEER_GENERATION, struct.pack("!I", message.peer_generation))
            )
        candidates = ()
    fields += [encode_field(_Tag.CANDIDATE, _encode_candidate(c)) for c in candidates]
    data = MAGIC + bytes((VERSION, kind.value)) + b"".join(fields)
    if len(data) > MAX_SIGNAL:
        raise LocalProtocolError(f"signal message of {len(data)} bytes (limit {MAX_SIGNAL})")
    return data


# -- decoding --------------------------------------------------------------------------

_HEADER = len(MAGIC) + 2
#: Fixed part of a candidate value before the address: kind, transport,
#: priority, port, family.
_CANDIDATE_FIXED = struct.calcsize("!BBIHB")
_INTEGER_WIDTH = {
    _Tag.GENERATION: 4,
    _Tag.PEER_GENERATION: 4,
    _Tag.PEER_CANDIDATES: 2,
    _Tag.TIE_BREAKER: 8,
    _Tag.FIRST_INDEX: 2,
    _Tag.ATTEMPT: 4,
    _Tag.PORTS: 2,
    _Tag.PROBES: 4,
    _Tag.RATE: 2,
    _Tag.DURATION: 4,
}
#: Binary fields of an exact width (the target's width depends on its family).
_RAW_WIDTH = {
    _Tag.BIRTHDAY_KEY: BIRTHDAY_KEY_LENGTH,
    _Tag.BIRTHDAY_SESSION: BIRTHDAY_SESSION_LENGTH,
    _Tag.BIRTHDAY_ROLE: 1,
    _Tag.PORT_RANGE: 4,
    _Tag.FOUND: 1,
}
_REQUIRED: dict[SignalType, frozenset[int]] = {
    SignalType.ANNOUNCEMENT: frozenset(
        {_Tag.GENERATION, _Tag.UFRAG, _Tag.PWD, _Tag.TIE_BREAKER, _Tag.PEER_CANDIDATES}
    ),
    SignalType.CANDIDATES_ADDED: frozenset({_Tag.GENERATION, _Tag.FIRST_INDEX, _Tag.CANDIDATE}),
    SignalType.ACKNOWLEDGEMENT: frozenset({_Tag.GENERATION, _Tag.PEER_CANDIDATES}),
    SignalType.BIRTHDAY_OFFER: frozenset(
        {
            _Tag.GENERATION,
            _Tag.ATTEMPT,
            _Tag.BIRTHDAY_KEY,
            _Tag.BIRTHDAY_SESSION,
            _Tag.BIRTHDAY_ROLE,
            _Tag.TARGET,
            _Tag.PORTS,
            _Tag.PORT_RANGE,
            _Tag.PROBES,
            _Tag.RATE,
            _Tag.DURATION,
        }
    ),
    SignalType.BIRTHDAY_READY: frozenset({_Tag.GENERATION, _Tag.ATTEMPT}),
    SignalType.BIRTHDAY_DONE: frozenset({_Tag.GENERATION, _Tag.ATTEMPT, _Tag.FOUND, _Tag.PROBES}),
}


def _bad(detail: str) -> SignalDecodeError:
    return SignalDecodeError(SignalFailure.BAD_FIELD, detail)


def _decode_text(tag_name: str, value: bytes, bounds: tuple[int, int]) -> str:
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        raise _bad(f"{tag_name} is not ASCII") from None
    low, high = bounds
    if not low <= len(text) <= high or not _ICE_CHARS.fullmatch(text):
        raise _bad(f"{tag_name} must be {low}-{high} ice-chars")
    return text


def _decode_candidate(value: bytes) -> SignalCandidate:
    if len(value) < _CANDIDATE_FIXED:
        raise _bad(f"candidate of {len(value)} bytes")
    kind_code, transport_code, priority, port, family = struct.unpack_from("!BBIHB", value)
    kind = _KINDS.get(kind_code)
    transport = _TRANSPORTS.get(transport_code)
    if kind is None or transport is None:
        raise _bad(f"candidate kind {kind_code} / transport {transport_code}")
    width = {1: 4, 2: 16}.get(family)
    if width is None or len(value) < _CANDIDATE_FIXED + width:
        raise _bad(f"candidate address family {family}")
    raw = value[_CANDIDATE_FIXED : _CANDIDATE_FIXED + width]
    address = ipaddress.IPv4Address(raw) if width == 4 else ipaddress.IPv6Address(raw)
    foundation = _decode_text("foundation", value[_CANDIDATE_FIXED + width :], FOUNDATION_LENGTH)
    if not 1 <= priority <= 0x7FFFFFFF:
        raise _bad(f"candidate priority {priority}")
    return SignalCandidate(kind, Endpoint(address, port), priority, foundation, transport)


def decode_signal(data: bytes) -> SignalMessage:
    """Parse one message; raises :class:`SignalDecodeError` and nothing else."""
    if len(data) > MAX_SIGNAL:
        raise SignalDecodeError(SignalFailure.TOO_LONG, f"{len(data)} bytes")
    if len(data) < _HEADER:
        raise SignalDecodeError(SignalFailure.TRUNCATED, f"{len(data)} bytes")
    if data[: len(MAGIC)] != MAGIC:
        raise SignalDecodeError(SignalFailure.BAD_MAGIC)
    version, type_code = data[len(MAGIC)], data[len(MAGIC) + 1]
    if version != VERSION:
        raise SignalDecodeError(SignalFailure.UNSUPPORTED_VERSION, str(version))
    try:
        kind = SignalType(type_code)
    except ValueError:
        raise SignalDecodeError(SignalFailure.UNKNOWN_TYPE, str(type_code)) from None

    integers: dict[int, int] = {}
    texts: dict[int, bytes] = {}
    candidates: list[SignalCandidate] = []
    seen: set[int] = set()
    for tag, value in iter_fields(data, _HEADER, _truncated):
        length = len(value)
        if tag == _Tag.CANDIDATE:
            if len(candidates) == MAX_CANDIDATES:
                raise SignalDecodeError(SignalFailure.TOO_MANY_CANDIDATES)
            candidates.append(_decode_candidate(value))
        elif tag in seen:
            raise SignalDecodeError(SignalFailure.DUPLICATE_FIELD, str(tag))
        elif tag in _INTEGER_WIDTH:
            if length != _INTEGER_WIDTH[tag]:
                raise _bad(f"field {tag} of {length} bytes, want {_INTEGER_WIDTH[tag]}")
            integers[tag] = int.from_bytes(value, "big")
        elif tag in (_Tag.UFRAG, _Tag.PWD, _Tag.REPORT, _Tag.TARGET):
            texts[tag] = value
        elif tag in _RAW_WIDTH:
            if length != _RAW_WIDTH[tag]:
                raise _bad(f"field {tag} of {length} bytes, want {_RAW_WIDTH[tag]}")
            texts[tag] = value
        # Any other tag: a field of a later revision; skipped.
        seen.add(tag)

    missing = _REQUIRED[kind] - seen
    if missing:
        raise SignalDecodeError(SignalFailure.MISSING_FIELD, ", ".join(map(str, sorted(missing))))
    generation = integers[_Tag.GENERATION]
    peer_generation = integers.get(_Tag.PEER_GENERATION)
    try:
        if kind is SignalType.ANNOUNCEMENT:
            report = texts.get(_Tag.REPORT, b"")
            if len(report) > MAX_REPORT:
                raise _bad(f"report of {len(report)} bytes")
            return Announcement(
                generation=generation,
                ufrag=_decode_text("ufrag", texts[_Tag.UFRAG], UFRAG_LENGTH),
                pwd=_decode_text("pwd", texts[_Tag.PWD], PWD_LENGTH),
                tie_breaker=integers[_Tag.TIE_BREAKER],
                candidates=tuple(candidates),
                peer_generation=peer_generation,
                peer_candidates=integers[_Tag.PEER_CANDIDATES],
                report=report,
            )
        if kind is SignalType.CANDIDATES_ADDED:
            return CandidatesAdded(generation, integers[_Tag.FIRST_INDEX], tuple(candidates))
        if kind in _BIRTHDAY_TYPES:
            if candidates:
                raise _bad("a birthday message carries no candidates")
            return _decode_birthday(kind, generation, integers, texts)
        if candidates:
            raise _bad("an acknowledgement carries no candidates")
        return Acknowledgement(generation, peer_generation, integers[_Tag.PEER_CANDIDATES])
    except LocalProtocolError as exc:  # a value the dataclass rejects
        raise _bad(str(exc)) from None


_BIRTHDAY_TYPES = frozenset(
    {SignalType.BIRTHDAY_OFFER, SignalType.BIRTHDAY_READY, SignalType.BIRTHDAY_DONE}
)


def _decode_endpoint(value: bytes) -> Endpoint:
    width = {1: 4, 2: 16}.get(value[0]) if value else None
    if width is None or len(value) != 3 + width:
        raise _bad(f"target of {len(value)} bytes")
    (port,) = struct.unpack_from("!H", value, 1)
    raw = value[3:]
    address = ipaddress.IPv4Address(raw) if width == 4 else ipaddress.IPv6Address(raw)
    return Endpoint(address, port)


def _decode_birthday(
    kind: SignalType, generation: int, integers: dict[int, int], raw: dict[int, bytes]
) -> BirthdayMessage:
    attempt = integers[_Tag.ATTEMPT]
    if kind is SignalType.BIRTHDAY_READY:
        return BirthdayReady(generation, attempt)
    if kind is SignalType.BIRTHDAY_DONE:
        found = raw[_Tag.FOUND][0]
        if found > 1:
            raise _bad(f"found = {found}")
        return BirthdayDone(generation, attempt, found == 1, integers[_Tag.PROBES])
    try:
        role = BirthdayRole(raw[_Tag.BIRTHDAY_ROLE][0])
    except ValueError:
        raise _bad(f"birthday role {raw[_Tag.BIRTHDAY_ROLE][0]}") from None
    low, high = struct.unpack("!HH", raw[_Tag.PORT_RANGE])
    return BirthdayOffer(
        generation=generation,
        attempt=attempt,
        key=raw[_Tag.BIRTHDAY_KEY],
        session=raw[_Tag.BIRTHDAY_SESSION],
        role=role,
        target=_decode_endpoint(raw[_Tag.TARGET]),
        ports=integers[_Tag.PORTS],
        port_low=low,
        port_high=high,
        probes=integers[_Tag.PROBES],
        rate=integers[_Tag.RATE],
        duration_ms=integers[_Tag.DURATION],
    )
