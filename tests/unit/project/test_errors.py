"""Every error natkit raises on purpose roots in natkit.errors, with fields."""

from __future__ import annotations

import errno

import pytest

from natkit.aio.birthday import StunUnansweredError
from natkit.aio.driver import open_udp_sockets
from natkit.endpoint import Endpoint
from natkit.errors import (
    AddressNotLocal,
    InvalidArgument,
    InvalidEndpoint,
    LocalProtocolError,
    NatkitError,
    NatkitTimeout,
    RemoteProtocolError,
)
from natkit.sansio import Datagram

SERVER = Endpoint.parse("203.0.113.10:3478")


@pytest.mark.parametrize(
    "text",
    ["203.0.113.1", "[2001:db8::1", "[2001:db8::1]x", "host:99", "1.2.3.4:70000", "1.2.3.4:x"],
)
def test_bad_endpoint_text_is_a_local_error_and_still_a_value_error(text: str) -> None:
    with pytest.raises(InvalidEndpoint) as caught:
        Endpoint.parse(text)
    assert isinstance(caught.value, LocalProtocolError)
    assert isinstance(caught.value, ValueError)
    assert caught.value.text == text
    assert text in caught.value.problem


def test_out_of_range_port_and_bad_address_are_local_errors() -> None:
    with pytest.raises(InvalidEndpoint):
        Endpoint(SERVER.address, 65536)
    with pytest.raises(InvalidEndpoint) as caught:
        Endpoint.of("not-an-address", 1)
    assert caught.value.text == "not-an-address"


def test_a_ttl_out_of_range_names_the_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        Datagram(b"x", SERVER, ttl=0)
    assert isinstance(caught.value, LocalProtocolError)
    assert isinstance(caught.value, ValueError)
    assert (caught.value.field, caught.value.value) == ("ttl", 0)


def test_an_unanswered_stun_server_is_a_timeout_not_a_protocol_violation() -> None:
    error = StunUnansweredError(SERVER)
    assert isinstance(error, NatkitTimeout)
    assert isinstance(error, TimeoutError)
    assert isinstance(error, NatkitError)
    assert not isinstance(error, RemoteProtocolError)
    assert error.server == SERVER


def test_every_decoders_refusal_is_malformed_input_with_its_reason() -> None:
    # One error shape for every decoder: a caller catches MalformedInput and
    # reads the reason enum and the detail, whatever the protocol.
    from natkit.errors import MalformedInput  # noqa: PLC0415
    from natkit.ice.signals import SignalDecodeError, SignalFailure  # noqa: PLC0415
    from natkit.stun.codec import StunDecodeError, parse_message  # noqa: PLC0415

    with pytest.raises(StunDecodeError) as caught:
        parse_message(b"\x00\x01")
    assert isinstance(caught.value, MalformedInput)
    assert isinstance(caught.value, RemoteProtocolError)
    assert str(caught.value).startswith(caught.value.reason.value)
    error = SignalDecodeError(SignalFailure.BAD_FIELD, "port 0")
    assert (error.reason, error.detail, str(error)) == (
        SignalFailure.BAD_FIELD,
        "port 0",
        "malformed field: port 0",
    )


def test_binding_an_address_this_host_lacks_says_so_and_is_still_an_oserror() -> None:
    with pytest.raises(AddressNotLocal) as caught:
        open_udp_sockets([Endpoint.parse("127.0.0.1:0"), Endpoint.parse("198.51.100.77:0")])
    assert isinstance(caught.value, LocalProtocolError)
    assert isinstance(caught.value, OSError)
    assert caught.value.errno == errno.EADDRNOTAVAIL
    assert str(caught.value) == "198.51.100.77 is not an address of this host"
    assert caught.value.address == "198.51.100.77"
