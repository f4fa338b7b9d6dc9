"""The STUN server core against RFC 8489 §6.3 and RFC 5780 §6, no sockets."""

from __future__ import annotations

import json

import pytest

import natkit.cli.stun_server
from natkit.cli.main import main
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.stun.attributes import (
    ChangeRequest,
    Padding,
    RawAttribute,
    ResponsePort,
)
from natkit.stun.codec import Message, binding_request, encode_message, parse_message
from natkit.stun.constants import AttributeType, ChangeFlags, MessageClass, Method
from natkit.stun.server import ServerConfig, ServerCounters, StunServer, Transport

CLIENT = Endpoint.parse("198.51.100.1:40000")
A1P1, A1P2, A2P1, A2P2 = (
    Endpoint.parse(e)
    for e in ("203.0.113.10:3478", "203.0.113.10:3479", "203.0.113.11:3478", "203.0.113.11:3479")
)
TID = bytes(range(12))


def _server(**kwargs: object) -> StunServer:
    return StunServer(ServerConfig.rfc5780("203.0.113.10", "203.0.113.11", **kwargs))  # type: ignore[arg-type]


def _ask(
    server: StunServer, request: Message | bytes, socket: int = 0, **encode: bool
) -> tuple[Message, int, Endpoint] | None:
    data = request if isinstance(request, bytes) else encode_message(request, **encode)
    server.receive_datagram(data, CLIENT, socket, 0.0)
    sent = server.datagrams_to_send(0.0)
    if not sent:
        return None
    (datagram,) = sent
    return parse_message(datagram.data, allow_classic=True), datagram.socket, datagram.remote


@pytest.mark.parametrize(
    ("received_on", "flags", "sent_from"),
    [
        (0, ChangeFlags.NONE, 0),
        (0, ChangeFlags.CHANGE_IP, 2),
        (0, ChangeFlags.CHANGE_PORT, 1),
        (0, ChangeFlags.CHANGE_IP | ChangeFlags.CHANGE_PORT, 3),
        (3, ChangeFlags.NONE, 3),
        (3, ChangeFlags.CHANGE_IP, 1),
        (3, ChangeFlags.CHANGE_PORT, 2),
        (3, ChangeFlags.CHANGE_IP | ChangeFlags.CHANGE_PORT, 0),
    ],
)
def test_rfc5780_table_1_source_of_the_response(
    received_on: int, flags: ChangeFlags, sent_from: int
) -> None:
    """RFC 5780 §6.1 Table 1: CHANGE-REQUEST picks the source; RESPONSE-ORIGIN
    names the source actually used; OTHER-ADDRESS is the alternate address
    with the other port (Table 1's Ca:Cp for requests received on A1; for A2,
    coturn's convention, which its turnutils_natdiscovery client relies on)."""
    server = _server()
    sockets = server.config.sockets
    answer = _ask(server, binding_request(TID, ChangeRequest(flags)), received_on)
    assert answer is not None
    response, socket, remote = answer
    assert socket == sent_from
    assert remote == CLIENT
    assert response.message_class is MessageClass.SUCCESS_RESPONSE
    assert response.response_origin == sockets[sent_from]
    assert response.other_address == sockets[0b10 | ((received_on & 1) ^ 1)]


def test_success_carries_xor_mapped_and_mapped_address() -> None:
    """RFC 5780 §6.1: both, so a client can spot an address-rewriting ALG."""
    answer = _ask(_server(), binding_request(TID))
    assert answer is not None
    response = answer[0]
    assert response.xor_mapped_address == CLIENT
    assert response.mapped_address == CLIENT
    assert response.text(AttributeType.SOFTWARE) is None
    assert not response.has_fingerprint


def test_fingerprint_and_software_only_when_asked() -> None:
    answer = _ask(_server(software="natkit-test"), binding_request(TID), fingerprint=True)
    assert answer is not None
    assert answer[0].has_fingerprint
    assert answer[0].text(AttributeType.SOFTWARE) == "natkit-test"


def test_response_port_redirects_to_the_source_address() -> None:
    """RFC 5780 §7.5: same IP as the request, the port from RESPONSE-PORT."""
    answer = _ask(_server(), binding_request(TID, ResponsePort(50000)))
    assert answer is not None
    assert answer[2] == Endpoint(CLIENT.address, 50000)


