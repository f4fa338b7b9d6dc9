"""``wg show dump`` / ``latest-handshakes`` parsing, keys, and ``wg`` argv building.

The fixtures are ``wg`` 1.0.20210914 output against wireguard-go, captured
on this machine (keys made for the fixture, used nowhere else); the lab test
parses the real thing too.
"""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wireguard_testlib import DUMP, PEER_V4, PEER_V6, PRIVATE, PSK, PUBLIC

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError, RemoteProtocolError
from natkit.wireguard.commands import (
    PeerConfig,
    check_interface,
    classify_failure,
    latest_handshakes_argv,
    set_endpoint_argv,
    set_interface_argv,
    set_peer_argv,
    show_dump_argv,
)
from natkit.wireguard.dump import parse_dump, parse_latest_handshakes
from natkit.wireguard.errors import (
    InterfaceNameError,
    KeyFormatError,
    NoSuchInterfaceError,
    WgArgumentError,
    WgCommandError,
    WgOutputError,
    WgPermissionError,
)
from natkit.wireguard.keys import WireGuardKey


def test_parse_dump_fixture() -> None:
    status = parse_dump(DUMP, "wg0")
    assert status.name == "wg0"
    assert status.public_key == WireGuardKey.parse(PUBLIC)
    assert (status.listen_port, status.fwmark) == (51820, None)
    first, second = status.peers
    assert first.public_key == WireGuardKey.parse(PEER_V6)
    assert first.endpoint == Endpoint.parse("[2001:db8::1]:5")
    assert (first.allowed_ips, first.latest_handshake, first.persistent_keepalive) == (
        (),
        None,
        None,
    )
    assert not first.has_preshared_key
    assert second.has_preshared_key
    assert second.endpoint == Endpoint.parse("192.0.2.1:51820")
    assert second.allowed_ips == (
        ipaddress.ip_network("10.200.0.2/32"),
        ipaddress.ip_network("fd00::2/128"),
    )
    assert (second.latest_handshake, second.rx_bytes, second.tx_bytes) == (1733352000, 1204, 2376)
    assert second.persistent_keepalive == 25
    assert status.peer(WireGuardKey.parse(PEER_V4)) is second
    assert status.peer(WireGuardKey.parse(PUBLIC)) is None


def test_private_and_preshared_keys_are_never_kept() -> None:
    status = parse_dump(DUMP, "wg0")
    # repr shows every field of every dataclass, peers included.
    for secret in (PRIVATE, PSK):
        assert secret not in repr(status)
        assert WireGuardKey.parse(secret).raw not in repr(status).encode()


def test_unconfigured_interface() -> None:
    status = parse_dump("(none)\t(none)\t0\t0x2a\n", "wg1")
    assert (status.public_key, status.listen_port, status.fwmark, status.peers) == (
        None,
        0,
        42,
        (),
    )


def _peer_line(**fields: str) -> str:
    values = {
        "public": PEER_V4,
        "psk": "(none)",
        "endpoint": "192.0.2.1:51820",
        "allowed": "10.200.0.2/32",
        "handshake": "0",
        "rx": "0",
        "tx": "0",
        "keepalive": "off",
    }
    values.update(fields)
    return "\t".join(values.values())


