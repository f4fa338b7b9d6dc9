"""UDP on a raw socket, for sharing a port another program owns (pure part).

Theory of operation. WireGuard binds its listen port without SO_REUSEADDR or
SO_REUSEPORT, so no second UDP socket can bind it. A raw ``IPPROTO_UDP``
socket needs no port: the program writes the 8-byte UDP header itself, with
WireGuard's port as the source, so natkit's checks leave through the very
NAT mapping WireGuard's packets use. On receive, the kernel hands a raw
socket a copy of *every* UDP datagram of the host, before UDP's own port
demultiplexing (WireGuard still gets its copy). A classic BPF socket filter
(``SO_ATTACH_FILTER``) keeps only what natkit wants, in the kernel:

1. UDP destination port = the shared port. Without this check a stale
   socket would answer on ports it no longer owns (tailscale#13140); the
   Python side checks it a second time (:func:`accept_stun`).
2. The STUN magic cookie (RFC 8489 §5) at UDP payload offset 4. WireGuard's
   messages start with a type byte 1-4 and three zero bytes, and their bytes
   4-7 are the sender index or random data, so a WireGuard packet passes the
   filter only if those four bytes happen to equal the cookie (2^-32);
   :func:`accept_stun` then also wants STUN's two zero top bits and 20 bytes.

Offsets. An IPv4 raw socket sees the IP header, whose length varies with
options (RFC 791 IHL), so the IPv4 program loads ``4 * (ip[0] & 0x0f)``
into the index register first (``ldxb 4*([0]&0xf)``), and counts the UDP
fields from there; a fixed offset of 20 would miss every packet with IP
options. It also refuses non-first fragments, whose "UDP header" would be
payload bytes (the kernel reassembles before raw delivery, so this is only a
guard). An IPv6 raw socket sees no IP header at all (RFC 3542 §3: data
starts at the transport header), so the IPv6 program counts from 0.

Checksums. IPv4 UDP may carry checksum 0, "no checksum" (RFC 768), and NATs
rewrite it correctly, so :func:`build_udp` leaves it 0 unless told the
source address (a raw socket without ``IP_HDRINCL`` does not know which
source the kernel will pick). A received IPv4 checksum is *not* verified:
the kernel hands raw sockets their copy before UDP checks anything, and a
datagram from this host or from a veth peer still carries the partial
checksum of checksum offload, which only the device would have finished.
STUN's own FINGERPRINT and MESSAGE-INTEGRITY protect what natkit reads.
IPv6 forbids checksum 0 (RFC 8200 §8.1): the socket sets ``IPV6_CHECKSUM``
(RFC 3542 §3.1), so the kernel fills it on send (it knows the source
address) and verifies it on receive, offload included.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import Enum

from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError, MalformedInput
from natkit.stun.constants import HEADER_LENGTH as STUN_HEADER_LENGTH
from natkit.stun.constants import MAGIC_COOKIE, MAGIC_COOKIE_BYTES

IPPROTO_UDP = 17
UDP_HEADER_LENGTH = 8
IPV4_MIN_HEADER_LENGTH = 20
#: Offset of the checksum in the UDP header: what ``IPV6_CHECKSUM`` is set to.
UDP_CHECKSUM_OFFSET = 6
#: The largest UDP payload an IPv4 datagram without options can carry.
MAX_PAYLOAD = 0xFFFF - IPV4_MIN_HEADER_LENGTH - UDP_HEADER_LENGTH
_UDP = struct.Struct("!HHHH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")


# ------------------------------------------------------------ classic BPF


# Opcode parts (``linux/bpf_common.h``): class | size | mode, or class | op | source.
BPF_LD, BPF_LDX, BPF_JMP, BPF_RET = 0x00, 0x01, 0x05, 0x06
BPF_W, BPF_H, BPF_B = 0x00, 0x08, 0x10
BPF_IMM, BPF_ABS, BPF_IND, BPF_MSH = 0x00, 0x20, 0x40, 0xA0
BPF_JEQ, BPF_JSET = 0x10, 0x40
BPF_K = 0x00

#: ``ret`` value meaning "deliver the whole packet"; 0 means drop.
ACCEPT = 0xFFFFFFFF
DROP = 0
#: IPv4 flags/fragment offset field: MF flag and the 13-bit offset (RFC 791).
_FRAGMENT_BITS = 0x3FFF


@dataclass(frozen=True, slots=True)
class BpfInstruction:
    """One ``struct sock_filter``: opcode, jump-if-true, jump-if-false, constant."""

    code: int
    jt: int
    jf: int
    k: int

    def __post_init__(self) -> None:
        if not (0 <= self.code <= 0xFFFF and 0 <= self.jt <= 0xFF and 0 <= self.jf <= 0xFF):
            raise LocalProtocolError(f"BPF instruction out of range: {self}")
        if not 0 <= self.k <= 0xFFFFFFFF:
            raise LocalProtocolError(f"BPF constant out of range: {self.k}")


def _stmt(code: int, k: int) -> BpfInstruction:
    return BpfInstruction(code, 0, 0, k)


def _jump(code: int, k: int, jt: int, jf: int) -> BpfInstruction:
    return BpfInstruction(code, jt, jf, k)


def stun_filter(port: int, version: int) -> tuple[BpfInstruction, ...]:
    """The socket filter passing only STUN to UDP ``port`` (IP ``version`` 4 or 6).

    IPv4 (the socket sees the IP header)::

        ldh [6]              ; flags + fragment offset
        jset #0x3fff, drop   ; a fragment: its first 8 bytes are not a UDP header
        ldxb 4*([0]&0xf)     ; X = IP header length
        ldh [x+2]            ; UDP destination port
        jne #port, drop
        ld [x+12]            ; UDP payload bytes 4-7
        jne #cookie, drop
        ret #-1
      drop: ret #0

    IPv6 is the same from ``ldh [2]`` on, with X = 0 (no IP header).
    A load past the end of the packet ends the program with "drop".
    """
    _check_port(port)
    port_and_cookie = [
        _stmt(BPF_LD | BPF_H | BPF_IND, 2),
        _jump(BPF_JMP | BPF_JEQ | BPF_K, port, 0, 3),
        _stmt(BPF_LD | BPF_W | BPF_IND, UDP_HEADER_LENGTH + 4),
        _jump(BPF_JMP | BPF_JEQ | BPF_K, MAGIC_COOKIE, 0, 1),
        _stmt(BPF_RET | BPF_K, ACCEPT),
        _stmt(BPF_RET | BPF_K, DROP),
    ]
    if version == 6:
        # X starts at 0 (Linux clears it), but say so rather than rely on it.
        return (_stmt(BPF_LDX | BPF_W | BPF_IMM, 0), *port_and_cookie)
    if version != 4:
        raise LocalProtocolError(f"IP version must be 4 or 6, not {version}")
    fragment_check = [
        _stmt(BPF_LD | BPF_H | BPF_ABS, 6),
        # Skip the ldx and all but the last instruction: to the final "drop".
        _jump(BPF_JMP | BPF_JSET | BPF_K, _FRAGMENT_BITS, len(port_and_cookie), 0),
        _stmt(BPF_LDX | BPF_B | BPF_MSH, 0),
    ]
    return (*fragment_check, *port_and_cookie)


_SOCK_FILTER = struct.Struct("=HBBI")


def encode_filter(program: tuple[BpfInstruction, ...]) -> bytes:
    """The program as an array of ``struct sock_filter`` (native byte order)."""
    if not 0 < len(program) <= 4096:  # BPF_MAXINSNS
        raise LocalProtocolError(f"a BPF program has 1-4096 instructions, not {len(program)}")
    return b"".join(_SOCK_FILTER.pack(i.code, i.jt, i.jf, i.k) for i in program)


# ------------------------------------------------------- checksums, headers


def internet_checksum(data: bytes) -> int:
    """The 16-bit one's complement of the one's complement sum (RFC 1071)."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo_header(source: IPAddress, destination: IPAddress, length: int) -> bytes:
    if source.version != destination.version:
        raise LocalProtocolError(f"mixed address families: {source}, {destination}")
    if source.version == 4:
        # RFC 768: source, destination, zero, protocol, UDP length.
        return source.packed + destination.packed + struct.pack("!BBH", 0, IPPROTO_UDP, length)
    # RFC 8200 §8.1: source, destination, upper-layer length (32 bits), zeros, next header.
    return source.packed + destination.packed + struct.pack("!I3xB", length, IPPROTO_UDP)


