"""Gather every candidate of a socket pair on real sockets (asyncio).

The I/O half of :mod:`natkit.probe.candidates_plan`: it lists interface
addresses (``ifaddr``), asks DNS (dnspython's async resolver) for the NAT64
prefix and for server names, opens one UDP socket per family on the
wildcard address (one port for both when it is free), runs the sans-IO
:class:`~natkit.probe.candidates_stun.ReflexiveGatherer` on them, answers
its TCP/TLS checks with natkit's codec over asyncio streams, and asks an
optional port mapper at the same time. Everything runs concurrently, so a
gathering costs about one round trip to the slowest server that answers,
or the port-mapping window when that is longer, not their sum.

Order, with the reason:

1. interfaces, sockets, host candidates (local, instant);
2. at once: the port mapper, the NAT64 discovery, the STUN core with the
   servers given as addresses (direct paths need no DNS);
3. when DNS64 answered: the NAT64 paths and the servers given as names
   (a name's synthesised AAAA record is only recognised with the prefix);
4. wait for the core and the port mapper; build the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import re
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
import ifaddr

from natkit.aio.classify import route_source
from natkit.aio.driver import CoreRunner
from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError, NatkitError
from natkit.probe.candidates import (
    CandidateReport,
    CandidateTransport,
    PortMapObservation,
    PortMapStatus,
    ServerObservation,
)
from natkit.probe.candidates_host import (
    HostPolicy,
    InterfaceAddress,
    detect_clat,
    has_routable_ipv6,
    select_host_addresses,
)
from natkit.probe.candidates_plan import (
    ServerSpec,
    TargetPlan,
    build_report,
    host_candidates,
    plan_targets,
)
from natkit.probe.candidates_stun import (
    GathererConfig,
    GathererEvent,
    GatheringCompleted,
    ReflexiveGatherer,
    StreamCheckRequested,
    StreamTarget,
)
from natkit.probe.nat64 import (
    IPV4ONLY_ARPA,
    Nat64Discovery,
    Nat64Status,
    prefixes_from_answers,
)
from natkit.stun.codec import message_length
from natkit.stun.constants import HEADER_LENGTH

if TYPE_CHECKING:
    from natkit.portmap.mapper import PortMapper, PortMapperConfig, PortMapResult

DEFAULT_STUN_PORT = 3478
#: RFC 7064 §3.1 / RFC 8489 §6.2.3: STUN over TLS.
DEFAULT_STUNS_PORT = 5349
#: A DNS name (RFC 1123 labels), for telling ``--server`` typos from names.
_HOSTNAME = re.compile(
    r"^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
#: Largest STUN message accepted over a stream (RFC 8489 has no limit;
#: a Binding response is a few hundred bytes).
MAX_STREAM_MESSAGE = 8192


# -- interfaces ---------------------------------------------------------------------


def list_interface_addresses() -> tuple[InterfaceAddress, ...]:
    """Every address of every interface (``ifaddr``); link-local IPv6
    addresses carry their interface as scope."""
    found: list[InterfaceAddress] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            address: IPAddress
            if isinstance(ip.ip, tuple):
                text = ip.ip[0]
                address = ipaddress.IPv6Address(text)
                if address.is_link_local:
                    address = ipaddress.IPv6Address(f"{text}%{adapter.name}")
            else:
                address = ipaddress.IPv4Address(ip.ip)
            found.append(InterfaceAddress(adapter.name, address, ip.network_prefix))
    return tuple(found)


def source_address(destination: IPAddress) -> IPAddress | None:
    """The local address the kernel routes from towards ``destination``
    (a connected UDP socket sends nothing), ``None`` without a route."""
    try:
        return ipaddress.ip_address(route_source(Endpoint(destination, DEFAULT_STUN_PORT)))
    except OSError:
        return None


def _bind_udp(family: socket.AddressFamily, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def open_gathering_sockets(port: int = 0) -> list[socket.socket]:
    """A UDP socket on ``0.0.0.0`` and one on ``::`` (IPv6 only), on
    ``port``, or on one free port for both (the IPv6 one takes another when
    that port is taken in IPv6). A family the kernel lacks is left out."""
    sockets: list[socket.socket] = []
    try:
        try:
            sockets.append(_bind_udp(socket.AF_INET, port))
        except OSError as exc:
            if exc.errno != errno.EAFNOSUPPORT:
                raise
        shared = port or (sockets[0].getsockname()[1] if sockets else 0)
        try:
            sockets.append(_bind_udp(socket.AF_INET6, shared))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE and not port:
                sockets.append(_bind_udp(socket.AF_INET6, 0))
            elif exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL) or not sockets:
                raise
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


# -- DNS ------------------------------------------------------------------------------


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


async def discover_nat64(
    resolver: dns.asyncresolver.Resolver | None = None,
    *,
    dns_server: str | None = None,
    timeout: float = 2.0,
) -> Nat64Discovery:
    """RFC 7050 §3: ask for the AAAA records of ``ipv4only.arpa`` and read
    the prefixes off (:func:`~natkit.probe.nat64.prefixes_from_answers`).

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
    *,
    dns_server: str | None = None,
    timeout: float = 2.0,
    interfaces: Sequence[InterfaceAddress] | None = None,
) -> Nat64Discovery:
    """:func:`discover_nat64` when this host has an IPv6 address to use a
    NAT64 with; otherwise ``NOT_APPLICABLE`` without asking anyone."""
    addresses = list_interface_addresses() if interfaces is None else interfaces
    if not has_routable_ipv6(addresses):
        return _NOT_APPLICABLE
    return await discover_nat64(dns_server=dns_server, timeout=timeout)