@pytest.mark.parametrize(
    "attributes",
    [
        (ResponsePort(50000), Padding.of_length(64)),  # RFC 5780 §6.1: 400
        (ResponsePort(0),),
    ],
)
def test_bad_request_combinations_get_400(attributes: tuple[object, ...]) -> None:
    answer = _ask(_server(), binding_request(TID, *attributes))  # type: ignore[arg-type]
    assert answer is not None
    response, _, remote = answer
    assert response.message_class is MessageClass.ERROR_RESPONSE
    assert response.error_code is not None
    assert response.error_code.code == 400
    assert remote == CLIENT  # never redirected


def test_padding_is_echoed_no_longer_than_requested() -> None:
    request = binding_request(TID, Padding.of_length(1200))
    answer = _ask(_server(), request)
    assert answer is not None
    padding = answer[0].padding
    assert padding is not None
    assert len(padding.data) == 1200


def test_unknown_comprehension_required_attribute_gets_420() -> None:
    """RFC 8489 §6.3.1: 420 listing the unknown types; optional ones are ignored."""
    request = binding_request(TID, RawAttribute(0x7F01, b"abcd"), RawAttribute(0xC001, b"x"))
    answer = _ask(_server(), request)
    assert answer is not None
    response = answer[0]
    assert response.error_code is not None
    assert response.error_code.code == 420
    assert response.unknown_attributes == (0x7F01,)


def test_rfc3489_response_address_is_never_honoured() -> None:
    request = binding_request(TID, RawAttribute(AttributeType.RESPONSE_ADDRESS, bytes(8)))
    answer = _ask(_server(), request)
    assert answer is not None
    assert answer[0].unknown_attributes == (AttributeType.RESPONSE_ADDRESS,)
    assert answer[2] == CLIENT


def test_basic_server_has_no_other_address_and_refuses_change_request() -> None:
    """RFC 5780 §6: one address, so no OTHER-ADDRESS and 420 for CHANGE-REQUEST."""
    server = StunServer(ServerConfig.basic("203.0.113.10"))
    plain = _ask(server, binding_request(TID))
    assert plain is not None
    assert plain[0].other_address is None
    change = _ask(server, binding_request(TID, ChangeRequest(ChangeFlags.CHANGE_IP)))
    assert change is not None
    assert change[0].unknown_attributes == (AttributeType.CHANGE_REQUEST,)


def test_classic_rfc3489_client_gets_rfc3489_attributes() -> None:
    """A request without the magic cookie (Debian's ``stun``, pystun3) is
    answered with MAPPED-, SOURCE- and CHANGED-ADDRESS, CHANGE-REQUEST honoured,
    and no XOR-MAPPED-ADDRESS (comprehension-required for such a client)."""
    classic_tid = b"\x11" * 16
    request = binding_request(classic_tid, ChangeRequest(ChangeFlags.CHANGE_PORT))
    server = _server()
    answer = _ask(server, request)
    assert answer is not None
    response, socket, _ = answer
    assert response.transaction_id == classic_tid
    assert socket == 1
    types = [a.type for a in response.attributes]
    assert types == [
        AttributeType.MAPPED_ADDRESS,
        AttributeType.SOURCE_ADDRESS,
        AttributeType.CHANGED_ADDRESS,
    ]
    assert response.response_origin == A1P2
    assert response.other_address == A2P2
    assert server.counters.classic_requests == 1


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x01\x00\x00",
        b"\x00\x01\x00\x04" + bytes.fromhex("2112a442") + TID,  # length past the end
        b"\xc0\x01\x00\x00" + bytes.fromhex("2112a442") + TID,  # top bits set
        b"\x00\x01\x00\x08" + bytes.fromhex("2112a442") + TID + b"\x80\x28\x00\x04\xde\xad\xbe\xef",
    ],
    ids=["empty", "truncated", "overrun", "not-stun", "bad-fingerprint"],
)
def test_malformed_requests_are_never_answered(data: bytes) -> None:
    server = _server()
    assert _ask(server, data) is None
    assert sum(server.counters.malformed.values()) == 1