HEAD = f"{PRIVATE}\t{PUBLIC}\t51820\toff"


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("", 1, "interface"),
        (f"{PRIVATE}\t{PUBLIC}\t51820\n", 1, "interface"),
        (f"{PRIVATE}x\t{PUBLIC}\t51820\toff\n", 1, "private-key"),
        (f"{PRIVATE}\t{PUBLIC[:-2]}=\t51820\toff\n", 1, "public-key"),
        (f"{PRIVATE}\t{PUBLIC}\t65536\toff\n", 1, "listen-port"),
        (f"{PRIVATE}\t{PUBLIC}\t-1\toff\n", 1, "listen-port"),
        (f"{PRIVATE}\t{PUBLIC}\t５１\toff\n", 1, "listen-port"),
        (f"{PRIVATE}\t{PUBLIC}\t51820\t42\n", 1, "fwmark"),
        (f"{PRIVATE}\t{PUBLIC}\t51820\t0x\n", 1, "fwmark"),
        (f"{PRIVATE}\t{PUBLIC}\t51820\t0x1ffffffff\n", 1, "fwmark"),
        (f"{PRIVATE}\t{PUBLIC}\t51820\t0xzz\n", 1, "fwmark"),
        (f"{HEAD}\n{_peer_line()}\textra\n", 2, "peer"),
        (f"{HEAD}\n{_peer_line(public='(none)')}\n", 2, "public-key"),
        (f"{HEAD}\n{_peer_line(psk='secret')}\n", 2, "preshared-key"),
        (f"{HEAD}\n{_peer_line(endpoint='192.0.2.1')}\n", 2, "endpoint"),
        (f"{HEAD}\n{_peer_line(endpoint='host.example:1')}\n", 2, "endpoint"),
        (f"{HEAD}\n{_peer_line(endpoint='2001:db8::1:5')}\n", 2, "endpoint"),
        (f"{HEAD}\n{_peer_line(endpoint='[192.0.2.1]:5')}\n", 2, "endpoint"),
        (f"{HEAD}\n{_peer_line(endpoint='192.0.2.1:70000')}\n", 2, "endpoint"),
        (f"{HEAD}\n{_peer_line(allowed='10.0.0.0')}\n", 2, "allowed-ips"),
        (f"{HEAD}\n{_peer_line(allowed='10.0.0.0/33')}\n", 2, "allowed-ips"),
        (f"{HEAD}\n{_peer_line(allowed='10.0.0.0/8,')}\n", 2, "allowed-ips"),
        (f"{HEAD}\n{_peer_line(handshake='1e9')}\n", 2, "latest-handshake"),
        (f"{HEAD}\n{_peer_line(rx='9' * 21)}\n", 2, "transfer-rx"),
        (f"{HEAD}\n{_peer_line(tx='18446744073709551616')}\n", 2, "transfer-tx"),
        (f"{HEAD}\n{_peer_line(keepalive='0')}\n", 2, "persistent-keepalive"),
        (f"{HEAD}\n{_peer_line(keepalive='65536')}\n", 2, "persistent-keepalive"),
        (f"{HEAD}\n{_peer_line()}\n{_peer_line()}\n", 3, "public-key"),
        (f"{HEAD}\r\n", 1, "output"),
        (f"{HEAD}\n\x00\n", 1, "output"),
        (f"{HEAD}\n\n", 2, "peer"),
    ],
)
def test_hostile_dump_is_refused(text: str, line: int, field: str) -> None:
    with pytest.raises(WgOutputError) as caught:
        parse_dump(text, "wg0")
    error = caught.value
    assert (error.line, error.field) == (line, field)
    assert isinstance(error, RemoteProtocolError)
    # Key material is never quoted back in an error.
    assert PRIVATE not in str(error)


@given(st.text(max_size=300))
def test_random_output_raises_only_output_errors(text: str) -> None:
    with contextlib.suppress(WgOutputError):
        parse_dump(text, "wg0")
    with contextlib.suppress(WgOutputError):
        parse_latest_handshakes(text)


def test_latest_handshakes() -> None:
    found = parse_latest_handshakes(f"{PEER_V4}\t1733352000\n{PEER_V6}\t0\n")
    assert found == {WireGuardKey.parse(PEER_V4): 1733352000, WireGuardKey.parse(PEER_V6): None}
    assert parse_latest_handshakes("") == {}
    with pytest.raises(WgOutputError, match="twice"):
        parse_latest_handshakes(f"{PEER_V4}\t1\n{PEER_V4}\t2\n")
    with pytest.raises(WgOutputError, match="fields"):
        parse_latest_handshakes(f"{PEER_V4} 1\n")


# ------------------------------------------------------------------- keys


def test_keys_are_strict() -> None:
    key = WireGuardKey.parse(PUBLIC)
    assert str(key) == PUBLIC
    assert len(key.raw) == 32
    assert WireGuardKey(key.raw) == key
    for bad in ("", PUBLIC[:-1], PUBLIC + "\n", " " + PUBLIC[1:], PUBLIC[:-2] + "B=", "=" * 44):
        with pytest.raises(KeyFormatError):
            WireGuardKey.parse(bad)
    with pytest.raises(KeyFormatError):
        WireGuardKey(b"\x00" * 31)
    assert isinstance(KeyFormatError("x"), LocalProtocolError)


