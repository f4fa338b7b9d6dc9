"""STUN servers as users write them: ``[stun:|stuns:]HOST[:PORT]``.

One parser for every command that takes a server (``natkit classify -s``,
``natkit candidates -s``). Accepted, with RFC 7064 §3.1's default ports
(3478, 5349 for ``stuns:``):

* an IP literal: ``203.0.113.10``, ``2001:db8::1``, ``[2001:db8::1]:3479``;
* a host name (RFC 1123 labels, so a typo such as ``host:port`` is refused
  here rather than sent to a resolver): ``stun.example.org:3478``;
* either behind an RFC 7064 scheme, ``stun:`` or ``stuns:`` (TLS).

Pure: names are looked up elsewhere (:mod:`natkit.aio.dns`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class ParsedServer:
    """A ``--server`` argument before name resolution."""

    #: The text as the user wrote it (reports name servers by it).
    label: str
    #: An IP literal (without brackets) or a host name.
    host: str
    port: int
    #: ``stuns:``: TLS only.
    tls: bool

    @property
    def literal(self) -> IPAddress | None:
        """The address when ``host`` is an IP literal, else ``None`` (a name)."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def split_host_port(text: str, default_port: int | None) -> tuple[str, int]:
    """``HOST[:PORT]`` (an IP literal, ``[v6]:port``, or an RFC 1123 name) to
    ``(host, port)``; the port is required when ``default_port`` is ``None``.
    Raises :class:`LocalProtocolError` naming the text."""
    rest = text.strip()
    if not rest:
        raise LocalProtocolError(f"bad address {text!r}")
    with contextlib.suppress(ValueError):
        endpoint = Endpoint.parse(rest, default_port)
        if not 0 < endpoint.port <= 0xFFFF:
            raise LocalProtocolError(f"bad port in {text!r}")
        return str(endpoint.address), endpoint.port
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(rest.removeprefix("[").removesuffix("]"))
        raise LocalProtocolError(f"{text!r} needs a port (IP:PORT, [IPv6]:PORT)")
    host, sep, port_text = rest.rpartition(":")
    if not sep:
        host, port_text = rest, ""
    if not _HOSTNAME.match(host) or (port_text and not port_text.isdigit()):
        raise LocalProtocolError(f"bad address {text!r}")
    if not port_text and default_port is None:
        raise LocalProtocolError(f"{text!r} needs a port (HOST:PORT)")
    port = int(port_text) if port_text else default_port
    if port is None or not 0 < port <= 0xFFFF:
        raise LocalProtocolError(f"bad port in {text!r}")
    return host, port


def parse_server(text: str) -> ParsedServer:
    """``[stun:|stuns:]HOST[:PORT]`` (RFC 7064 URIs, ``[v6]:port`` literals);
    raises :class:`LocalProtocolError` for anything else."""
    rest, tls = text.strip(), False
    for scheme, secure in (("stuns:", True), ("stun:", False)):
        if rest.lower().startswith(scheme):
            rest, tls = rest[len(scheme) :], secure
            break
    default = DEFAULT_STUNS_PORT if tls else DEFAULT_STUN_PORT
    try:
        host, port = split_host_port(rest, default)
    except LocalProtocolError as exc:
        raise LocalProtocolError(f"bad server {text!r}") from exc
    return ParsedServer(text, host, port, tls)


__all__ = [
    "DEFAULT_STUNS_PORT",
    "DEFAULT_STUN_PORT",
    "ParsedServer",
    "parse_server",
    "split_host_port",
]