_NOT_APPLICABLE = Nat64Discovery(
    Nat64Status.NOT_APPLICABLE,
    reason="no IPv6 address beyond loopback and link-local: a NAT64 is of no use here",
)


@dataclass(frozen=True, slots=True)
class ParsedServer:
    """A ``--server`` argument before name resolution."""

    label: str
    host: str
    port: int
    tls: bool


def parse_server(text: str) -> ParsedServer:
    """``[stun:|stuns:]HOST[:PORT]`` (RFC 7064 URIs, ``[v6]:port`` literals)."""
    rest, tls = text.strip(), False
    for scheme, secure in (("stuns:", True), ("stun:", False)):
        if rest.lower().startswith(scheme):
            rest, tls = rest[len(scheme) :], secure
            break
    default = DEFAULT_STUNS_PORT if tls else DEFAULT_STUN_PORT
    if not rest:
        raise LocalProtocolError(f"bad server {text!r}")
    with contextlib.suppress(ValueError):
        endpoint = Endpoint.parse(rest, default)
        return ParsedServer(text, str(endpoint.address), endpoint.port, tls)
    host, sep, port_text = rest.rpartition(":")
    if not sep:
        host, port_text = rest, ""
    if not _HOSTNAME.match(host) or (port_text and not port_text.isdigit()):
        raise LocalProtocolError(f"bad server {text!r}")
    port = int(port_text) if port_text else default
    if not 0 < port <= 0xFFFF:
        raise LocalProtocolError(f"bad port in {text!r}")
    return ParsedServer(text, host, port, tls)


