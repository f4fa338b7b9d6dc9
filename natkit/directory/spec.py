"""``dns:ZONE@SERVER[:PORT]``: where a DNS directory lives. Pure.

``ZONE`` is the zone natkit's records go in (``natkit.test``, made
absolute); ``SERVER`` is its primary, which takes the RFC 2136 updates, as
an IP address (``203.0.113.53``, ``203.0.113.53:5353``,
``[2001:db8::53]:53``; port 53 unless given), like ``--dns`` elsewhere in
natkit: a directory that needs DNS to find its DNS server would be one
more thing to go wrong. Reads may go to other servers (secondaries, an
anycast resolver): :func:`parse_read_server`.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.name

from natkit.directory.errors import DirectorySpecError
from natkit.directory.names import zone_name
from natkit.endpoint import Endpoint

SCHEME = "dns:"
#: RFC 1035 §4.2: DNS over UDP and TCP.
DNS_PORT = 53


@dataclass(frozen=True, slots=True)
class DirectorySpec:
    """A parsed ``dns:ZONE@SERVER[:PORT]``."""

    #: The zone (absolute).
    zone: dns.name.Name
    #: The primary server: updates go there (and reads, unless told otherwise).
    server: Endpoint

    def __str__(self) -> str:
        return f"{SCHEME}{self.zone.to_text()}@{self.server}"


def parse_directory(text: str) -> DirectorySpec:
    """Parse ``dns:ZONE@SERVER[:PORT]``; :class:`DirectorySpecError` otherwise."""
    stripped = text.strip()
    if not stripped.lower().startswith(SCHEME):
        raise DirectorySpecError(text, "it must start with dns:")
    zone_text, at, server_text = stripped[len(SCHEME) :].rpartition("@")
    if not at:
        raise DirectorySpecError(text, "no @SERVER after the zone")
    if not zone_text:
        raise DirectorySpecError(text, "no zone before the @")
    try:
        zone = zone_name(zone_text)
    except ValueError as exc:
        raise DirectorySpecError(text, f"zone {zone_text!r}: {exc}") from None
    try:
        server = parse_server_endpoint(server_text)
    except ValueError as exc:
        raise DirectorySpecError(text, str(exc)) from None
    return DirectorySpec(zone, server)


def parse_server_endpoint(text: str) -> Endpoint:
    """``IP``, ``IP:PORT`` or ``[IPv6]:PORT``, port 53 unless given;
    ``ValueError`` saying what is expected."""
    try:
        endpoint = Endpoint.parse(text, DNS_PORT)
    except ValueError:
        raise ValueError(
            f"server {text!r} must be an IP address with an optional port"
            " (203.0.113.53, 203.0.113.53:5353, [2001:db8::53]:53)"
        ) from None
    if endpoint.port == 0:
        raise ValueError(f"server {text!r}: port 0")
    return endpoint


def parse_read_server(text: str) -> Endpoint:
    """A server to read the zone from; :class:`DirectorySpecError` otherwise."""
    try:
        return parse_server_endpoint(text)
    except ValueError as exc:
        raise DirectorySpecError(text, str(exc), "a read server IP[:PORT]") from None