def udp_checksum(source: IPAddress, destination: IPAddress, segment: bytes) -> int:
    """The UDP checksum of ``segment`` (header with checksum 0, and payload).

    A computed 0 is sent as 0xFFFF, since 0 means "none" (RFC 768).
    """
    value = internet_checksum(_pseudo_header(source, destination, len(segment)) + segment)
    return value or 0xFFFF


def build_udp(
    source_port: int,
    destination: Endpoint,
    payload: bytes,
    *,
    source_address: IPAddress | None = None,
) -> bytes:
    """The UDP header and payload a raw socket sends (the kernel adds the IP header).

    With ``source_address`` the checksum is computed; without it, it is 0:
    "none" for IPv4 (RFC 768), and for IPv6 a placeholder the kernel fills
    (``IPV6_CHECKSUM``).
    """
    _check_port(source_port)
    _check_port(destination.port)
    if len(payload) > MAX_PAYLOAD:
        raise LocalProtocolError(f"UDP payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    length = UDP_HEADER_LENGTH + len(payload)
    segment = _UDP.pack(source_port, destination.port, length, 0) + payload
    if source_address is None:
        return segment
    checksum = udp_checksum(source_address, destination.address, segment)
    return segment[:UDP_CHECKSUM_OFFSET] + checksum.to_bytes(2, "big") + segment[8:]


# ---------------------------------------------------------------- parsing


class RawUdpFailure(Enum):
    """Why bytes from a raw socket were not taken as a UDP datagram."""

    SHORT = "shorter than its headers"
    VERSION = "not IPv4"
    HEADER_LENGTH = "bad IPv4 header length"
    TOTAL_LENGTH = "IPv4 total length disagrees with the packet"
    PROTOCOL = "not UDP"
    FRAGMENT = "a fragment"
    UDP_LENGTH = "bad UDP length"
    CHECKSUM = "zero UDP checksum over IPv6"


class RawUdpError(MalformedInput[RawUdpFailure]):
    """A packet from a raw socket that is not a well-formed UDP datagram."""


@dataclass(frozen=True, slots=True)
class RawDatagram:
    """One UDP datagram read from a raw socket."""

    source: Endpoint
    """Who sent it (address and UDP source port)."""
    destination_port: int
    """The UDP port it was addressed to."""
    payload: bytes
    destination_address: IPAddress | None = None
    """The address it was sent to (IPv4; an IPv6 raw socket does not see it)."""


def parse_ipv4_udp(packet: bytes) -> RawDatagram:
    """Parse what an IPv4 raw ``IPPROTO_UDP`` socket reads: IP header, UDP, payload."""
    if len(packet) < IPV4_MIN_HEADER_LENGTH:
        raise RawUdpError(RawUdpFailure.SHORT, f"{len(packet)} bytes")
    (ver_ihl, _tos, total, _ident, fragment, _ttl, proto, _csum, src, dst) = _IPV4.unpack_from(
        packet
    )
    if ver_ihl >> 4 != 4:
        raise RawUdpError(RawUdpFailure.VERSION, f"version {ver_ihl >> 4}")
    header_length = (ver_ihl & 0x0F) * 4
    if header_length < IPV4_MIN_HEADER_LENGTH or header_length > len(packet):
        raise RawUdpError(RawUdpFailure.HEADER_LENGTH, f"{header_length} bytes")
    if total != len(packet):
        raise RawUdpError(RawUdpFailure.TOTAL_LENGTH, f"says {total}, got {len(packet)}")
    if proto != IPPROTO_UDP:
        raise RawUdpError(RawUdpFailure.PROTOCOL, f"protocol {proto}")
    if fragment & _FRAGMENT_BITS:
        raise RawUdpError(RawUdpFailure.FRAGMENT)
    datagram = _parse_segment(packet[header_length:], ipaddress.IPv4Address(src))
    destination = ipaddress.IPv4Address(dst)
    return RawDatagram(datagram.source, datagram.destination_port, datagram.payload, destination)


def parse_udp(segment: bytes, source_address: IPAddress) -> RawDatagram:
    """Parse what an IPv6 raw ``IPPROTO_UDP`` socket reads: the UDP header and
    payload; ``source_address`` comes from ``recvfrom``.

    The checksum was verified by the kernel (``IPV6_CHECKSUM``); 0 is refused
    as RFC 8200 §8.1 says.
    """
    datagram = _parse_segment(segment, source_address)
    if segment[UDP_CHECKSUM_OFFSET:UDP_HEADER_LENGTH] == b"\x00\x00":
        raise RawUdpError(RawUdpFailure.CHECKSUM)
    return datagram


def _parse_segment(segment: bytes, source_address: IPAddress) -> RawDatagram:
    if len(segment) < UDP_HEADER_LENGTH:
        raise RawUdpError(RawUdpFailure.SHORT, f"UDP segment of {len(segment)} bytes")
    source_port, destination_port, length, _checksum = _UDP.unpack_from(segment)
    # The UDP length may be shorter than the IP payload (RFC 768 allows a
    # surplus area, which UDP options use); it may not be longer.
    if not UDP_HEADER_LENGTH <= length <= len(segment):
        raise RawUdpError(RawUdpFailure.UDP_LENGTH, f"says {length}, got {len(segment)}")
    return RawDatagram(
        Endpoint(source_address, source_port),
        destination_port,
        segment[UDP_HEADER_LENGTH:length],
    )


def accept_stun(datagram: RawDatagram, port: int) -> bool:
    """The second, Python-side check of what the kernel filter passed:
    addressed to ``port``, and plausibly STUN (RFC 8489 §5: two zero bits,
    a whole header, the magic cookie)."""
    payload = datagram.payload
    return (
        datagram.destination_port == port
        and len(payload) >= STUN_HEADER_LENGTH
        and payload[0] & 0xC0 == 0
        and payload[4:8] == MAGIC_COOKIE_BYTES
    )


def _check_port(port: int) -> None:
    if not 1 <= port <= 0xFFFF:
        raise LocalProtocolError(f"UDP port must be 1-65535, not {port}")
