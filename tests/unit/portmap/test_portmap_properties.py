"""Property-based tests: whatever a gateway (or attacker on the LAN) sends,
parsers return a message or raise their typed decode error, and clients
count and drop what they cannot use, in every state, without raising.

1. Random bytes and mutations of valid messages (bit flips, truncation,
   extension, field edits) into every parser.
2. What a parser accepts survives re-encoding (parse is stable).
3. Random datagrams into PCP and NAT-PMP clients in each state.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from portmap_testlib import (
    GATEWAY,
    INTERNAL,
    NONCE,
    FakeGateway,
    Harness,
    pcp_announce_response,
    pcp_map_response,
    pmp_address_response,
    pmp_map_response,
)

from natkit.endpoint import Endpoint
from natkit.portmap import pcp, pmp
from natkit.portmap.lease_state import ClientState
from natkit.portmap.pcp_client import PcpClient
from natkit.portmap.pmp_client import PmpClient
from natkit.portmap.wire import PcpDecodeError, PmpDecodeError, UnsupportedVersion

FAST = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])

VALID_PCP = [
    pcp_map_response(),
    pcp_map_response(result=8, lifetime=30),
    pcp_announce_response(epoch=7),
    bytes.fromhex("0080000100000123"),
]
VALID_PMP = [
    pmp_address_response(epoch=5),
    pmp_map_response(epoch=5),
    pmp_map_response(epoch=5, opcode=2, result=4),
]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "grow", "set"]))
        if action == "flip" and data:
            index = draw(st.integers(0, len(data) - 1))
            data[index] ^= 1 << draw(st.integers(0, 7))
        elif action == "cut":
            del data[draw(st.integers(0, len(data))) :]
        elif action == "grow":
            data += draw(st.binary(max_size=48))
        elif action == "set" and data:
            index = draw(st.integers(0, min(len(data) - 1, 12)))
            data[index] = draw(st.integers(0, 255))
    return bytes(data)


def pcp_contract(data: bytes) -> None:
    try:
        message = pcp.parse_response(data)
    except PcpDecodeError:
        return
    if isinstance(message, pcp.PcpResponse):
        assert pcp.parse_response(pcp.build_response(message)) == message
    else:
        assert isinstance(message, UnsupportedVersion)


def pmp_contract(data: bytes) -> None:
    try:
        message = pmp.parse_response(data)
    except PmpDecodeError:
        return
    if isinstance(message, pmp.PmpAddressResponse):
        assert pmp.parse_response(pmp.build_address_response(message)) == message
    elif isinstance(message, pmp.PmpMapResponse):
        assert pmp.parse_response(pmp.build_map_response(message)) == message


@FAST
@given(st.binary(max_size=1200))
def test_random_bytes_into_every_parser(data: bytes) -> None:
    pcp_contract(data)
    pmp_contract(data)
    with contextlib.suppress(PcpDecodeError):
        pcp.parse_request(data)
    with contextlib.suppress(PmpDecodeError):
        pmp.parse_request(data)


@FAST
@given(mutated(VALID_PCP))
def test_mutated_pcp_responses(data: bytes) -> None:
    pcp_contract(data)


@FAST
@given(mutated(VALID_PMP))
def test_mutated_pmp_responses(data: bytes) -> None:
    pmp_contract(data)


@FAST
@given(
    opcode=st.sampled_from([pcp.Opcode.MAP, pcp.Opcode.ANNOUNCE]),
    result=st.integers(0, 255),
    lifetime=st.integers(0, 2**32 - 1),
    epoch=st.integers(0, 2**32 - 1),
    port=st.integers(0, 65535),
    address=st.one_of(
        st.ip_addresses(v=4).map(ipaddress.IPv4Address),
        st.ip_addresses(v=6).map(ipaddress.IPv6Address),
    ),
    options=st.lists(
        st.builds(pcp.PcpOption, st.integers(0, 255), st.binary(max_size=20)), max_size=3
    ),
)
def test_pcp_responses_round_trip(  # noqa: PLR0917 (hypothesis passes by keyword)
    opcode: pcp.Opcode,
    result: int,
    lifetime: int,
    epoch: int,
    port: int,
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    options: list[pcp.PcpOption],
) -> None:
    def message(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> pcp.PcpResponse:
        fields = pcp.MapFields(NONCE, 17, port, port, address)
        if opcode is pcp.Opcode.ANNOUNCE:
            fields = None
        return pcp.PcpResponse(opcode, result, lifetime, epoch, fields, tuple(options))

    # RFC 6887 §5: ::ffff:a.b.c.d *is* how PCP writes IPv4, so it reads back as IPv4.
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    expected = message(address if mapped is None else mapped)
    assert pcp.parse_response(pcp.build_response(message(address))) == expected


# --- clients on hostile input -----------------------------------------------------------


def held_client(kind: str) -> Harness:
    gateway = FakeGateway()
    if kind == "pcp":
        client: PcpClient | PmpClient = PcpClient(GATEWAY, INTERNAL, 0.0, rng=random.Random(1))
    else:
        client = PmpClient(GATEWAY, INTERNAL, 0.0)
    harness = Harness(client, gateway)
    harness.run_until(1)
    return harness


SOURCES = st.sampled_from([GATEWAY, Endpoint.parse("192.168.1.1:5350"), INTERNAL])


@FAST
@given(
    kind=st.sampled_from(["pcp", "pmp"]),
    state=st.sampled_from(["requesting", "held", "deleting"]),
    datagrams=st.lists(
        st.tuples(
            st.one_of(mutated(VALID_PCP), mutated(VALID_PMP), st.binary(max_size=80)), SOURCES
        ),
        max_size=8,
    ),
)
def test_clients_never_raise_on_what_arrives(
    kind: str, state: str, datagrams: list[tuple[bytes, Endpoint]]
) -> None:
    harness = held_client(kind)
    if state == "requesting":
        harness.gateway.silent = True
        harness.call(harness.client.revalidate)
        harness.gateway.restart(harness.now)
    elif state == "deleting":
        harness.gateway.silent = True
        harness.call(harness.client.delete)
    harness.gateway.silent = True
    for data, source in datagrams:
        harness.deliver(data, source)
        harness.run_until(harness.now + 0.5)
    harness.run_until(harness.now + 20_000)
    client = harness.client
    # Either still maintaining a mapping or cleanly finished, with timers to match.
    assert client.finished == (client.get_timer() is None)
    assert client.state in ClientState
    assert sum(client.dropped.values()) <= len(datagrams)
