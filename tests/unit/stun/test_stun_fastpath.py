"""The fast path for plain Binding requests (``StunServer.answer_plain``)
against the full path (``StunServer.handle``).

The contract: for any bytes from any client on any socket of any server,
the fast path either declines (``None``, nothing counted) or returns the
very bytes the full path sends, to the same client from the same socket,
and counts exactly what the full path counts. And it does not decline what
it exists for: a Binding request with nothing but SOFTWARE and FINGERPRINT.
"""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stun_testlib import CLASSIC_TXID, TXID, endpoints, tlv, wire, with_fingerprint

from natkit.endpoint import Endpoint
from natkit.stun.attributes import MAX_TEXT
from natkit.stun.constants import AttributeType
from natkit.stun.fastpath import packed_peer, unpack_peer
from natkit.stun.server import ServerConfig, ServerCounters, StunServer, Transport

EXAMPLES = settings(deadline=None, max_examples=600, suppress_health_check=[HealthCheck.too_slow])

CONFIGS = (
    ServerConfig.basic("127.0.0.1", 3478),
    ServerConfig.basic("2001:db8::1", 3478, software="natkit test"),
    ServerConfig.rfc5780("203.0.113.10", "203.0.113.11"),
    ServerConfig.rfc5780("203.0.113.10", "203.0.113.11", 5000, 5001, software="ß ünïcode"),
    ServerConfig.rfc5780("2001:db8::10", "2001:db8::11"),
)
BINDING_REQUEST = 0x0001
#: Other message types: Binding indication/success/error, Allocate request,
#: and types with the top bits set.
OTHER_TYPES = (0x0011, 0x0101, 0x0111, 0x0003, 0x4001, 0x8001)