async def resolve_server(
    server: ParsedServer, resolver: dns.asyncresolver.Resolver | None
) -> tuple[list[ServerSpec], str | None]:
    """The server's addresses (the first A and the first AAAA record for a
    name, asked of ``resolver``: never ``getaddrinfo``, which on an
    IPv6-only host still offers unreachable IPv4 addresses), or why none."""
    with contextlib.suppress(ValueError):
        literal = ipaddress.ip_address(server.host)
        return [ServerSpec(server.label, Endpoint(literal, server.port), server.tls)], None
    if resolver is None:
        return [], f"{server.label}: no resolver to look {server.host!r} up"
    specs: list[ServerSpec] = []
    errors: list[str] = []
    answers = await asyncio.gather(
        *(
            resolver.resolve(server.host, rdtype, raise_on_no_answer=False)
            for rdtype in ("A", "AAAA")
        ),
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
            address = ipaddress.ip_address(rdata.address)
            specs.append(
                ServerSpec(server.label, Endpoint(address, server.port), server.tls, server.host)
            )
            break
    if specs:
        return specs, None
    detail = "; ".join(errors) or "no A or AAAA record"
    return [], f"{server.label}: cannot resolve {server.host!r} ({detail})"


# -- STUN over TCP and TLS ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamReply:
    """What one STUN exchange over a stream gave."""

    reply: bytes | None
    local: Endpoint | None = None
    rtt: float | None = None
    detail: str = ""


async def stun_over_stream(
    target: StreamTarget,
    request: bytes,
    timeout: float,
    tls_context: ssl.SSLContext | None = None,
) -> StreamReply:
    """Connect, send one request, read one message (RFC 8489 §6.2.2 framing).

    Never raises for what the network does: refusals, resets, TLS failures
    and timeouts come back as a :class:`StreamReply` without a reply.
    """
    loop = asyncio.get_running_loop()
    host, port = str(target.destination.address), target.destination.port
    tls = None
    if target.transport is CandidateTransport.TLS:
        tls = tls_context or ssl.create_default_context()
    local: Endpoint | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host,
                port,
                ssl=tls,
                server_hostname=(target.server_name or str(target.server.address)) if tls else None,
            )
            try:
                local = Endpoint.from_sockaddr(writer.get_extra_info("sockname"))
                sent_at = loop.time()
                writer.write(request)
                await writer.drain()
                header = await reader.readexactly(HEADER_LENGTH)
                length = message_length(header) or HEADER_LENGTH
                if length > MAX_STREAM_MESSAGE:
                    return StreamReply(None, local, None, f"reply of {length} bytes refused")
                body = await reader.readexactly(length - HEADER_LENGTH)
                return StreamReply(header + body, local, loop.time() - sent_at)
            finally:
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError):
                    await writer.wait_closed()
    except TimeoutError:
        return StreamReply(None, local, None, f"no reply within {timeout:g} s")
    except ssl.SSLError as exc:
        return StreamReply(None, None, None, f"TLS failed: {exc.reason or exc}")
    except asyncio.IncompleteReadError:
        return StreamReply(None, local, None, "connection closed before a full reply")
    except OSError as exc:
        return StreamReply(None, None, None, f"cannot connect: {exc.strerror or exc}")


def tls_context(cafile: str | None = None, *, verify: bool = True) -> ssl.SSLContext:
    """Certificates checked against the system store or ``cafile``; ``verify``
    off accepts any (the mapped address is information, not a secret)."""
    context = ssl.create_default_context(cafile=cafile)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# -- port mapping -------------------------------------------------------------------------


class PortMapProvider(Protocol):
    """What gathering needs from a port mapper (inject a fake in tests)."""

    async def map_port(self, base: Endpoint) -> PortMapObservation:
        """Map ``base.port`` (UDP) towards ``base.address`` (unspecified: the
        mapper picks); never raises for what the gateway does."""

    async def release(self) -> None:
        """Delete what :meth:`map_port` created; idempotent."""


class PortMapperProvider:
    """:class:`PortMapProvider` over :class:`natkit.portmap.mapper.PortMapper`
    (PCP, NAT-PMP and UPnP IGD raced). The mapping is held until
    :meth:`release`; the caller decides how long a candidate must live."""

    def __init__(
        self,
        *,
        gateway: str | None = None,
        config: PortMapperConfig | None = None,
        journal: str | None = None,
    ) -> None:
        self.gateway = gateway
        self.config = config
        self.journal = journal
        self.mapper: PortMapper | None = None

    async def map_port(self, base: Endpoint) -> PortMapObservation:
        from natkit.portmap.mapper import PortMapper  # noqa: PLC0415 (optional, heavy)

        loop = asyncio.get_running_loop()
        started = loop.time()
        local = None if base.address.is_unspecified else str(base.address)
        try:
            self.mapper = PortMapper(
                base.port,
                gateway=self.gateway,
                local_address=local,
                config=self.config,
                journal=self.journal,
            )
            result = await self.mapper.start()
        except LocalProtocolError as exc:
            return PortMapObservation(PortMapStatus.NO_GATEWAY, detail=str(exc))
        except (NatkitError, OSError) as exc:
            return PortMapObservation(
                PortMapStatus.FAILED, detail=str(exc), elapsed=loop.time() - started
            )
        return observation_from_result(result, loop.time() - started)

    async def release(self) -> None:
        mapper, self.mapper = self.mapper, None
        if mapper is not None:
            await mapper.close()


