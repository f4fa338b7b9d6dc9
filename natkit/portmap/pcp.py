"""PCP messages (RFC 6887): strict parsing and building, no I/O.

Layout (RFC 6887 §7): a 24-byte header, the opcode's fields, then options.

* Request header: version (2), R=0 + opcode, 16 reserved bits, requested
  lifetime, the client's IP address (IPv4 as IPv4-mapped IPv6, §5).
* Response header: version, R=1 + opcode, 8 reserved bits, result code,
  lifetime, epoch time, 96 reserved bits.
* MAP (§11.1): nonce (96 bits), protocol, 24 reserved bits, internal port,
  suggested/assigned external port and address.
* Option (§7.3): code, reserved, length of the data, data padded to 4.

Parsing checks, in order: a version-2 header (or an UNSUPP_VERSION answer
from another version, returned as :class:`UnsupportedVersion`), at most
1100 bytes, a multiple of 4, at least a header, the R bit, a known opcode,
the opcode's fields, and option bounds. Every failure raises
:class:`PcpDecodeError`. Reserved bits are ignored on reception and zero on
transmission. PEER (§12) is not implemented.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import IntEnum

from natkit.endpoint import IPAddress
from natkit.errors import LocalProtocolError
from natkit.portmap.wire import (
    RESPONSE_BIT,
    PcpDecodeError,
    PortmapDecodeFailure,
    UnsupportedVersion,
    check_field,
    check_response_version,
    result_code,
)

VERSION = 2
#: Largest PCP message on either direction (RFC 6887 §7).
MAX_MESSAGE_LENGTH = 1100
HEADER_LENGTH = 24
MAP_FIELDS_LENGTH = 36
NONCE_LENGTH = 12

_REQUEST_HEADER = struct.Struct("!BBHI16s")
_RESPONSE_HEADER = struct.Struct("!BBBBII12s")
_MAP_FIELDS = struct.Struct("!12sB3sHH16s")
_OPTION_HEADER = struct.Struct("!BBH")
_IPV4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"


class Opcode(IntEnum):
    """PCP opcodes (RFC 6887 §19.2)."""

    ANNOUNCE = 0
    MAP = 1
    PEER = 2


class ResultCode(IntEnum):
    """Every result code RFC 6887 §7.4 defines."""

    SUCCESS = 0
    UNSUPP_VERSION = 1
    NOT_AUTHORIZED = 2
    MALFORMED_REQUEST = 3
    UNSUPP_OPCODE = 4
    UNSUPP_OPTION = 5
    MALFORMED_OPTION = 6
    NETWORK_FAILURE = 7
    NO_RESOURCES = 8
    UNSUPP_PROTOCOL = 9
    USER_EX_QUOTA = 10
    CANNOT_PROVIDE_EXTERNAL = 11
    ADDRESS_MISMATCH = 12
    EXCESSIVE_REMOTE_PEERS = 13


#: RFC 6887 §7.4 calls these "short lifetime" errors: the condition is
#: expected to clear, so the request is worth repeating after the error's
#: lifetime. Every other error (and any unknown code) is "long lifetime".
SHORT_LIFETIME_ERRORS = frozenset(
    {
        ResultCode.NETWORK_FAILURE,
        ResultCode.NO_RESOURCES,
        ResultCode.USER_EX_QUOTA,
        ResultCode.CANNOT_PROVIDE_EXTERNAL,
    }
)


class OptionCode(IntEnum):
    """Options RFC 6887 §13 defines (codes below 128 are mandatory to process)."""

    THIRD_PARTY = 1
    PREFER_FAILURE = 2
    FILTER = 3


@dataclass(frozen=True, slots=True)
class PcpOption:
    """One option, its data without padding."""

    code: int
    data: bytes = b""

    @property
    def mandatory(self) -> bool:
        """Codes 0-127 must be understood by the receiver (RFC 6887 §7.3)."""
        return self.code < 128


@dataclass(frozen=True, slots=True)
class MapFields:
    """The MAP opcode's fields (RFC 6887 §11.1), in a request or a response."""

    #: 12 random bytes naming the mapping; the server echoes them.
    nonce: bytes
    #: IANA protocol number (17 UDP, 6 TCP); 0 means all protocols.
    protocol: int
    internal_port: int
    #: Suggested (request) or assigned (response) external port.
    external_port: int
    #: Suggested or assigned external address; IPv4 is decoded from its
    #: IPv4-mapped form. ``0.0.0.0`` / ``::`` mean "no preference".
    external_address: IPAddress