software_values = st.text(max_size=40).map(lambda t: t.encode()) | st.binary(max_size=40)
inert = st.tuples(st.just(int(AttributeType.SOFTWARE)), software_values)
others = st.tuples(
    st.sampled_from(
        [
            AttributeType.CHANGE_REQUEST,
            AttributeType.RESPONSE_PORT,
            AttributeType.PADDING,
            AttributeType.PRIORITY,
            AttributeType.USERNAME,
            AttributeType.MESSAGE_INTEGRITY,
            AttributeType.RESPONSE_ADDRESS,
            AttributeType.XOR_MAPPED_ADDRESS,
            AttributeType.ICE_CONTROLLING,
            0x7FFF,  # comprehension-required, unknown: 420
            0xC001,  # comprehension-optional, unknown
        ]
    ).map(int),
    st.binary(max_size=24),
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """Binding requests (RFC 5389 or RFC 3489 header) with inert and other
    attributes, FINGERPRINT right or wrong, sometimes mutated."""
    message_type = draw(st.sampled_from((BINDING_REQUEST,) * 6 + OTHER_TYPES))
    attributes = draw(st.lists(inert | others, max_size=4))
    # Padding bytes are not checked by the parser, but FINGERPRINT covers them.
    pads = draw(st.sampled_from([b"", b"\xff\xff\xff"]))
    body = [tlv(t, v, pad=pads[: -len(v) % 4]) for t, v in attributes]
    if draw(st.booleans()):  # RFC 3489: no cookie, 16-byte transaction ID
        classic_id = draw(st.binary(min_size=16, max_size=16))
        data = wire(message_type, *body, transaction_id=classic_id, cookie=b"")
    else:
        data = wire(message_type, *body, transaction_id=TXID)
    fingerprint = draw(st.sampled_from(["none", "right", "wrong", "not last"]))
    if fingerprint == "right":
        data = with_fingerprint(data)
    elif fingerprint == "wrong":
        signed = with_fingerprint(data)
        data = signed[:-1] + bytes([signed[-1] ^ 1])
    elif fingerprint == "not last":
        data = with_fingerprint(data) + tlv(AttributeType.SOFTWARE, b"x")
        data = data[:2] + struct.pack("!H", len(data) - 20) + data[4:]
    mutation = draw(st.sampled_from(["none"] * 3 + ["flip", "truncate", "extend", "length"]))
    if mutation == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    elif mutation == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif mutation == "extend":
        data += draw(st.binary(min_size=1, max_size=8))
    elif mutation == "length":
        data = data[:2] + struct.pack("!H", draw(st.integers(0, 0xFFFF))) + data[4:]
    return data


@st.composite
def plain_requests(draw: st.DrawFn) -> bytes:
    """What the fast path exists for: Binding requests carrying only valid
    SOFTWARE and at most a correct, final FINGERPRINT."""
    classic = draw(st.booleans())
    texts = draw(st.lists(st.text(max_size=MAX_TEXT // 4), max_size=2))
    body = [tlv(AttributeType.SOFTWARE, text.encode()) for text in texts]
    if classic:
        data = wire(BINDING_REQUEST, *body, transaction_id=CLASSIC_TXID, cookie=b"")
    else:
        data = wire(
            BINDING_REQUEST, *body, transaction_id=draw(st.binary(min_size=12, max_size=12))
        )
    return with_fingerprint(data) if draw(st.booleans()) else data


def _both_paths(
    config: ServerConfig, data: bytes, remote: Endpoint, socket: int
) -> tuple[bytes | None, StunServer, StunServer]:
    fast, full = StunServer(config), StunServer(config)
    answer = fast.answer_plain(data, packed_peer(remote), socket)
    reply = full.handle(data, remote, socket, Transport.UDP)
    if answer is None:
        assert fast.counters == ServerCounters(), "a declined request is not counted"
    else:
        assert reply is not None, "the fast path answered what the full path drops"
        assert answer == reply.data
        assert (reply.socket, reply.remote) == (socket, remote)
        assert fast.counters == full.counters
    return answer, fast, full


@EXAMPLES
@given(
    config=st.sampled_from(CONFIGS),
    data=requests() | st.binary(max_size=64),
    remote=endpoints,
    socket=st.integers(0, 3),
)
def test_fast_path_answers_as_the_full_path_or_declines(
    config: ServerConfig, data: bytes, remote: Endpoint, socket: int
) -> None:
    _both_paths(config, data, remote, socket % len(config.sockets))


@EXAMPLES
@given(
    config=st.sampled_from(CONFIGS),
    data=plain_requests(),
    remote=endpoints,
    socket=st.integers(0, 3),
)
def test_fast_path_answers_every_plain_binding_request(
    config: ServerConfig, data: bytes, remote: Endpoint, socket: int
) -> None:
    answer, _, _ = _both_paths(config, data, remote, socket % len(config.sockets))
    assert answer is not None


def test_software_that_looks_like_a_fingerprint_is_not_one() -> None:
    """The bytes 0x80 0x28 ('\\u0080(' in UTF-8) eight bytes before the end
    of a SOFTWARE value are text, not a FINGERPRINT to echo."""
    data = wire(BINDING_REQUEST, tlv(AttributeType.SOFTWARE, "abc\u0080(xyz".encode()))
    assert data[-8:-6] == b"\x80\x28"
    answer, fast, _ = _both_paths(CONFIGS[0], data, Endpoint.parse("127.0.0.1:5000"), 0)
    assert answer is not None
    assert fast.counters.answered == 1


@pytest.mark.parametrize(
    "data",
    [
        wire(BINDING_REQUEST, tlv(AttributeType.SOFTWARE, b"\xff")),  # not UTF-8
        wire(BINDING_REQUEST, tlv(AttributeType.SOFTWARE, b"a" * (MAX_TEXT + 1))),
        wire(BINDING_REQUEST, tlv(AttributeType.PADDING, b"\x00" * 4)),
        wire(BINDING_REQUEST, tlv(AttributeType.CHANGE_REQUEST, b"\x00" * 4)),
        wire(BINDING_REQUEST, tlv(0x7FFF, b"")),
        wire(BINDING_REQUEST, length=4),
        wire(0x0011),  # an indication
        with_fingerprint(wire(BINDING_REQUEST))[:-1] + b"\x00",
    ],
    ids=[
        "software-not-utf8",
        "software-too-long",
        "padding",
        "change-request",
        "unknown-required",
        "bad-length",
        "indication",
        "bad-fingerprint",
    ],
)
def test_fast_path_leaves_the_rest_to_the_full_rules(data: bytes) -> None:
    server = StunServer(CONFIGS[2])
    assert server.answer_plain(data, packed_peer(Endpoint.parse("192.0.2.1:1000")), 0) is None
    assert server.counters == ServerCounters()


def test_fingerprint_of_the_answer_is_computed_over_the_answer() -> None:
    data = with_fingerprint(wire(BINDING_REQUEST))
    answer = StunServer(CONFIGS[0]).answer_plain(data, packed_peer(Endpoint.parse("1.2.3.4:5")), 0)
    assert answer is not None
    crc = (zlib.crc32(answer[:-8]) ^ 0x5354554E) & 0xFFFFFFFF
    assert answer[-8:] == struct.pack("!HHI", AttributeType.FINGERPRINT, 4, crc)


@given(remote=endpoints)
def test_packed_peer_round_trips(remote: Endpoint) -> None:
    assert unpack_peer(packed_peer(remote)) == remote
