"""RFC 6886 message layouts, byte for byte; py-natpmp as an interop oracle."""

from __future__ import annotations

import ipaddress

import pytest
from natpmp import NATPMP
from portmap_testlib import pmp_address_response, pmp_map_response

from natkit.errors import LocalProtocolError
from natkit.portmap.mapping import TransportProtocol
from natkit.portmap.pmp import (
    PmpAddressResponse,
    PmpMapResponse,
    PmpOpcode,
    PmpRequest,
    PmpResultCode,
    build_address_response,
    build_map_request,
    build_map_response,
    build_public_address_request,
    parse_request,
    parse_response,
)
from natkit.portmap.wire import PmpDecodeError, PortmapDecodeFailure, UnsupportedVersion

#: RFC 6886 §3.3: map UDP 51820, suggest external 51820, for 7200 s.
MAP_REQUEST = bytes.fromhex(
    "00"  # Vers = 0
    "01"  # OP = 1 (map UDP)
    "0000"  # Reserved
    "ca6c"  # Internal Port = 51820
    "ca6c"  # Suggested External Port = 51820
    "00001c20"  # Requested Port Mapping Lifetime = 7200
)


def test_public_address_request_is_two_bytes() -> None:
    """RFC 6886 §3.2: Vers = 0, OP = 0."""
    assert build_public_address_request() == b"\x00\x00"


def test_map_request_is_rfc6886_layout() -> None:
    built = build_map_request(
        transport=TransportProtocol.UDP,
        internal_port=51820,
        suggested_external_port=51820,
        lifetime=7200,
    )
    assert built == MAP_REQUEST


def test_tcp_is_opcode_two_and_ports_keep_their_places() -> None:
    built = build_map_request(
        transport=TransportProtocol.TCP,
        internal_port=1111,
        suggested_external_port=2222,
        lifetime=0,
    )
    assert built == bytes.fromhex("00020000045708ae00000000")


@pytest.mark.parametrize(
    ("transport", "library_protocol"),
    [
        (TransportProtocol.UDP, NATPMP.NATPMP_PROTOCOL_UDP),
        (TransportProtocol.TCP, NATPMP.NATPMP_PROTOCOL_TCP),
    ],
)
@pytest.mark.parametrize(
    ("internal", "external", "lifetime"), [(51820, 51820, 7200), (1, 65535, 0), (8080, 80, 60)]
)
def test_requests_match_py_natpmp(
    transport: TransportProtocol,
    library_protocol: int,
    internal: int,
    external: int,
    lifetime: int,
) -> None:
    """py-natpmp's request classes (not its I/O) as an independent encoder."""
    ours = build_map_request(
        transport=transport,
        internal_port=internal,
        suggested_external_port=external,
        lifetime=lifetime,
    )
    theirs = NATPMP.PortMapRequest(library_protocol, internal, external, lifetime).toBytes()
    assert ours == theirs
    assert build_public_address_request() == NATPMP.PublicAddressRequest().toBytes()


def test_responses_we_build_parse_in_py_natpmp() -> None:
    data = build_map_response(PmpMapResponse(PmpOpcode.MAP_UDP, 0, 99, 51820, 60000, 3600))
    theirs = NATPMP.PortMapResponse(data)
    assert (theirs.opcode, theirs.result, theirs.sec_since_epoch) == (129, 0, 99)
    assert (theirs.private_port, theirs.public_port, theirs.lifetime) == (51820, 60000, 3600)
    address = build_address_response(
        PmpAddressResponse(0, 99, ipaddress.IPv4Address("203.0.113.7"))
    )
    assert NATPMP.PublicAddressResponse(address).ip == "203.0.113.7"


def test_address_response_parses() -> None:
    assert parse_response(pmp_address_response(epoch=42)) == PmpAddressResponse(
        PmpResultCode.SUCCESS, 42, ipaddress.IPv4Address("203.0.113.7")
    )


def test_map_response_parses() -> None:
    data = pmp_map_response(epoch=42, external_port=60000, lifetime=3600)
    assert parse_response(data) == PmpMapResponse(
        PmpOpcode.MAP_UDP, PmpResultCode.SUCCESS, 42, 51820, 60000, 3600
    )


def test_every_rfc6886_result_code_is_named_and_unknown_ones_stay_ints() -> None:
    assert [(c.name, c.value) for c in PmpResultCode] == [
        ("SUCCESS", 0),
        ("UNSUPPORTED_VERSION", 1),
        ("NOT_AUTHORIZED", 2),
        ("NETWORK_FAILURE", 3),
        ("OUT_OF_RESOURCES", 4),
        ("UNSUPPORTED_OPCODE", 5),
    ]
    parsed = parse_response(pmp_map_response(epoch=1, result=300))
    assert isinstance(parsed, PmpMapResponse)
    assert parsed.result == 300


def test_pcp_servers_unsupported_version_answer_says_version_two() -> None:
    """A PCP-only server answers version 0 with UNSUPP_VERSION and version 2."""
    data = bytes.fromhex("028000010000070800000009") + bytes(12)
    assert parse_response(data) == UnsupportedVersion(2)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", PortmapDecodeFailure.TRUNCATED),
        (b"\x00\x80\x00", PortmapDecodeFailure.TRUNCATED),
        (b"\x02" + pmp_address_response(epoch=1)[1:], PortmapDecodeFailure.WRONG_VERSION),
        (b"\x00\x01" + pmp_map_response(epoch=1)[2:], PortmapDecodeFailure.NOT_A_RESPONSE),
        (b"\x00\x83" + pmp_map_response(epoch=1)[2:], PortmapDecodeFailure.UNKNOWN_OPCODE),
        (pmp_address_response(epoch=1)[:11], PortmapDecodeFailure.BAD_LENGTH),
        (pmp_address_response(epoch=1) + b"\x00", PortmapDecodeFailure.BAD_LENGTH),
        (pmp_map_response(epoch=1)[:12], PortmapDecodeFailure.BAD_LENGTH),
        (pmp_map_response(epoch=1) + bytes(4), PortmapDecodeFailure.BAD_LENGTH),
        (bytes.fromhex("0080000100000005"), PortmapDecodeFailure.BAD_LENGTH),
    ],
)
def test_response_parser_rejects_with_a_reason(data: bytes, reason: PortmapDecodeFailure) -> None:
    with pytest.raises(PmpDecodeError) as caught:
        parse_response(data)
    assert caught.value.reason is reason


def test_request_parser_for_fake_servers() -> None:
    assert parse_request(b"\x00\x00") == PmpRequest(PmpOpcode.PUBLIC_ADDRESS)
    assert parse_request(MAP_REQUEST) == PmpRequest(PmpOpcode.MAP_UDP, 51820, 51820, 7200)
    for bad in (b"\x00", b"\x00\x00\x00", MAP_REQUEST[:11], b"\x00\x81" + MAP_REQUEST[2:]):
        with pytest.raises(PmpDecodeError):
            parse_request(bad)


def test_builder_refuses_impossible_fields() -> None:
    with pytest.raises(LocalProtocolError, match=r"^internal port out of range: 65536$"):
        build_map_request(
            transport=TransportProtocol.UDP,
            internal_port=65536,
            suggested_external_port=1,
            lifetime=1,
        )
    with pytest.raises(LocalProtocolError):
        build_map_response(PmpMapResponse(PmpOpcode.PUBLIC_ADDRESS, 0, 0, 0, 0, 0))