@dataclass(frozen=True, slots=True)
class PcpRequest:
    """A PCP request (what a client sends, what a server parses)."""

    opcode: Opcode
    #: Requested lifetime in seconds; 0 deletes (RFC 6887 §15).
    lifetime: int
    #: The client's own address as it believes it sends from (§8.1).
    client_address: IPAddress
    map: MapFields | None = None
    options: tuple[PcpOption, ...] = ()
    version: int = VERSION


@dataclass(frozen=True, slots=True)
class PcpResponse:
    """A PCP response (what a server sends, what a client parses)."""

    opcode: Opcode
    #: A :class:`ResultCode` member, or the bare int of an unknown code.
    result: int
    #: Granted lifetime; for errors, how long the error holds (§7.2).
    lifetime: int
    #: Seconds since the server's state began (§8.5).
    epoch: int
    #: MAP fields; ``None`` for ANNOUNCE, and for error responses that carry
    #: only a header (a server that could not parse the request).
    map: MapFields | None = None
    options: tuple[PcpOption, ...] = ()
    version: int = VERSION


# --- addresses ------------------------------------------------------------------


def encode_address(address: IPAddress) -> bytes:
    """128 bits, IPv4 as IPv4-mapped IPv6 (RFC 6887 §5)."""
    if address.version == 4:
        return _IPV4_MAPPED_PREFIX + address.packed
    return address.packed


def decode_address(data: bytes) -> IPAddress:
    """The inverse of :func:`encode_address`: an IPv4-mapped address is
    always read as the IPv4 address it stands for."""
    if data[:12] == _IPV4_MAPPED_PREFIX:
        return ipaddress.IPv4Address(data[12:16])
    return ipaddress.IPv6Address(data)


def unspecified_like(address: IPAddress) -> IPAddress:
    """The "no preference" address of ``address``'s family (RFC 6887 §11.1)."""
    if address.version == 4:
        return ipaddress.IPv4Address(0)
    return ipaddress.IPv6Address(0)


# --- building ---------------------------------------------------------------------


def _encode_map(fields: MapFields) -> bytes:
    if len(fields.nonce) != NONCE_LENGTH:
        raise LocalProtocolError(f"mapping nonce of {len(fields.nonce)} bytes, not 12")
    check_field("protocol", fields.protocol, 8)
    check_field("internal port", fields.internal_port, 16)
    check_field("external port", fields.external_port, 16)
    return _MAP_FIELDS.pack(
        fields.nonce,
        fields.protocol,
        b"\x00\x00\x00",
        fields.internal_port,
        fields.external_port,
        encode_address(fields.external_address),
    )


def _encode_options(options: tuple[PcpOption, ...]) -> bytes:
    parts = []
    for option in options:
        check_field("option code", option.code, 8)
        check_field("option length", len(option.data), 16)
        padding = b"\x00" * (-len(option.data) % 4)
        parts.append(_OPTION_HEADER.pack(option.code, 0, len(option.data)) + option.data + padding)
    return b"".join(parts)