def test_responses_and_indications_are_never_answered() -> None:
    server = _server()
    for message_class in (
        MessageClass.INDICATION,
        MessageClass.SUCCESS_RESPONSE,
        MessageClass.ERROR_RESPONSE,
    ):
        assert _ask(server, Message(Method.BINDING, message_class, TID)) is None
    assert server.counters.ignored_not_request == 3


def test_unknown_method_gets_400() -> None:
    answer = _ask(_server(), Message(Method.ALLOCATE, MessageClass.REQUEST, TID))
    assert answer is not None
    assert answer[0].error_code is not None
    assert answer[0].error_code.code == 400


def test_tcp_cannot_change_source_or_destination() -> None:
    server = _server()
    request = encode_message(binding_request(TID, ChangeRequest(ChangeFlags.CHANGE_IP)))
    reply = server.handle(request, CLIENT, 0, Transport.TCP)
    assert reply is not None
    response = parse_message(reply.data)
    assert response.error_code is not None
    assert response.error_code.code == 400
    assert reply.socket == 0


def test_response_is_never_much_larger_than_needed() -> None:
    """No optional attributes unless asked: a 20-byte request gets at most the
    four address attributes (RFC 5780 §6.1) back."""
    answer = _ask(_server(), binding_request(TID))
    assert answer is not None
    assert len(encode_message(answer[0])) == 20 + 4 * 12


def test_config_needs_two_addresses_times_two_ports() -> None:
    with pytest.raises(LocalProtocolError):
        ServerConfig((A1P1, A1P2))
    with pytest.raises(LocalProtocolError):
        ServerConfig((A1P1, A1P2, A1P1, A1P2))
    assert ServerConfig((A1P1, A1P2, A2P1, A2P2)).behaviour_discovery


def test_config_refuses_addresses_of_two_families() -> None:
    # A client reaches one family: the alternate's answers could never
    # arrive, and a classifier would read their silence as ADF filtering.
    with pytest.raises(LocalProtocolError, match=r"^RFC 5780 needs two addresses of one family"):
        ServerConfig.rfc5780("203.0.113.10", "2001:db8::11")
    assert ServerConfig.rfc5780("2001:db8::10", "2001:db8::11").behaviour_discovery


def test_the_command_refuses_addresses_of_two_families(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def serve(*args: object, **kwargs: object) -> int:
        return 0  # a server that started would be the bug: never serve for real here

    monkeypatch.setattr(natkit.cli.stun_server, "_serve", serve)
    argv = ["stun-server", "--bind", "127.0.0.1", "--bind", "::1", "--workers", "0"]
    assert main(argv) == 64
    assert capsys.readouterr().err == (
        "natkit stun-server: RFC 5780 needs two addresses of one family,"
        " not 127.0.0.1 (IPv4) and ::1 (IPv6)\n"
    )


def test_counters_add_up_and_survive_json() -> None:
    """Workers report ``as_dict`` as JSON; the parent reads and adds them."""
    first, second = _server(), _server()
    for server in (first, second):
        _ask(server, binding_request(TID))
        _ask(server, b"\x00\x01")
    _ask(second, binding_request(TID, ChangeRequest(ChangeFlags.CHANGE_IP)))
    _ask(second, Message(Method.ALLOCATE, MessageClass.REQUEST, TID))
    total = ServerCounters()
    for server in (first, second):
        total.add(ServerCounters.from_dict(json.loads(json.dumps(server.counters.as_dict()))))
    assert total.as_dict() == {
        "received": 6,
        "answered": 4,
        "classic_requests": 0,
        "change_requests": 1,
        "response_port_requests": 0,
        "padding_requests": 0,
        "ignored_not_request": 0,
        "malformed": {"truncated": 2},
        "errors_sent": {"400": 1},
    }


@pytest.mark.parametrize(
    "document",
    [
        {},
        {**ServerCounters().as_dict(), "received": -1},
        {**ServerCounters().as_dict(), "malformed": []},
    ],
    ids=["empty", "negative", "not-an-object"],
)
def test_counters_from_anything_else_is_a_value_error(document: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="not server counters"):
        ServerCounters.from_dict(document)
