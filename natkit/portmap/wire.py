"""What PCP and NAT-PMP share on the wire, and how their parsers fail.

PCP (RFC 6887) grew out of NAT-PMP (RFC 6886): both use UDP 5351 towards
the gateway and 5350 for announcements, and both start with a version
byte, so one gateway can serve both and tell them apart (RFC 6886 §1.1).
A server that does not speak the version it was sent answers "unsupported
version" with its own version in the first byte; that answer is the only
message either parser accepts from the other protocol
(:func:`check_response_version`).

Both codecs also build with the same range checks (:func:`check_field`) and
keep result codes they do not know as bare ints (:func:`result_code`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum, IntEnum

from natkit.errors import LocalProtocolError, MalformedInput

#: The gateway listens here for PCP and NAT-PMP requests (RFC 6887 §19.1, RFC 6886 §3.1).
SERVER_PORT = 5351
#: Clients listen here for unsolicited announcements (RFC 6887 §14.1, RFC 6886 §3.2.1).
CLIENT_PORT = 5350
#: Where restarted gateways multicast their announcements.
ANNOUNCE_GROUP_V4 = ipaddress.IPv4Address("224.0.0.1")
ANNOUNCE_GROUP_V6 = ipaddress.IPv6Address("ff02::1")
#: The top bit of the opcode byte marks a response in both protocols
#: (PCP's R bit, RFC 6887 §7.1; NAT-PMP's 128 + opcode, RFC 6886 §3.2).
RESPONSE_BIT = 0x80
#: "Unsupported version" is result code 1 in both (RFC 6887 §7.4, RFC 6886 §3.5).
UNSUPPORTED_VERSION_RESULT = 1


class PortmapDecodeFailure(Enum):
    """Why bytes were not accepted as a PCP or NAT-PMP message."""

    TRUNCATED = "shorter than the message it claims to be"
    TOO_LONG = "longer than the protocol allows"
    MISALIGNED = "length is not a multiple of 4"
    WRONG_VERSION = "version is not the one this parser speaks"
    NOT_A_RESPONSE = "a request where a response was expected"
    NOT_A_REQUEST = "a response where a request was expected"
    UNKNOWN_OPCODE = "opcode this parser does not implement"
    BAD_LENGTH = "length does not fit the opcode"
    OPTION_OVERRUN = "option runs past the end of the message"


class PortmapDecodeError(MalformedInput[PortmapDecodeFailure]):
    """Bytes from a gateway (or client) that are not a valid message."""


class PcpDecodeError(PortmapDecodeError):
    """Not a valid PCP message (RFC 6887)."""


class PmpDecodeError(PortmapDecodeError):
    """Not a valid NAT-PMP message (RFC 6886)."""


@dataclass(frozen=True, slots=True)
class UnsupportedVersion:
    """A gateway refused our version and told us the one it speaks.

    A NAT-PMP-only gateway answers a PCP request with version 0 (RFC 6887
    §9, RFC 6886 §3.5): the caller should retry with NAT-PMP.
    """

    #: The version byte of the answer: the highest version the server speaks.
    server_version: int


def check_response_version(
    data: bytes, version: int, error: type[PortmapDecodeError]
) -> UnsupportedVersion | None:
    """The first check of both response parsers: ``None`` when ``data`` is
    of ``version``; the other protocol's "unsupported version" answer as an
    :class:`UnsupportedVersion`; ``error`` for anything else.

    The answer is recognised in bytes 2-3, where both protocols put the
    result: PCP an 8-bit code after a reserved byte (RFC 6887 §7.2),
    NAT-PMP a 16-bit one (RFC 6886 §3.5).
    """
    if len(data) < 4:
        raise error(PortmapDecodeFailure.TRUNCATED, f"{len(data)} bytes")
    if data[0] == version:
        return None
    if data[2] == 0 and data[3] == UNSUPPORTED_VERSION_RESULT:
        return UnsupportedVersion(data[0])
    raise error(PortmapDecodeFailure.WRONG_VERSION, f"version {data[0]}")


def gateway_protocols(data: bytes) -> tuple[bool, bool]:
    """Which client a datagram from the gateway's port 5351 is for, as
    ``(pcp, nat_pmp)``, when both share one socket (RFC 6886 §1.1).

    By the version byte (0: NAT-PMP, else PCP), except the "unsupported
    version" answer, which carries the server's own version and so goes to
    the client of the *other* protocol: version 0 with result 1 answers a
    PCP request (RFC 6887 §9), version 2 with result 1 a NAT-PMP one. A PCP
    ANNOUNCE goes to both: a NAT-PMP client renews on hearing one (miniupnpd
    announces restarts in PCP only).
    """
    if len(data) < 4:
        return (True, True)  # each counts it malformed
    if data[0] != 0 and data[1] == RESPONSE_BIT:
        return (True, True)  # an ANNOUNCE response (opcode 0)
    unsupported = data[2] == 0 and data[3] == UNSUPPORTED_VERSION_RESULT
    nat_pmp = (data[0] == 0) != unsupported
    return (not nat_pmp, nat_pmp)


def result_code(codes: type[IntEnum], value: int) -> int:
    """``value`` as a member of ``codes``, or the bare int of an unknown code."""
    return codes(value) if value in codes.__members__.values() else value


def check_field(name: str, value: int, bits: int) -> None:
    """Refuse to build a field that does not fit in ``bits`` (caller's error)."""
    if not 0 <= value < 1 << bits:
        raise LocalProtocolError(f"{name} out of range: {value}")