def _body(opcode: Opcode, fields: MapFields | None, options: tuple[PcpOption, ...]) -> bytes:
    if opcode is Opcode.MAP and fields is None:
        raise LocalProtocolError("a MAP message needs its MAP fields")
    if opcode is Opcode.ANNOUNCE and fields is not None:
        raise LocalProtocolError("ANNOUNCE carries no MAP fields")
    if opcode is Opcode.PEER:
        raise LocalProtocolError("PEER is not implemented")
    body = (b"" if fields is None else _encode_map(fields)) + _encode_options(options)
    if HEADER_LENGTH + len(body) > MAX_MESSAGE_LENGTH:
        raise LocalProtocolError(f"message of {HEADER_LENGTH + len(body)} bytes is too long")
    return body


def build_request(request: PcpRequest) -> bytes:
    """Serialise a request (RFC 6887 §7.1)."""
    check_field("version", request.version, 8)
    check_field("lifetime", request.lifetime, 32)
    body = _body(request.opcode, request.map, request.options)
    header = _REQUEST_HEADER.pack(
        request.version,
        request.opcode,
        0,
        request.lifetime,
        encode_address(request.client_address),
    )
    return header + body


def build_map_request(
    *,
    client_address: IPAddress,
    nonce: bytes,
    protocol: int,
    internal_port: int,
    suggested_external_port: int,
    suggested_external_address: IPAddress | None = None,
    lifetime: int,
    options: tuple[PcpOption, ...] = (),
) -> bytes:
    """A MAP request. Keyword-only on purpose: internal and external ports
    are both plain ints, and swapping them is a bug users have met."""
    address = (
        unspecified_like(client_address)
        if suggested_external_address is None
        else suggested_external_address
    )
    fields = MapFields(nonce, protocol, internal_port, suggested_external_port, address)
    return build_request(PcpRequest(Opcode.MAP, lifetime, client_address, fields, options))


def build_announce_request(client_address: IPAddress) -> bytes:
    """An ANNOUNCE request: the header alone, lifetime 0 (RFC 6887 §14.1)."""
    return build_request(PcpRequest(Opcode.ANNOUNCE, 0, client_address))


def build_response(response: PcpResponse) -> bytes:
    """Serialise a response (RFC 6887 §7.2); for servers and tests."""
    check_field("version", response.version, 8)
    check_field("result code", response.result, 8)
    check_field("lifetime", response.lifetime, 32)
    check_field("epoch", response.epoch, 32)
    if response.opcode is Opcode.MAP and response.map is None:
        # A header-only error response is legal (the request was unparsable).
        body = _encode_options(response.options)
    else:
        body = _body(response.opcode, response.map, response.options)
    header = _RESPONSE_HEADER.pack(
        response.version,
        RESPONSE_BIT | response.opcode,
        0,
        response.result,
        response.lifetime,
        response.epoch,
        bytes(12),
    )
    return header + body


# --- parsing ----------------------------------------------------------------------


def _check_frame(data: bytes) -> None:
    if len(data) > MAX_MESSAGE_LENGTH:
        raise PcpDecodeError(PortmapDecodeFailure.TOO_LONG, f"{len(data)} bytes")
    if len(data) % 4:
        raise PcpDecodeError(PortmapDecodeFailure.MISALIGNED, f"{len(data)} bytes")
    if len(data) < HEADER_LENGTH:
        raise PcpDecodeError(PortmapDecodeFailure.TRUNCATED, f"{len(data)} bytes")


def _opcode(byte: int) -> Opcode:
    code = byte & ~RESPONSE_BIT
    if code not in (Opcode.ANNOUNCE, Opcode.MAP):
        raise PcpDecodeError(PortmapDecodeFailure.UNKNOWN_OPCODE, f"opcode {code}")
    return Opcode(code)


def _parse_options(data: bytes, offset: int) -> tuple[PcpOption, ...]:
    options = []
    while offset < len(data):
        if len(data) - offset < _OPTION_HEADER.size:
            raise PcpDecodeError(PortmapDecodeFailure.OPTION_OVERRUN, f"option header at {offset}")
        code, _reserved, length = _OPTION_HEADER.unpack_from(data, offset)
        start = offset + _OPTION_HEADER.size
        end = start + length
        if end + (-length % 4) > len(data):
            raise PcpDecodeError(
                PortmapDecodeFailure.OPTION_OVERRUN, f"option {code} of {length} bytes at {offset}"
            )
        options.append(PcpOption(code, bytes(data[start:end])))
        offset = end + (-length % 4)
    return tuple(options)


