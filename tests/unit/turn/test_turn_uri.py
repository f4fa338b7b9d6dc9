"""RFC 7065 TURN URIs through natkit's one server parser."""

from __future__ import annotations

import pytest

from natkit.errors import LocalProtocolError
from natkit.stun.uri import Scheme, Transport, parse_server, parse_turn_server


@pytest.mark.parametrize(
    ("text", "host", "port", "transport"),
    [
        ("turn:203.0.113.30", "203.0.113.30", 3478, Transport.UDP),
        ("turn:203.0.113.30:3480?transport=udp", "203.0.113.30", 3480, Transport.UDP),
        ("TURN:relay.example.org?transport=TCP", "relay.example.org", 3478, Transport.TCP),
        ("turns:203.0.113.30", "203.0.113.30", 5349, Transport.TLS),
        ("turns:[2001:db8::30]:443?transport=tcp", "2001:db8::30", 443, Transport.TLS),
        ("203.0.113.30:3479", "203.0.113.30", 3479, Transport.UDP),
    ],
)
def test_turn_uris(text: str, host: str, port: int, transport: Transport) -> None:
    parsed = parse_turn_server(text)
    assert (parsed.host, parsed.port, parsed.transport) == (host, port, transport)
    assert parsed.tls is (transport is Transport.TLS)
    assert parsed.label == text


@pytest.mark.parametrize(
    "text",
    [
        "turns:203.0.113.30?transport=udp",  # DTLS
        "turn:203.0.113.30?transport=sctp",
        "turn:203.0.113.30?proto=tcp",
        "turn:",
        "turn:host:port",
        "stun:203.0.113.30",
    ],
)
def test_bad_turn_uris_are_refused(text: str) -> None:
    with pytest.raises(LocalProtocolError):
        parse_turn_server(text)


def test_stun_parsing_is_unchanged_and_refuses_turn_schemes() -> None:
    parsed = parse_server("stuns:203.0.113.20")
    assert (parsed.port, parsed.tls, parsed.scheme, parsed.transport) == (
        5349,
        True,
        Scheme.STUNS,
        None,
    )
    with pytest.raises(LocalProtocolError):
        parse_server("turn:203.0.113.30")
