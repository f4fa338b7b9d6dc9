"""Names and NAT64 over DNS: resolvers, RFC 7050 discovery, server names.

* :func:`make_resolver`: dnspython's async resolver, the system's
  (``/etc/resolv.conf``) or one ``--dns`` server.
* :func:`discover_nat64` / :func:`probe_nat64`: RFC 7050 §3, the AAAA
  records of ``ipv4only.arpa``; the prefixes are read off by the pure
  :func:`natkit.nat64.prefixes_from_answers`.
* :func:`server_specs`: a parsed ``--server`` (:mod:`natkit.stun.uri`) to
  the addresses to ask, through one of two lookups:

  - :func:`dns_lookup` (``natkit candidates``): the first A and the first
    AAAA record, asked of a dnspython resolver. Never ``getaddrinfo``: on
    an IPv6-only host it still offers IPv4 addresses that are unreachable
    there, and a DNS64's synthesised AAAA is only recognised as a NAT64
    path with the raw records and the prefix.
  - :func:`system_lookup` (``natkit classify``): ``getaddrinfo``, the
    system's resolver with ``/etc/hosts`` and its address order (RFC 6724);
    the classifier needs one reachable address, not every path.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from natkit.aio.interfaces import has_routable_ipv6_here
from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError
from natkit.gather.host import InterfaceAddress, has_routable_ipv6
from natkit.gather.plan import ServerSpec
from natkit.nat64 import (
    IPV4ONLY_ARPA,
    NAT64_NOT_APPLICABLE,
    Nat64Discovery,
    Nat64Status,
    prefixes_from_answers,
)
from natkit.stun.uri import ParsedServer

#: A host name's addresses, best first; when there are none, why.
NameLookup = Callable[[str], Awaitable[tuple[list[IPAddress], str]]]


# -- resolvers ------------------------------------------------------------------------


def parse_dns_server(text: str) -> tuple[str, int]:
    """``IP``, ``IP:PORT`` or ``[IPv6]:PORT`` (port 53 unless given)."""
    try:
        endpoint = Endpoint.parse(text, 53)
    except ValueError:
        raise LocalProtocolError(f"bad DNS server {text!r}: give an IP address") from None
    return str(endpoint.address), endpoint.port


def make_resolver(
    dns_server: str | None = None, timeout: float = 2.0
) -> dns.asyncresolver.Resolver:
    """The system resolver (``/etc/resolv.conf``) or one server, ``timeout`` per query."""
    if dns_server is None:
        resolver = dns.asyncresolver.Resolver()
    else:
        address, port = parse_dns_server(dns_server)
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(address, port)]
    resolver.timeout = timeout
    resolver.lifetime = timeout
    return resolver


def _resolver_name(resolver: dns.asyncresolver.Resolver) -> str:
    return ", ".join(str(n) for n in resolver.nameservers) or "no resolver"


# -- NAT64 ------------------------------------------------------------------------------


async def discover_nat64(
    resolver: dns.asyncresolver.Resolver | None = None,
    *,
    dns_server: str | None = None,
    timeout: float = 2.0,
) -> Nat64Discovery:
    """RFC 7050 §3: ask for the AAAA records of ``ipv4only.arpa`` and read
    the prefixes off (:func:`~natkit.nat64.prefixes_from_answers`).
    Without ``resolver``, one is made from ``dns_server`` (:func:`make_resolver`).

    Never raises for what the resolver does: a timeout, an error, a bogus
    answer all come back as a :class:`Nat64Discovery` saying why.
    """
    try:
        resolver = resolver or make_resolver(dns_server, timeout)
    except dns.resolver.NoResolverConfiguration as exc:
        return Nat64Discovery(Nat64Status.FAILED, reason=f"no resolver configured: {exc}")
    name = _resolver_name(resolver)
    loop = asyncio.get_running_loop()
    started = loop.time()

    def failed(reason: str) -> Nat64Discovery:
        return Nat64Discovery(Nat64Status.FAILED, reason=reason, dns_server=name)

    try:
        answer = await resolver.resolve(
            IPV4ONLY_ARPA, "AAAA", raise_on_no_answer=False, lifetime=timeout, search=False
        )
    except dns.resolver.NXDOMAIN:
        return Nat64Discovery(
            Nat64Status.ABSENT,
            reason="the resolver says ipv4only.arpa does not exist: no DNS64",
            dns_server=name,
            rtt=loop.time() - started,
        )
    except dns.exception.Timeout:
        return failed(f"no answer from {name} within {timeout:g} s")
    except dns.resolver.NoNameservers as exc:
        return failed(f"the resolver failed: {exc}")
    except (dns.exception.DNSException, OSError, ValueError) as exc:
        return failed(f"DNS query failed: {exc}")
    rtt = loop.time() - started
    records: list[ipaddress.IPv6Address] = []
    if answer.rrset is not None:
        for rdata in answer.rrset:
            with contextlib.suppress(ValueError, AttributeError):
                records.append(ipaddress.IPv6Address(rdata.address))
    return replace(prefixes_from_answers(records), dns_server=name, rtt=rtt)


async def probe_nat64(
    resolver: dns.asyncresolver.Resolver | None = None,
    *,
    dns_server: str | None = None,
    timeout: float = 2.0,
    interfaces: Sequence[InterfaceAddress] | None = None,
) -> Nat64Discovery:
    """:func:`discover_nat64` when this host has an IPv6 address to use a
    NAT64 with; otherwise ``NOT_APPLICABLE`` without asking anyone."""
    usable = has_routable_ipv6_here() if interfaces is None else has_routable_ipv6(interfaces)
    if not usable:
        return NAT64_NOT_APPLICABLE
    return await discover_nat64(resolver, dns_server=dns_server, timeout=timeout)


# -- server names ----------------------------------------------------------------------


def dns_lookup(resolver: dns.asyncresolver.Resolver) -> NameLookup:
    """A :data:`NameLookup` asking ``resolver`` for the first A and the first
    AAAA record of a name, both at once (module docstring: why not
    ``getaddrinfo``)."""

    async def lookup(host: str) -> tuple[list[IPAddress], str]:
        found: list[IPAddress] = []
        errors: list[str] = []
        answers = await asyncio.gather(
            *(resolver.resolve(host, rdtype, raise_on_no_answer=False) for rdtype in ("A", "AAAA")),
            return_exceptions=True,
        )
        for rdtype, answer in zip(("A", "AAAA"), answers, strict=True):
            if isinstance(answer, dns.exception.DNSException | OSError | ValueError):
                errors.append(f"{rdtype}: {answer}")
                continue
            if isinstance(answer, BaseException):
                raise answer
            if answer.rrset is None:
                continue
            for rdata in answer.rrset:
                found.append(ipaddress.ip_address(rdata.address))
                break
        return found, "; ".join(errors) or "no A or AAAA record"

    return lookup


async def system_lookup(host: str) -> tuple[list[IPAddress], str]:
    """A :data:`NameLookup` through ``getaddrinfo`` (the system resolver,
    ``/etc/hosts`` included), in the order it gives (RFC 6724)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        return [], str(exc.strerror)
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = Endpoint.from_sockaddr((sockaddr[0], 0)).address
        if address not in found:
            found.append(address)
    return found, "no address"


async def server_specs(
    server: ParsedServer, lookup: NameLookup | None
) -> tuple[list[ServerSpec], str | None]:
    """The addresses to ask ``server`` at (an IP literal as it is, a name
    through ``lookup``), or why there are none."""
    literal = server.literal
    if literal is not None:
        return [ServerSpec(server.label, Endpoint(literal, server.port), server.tls)], None
    if lookup is None:
        return [], f"{server.label}: no resolver to look {server.host!r} up"
    addresses, why = await lookup(server.host)
    if not addresses:
        return [], f"{server.label}: cannot resolve {server.host!r} ({why})"
    specs = [
        ServerSpec(server.label, Endpoint(address, server.port), server.tls, server.host)
        for address in addresses
    ]
    return specs, None


__all__ = [
    "NAT64_NOT_APPLICABLE",
    "NameLookup",
    "discover_nat64",
    "dns_lookup",
    "make_resolver",
    "parse_dns_server",
    "probe_nat64",
    "server_specs",
    "system_lookup",
]
