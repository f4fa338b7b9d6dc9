"""Raw UDP for a shared port: filter program, headers, checksums, parsing."""

from __future__ import annotations

import contextlib
import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wireguard_testlib import ipv4_packet, run_filter, stun_binding, udp_segment

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError, RemoteProtocolError
from natkit.wireguard.rawudp import (
    ACCEPT,
    MAX_PAYLOAD,
    RawDatagram,
    RawUdpError,
    RawUdpFailure,
    accept_stun,
    build_udp,
    encode_filter,
    internet_checksum,
    parse_ipv4_udp,
    parse_udp,
    stun_filter,
    udp_checksum,
)

PORT = 51820
V4 = stun_filter(PORT, 4)
V6 = stun_filter(PORT, 6)
# WireGuard's handshake initiation: type 1, three zero bytes, sender index...
WG_INITIATION = bytes([1, 0, 0, 0]) + bytes(range(4, 148))


# ------------------------------------------------------------------ filter


def test_filter_passes_stun_to_the_port_only() -> None:
    stun = stun_binding()
    assert run_filter(V4, ipv4_packet(udp_segment(3478, PORT, stun))) == ACCEPT
    assert run_filter(V4, ipv4_packet(udp_segment(3478, PORT + 1, stun))) == 0
    assert run_filter(V4, ipv4_packet(udp_segment(3478, PORT, WG_INITIATION))) == 0
    assert run_filter(V6, udp_segment(3478, PORT, stun)) == ACCEPT
    assert run_filter(V6, udp_segment(3478, PORT + 1, stun)) == 0
    assert run_filter(V6, udp_segment(3478, PORT, WG_INITIATION)) == 0


def test_filter_reads_the_ip_header_length() -> None:
    """With IP options the UDP header moves: a fixed offset of 20 misses it."""
    stun = stun_binding()
    for words in range(1, 11):
        options = b"\x01" * (4 * words - 1) + b"\x00"  # NOPs, end of list
        packet = ipv4_packet(udp_segment(3478, PORT, stun), options=options)
        assert run_filter(V4, packet) == ACCEPT
    # Where a filter with fixed offsets (20-byte header) would look, these
    # bytes say port PORT and the cookie; the real UDP header, after 4 bytes
    # of options, is for port 2.
    options = b"\x01\x01" + PORT.to_bytes(2, "big")
    packet = ipv4_packet(udp_segment(1, 2, b"\x21\x12\xa4\x42" * 5), options=options)
    assert run_filter(V4, packet) == 0
    assert packet[22:24] == PORT.to_bytes(2, "big")
    assert packet[32:36] == b"\x21\x12\xa4\x42"


def test_filter_drops_fragments_and_short_packets() -> None:
    segment = udp_segment(3478, PORT, stun_binding())
    assert run_filter(V4, ipv4_packet(segment, fragment=0x2000)) == 0  # more fragments
    assert run_filter(V4, ipv4_packet(segment, fragment=0x0003)) == 0  # offset 24
    assert run_filter(V4, ipv4_packet(segment, fragment=0x4000)) == ACCEPT  # DF is fine
    # Too short to hold the cookie: the load past the end drops it.
    assert run_filter(V4, ipv4_packet(udp_segment(3478, PORT, b"\x00\x01\x00"))) == 0
    assert run_filter(V6, udp_segment(3478, PORT, b"\x00\x01")) == 0
    assert run_filter(V4, b"\x45") == 0
    assert run_filter(V6, b"") == 0


@given(st.binary(max_size=120), st.integers(0, 0xFFFF))
def test_filter_agrees_with_the_python_check(payload: bytes, port: int) -> None:
    """Whatever the kernel program passes, the Python check decides the same
    on port and cookie; and real STUN to the port always passes both."""
    packet = ipv4_packet(udp_segment(3478, port, payload))
    passed = run_filter(V4, packet) == ACCEPT
    datagram = parse_ipv4_udp(packet)
    cookie = payload[4:8] == b"\x21\x12\xa4\x42"
    assert passed == (port == PORT and cookie)
    if accept_stun(datagram, PORT):
        assert passed
    assert (run_filter(V6, udp_segment(3478, port, payload)) == ACCEPT) == passed


def test_filter_checks_its_arguments() -> None:
    with pytest.raises(LocalProtocolError, match="1-65535"):
        stun_filter(0, 4)
    with pytest.raises(LocalProtocolError, match="4 or 6"):
        stun_filter(PORT, 5)
    with pytest.raises(LocalProtocolError, match="1-4096"):
        encode_filter(())


def test_encoded_filter_is_an_array_of_sock_filter() -> None:
    encoded = encode_filter(V4)
    assert len(encoded) == 8 * len(V4)
    # ldh [6] first: code 0x28, jt 0, jf 0, k 6 (native byte order).
    assert struct.unpack("=HBBI", encoded[:8]) == (0x28, 0, 0, 6)
    assert struct.unpack("=HBBI", encoded[-8:]) == (0x06, 0, 0, 0)


# ------------------------------------------------------ checksums, headers


def test_internet_checksum_rfc1071_example() -> None:
    # RFC 1071 §3: the sum of 0001 f203 f4f5 f6f7 is ddf2 (one's complement).
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0xFFFF - 0xDDF2
    # Odd length: padded with a zero byte, so the last word is f600.
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6")) == 0xFFFF - 0xDCFB


