"""Parsers for ``wg show IFACE dump`` and ``wg show IFACE latest-handshakes``.

``wg show IFACE dump`` (wireguard-tools ``show.c``, ``dump_print``) prints
tab-separated lines: first the interface::

    private-key  public-key  listen-port  fwmark

then one line per peer::

    public-key  preshared-key  endpoint  allowed-ips  latest-handshake
    transfer-rx  transfer-tx  persistent-keepalive

with ``(none)`` for an unset key, endpoint or allowed-ips list, ``off`` for
an unset fwmark (else ``0x`` hex) or keepalive, a handshake time in Unix
seconds (0: never), byte counters in decimal, allowed-ips comma-separated.
The private and preshared keys are checked for form and dropped: they are
never kept, logged or quoted in errors (:class:`WgOutputError` names a line
and a field, never a value). Parsing is strict: a line with the wrong number
of fields, a number out of range, a duplicate peer, anything ``wg`` does not
print, raises.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from natkit.endpoint import Endpoint
from natkit.wireguard.errors import KeyFormatError, WgOutputError
from natkit.wireguard.keys import WireGuardKey, is_key_text

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NONE = "(none)"
OFF = "off"
_INTERFACE_FIELDS = 4
_PEER_FIELDS = 8
_U64 = 2**64 - 1
_U32 = 2**32 - 1
#: Digits of the largest number ``wg`` prints (a u64): longer is junk.
_MAX_DIGITS = 20


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """One peer of a WireGuard interface, as ``wg`` reports it."""

    public_key: WireGuardKey
    has_preshared_key: bool
    endpoint: Endpoint | None
    """Where WireGuard sends to this peer now (``None``: not known yet)."""
    allowed_ips: tuple[IPNetwork, ...]
    latest_handshake: int | None
    """Unix time (seconds) of the last completed handshake; ``None``: never."""
    rx_bytes: int
    tx_bytes: int
    persistent_keepalive: int | None
    """Seconds between keepalives; ``None``: off."""


@dataclass(frozen=True, slots=True)
class InterfaceStatus:
    """A WireGuard interface and its peers (``wg show IFACE dump``)."""

    name: str
    public_key: WireGuardKey | None
    """``None`` until a private key is set."""
    listen_port: int
    """The UDP port WireGuard owns (0: none chosen yet)."""
    fwmark: int | None
    peers: tuple[PeerStatus, ...]

    def peer(self, key: WireGuardKey) -> PeerStatus | None:
        """The peer with public key ``key``, if the interface has it."""
        for peer in self.peers:
            if peer.public_key == key:
                return peer
        return None


def parse_dump(text: str, interface: str) -> InterfaceStatus:
    """Parse the output of ``wg show INTERFACE dump``."""
    lines = _lines(text)
    if not lines:
        raise WgOutputError(1, "interface", "no output")
    fields = _fields(lines[0], 1, _INTERFACE_FIELDS, "interface")
    private, public, port, fwmark = fields
    if private != NONE and not is_key_text(private):
        raise WgOutputError(1, "private-key", "not a key")
    public_key = _optional_key(public, 1, "public-key")
    status_port = _number(port, 1, "listen-port", 0xFFFF)
    mark = None if fwmark == OFF else _hex(fwmark, 1, "fwmark")
    peers: list[PeerStatus] = []
    seen: set[WireGuardKey] = set()
    for number, line in enumerate(lines[1:], start=2):
        peer = _peer(_fields(line, number, _PEER_FIELDS, "peer"), number)
        if peer.public_key in seen:
            raise WgOutputError(number, "public-key", "peer listed twice")
        seen.add(peer.public_key)
        peers.append(peer)
    return InterfaceStatus(interface, public_key, status_port, mark, tuple(peers))


def parse_latest_handshakes(text: str) -> dict[WireGuardKey, int | None]:
    """Parse ``wg show INTERFACE latest-handshakes``: peer -> Unix time or ``None`` (never)."""
    found: dict[WireGuardKey, int | None] = {}
    for number, line in enumerate(_lines(text), start=1):
        key_text, when = _fields(line, number, 2, "latest-handshakes")
        key = _key(key_text, number, "public-key")
        if key in found:
            raise WgOutputError(number, "public-key", "peer listed twice")
        found[key] = _number(when, number, "latest-handshake", _U64) or None
    return found


def _peer(fields: list[str], number: int) -> PeerStatus:
    public, preshared, endpoint, allowed, handshake, rx, tx, keepalive = fields
    if preshared != NONE and not is_key_text(preshared):
        raise WgOutputError(number, "preshared-key", "not a key")
    return PeerStatus(
        public_key=_key(public, number, "public-key"),
        has_preshared_key=preshared != NONE,
        endpoint=None if endpoint == NONE else _endpoint(endpoint, number),
        allowed_ips=() if allowed == NONE else _networks(allowed, number),
        latest_handshake=_number(handshake, number, "latest-handshake", _U64) or None,
        rx_bytes=_number(rx, number, "transfer-rx", _U64),
        tx_bytes=_number(tx, number, "transfer-tx", _U64),
        persistent_keepalive=None if keepalive == OFF else _keepalive(keepalive, number),
    )


def _keepalive(text: str, number: int) -> int:
    # wg prints "off" for 0, so a 0 here is not wg's output.
    value = _number(text, number, "persistent-keepalive", 0xFFFF)
    if value == 0:
        raise WgOutputError(number, "persistent-keepalive", "0 where wg prints off")
    return value


def _lines(text: str) -> list[str]:
    if "\r" in text or "\x00" in text:
        raise WgOutputError(1, "output", "carriage return or NUL in output")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _fields(line: str, number: int, count: int, what: str) -> list[str]:
    fields = line.split("\t")
    if len(fields) != count:
        raise WgOutputError(number, what, f"{len(fields)} fields, expected {count}")
    return fields


def _key(text: str, number: int, field: str) -> WireGuardKey:
    try:
        return WireGuardKey.parse(text)
    except KeyFormatError:
        raise WgOutputError(number, field, "not a key") from None


def _optional_key(text: str, number: int, field: str) -> WireGuardKey | None:
    return None if text == NONE else _key(text, number, field)


def _number(text: str, number: int, field: str, maximum: int) -> int:
    # str.isdigit admits other scripts' digits; wg prints ASCII only.
    if not text or len(text) > _MAX_DIGITS or not text.isascii() or not text.isdigit():
        raise WgOutputError(number, field, "not a decimal number")
    value = int(text)
    if value > maximum:
        raise WgOutputError(number, field, f"{value} is above {maximum}")
    return value


def _hex(text: str, number: int, field: str) -> int:
    digits = text[2:]
    if not text.startswith("0x") or not 0 < len(digits) <= 8:
        raise WgOutputError(number, field, "not 0x and hex digits")
    try:
        value = int(digits, 16)
    except ValueError:
        raise WgOutputError(number, field, "not 0x and hex digits") from None
    if value == 0 or value > _U32:
        raise WgOutputError(number, field, "out of range")
    return value


def _endpoint(text: str, number: int) -> Endpoint:
    if not text.isascii() or " " in text:
        raise WgOutputError(number, "endpoint", "not IP:PORT")
    try:
        endpoint = Endpoint.parse(text)
    except ValueError:
        raise WgOutputError(number, "endpoint", "not IP:PORT") from None
    if (endpoint.address.version == 6) != text.startswith("["):
        raise WgOutputError(number, "endpoint", "not IP:PORT")
    return endpoint


def _networks(text: str, number: int) -> tuple[IPNetwork, ...]:
    networks: list[IPNetwork] = []
    for item in text.split(","):
        if not item.isascii() or "/" not in item:
            raise WgOutputError(number, "allowed-ips", "not a list of IP/prefix")
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise WgOutputError(number, "allowed-ips", "not a list of IP/prefix") from None
    return tuple(networks)
