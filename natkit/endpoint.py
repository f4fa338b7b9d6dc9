"""Transport addresses: one IP address and one UDP/TCP port."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import IntEnum

from natkit.errors import InvalidEndpoint

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Family(IntEnum):
    """Address family, numbered as STUN encodes it (RFC 8489 §14.1)."""

    IPV4 = 0x01
    IPV6 = 0x02


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An IP address and a port, the unit every NAT mapping is made of."""

    address: IPAddress
    port: int

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 0xFFFF:
            raise InvalidEndpoint(str(self.port), f"port out of range: {self.port}")

    @classmethod
    def of(cls, host: str | IPAddress, port: int) -> Endpoint:
        """Build from a textual or parsed address (no name resolution)."""
        if not isinstance(host, str):
            return cls(host, port)
        try:
            return cls(ipaddress.ip_address(host), port)
        except InvalidEndpoint:
            raise
        except ValueError as exc:
            raise InvalidEndpoint(host, str(exc)) from None

    @classmethod
    def parse(cls, text: str, default_port: int | None = None) -> Endpoint:
        """Parse ``IP:PORT``, ``[IPv6]:PORT``, or a bare IP with ``default_port``."""
        text = text.strip()
        host: str
        port: int | None = default_port
        if text.startswith("["):
            end = text.find("]")
            if end < 0:
                raise InvalidEndpoint(text, f"unterminated IPv6 literal: {text!r}")
            host, rest = text[1:end], text[end + 1 :]
            if rest:
                if not rest.startswith(":"):
                    raise InvalidEndpoint(text, f"bad endpoint: {text!r}")
                port = _parse_port(rest[1:], text)
        elif text.count(":") == 1:
            host, port_text = text.split(":")
            port = _parse_port(port_text, text)
        else:
            host = text
        if port is None:
            raise InvalidEndpoint(text, f"no port in {text!r}")
        try:
            return cls(ipaddress.ip_address(host), port)
        except ValueError as exc:
            raise InvalidEndpoint(text, f"bad endpoint {text!r}: {exc}") from None

    @classmethod
    def from_sockaddr(cls, sockaddr: tuple[object, ...]) -> Endpoint:
        """Convert a socket module address tuple (v4 or v6)."""
        host = str(sockaddr[0]).split("%", 1)[0]
        port = sockaddr[1]
        if not isinstance(port, int):
            raise TypeError(f"bad sockaddr {sockaddr!r}")
        return cls(ipaddress.ip_address(host), port)

    @property
    def family(self) -> Family:
        return Family.IPV4 if self.address.version == 4 else Family.IPV6

    def sockaddr(self) -> tuple[str, int]:
        """The tuple ``socket.sendto`` wants."""
        return (str(self.address), self.port)

    def __str__(self) -> str:
        if self.address.version == 6:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"


def _parse_port(text: str, whole: str) -> int:
    if not text.isdigit():
        raise InvalidEndpoint(whole, f"bad port in {whole!r}")
    port = int(text)
    if port > 0xFFFF:
        raise InvalidEndpoint(whole, f"port out of range in {whole!r}")
    return port