# -------------------------------------------------------------------- argv


def test_argv_builders() -> None:
    key = WireGuardKey.parse(PEER_V4)
    assert show_dump_argv("wg0") == ["wg", "show", "wg0", "dump"]
    assert latest_handshakes_argv("wg0") == ["wg", "show", "wg0", "latest-handshakes"]
    assert set_endpoint_argv("wg0", key, Endpoint.parse("[2001:db8::1]:51820")) == [
        "wg", "set", "wg0", "peer", PEER_V4, "endpoint", "[2001:db8::1]:51820",
    ]  # fmt: skip
    config = PeerConfig(
        key,
        allowed_ips=(ipaddress.ip_network("10.200.0.2/32"), ipaddress.ip_network("fd00::/64")),
        endpoint=Endpoint.parse("198.51.100.2:51820"),
        persistent_keepalive=0,
    )
    assert set_peer_argv("wg0", config) == [
        "wg", "set", "wg0", "peer", PEER_V4, "allowed-ips", "10.200.0.2/32,fd00::/64",
        "endpoint", "198.51.100.2:51820", "persistent-keepalive", "off",
    ]  # fmt: skip
    assert set_peer_argv("wg0", PeerConfig(key, allowed_ips=())) == [
        "wg", "set", "wg0", "peer", PEER_V4, "allowed-ips", "",
    ]  # fmt: skip
    assert set_interface_argv("wg0", private_key_file="/k", listen_port=51820) == [
        "wg", "set", "wg0", "private-key", "/k", "listen-port", "51820",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "name", ["", "-h", ".", "..", "a/b", "wg 0", "wg0\n", "x" * 16, "wg\x00", "ä"]
)
def test_bad_interface_names(name: str) -> None:
    with pytest.raises(InterfaceNameError):
        check_interface(name)


def test_bad_arguments() -> None:
    key = WireGuardKey.parse(PEER_V4)
    with pytest.raises(WgArgumentError, match="port 0"):
        set_endpoint_argv("wg0", key, Endpoint.parse("192.0.2.1:0"))
    with pytest.raises(WgArgumentError, match="keepalive"):
        PeerConfig(key, persistent_keepalive=70000)
    with pytest.raises(WgArgumentError, match="absolute"):
        set_interface_argv("wg0", private_key_file="key")
    with pytest.raises(WgArgumentError, match="listen port"):
        set_interface_argv("wg0", listen_port=-1)


# ------------------------------------------------------------ failures


@pytest.mark.parametrize(
    ("stderr", "root", "kind"),
    [
        ("Unable to access interface: Protocol not supported\n", True, NoSuchInterfaceError),
        ("Unable to access interface: No such device\n", True, NoSuchInterfaceError),
        ("Unable to modify interface: No such device\n", True, NoSuchInterfaceError),
        ("Unable to access interface: Protocol not supported\n", False, WgPermissionError),
        ("Unable to access interface: Operation not permitted\n", True, WgPermissionError),
        ("Unable to modify interface: Permission denied\n", False, WgPermissionError),
        ("Key is not the correct length or format: `abc'\n", True, WgCommandError),
        ("", True, WgCommandError),
    ],
)
def test_failures_are_typed(stderr: str, root: bool, kind: type[Exception]) -> None:
    argv = ["wg", "show", "wg0", "dump"]
    error = classify_failure(argv, "wg0", 1, stderr, root=root)
    assert type(error) is kind
    if isinstance(error, NoSuchInterfaceError | WgPermissionError):
        assert error.interface == "wg0"
        assert "wg0" in str(error)


def test_a_hung_wg_is_a_command_error() -> None:
    error = classify_failure(["wg", "show", "wg0", "dump"], "wg0", None, "", root=True)
    assert isinstance(error, WgCommandError)
    assert error.returncode is None
    assert "timed out" in str(error)
