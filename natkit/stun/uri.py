"""STUN and TURN servers as users write them: ``[stun:|stuns:]HOST[:PORT]``
and ``turn:HOST[:PORT][?transport=udp|tcp]``, ``turns:HOST[:PORT]``.

One parser for every command that takes a server (``natkit classify -s``,
``natkit candidates -s``, TURN relays). Accepted, with RFC 7064 §3.1's and
RFC 7065 §3.1's default ports (3478, 5349 for ``stuns:`` and ``turns:``):

* an IP literal: ``203.0.113.10``, ``2001:db8::1``, ``[2001:db8::1]:3479``;
* a host name (RFC 1123 labels, so a typo such as ``host:port`` is refused
  here rather than sent to a resolver): ``stun.example.org:3478``;
* either behind an RFC 7064 scheme, ``stun:`` or ``stuns:`` (TLS), or for
  TURN an RFC 7065 one, ``turn:`` (UDP unless ``?transport=tcp``) or
  ``turns:`` (TLS over TCP; DTLS, ``?transport=udp``, is not supported).

Pure: names are looked up elsewhere (:mod:`natkit.aio.dns`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum

from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError

#: RFC 8489 §18.6 / RFC 7064 §3.1: STUN over UDP and TCP.
DEFAULT_STUN_PORT = 3478
#: RFC 7064 §3.1 / RFC 8489 §6.2.3: STUN over TLS.
DEFAULT_STUNS_PORT = 5349
#: A DNS name (RFC 1123 labels), for telling ``--server`` typos from names.
_HOSTNAME = re.compile(
    r"^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


class Scheme(StrEnum):
    """The URI scheme a server was named with (a bare ``HOST`` counts as the
    plain one of its kind)."""

    STUN = "stun"
    STUNS = "stuns"
    TURN = "turn"
    TURNS = "turns"


class Transport(StrEnum):
    """How a server is reached (RFC 7065's ``transport`` plus TLS)."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


@dataclass(frozen=True, slots=True)
class ParsedServer:
    """A ``--server`` argument before name resolution."""

    #: The text as the user wrote it (reports name servers by it).
    label: str
    #: An IP literal (without brackets) or a host name.
    host: str
    port: int
    #: ``stuns:`` or ``turns:``: TLS only.
    tls: bool
    scheme: Scheme = Scheme.STUN
    #: For TURN: how to reach the server (``stun:`` servers are tried over
    #: whatever the command does, so theirs stays ``None``).
    transport: Transport | None = None

    @property
    def literal(self) -> IPAddress | None:
        """The address when ``host`` is an IP literal, else ``None`` (a name)."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def split_host_port(
    text: str, default_port: int | None, *, label: str | None = None, what: str = "address"
) -> tuple[str, int]:
    """``HOST[:PORT]`` (an IP literal, ``[v6]:port``, or an RFC 1123 name) to
    ``(host, port)``; the port is required when ``default_port`` is ``None``.
    Raises :class:`LocalProtocolError` naming ``label`` (default: the text)
    as a bad ``what``."""
    shown = repr(text if label is None else label)
    rest = text.strip()
    if not rest:
        raise LocalProtocolError(f"bad {what} {shown}")
    with contextlib.suppress(ValueError):
        endpoint = Endpoint.parse(rest, default_port)
        if not 0 < endpoint.port <= 0xFFFF:
            raise LocalProtocolError(f"bad port in {shown}")
        return str(endpoint.address), endpoint.port
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(rest.removeprefix("[").removesuffix("]"))
        raise LocalProtocolError(f"{shown} needs a port (IP:PORT, [IPv6]:PORT)")
    host, sep, port_text = rest.rpartition(":")
    if not sep:
        host, port_text = rest, ""
    if not _HOSTNAME.match(host) or (port_text and not port_text.isdigit()):
        raise LocalProtocolError(f"bad {what} {shown}")
    if not port_text and default_port is None:
        raise LocalProtocolError(f"{shown} needs a port (HOST:PORT)")
    port = int(port_text) if port_text else default_port
    if port is None or not 0 < port <= 0xFFFF:
        raise LocalProtocolError(f"bad port in {shown}")
    return host, port


def parse_server(text: str) -> ParsedServer:
    """``[stun:|stuns:]HOST[:PORT]`` (RFC 7064 URIs, ``[v6]:port`` literals);
    raises :class:`LocalProtocolError` for anything else."""
    scheme, rest = _scheme(text, (Scheme.STUNS, Scheme.STUN), Scheme.STUN)
    tls = scheme is Scheme.STUNS
    host, port = _host_port(text, rest, DEFAULT_STUNS_PORT if tls else DEFAULT_STUN_PORT)
    return ParsedServer(text, host, port, tls, scheme)


def parse_turn_server(text: str) -> ParsedServer:
    """``[turn:|turns:]HOST[:PORT][?transport=udp|tcp]`` (RFC 7065 §3.1);
    a bare ``HOST[:PORT]`` is ``turn:`` over UDP. Raises
    :class:`LocalProtocolError` for anything else, DTLS (``turns:`` with
    ``?transport=udp``) included."""
    scheme, rest = _scheme(text, (Scheme.TURNS, Scheme.TURN), Scheme.TURN)
    rest, _, query = rest.partition("?")
    transport = Transport.TLS if scheme is Scheme.TURNS else Transport.UDP
    if query:
        key, _, value = query.partition("=")
        if key.lower() != "transport" or value.lower() not in ("udp", "tcp"):
            raise LocalProtocolError(f"bad TURN URI query in {text!r} (transport=udp|tcp)")
        if scheme is Scheme.TURN:
            transport = Transport(value.lower())
        elif value.lower() == "udp":
            raise LocalProtocolError(f"{text!r}: TURN over DTLS is not supported")
    tls = transport is Transport.TLS
    host, port = _host_port(text, rest, DEFAULT_STUNS_PORT if tls else DEFAULT_STUN_PORT)
    return ParsedServer(text, host, port, tls, scheme, transport)


def _scheme(text: str, schemes: tuple[Scheme, ...], bare: Scheme) -> tuple[Scheme, str]:
    rest = text.strip()
    for scheme in schemes:  # longest first: "stuns:" before "stun:"
        if rest.lower().startswith(f"{scheme.value}:"):
            return scheme, rest[len(scheme.value) + 1 :]
    return bare, rest


def _host_port(text: str, rest: str, default: int) -> tuple[str, int]:
    return split_host_port(rest, default, label=text, what="server")


__all__ = [
    "DEFAULT_STUNS_PORT",
    "DEFAULT_STUN_PORT",
    "ParsedServer",
    "Scheme",
    "Transport",
    "parse_server",
    "parse_turn_server",
    "split_host_port",
]