def _parse_map(data: bytes) -> MapFields:
    nonce, protocol, _reserved, internal_port, external_port, address = _MAP_FIELDS.unpack_from(
        data, HEADER_LENGTH
    )
    return MapFields(bytes(nonce), protocol, internal_port, external_port, decode_address(address))


def parse_response(data: bytes) -> PcpResponse | UnsupportedVersion:
    """Parse and validate what a PCP server sent (see the module docstring)."""
    # RFC 6887 §9: a server of another version answers UNSUPP_VERSION with
    # its own version (a NAT-PMP server's 16-bit code lands on the same bytes).
    other = check_response_version(data, VERSION, PcpDecodeError)
    if other is not None:
        return other
    _check_frame(data)
    if not data[1] & RESPONSE_BIT:
        raise PcpDecodeError(PortmapDecodeFailure.NOT_A_RESPONSE)
    opcode = _opcode(data[1])
    _version, _op, _reserved, result, lifetime, epoch, _ = _RESPONSE_HEADER.unpack_from(data)
    code = result_code(ResultCode, result)
    fields: MapFields | None = None
    offset = HEADER_LENGTH
    if opcode is Opcode.MAP:
        if len(data) >= HEADER_LENGTH + MAP_FIELDS_LENGTH:
            fields = _parse_map(data)
            offset += MAP_FIELDS_LENGTH
        elif result == ResultCode.SUCCESS or len(data) > HEADER_LENGTH:
            raise PcpDecodeError(
                PortmapDecodeFailure.BAD_LENGTH, f"MAP response of {len(data)} bytes"
            )
    options = _parse_options(data, offset)
    return PcpResponse(opcode, code, lifetime, epoch, fields, options)


def is_announcement(data: bytes) -> bool:
    """Whether ``data`` is a successful PCP ANNOUNCE response (RFC 6887 §14.1.3),
    what a restarted server multicasts to 224.0.0.1:5350. Never raises.

    A NAT-PMP client needs it: a combined server may announce its restart in
    PCP only (miniupnpd 2.3.1 does, see docs/dependencies.md), and its NAT-PMP
    parser would just see another version.
    """
    if data[:1] != bytes([VERSION]):
        return False
    try:
        message = parse_response(data)
    except PcpDecodeError:
        return False
    return (
        isinstance(message, PcpResponse)
        and message.opcode is Opcode.ANNOUNCE
        and message.result == ResultCode.SUCCESS
    )


def parse_request(data: bytes) -> PcpRequest:
    """Parse and validate what a PCP client sent (for servers and tests)."""
    if len(data) < 4:
        raise PcpDecodeError(PortmapDecodeFailure.TRUNCATED, f"{len(data)} bytes")
    if data[0] != VERSION:
        raise PcpDecodeError(PortmapDecodeFailure.WRONG_VERSION, f"version {data[0]}")
    _check_frame(data)
    if data[1] & RESPONSE_BIT:
        raise PcpDecodeError(PortmapDecodeFailure.NOT_A_REQUEST)
    opcode = _opcode(data[1])
    _version, _op, _reserved, lifetime, client = _REQUEST_HEADER.unpack_from(data)
    fields: MapFields | None = None
    offset = HEADER_LENGTH
    if opcode is Opcode.MAP:
        if len(data) < HEADER_LENGTH + MAP_FIELDS_LENGTH:
            raise PcpDecodeError(
                PortmapDecodeFailure.BAD_LENGTH, f"MAP request of {len(data)} bytes"
            )
        fields = _parse_map(data)
        offset += MAP_FIELDS_LENGTH
    options = _parse_options(data, offset)
    return PcpRequest(opcode, lifetime, decode_address(client), fields, options)