def observation_from_result(result: PortMapResult, elapsed: float) -> PortMapObservation:
    """A :class:`PortMapObservation` from a ``PortMapper`` result."""
    from natkit.portmap.mapper import ProbeStatus  # noqa: PLC0415

    summary = ", ".join(f"{r.protocol.value}: {r.status.value}" for r in result.protocols)
    if result.hint is not None:
        summary += f"; {result.hint}"
    gateway = next(
        (r.external_address for r in result.protocols if r.external_address is not None), None
    )
    mapping = result.mapping
    if mapping is not None:
        return PortMapObservation(
            PortMapStatus.MAPPED,
            external=mapping.external,
            base=mapping.internal,
            gateway_external=mapping.external.address,
            protocol=mapping.protocol.value,
            elapsed=result.mapped_after if result.mapped_after is not None else elapsed,
            detail=summary,
        )
    silent = {ProbeStatus.NO_ANSWER, ProbeStatus.NOT_TRIED}
    answered = any(r.status not in silent for r in result.protocols)
    status = PortMapStatus.NO_MAPPING if answered else PortMapStatus.NO_GATEWAY
    return PortMapObservation(status, gateway_external=gateway, elapsed=elapsed, detail=summary)


# -- gathering ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatherOptions:
    """How to gather (seconds)."""

    #: Local UDP port for both sockets (0: any free one).
    port: int = 0
    host: HostPolicy = field(default_factory=HostPolicy)
    #: Look for a NAT64 (RFC 7050) when this host has IPv6.
    nat64: bool = True
    #: DNS server for NAT64 discovery and names (``None``: the system's).
    dns_server: str | None = None
    dns_timeout: float = 2.0
    #: Also ask over TCP (and TLS for ``stuns:`` servers).
    tcp: bool = True
    tls_ca: str | None = None
    tls_verify: bool = True
    #: Endpoints the user declares reachable (a manual port forward).
    statics: tuple[Endpoint, ...] = ()
    gatherer: GathererConfig = field(default_factory=GathererConfig)


