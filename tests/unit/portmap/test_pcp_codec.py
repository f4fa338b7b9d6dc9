"""RFC 6887 message layouts, byte for byte, and the parser on hostile input."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from portmap_testlib import NONCE, pcp_announce_response, pcp_map_response

from natkit.errors import LocalProtocolError
from natkit.portmap.pcp import (
    SHORT_LIFETIME_ERRORS,
    MapFields,
    Opcode,
    OptionCode,
    PcpOption,
    PcpRequest,
    PcpResponse,
    ResultCode,
    build_announce_request,
    build_map_request,
    build_request,
    build_response,
    decode_address,
    encode_address,
    is_announcement,
    parse_request,
    parse_response,
)
from natkit.portmap.wire import PcpDecodeError, PortmapDecodeFailure, UnsupportedVersion

CLIENT_IP = ipaddress.IPv4Address("192.168.1.10")

#: RFC 6887 §7.1 + §11.1: a MAP request from 192.168.1.10 for UDP port
#: 51820, suggesting the same external port and no external address,
#: for 7200 s. Written out field by field.
MAP_REQUEST = bytes.fromhex(
    "02"  # Version = 2
    "01"  # R = 0, Opcode = MAP
    "0000"  # Reserved
    "00001c20"  # Requested Lifetime = 7200
    "00000000000000000000ffffc0a8010a"  # PCP Client's IP Address ::ffff:192.168.1.10
    "0102030405060708090a0b0c"  # Mapping Nonce
    "11"  # Protocol = 17 (UDP)
    "000000"  # Reserved
    "ca6c"  # Internal Port = 51820
    "ca6c"  # Suggested External Port = 51820
    "00000000000000000000ffff00000000"  # Suggested External IP ::ffff:0.0.0.0
)

#: RFC 6887 §7.2 + §11.1: the server's answer granting 203.0.113.7:60000 for 3600 s.
MAP_RESPONSE = bytes.fromhex(
    "02"  # Version = 2
    "81"  # R = 1, Opcode = MAP
    "00"  # Reserved
    "00"  # Result Code = SUCCESS
    "00000e10"  # Lifetime = 3600
    "000004d2"  # Epoch Time = 1234
    "000000000000000000000000"  # Reserved (96 bits)
    "0102030405060708090a0b0c"  # Mapping Nonce
    "11000000"  # Protocol, Reserved
    "ca6c"  # Internal Port
    "ea60"  # Assigned External Port = 60000
    "00000000000000000000ffffcb007107"  # Assigned External IP ::ffff:203.0.113.7
)


# --- building, byte for byte -----------------------------------------------------------


def test_map_request_is_rfc6887_layout() -> None:
    built = build_map_request(
        client_address=CLIENT_IP,
        nonce=NONCE,
        protocol=17,
        internal_port=51820,
        suggested_external_port=51820,
        lifetime=7200,
    )
    assert built == MAP_REQUEST
    assert len(built) == 60


def test_map_request_puts_internal_before_external_port() -> None:
    """Bytes 40-41 internal, 42-43 external (the swapped-ports bug)."""
    built = build_map_request(
        client_address=CLIENT_IP,
        nonce=NONCE,
        protocol=17,
        internal_port=1111,
        suggested_external_port=2222,
        suggested_external_address=ipaddress.IPv4Address("203.0.113.7"),
        lifetime=60,
    )
    assert struct.unpack_from("!HH", built, 40) == (1111, 2222)
    assert built[44:60] == bytes(10) + b"\xff\xff" + bytes([203, 0, 113, 7])


def test_delete_is_a_map_request_with_lifetime_zero() -> None:
    built = build_map_request(
        client_address=CLIENT_IP,
        nonce=NONCE,
        protocol=17,
        internal_port=51820,
        suggested_external_port=51820,
        lifetime=0,
    )
    assert built == MAP_REQUEST[:4] + bytes(4) + MAP_REQUEST[8:]


def test_announce_request_is_a_bare_header() -> None:
    """RFC 6887 §14.1: version 2, opcode 0, lifetime 0, the client address."""
    assert build_announce_request(CLIENT_IP) == (
        bytes.fromhex("0200000000000000") + bytes(10) + b"\xff\xff" + CLIENT_IP.packed
    )


def test_ipv6_client_address_is_written_as_is() -> None:
    address = ipaddress.IPv6Address("2001:db8::10")
    built = build_announce_request(address)
    assert built[8:24] == address.packed
    assert parse_request(built).client_address == address


def test_response_built_and_parsed_matches_hand_made_bytes() -> None:
    response = PcpResponse(
        Opcode.MAP,
        ResultCode.SUCCESS,
        3600,
        1234,
        MapFields(NONCE, 17, 51820, 60000, ipaddress.IPv4Address("203.0.113.7")),
    )
    assert build_response(response) == MAP_RESPONSE
    assert parse_response(MAP_RESPONSE) == response


def test_request_round_trips_with_options() -> None:
    options = (
        PcpOption(OptionCode.PREFER_FAILURE),
        PcpOption(OptionCode.THIRD_PARTY, encode_address(CLIENT_IP)),
        PcpOption(200, b"abc"),  # optional-to-process, padded to 4
    )
    request = PcpRequest(
        Opcode.MAP,
        7200,
        CLIENT_IP,
        MapFields(NONCE, 6, 22, 22, ipaddress.IPv4Address(0)),
        options,
    )
    data = build_request(request)
    assert len(data) == 60 + 4 + 20 + 8
    assert data[-8:] == bytes([200, 0, 0, 3]) + b"abc\x00"
    assert parse_request(data) == request
    assert [o.mandatory for o in options] == [True, True, False]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nonce": b"short"}, "mapping nonce of 5 bytes, not 12"),
        ({"internal_port": 70000}, "internal port out of range: 70000"),
        ({"suggested_external_port": -1}, "external port out of range: -1"),
        ({"lifetime": 1 << 32}, "lifetime out of range: 4294967296"),
        ({"protocol": 256}, "protocol out of range: 256"),
    ],
)
def test_builder_refuses_impossible_fields(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "client_address": CLIENT_IP,
        "nonce": NONCE,
        "protocol": 17,
        "internal_port": 51820,
        "suggested_external_port": 51820,
        "lifetime": 7200,
    }
    arguments.update(kwargs)
    with pytest.raises(LocalProtocolError, match=f"^{message}$"):
        build_map_request(**arguments)  # type: ignore[arg-type]


def test_address_helpers_map_ipv4() -> None:
    assert decode_address(encode_address(CLIENT_IP)) == CLIENT_IP
    assert decode_address(bytes(16)) == ipaddress.IPv6Address("::")


# --- result codes --------------------------------------------------------------------


def test_every_rfc6887_result_code_is_named() -> None:
    """RFC 6887 §7.4, in order."""
    assert [(c.name, c.value) for c in ResultCode] == [
        ("SUCCESS", 0),
        ("UNSUPP_VERSION", 1),
        ("NOT_AUTHORIZED", 2),
        ("MALFORMED_REQUEST", 3),
        ("UNSUPP_OPCODE", 4),
        ("UNSUPP_OPTION", 5),
        ("MALFORMED_OPTION", 6),
        ("NETWORK_FAILURE", 7),
        ("NO_RESOURCES", 8),
        ("UNSUPP_PROTOCOL", 9),
        ("USER_EX_QUOTA", 10),
        ("CANNOT_PROVIDE_EXTERNAL", 11),
        ("ADDRESS_MISMATCH", 12),
        ("EXCESSIVE_REMOTE_PEERS", 13),
    ]


def test_short_lifetime_errors_are_the_four_rfc6887_names() -> None:
    assert {c.name for c in SHORT_LIFETIME_ERRORS} == {
        "NETWORK_FAILURE",
        "NO_RESOURCES",
        "USER_EX_QUOTA",
        "CANNOT_PROVIDE_EXTERNAL",
    }


def test_result_codes_parse_to_members_and_unknown_ones_stay_ints() -> None:
    for code in ResultCode:
        parsed = parse_response(pcp_map_response(result=code))
        assert isinstance(parsed, PcpResponse)
        assert parsed.result is code
    unknown = parse_response(pcp_map_response(result=77))
    assert isinstance(unknown, PcpResponse)
    assert unknown.result == 77
    assert not isinstance(unknown.result, ResultCode)


# --- parsing hostile input ----------------------------------------------------------------


def test_announce_response_parses() -> None:
    parsed = parse_response(pcp_announce_response(epoch=5))
    assert parsed == PcpResponse(Opcode.ANNOUNCE, ResultCode.SUCCESS, 0, 5)


#: The ANNOUNCE miniupnpd 2.3.1 multicast from 192.168.1.1:5351 to
#: 224.0.0.1:5350 right after its restart (tcpdump in the lab): epoch 0.
MINIUPNPD_ANNOUNCE = bytes.fromhex("028000000000000000000000000000000000000000000000")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (MINIUPNPD_ANNOUNCE, True),
        (pcp_announce_response(epoch=5), True),
        (pcp_announce_response(epoch=5) + bytes([1, 0, 0, 0]), True),  # an empty option
        (pcp_announce_response(epoch=5, result=ResultCode.NOT_AUTHORIZED), False),
        # A PCP-only server refusing a NAT-PMP address request: opcode 0, result 1.
        (bytes.fromhex("028000010000070800000009") + bytes(12), False),
        (pcp_map_response(), False),
        (struct.pack("!BBHI4s", 0, 128, 0, 5, bytes(4)), False),  # NAT-PMP's announcement
        (MINIUPNPD_ANNOUNCE[:20], False),
        (b"", False),
        (b"\x02", False),
    ],
)
def test_is_announcement(data: bytes, expected: bool) -> None:
    assert is_announcement(data) is expected


def test_header_only_error_response_parses_without_map_fields() -> None:
    data = struct.pack("!BBBBII12x", 2, 0x81, 0, 3, 1800, 9)
    assert parse_response(data) == PcpResponse(Opcode.MAP, ResultCode.MALFORMED_REQUEST, 1800, 9)


def test_nat_pmp_servers_unsupported_version_answer_says_version_zero() -> None:
    """RFC 6886 §3.5: 8 bytes, version 0, 16-bit result code 1."""
    assert parse_response(bytes.fromhex("0080000100000123")) == UnsupportedVersion(0)
    assert parse_response(bytes.fromhex("0000000100000123")) == UnsupportedVersion(0)


def test_version_two_server_refusing_version_three_is_a_normal_response() -> None:
    data = struct.pack("!BBBBII12x", 2, 0x81, 0, 1, 1800, 9)
    parsed = parse_response(data)
    assert isinstance(parsed, PcpResponse)
    assert parsed.result is ResultCode.UNSUPP_VERSION


@pytest.mark.parametrize(
    ("data", "reason", "text"),
    [
        (b"", PortmapDecodeFailure.TRUNCATED, "shorter than the message it claims to be: 0 bytes"),
        (MAP_RESPONSE[:3], PortmapDecodeFailure.TRUNCATED, None),
        (MAP_RESPONSE[:20], PortmapDecodeFailure.TRUNCATED, None),
        (
            MAP_RESPONSE[:59],
            PortmapDecodeFailure.MISALIGNED,
            "length is not a multiple of 4: 59 bytes",
        ),
        (MAP_RESPONSE[:56], PortmapDecodeFailure.BAD_LENGTH, None),
        (MAP_RESPONSE + bytes(1044), PortmapDecodeFailure.TOO_LONG, None),
        (b"\x01" + MAP_RESPONSE[1:], PortmapDecodeFailure.WRONG_VERSION, "version is not the one"),
        (b"\x03" + MAP_RESPONSE[1:], PortmapDecodeFailure.WRONG_VERSION, None),
        (MAP_RESPONSE[:1] + b"\x01" + MAP_RESPONSE[2:], PortmapDecodeFailure.NOT_A_RESPONSE, None),
        (MAP_RESPONSE[:1] + b"\x82" + MAP_RESPONSE[2:], PortmapDecodeFailure.UNKNOWN_OPCODE, None),
        (MAP_RESPONSE[:1] + b"\xff" + MAP_RESPONSE[2:], PortmapDecodeFailure.UNKNOWN_OPCODE, None),
        (MAP_RESPONSE + bytes([1, 0, 0, 16]), PortmapDecodeFailure.OPTION_OVERRUN, None),
        (MAP_RESPONSE + bytes([1, 0, 0, 1]), PortmapDecodeFailure.OPTION_OVERRUN, None),
        (pcp_announce_response(epoch=1)[:-4], PortmapDecodeFailure.TRUNCATED, None),
    ],
)
def test_response_parser_rejects_with_a_reason(
    data: bytes, reason: PortmapDecodeFailure, text: str | None
) -> None:
    with pytest.raises(PcpDecodeError) as caught:
        parse_response(data)
    assert caught.value.reason is reason
    if text is not None:
        assert str(caught.value).startswith(text)


def test_request_parser_rejects_responses_and_short_maps() -> None:
    with pytest.raises(PcpDecodeError) as caught:
        parse_request(MAP_RESPONSE)
    assert caught.value.reason is PortmapDecodeFailure.NOT_A_REQUEST
    with pytest.raises(PcpDecodeError) as caught:
        parse_request(MAP_REQUEST[:48])
    assert caught.value.reason is PortmapDecodeFailure.BAD_LENGTH


def test_reserved_bits_are_ignored_on_reception() -> None:
    """RFC 6887 §7.2: reserved fields MUST be ignored by the receiver."""
    noisy = bytearray(MAP_RESPONSE)
    noisy[2] = 0xFF
    noisy[12:24] = b"\xaa" * 12
    noisy[37:40] = b"\xbb\xbb\xbb"
    assert parse_response(bytes(noisy)) == parse_response(MAP_RESPONSE)
