"""SSDP discovery of UPnP Internet Gateway Devices, as pure functions.

A client multicasts an HTTP-over-UDP ``M-SEARCH`` to 239.255.255.250:1900
(UPnP Device Architecture 1.1 §1.3.2); devices answer by unicast with a
``200 OK`` whose ``LOCATION`` header is the URL of their XML description.

natkit sends the search itself rather than letting miniupnpc do it
(``upnpDiscover`` always waits its whole delay, and then fetches every
description it heard of, from any host). Here each answer is checked
before anything is fetched:

* It must be ``HTTP/1.1 200``, at most :data:`MAX_RESPONSE_LENGTH` bytes,
  with a search target (``ST``) naming an IGD or its WAN connection service.
* ``LOCATION`` must be a plain ``http://`` URL whose host is the literal
  address the answer came from, so a device can only point natkit at
  itself (no name lookups, no third hosts).

:func:`select_gateway` then picks one answer (tailscale's
``processUPnPResponses`` in spirit): the gateway we were told about first,
then the newest IGD version, then the first to answer.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError, MalformedInput

#: The SSDP multicast group and port (IPv4).
SSDP_GROUP = ipaddress.IPv4Address("239.255.255.250")
SSDP_PORT = 1900
SSDP_ENDPOINT = Endpoint(SSDP_GROUP, SSDP_PORT)
#: An SSDP answer is a few hundred bytes; anything past this is not one.
MAX_RESPONSE_LENGTH = 4096

IGD_V2 = "urn:schemas-upnp-org:device:InternetGatewayDevice:2"
IGD_V1 = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
#: Search targets natkit sends, newest first; answers must name one of these
#: or a WAN connection service (some devices answer with the service type).
SEARCH_TARGETS = (IGD_V2, IGD_V1)
_SERVICE_TARGETS = (
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
)


class SsdpFailure(Enum):
    """Why an SSDP answer was not accepted."""

    TOO_LONG = "longer than an SSDP answer can be"
    NOT_HTTP = "not an HTTP/1.1 response"
    NOT_OK = "status is not 200"
    NO_LOCATION = "no LOCATION header"
    BAD_LOCATION = "LOCATION is not an http:// URL with a literal address"
    FOREIGN_LOCATION = "LOCATION points at another host than the one that answered"
    NOT_AN_IGD = "search target is not an Internet Gateway Device"


class SsdpDecodeError(MalformedInput[SsdpFailure]):
    """An SSDP answer natkit will not act on."""


@dataclass(frozen=True, slots=True)
class SsdpResponse:
    """One accepted answer to an M-SEARCH."""

    #: Where the answer came from.
    source: Endpoint
    #: The description URL (its host is ``source.address``).
    location: str
    #: The search target the device answered for.
    search_target: str
    #: ``USN``: the device's unique service name (may be empty).
    usn: str = ""
    #: ``SERVER``: the device's software, for reports.
    server: str = ""
    #: ``BOOTID.UPNP.ORG``: changes when the device restarts (UDA 1.1 §1.2).
    boot_id: int | None = None

    @property
    def igd_version(self) -> int:
        """1 or 2, from the search target (1 when only a service was named)."""
        return 2 if self.search_target.endswith(":2") else 1


def build_msearch(search_target: str, mx: int = 1, host: Endpoint = SSDP_ENDPOINT) -> bytes:
    """An ``M-SEARCH`` request (UDA 1.1 §1.3.2); ``mx`` is the devices'
    maximum random answer delay in seconds (1-5)."""
    if not 1 <= mx <= 5:
        raise ValueError(f"MX must be 1-5 seconds, not {mx}")
    lines = [
        "M-SEARCH * HTTP/1.1",
        f"HOST: {host}",
        'MAN: "ssdp:discover"',
        f"MX: {mx}",
        f"ST: {search_target}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode("ascii")


def _headers(text: str) -> tuple[str, dict[str, str]]:
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip():
            headers.setdefault(name.strip().upper(), value.strip())
    return lines[0].strip(), headers


def _location_address(location: str) -> IPAddress:
    try:
        parts = urlsplit(location)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise SsdpDecodeError(SsdpFailure.BAD_LOCATION, location[:200]) from None
    if parts.scheme != "http" or host is None:
        raise SsdpDecodeError(SsdpFailure.BAD_LOCATION, location[:200])
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        raise SsdpDecodeError(SsdpFailure.BAD_LOCATION, f"host {host[:100]!r}") from None


def parse_response(data: bytes, source: Endpoint) -> SsdpResponse:
    """Check one datagram from ``source`` (see the module docstring)."""
    if len(data) > MAX_RESPONSE_LENGTH:
        raise SsdpDecodeError(SsdpFailure.TOO_LONG, f"{len(data)} bytes")
    text = data.decode("latin-1")
    status, headers = _headers(text)
    words = status.split()
    if len(words) < 2 or not words[0].upper().startswith("HTTP/1."):
        raise SsdpDecodeError(SsdpFailure.NOT_HTTP, status[:80])
    if words[1] != "200":
        raise SsdpDecodeError(SsdpFailure.NOT_OK, status[:80])
    location = headers.get("LOCATION")
    if not location:
        raise SsdpDecodeError(SsdpFailure.NO_LOCATION)
    if _location_address(location) != source.address:
        raise SsdpDecodeError(
            SsdpFailure.FOREIGN_LOCATION, f"{location[:200]} from {source.address}"
        )
    target = headers.get("ST", "")
    if target not in SEARCH_TARGETS and target not in _SERVICE_TARGETS:
        raise SsdpDecodeError(SsdpFailure.NOT_AN_IGD, target[:200])
    boot = headers.get("BOOTID.UPNP.ORG", "")
    return SsdpResponse(
        source=source,
        location=location,
        search_target=target,
        usn=headers.get("USN", ""),
        server=headers.get("SERVER", ""),
        boot_id=int(boot) if boot.isdigit() else None,
    )


def select_gateway(
    responses: list[SsdpResponse] | tuple[SsdpResponse, ...],
    gateway: IPAddress | None = None,
    *,
    only: bool = False,
) -> SsdpResponse | None:
    """The answer to use: from ``gateway`` if it answered, then IGD:2 before
    IGD:1, then the earliest; ``None`` when there is none. ``only``: an
    answer from ``gateway`` or none (the user named it: another device on
    the LAN must not be mapped on instead)."""
    if only:
        if gateway is None:
            raise LocalProtocolError("only the gateway's answer is wanted: name the gateway")
        responses = [r for r in responses if r.source.address == gateway]
    if not responses:
        return None

    def rank(item: tuple[int, SsdpResponse]) -> tuple[int, int, int]:
        index, response = item
        preferred = gateway is not None and response.source.address == gateway
        return (0 if preferred else 1, -response.igd_version, index)

    return min(enumerate(responses), key=rank)[1]