async def gather_candidates(
    servers: Sequence[str],
    options: GatherOptions | None = None,
    *,
    port_mapper: PortMapProvider | None = None,
    interfaces: Sequence[InterfaceAddress] | None = None,
    resolver: dns.asyncresolver.Resolver | None = None,
    sockets: Sequence[socket.socket] | None = None,
    source_for: Callable[[IPAddress], IPAddress | None] = source_address,
) -> CandidateReport:
    """Every candidate of one UDP socket per family (module docstring).

    ``servers``: ``[stun:|stuns:]HOST[:PORT]``. ``sockets``: bound UDP
    sockets to gather for (duplicated, so they stay open and usable by the
    caller, who must not read them meanwhile); without them, wildcard
    sockets are opened on ``options.port`` and closed at the end.
    ``port_mapper``: asked at the same time; its mapping is left in place
    (call its ``release()`` when the candidate is no longer needed).
    ``interfaces``, ``resolver``, ``source_for``: injectable for tests.
    """
    options = options or GatherOptions()
    loop = asyncio.get_running_loop()
    started = loop.time()
    parsed = [parse_server(text) for text in servers]
    addresses = tuple(list_interface_addresses() if interfaces is None else interfaces)
    clat = detect_clat(addresses)
    usable, host_notes = select_host_addresses(addresses, options.host, clat)
    socks = open_gathering_sockets(options.port) if sockets is None else [s.dup() for s in sockets]
    bound = [Endpoint.from_sockaddr(s.getsockname()) for s in socks]
    host = host_candidates(usable, bound)

    done: asyncio.Future[GatheringCompleted] = loop.create_future()
    tasks: set[asyncio.Task[None]] = set()
    core = ReflexiveGatherer(bound, loop.time(), options.gatherer)
    runner: CoreRunner[GathererEvent] | None = None
    contexts: list[ssl.SSLContext] = []

    def context() -> ssl.SSLContext:
        # Made on first use: loading the system's CA store costs ~20 ms.
        if not contexts:
            contexts.append(tls_context(options.tls_ca, verify=options.tls_verify))
        return contexts[0]

    async def stream_check(event: StreamCheckRequested) -> None:
        remaining = max(0.05, started + options.gatherer.timeout - loop.time())
        tls = context() if event.target.transport is CandidateTransport.TLS else None
        answer = await stun_over_stream(event.target, event.request, remaining, tls)
        core.stream_check_completed(
            event.target,
            answer.reply,
            loop.time(),
            rtt=answer.rtt,
            local=answer.local,
            detail=answer.detail,
        )
        if runner is not None:
            runner.transmit()

    def on_event(event: GathererEvent) -> None:
        if isinstance(event, GatheringCompleted):
            if not done.done():
                done.set_result(event)
        elif isinstance(event, StreamCheckRequested):
            task = loop.create_task(stream_check(event))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    portmap_task = None
    v4 = next((b for b in bound if b.address.version == 4), None)
    if port_mapper is not None and v4 is not None:
        portmap_task = loop.create_task(port_mapper.map_port(v4))

    try:
        runner = CoreRunner(core, on_event, loop)
        await runner.attach(socks)
        # 2. direct paths of literal servers at once (NAT64 paths come with the prefix).
        literal = [
            ServerSpec(p.label, Endpoint(ipaddress.ip_address(p.host), p.port), p.tls)
            for p in parsed
            if _is_literal(p.host)
        ]
        _add(core, plan_targets(literal, bound, (), source_for, tcp=options.tcp), loop.time())
        runner.transmit()

        # 3. NAT64 discovery and names at once, then every server with the prefixes.
        if resolver is None:
            with contextlib.suppress(dns.resolver.NoResolverConfiguration):
                resolver = make_resolver(options.dns_server, options.dns_timeout)
        names = [item for item in parsed if not _is_literal(item.host)]
        discovery = asyncio.ensure_future(_nat64_step(options, addresses, resolver))
        try:
            resolved = await asyncio.gather(*(resolve_server(item, resolver) for item in names))
        except BaseException:
            discovery.cancel()
            raise
        nat64 = await discovery
        specs, problems = list(literal), []
        for found, problem in resolved:
            specs.extend(found)
            if problem:
                problems.append(problem)
        plan = plan_targets(specs, bound, nat64.prefixes, source_for, tcp=options.tcp)
        _add(core, plan, loop.time())
        core.no_more_targets(loop.time())
        runner.transmit()

        # 4. wait for the core and the port mapper.
        completed = await done
        port_mapping = (
            await portmap_task
            if portmap_task is not None
            else PortMapObservation(
                PortMapStatus.NOT_TESTED,
                detail="no port mapper" if port_mapper is None else "no IPv4 socket",
            )
        )
    finally:
        if runner is not None:
            runner.close()
        for task in tasks:
            task.cancel()
        for sock in socks:
            sock.close()
        if portmap_task is not None and not portmap_task.done():
            portmap_task.cancel()
    return build_report(
        host=host,
        observations=completed.observations,
        nat64=nat64,
        clat=clat,
        port_mapping=port_mapping,
        statics=options.statics,
        sockets=bound,
        duration=loop.time() - started,
        notes=[*problems, *plan.skipped, *host_notes],
    )


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _add(core: ReflexiveGatherer, plan: TargetPlan, now: float) -> None:
    for target in plan.udp:
        core.add_target(target, now)
    for stream in plan.streams:
        core.add_stream_target(stream, now)


async def _nat64_step(
    options: GatherOptions,
    addresses: Sequence[InterfaceAddress],
    resolver: dns.asyncresolver.Resolver | None,
) -> Nat64Discovery:
    """NAT64 discovery when wanted and useful (this host has IPv6)."""
    if not options.nat64:
        return Nat64Discovery(Nat64Status.NOT_TESTED, reason="switched off")
    if not has_routable_ipv6(addresses):
        return _NOT_APPLICABLE
    if resolver is None:
        return Nat64Discovery(Nat64Status.FAILED, reason="no resolver configured")
    return await discover_nat64(resolver, timeout=options.dns_timeout)


__all__ = [
    "GatherOptions",
    "ParsedServer",
    "PortMapProvider",
    "PortMapperProvider",
    "ServerObservation",
    "StreamReply",
    "discover_nat64",
    "gather_candidates",
    "list_interface_addresses",
    "make_resolver",
    "open_gathering_sockets",
    "parse_server",
    "probe_nat64",
    "resolve_server",
    "stun_over_stream",
    "tls_context",
]
