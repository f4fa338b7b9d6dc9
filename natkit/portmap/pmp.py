"""NAT-PMP messages (RFC 6886): strict parsing and building, no I/O.

Requests: public address (version 0, opcode 0: two bytes, §3.2) and map
(opcode 1 UDP, 2 TCP: reserved, internal port, suggested external port,
requested lifetime; 12 bytes, §3.3). Responses set the opcode's top bit and
carry a 16-bit result code and Seconds Since Start of Epoch, then the
external address (12 bytes) or internal port, mapped external port and
lifetime (16 bytes).

Parsing is strict: version 0 (else an "unsupported version" answer, as
:class:`UnsupportedVersion`, or :class:`PmpDecodeError`), a response
opcode, and the exact length of that opcode's response.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import IntEnum

from natkit.errors import LocalProtocolError
from natkit.portmap.mapping import TransportProtocol
from natkit.portmap.wire import (
    RESPONSE_BIT,
    PmpDecodeError,
    PortmapDecodeFailure,
    UnsupportedVersion,
    check_field,
    check_response_version,
    result_code,
)

VERSION = 0
ADDRESS_RESPONSE_LENGTH = 12
MAP_REQUEST_LENGTH = 12
MAP_RESPONSE_LENGTH = 16

_MAP_REQUEST = struct.Struct("!BBHHHI")
_ADDRESS_RESPONSE = struct.Struct("!BBHI4s")
_MAP_RESPONSE = struct.Struct("!BBHIHHI")


class PmpOpcode(IntEnum):
    """NAT-PMP request opcodes (RFC 6886 §3.2, §3.3)."""

    PUBLIC_ADDRESS = 0
    MAP_UDP = 1
    MAP_TCP = 2


class PmpResultCode(IntEnum):
    """RFC 6886 §3.5. Unknown codes must be treated as fatal errors."""

    SUCCESS = 0
    UNSUPPORTED_VERSION = 1
    NOT_AUTHORIZED = 2
    NETWORK_FAILURE = 3
    OUT_OF_RESOURCES = 4
    UNSUPPORTED_OPCODE = 5


#: Errors worth retrying later: the gateway has no lease yet, or is full.
TRANSIENT_ERRORS = frozenset({PmpResultCode.NETWORK_FAILURE, PmpResultCode.OUT_OF_RESOURCES})


def map_opcode(transport: TransportProtocol) -> PmpOpcode:
    """NAT-PMP encodes the transport in the opcode."""
    return PmpOpcode.MAP_UDP if transport is TransportProtocol.UDP else PmpOpcode.MAP_TCP


@dataclass(frozen=True, slots=True)
class PmpRequest:
    """A parsed request (for servers and tests)."""

    opcode: PmpOpcode
    internal_port: int = 0
    suggested_external_port: int = 0
    lifetime: int = 0


@dataclass(frozen=True, slots=True)
class PmpAddressResponse:
    """The gateway's external IPv4 address (RFC 6886 §3.2); also the format
    of its unsolicited announcements (§3.2.1)."""

    #: A :class:`PmpResultCode` member, or the bare int of an unknown code.
    result: int
    #: Seconds Since Start of Epoch.
    epoch: int
    #: Undefined (zero) unless ``result`` is SUCCESS.
    address: ipaddress.IPv4Address


@dataclass(frozen=True, slots=True)
class PmpMapResponse:
    """The answer to a map request (RFC 6886 §3.3)."""

    opcode: PmpOpcode
    result: int
    epoch: int
    internal_port: int
    #: 0 when a deletion succeeded (§3.4).
    external_port: int
    lifetime: int


PmpResponse = PmpAddressResponse | PmpMapResponse


# --- building ---------------------------------------------------------------------


def build_public_address_request() -> bytes:
    """Version 0, opcode 0 (RFC 6886 §3.2)."""
    return bytes((VERSION, PmpOpcode.PUBLIC_ADDRESS))


def build_map_request(
    *,
    transport: TransportProtocol,
    internal_port: int,
    suggested_external_port: int,
    lifetime: int,
) -> bytes:
    """A map request (RFC 6886 §3.3). Keyword-only so the two ports cannot
    be swapped by position."""
    check_field("internal port", internal_port, 16)
    check_field("suggested external port", suggested_external_port, 16)
    check_field("lifetime", lifetime, 32)
    return _MAP_REQUEST.pack(
        VERSION, map_opcode(transport), 0, internal_port, suggested_external_port, lifetime
    )


def build_address_response(response: PmpAddressResponse) -> bytes:
    """For servers and tests."""
    check_field("result code", response.result, 16)
    check_field("epoch", response.epoch, 32)
    return _ADDRESS_RESPONSE.pack(
        VERSION,
        RESPONSE_BIT | PmpOpcode.PUBLIC_ADDRESS,
        response.result,
        response.epoch,
        response.address.packed,
    )


def build_map_response(response: PmpMapResponse) -> bytes:
    """For servers and tests."""
    if response.opcode is PmpOpcode.PUBLIC_ADDRESS:
        raise LocalProtocolError("a map response needs a map opcode")
    check_field("result code", response.result, 16)
    check_field("epoch", response.epoch, 32)
    check_field("internal port", response.internal_port, 16)
    check_field("external port", response.external_port, 16)
    check_field("lifetime", response.lifetime, 32)
    return _MAP_RESPONSE.pack(
        VERSION,
        RESPONSE_BIT | response.opcode,
        response.result,
        response.epoch,
        response.internal_port,
        response.external_port,
        response.lifetime,
    )


# --- parsing ----------------------------------------------------------------------


def parse_response(data: bytes) -> PmpResponse | UnsupportedVersion:
    """Parse and validate what a NAT-PMP gateway sent."""
    # A PCP-only server answers version 0 with UNSUPP_VERSION (1), its
    # 8-bit code in the low byte of NAT-PMP's 16-bit field.
    other = check_response_version(data, VERSION, PmpDecodeError)
    if other is not None:
        return other
    if not data[1] & RESPONSE_BIT:
        raise PmpDecodeError(PortmapDecodeFailure.NOT_A_RESPONSE, f"opcode {data[1]}")
    opcode = data[1] & ~RESPONSE_BIT
    if opcode == PmpOpcode.PUBLIC_ADDRESS:
        if len(data) != ADDRESS_RESPONSE_LENGTH:
            raise PmpDecodeError(
                PortmapDecodeFailure.BAD_LENGTH, f"address response of {len(data)}"
            )
        _v, _op, result, epoch, address = _ADDRESS_RESPONSE.unpack(data)
        code = result_code(PmpResultCode, result)
        return PmpAddressResponse(code, epoch, ipaddress.IPv4Address(address))
    if opcode in (PmpOpcode.MAP_UDP, PmpOpcode.MAP_TCP):
        if len(data) != MAP_RESPONSE_LENGTH:
            raise PmpDecodeError(PortmapDecodeFailure.BAD_LENGTH, f"map response of {len(data)}")
        _v, _op, result, epoch, internal, external, lifetime = _MAP_RESPONSE.unpack(data)
        code = result_code(PmpResultCode, result)
        return PmpMapResponse(PmpOpcode(opcode), code, epoch, internal, external, lifetime)
    raise PmpDecodeError(PortmapDecodeFailure.UNKNOWN_OPCODE, f"opcode {opcode}")


def parse_request(data: bytes) -> PmpRequest:
    """Parse what a NAT-PMP client sent (for servers and tests)."""
    if len(data) < 2:
        raise PmpDecodeError(PortmapDecodeFailure.TRUNCATED, f"{len(data)} bytes")
    if data[0] != VERSION:
        raise PmpDecodeError(PortmapDecodeFailure.WRONG_VERSION, f"version {data[0]}")
    if data[1] & RESPONSE_BIT:
        raise PmpDecodeError(PortmapDecodeFailure.NOT_A_REQUEST, f"opcode {data[1]}")
    if data[1] == PmpOpcode.PUBLIC_ADDRESS:
        if len(data) != 2:
            raise PmpDecodeError(PortmapDecodeFailure.BAD_LENGTH, f"address request of {len(data)}")
        return PmpRequest(PmpOpcode.PUBLIC_ADDRESS)
    if data[1] in (PmpOpcode.MAP_UDP, PmpOpcode.MAP_TCP):
        if len(data) != MAP_REQUEST_LENGTH:
            raise PmpDecodeError(PortmapDecodeFailure.BAD_LENGTH, f"map request of {len(data)}")
        _v, opcode, _reserved, internal, external, lifetime = _MAP_REQUEST.unpack(data)
        return PmpRequest(PmpOpcode(opcode), internal, external, lifetime)
    raise PmpDecodeError(PortmapDecodeFailure.UNKNOWN_OPCODE, f"opcode {data[1]}")