@pytest.mark.parametrize(
    ("source", "destination"),
    [("192.168.1.2", "203.0.113.10"), ("2001:db8:2::2", "2001:db8:1::20")],
)
def test_udp_checksum_verifies_to_zero(source: str, destination: str) -> None:
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    segment = build_udp(PORT, Endpoint(dst, 3478), b"odd-length", source_address=src)
    checksum = int.from_bytes(segment[6:8], "big")
    assert checksum == udp_checksum(src, dst, segment[:6] + b"\x00\x00" + segment[8:])
    # Summing again with the checksum in place gives 0 (RFC 768, RFC 8200 §8.1).
    length = len(segment)
    if src.version == 4:
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, 17, length)
    else:
        pseudo = src.packed + dst.packed + struct.pack("!I3xB", length, 17)
    assert internet_checksum(pseudo + segment) == 0


def test_build_udp_header() -> None:
    segment = build_udp(PORT, Endpoint.parse("203.0.113.10:3478"), b"hello")
    assert segment == struct.pack("!HHHH", PORT, 3478, 13, 0) + b"hello"
    with pytest.raises(LocalProtocolError, match="exceeds"):
        build_udp(PORT, Endpoint.parse("203.0.113.10:3478"), b"x" * (MAX_PAYLOAD + 1))
    with pytest.raises(LocalProtocolError, match="1-65535"):
        build_udp(PORT, Endpoint.parse("203.0.113.10:0"), b"x")
    with pytest.raises(LocalProtocolError, match="mixed"):
        build_udp(
            PORT,
            Endpoint.parse("203.0.113.10:1"),
            b"x",
            source_address=ipaddress.ip_address("::1"),
        )


# ---------------------------------------------------------------- parsing


def test_parse_ipv4_udp_with_and_without_checksum() -> None:
    payload = stun_binding()
    src, dst = ipaddress.IPv4Address("203.0.113.10"), ipaddress.IPv4Address("192.168.1.2")
    plain = ipv4_packet(udp_segment(3478, PORT, payload), source=str(src), destination=str(dst))
    expected = RawDatagram(Endpoint(src, 3478), PORT, payload, dst)
    assert parse_ipv4_udp(plain) == expected
    summed = build_udp(3478, Endpoint(dst, PORT), payload, source_address=src)
    packet = ipv4_packet(summed, source=str(src), destination=str(dst), options=b"\x01" * 4)
    assert parse_ipv4_udp(packet) == expected
    # Not verified: on a raw socket the field may hold an offloaded partial sum.
    broken = summed[:6] + b"\x12\x34" + summed[8:]
    assert parse_ipv4_udp(ipv4_packet(broken, source=str(src), destination=str(dst))) == expected


def test_udp_length_may_leave_a_surplus_area() -> None:
    # RFC 768 allows a UDP length below the IP payload (UDP options use it).
    segment = struct.pack("!HHHH", 3478, PORT, 12, 0) + b"data" + b"surplus"
    assert parse_ipv4_udp(ipv4_packet(segment)).payload == b"data"


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"\x45" * 19, RawUdpFailure.SHORT),
        (ipv4_packet(udp_segment(1, 2, b"x"), version=6), RawUdpFailure.VERSION),
        (b"\x44" + ipv4_packet(udp_segment(1, 2, b"x"))[1:], RawUdpFailure.HEADER_LENGTH),
        (b"\x4f" + ipv4_packet(udp_segment(1, 2, b"x"))[1:], RawUdpFailure.HEADER_LENGTH),
        (ipv4_packet(udp_segment(1, 2, b"x"), total=100), RawUdpFailure.TOTAL_LENGTH),
        (ipv4_packet(udp_segment(1, 2, b"x"), protocol=6), RawUdpFailure.PROTOCOL),
        (ipv4_packet(udp_segment(1, 2, b"x"), fragment=0x2000), RawUdpFailure.FRAGMENT),
        (ipv4_packet(b"\x00\x01\x00\x02\x00"), RawUdpFailure.SHORT),
        (ipv4_packet(struct.pack("!HHHH", 1, 2, 7, 0)), RawUdpFailure.UDP_LENGTH),
        (ipv4_packet(struct.pack("!HHHH", 1, 2, 9, 0)), RawUdpFailure.UDP_LENGTH),
    ],
)
def test_parse_ipv4_udp_refuses(packet: bytes, reason: RawUdpFailure) -> None:
    with pytest.raises(RawUdpError) as caught:
        parse_ipv4_udp(packet)
    assert caught.value.reason is reason
    assert isinstance(caught.value, RemoteProtocolError)


def test_parse_udp_for_ipv6() -> None:
    source = ipaddress.IPv6Address("2001:db8:1::20")
    segment = udp_segment(3478, PORT, stun_binding(), checksum=0x1234)
    assert parse_udp(segment, source) == RawDatagram(Endpoint(source, 3478), PORT, stun_binding())
    with pytest.raises(RawUdpError, match="zero UDP checksum"):
        parse_udp(udp_segment(3478, PORT, b"x"), source)
    with pytest.raises(RawUdpError, match="shorter"):
        parse_udp(b"\x00" * 7, source)


@given(st.binary(max_size=200))
def test_parsers_raise_only_their_error(data: bytes) -> None:
    for parse in (parse_ipv4_udp, lambda d: parse_udp(d, ipaddress.IPv6Address("::1"))):
        with contextlib.suppress(RawUdpError):
            parse(data)


def test_accept_stun_second_check() -> None:
    source = Endpoint.parse("203.0.113.10:3478")
    stun = stun_binding()
    assert accept_stun(RawDatagram(source, PORT, stun), PORT)
    # The port check of tailscale#13140: a datagram for another port is not ours.
    assert not accept_stun(RawDatagram(source, PORT + 1, stun), PORT)
    assert not accept_stun(RawDatagram(source, PORT, stun[:19]), PORT)
    assert not accept_stun(RawDatagram(source, PORT, b"\x40" + stun[1:]), PORT)
    assert not accept_stun(RawDatagram(source, PORT, stun[:4] + b"\x00" * 16), PORT)
