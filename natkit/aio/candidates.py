"""Gather every candidate of a socket pair on real sockets (asyncio).

The I/O half of :mod:`natkit.gather.plan`: it lists interface
addresses and opens one UDP socket per family on the wildcard address (one
port for both when it is free; :mod:`natkit.aio.interfaces`), asks DNS for
the NAT64 prefix and for server names (:mod:`natkit.aio.dns`), runs the
sans-IO :class:`~natkit.gather.reflexive.ReflexiveGatherer` on the
sockets (the driver serves its TCP/TLS checks), and asks an optional port
mapper at the same time. Everything runs
concurrently, so a gathering costs about one round trip to the slowest
server that answers, or the port-mapping window when that is longer, not
their sum.

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
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import dns.asyncresolver
import dns.resolver

from natkit.aio.dns import dns_lookup, make_resolver, probe_nat64, server_specs
from natkit.aio.driver import CoreRunner
from natkit.aio.interfaces import list_interface_addresses, open_gathering_sockets, source_address
from natkit.aio.stun_stream import tls_context
from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError, NatkitError
from natkit.gather.candidates import (
    CandidateReport,
    PortMapObservation,
    PortMapStatus,
    ServerObservation,
)
from natkit.gather.host import (
    HostPolicy,
    InterfaceAddress,
    detect_clat,
    select_host_addresses,
)
from natkit.gather.plan import (
    ServerSpec,
    TargetPlan,
    build_report,
    host_candidates,
    plan_targets,
)
from natkit.gather.reflexive import (
    GathererConfig,
    GathererEvent,
    GatheringCompleted,
    ReflexiveGatherer,
)
from natkit.nat64 import Nat64Discovery, Nat64Status
from natkit.stun.uri import parse_server

if TYPE_CHECKING:
    from pathlib import Path

    from natkit.aio.portmap import LeaseJournal, PortMapper
    from natkit.portmap.mapper import PortMapperConfig
    from natkit.portmap.report import PortMapResult


# -- port mapping -------------------------------------------------------------------------


class PortMapProvider(Protocol):
    """What gathering needs from a port mapper (inject a fake in tests)."""

    async def map_port(self, base: Endpoint) -> PortMapObservation:
        """Map ``base.port`` (UDP) towards ``base.address`` (unspecified: the
        mapper picks); never raises for what the gateway does."""

    async def release(self) -> None:
        """Delete what :meth:`map_port` created; idempotent."""


class PortMapperProvider:
    """:class:`PortMapProvider` over :class:`natkit.aio.portmap.PortMapper`
    (PCP, NAT-PMP and UPnP IGD raced). The mapping is held until
    :meth:`release`; the caller decides how long a candidate must live.
    ``journal``: the lease journal (none by default; the command passes one)."""

    def __init__(
        self,
        *,
        gateway: str | None = None,
        config: PortMapperConfig | None = None,
        journal: LeaseJournal | str | Path | None = None,
    ) -> None:
        self.gateway = gateway
        self.config = config
        self.journal = journal
        self.mapper: PortMapper | None = None

    async def map_port(self, base: Endpoint) -> PortMapObservation:
        from natkit.aio.portmap import PortMapper  # noqa: PLC0415 (optional, heavy)

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
    from natkit.portmap.report import ProbeStatus  # noqa: PLC0415

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
    #: A context made beforehand (``tls_context(tls_ca, verify=tls_verify)``,
    #: as ``natkit candidates`` does while checking its flags); wins over both.
    tls: ssl.SSLContext | None = None
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
    core = ReflexiveGatherer(bound, loop.time(), options.gatherer)
    runner: CoreRunner[GathererEvent] | None = None

    def context() -> ssl.SSLContext:
        # Asked for on the first TLS target: loading the system's CA store costs ~20 ms.
        if options.tls is not None:
            return options.tls
        return tls_context(options.tls_ca, verify=options.tls_verify)

    def on_event(event: GathererEvent) -> None:
        if isinstance(event, GatheringCompleted) and not done.done():
            done.set_result(event)

    portmap_task = None
    v4 = next((b for b in bound if b.address.version == 4), None)
    if port_mapper is not None and v4 is not None:
        portmap_task = loop.create_task(port_mapper.map_port(v4))

    try:
        runner = CoreRunner(core, on_event, loop, tls=context)
        await runner.attach(socks)
        # 2. direct paths of literal servers at once (NAT64 paths come with the prefix).
        literal = [
            ServerSpec(p.label, Endpoint(address, p.port), p.tls)
            for p in parsed
            if (address := p.literal) is not None
        ]
        _add(core, plan_targets(literal, bound, (), source_for, tcp=options.tcp), loop.time())
        runner.transmit()

        # 3. NAT64 discovery and names at once, then every server with the prefixes.
        if resolver is None:
            with contextlib.suppress(dns.resolver.NoResolverConfiguration):
                resolver = make_resolver(options.dns_server, options.dns_timeout)
        names = [item for item in parsed if item.literal is None]
        discovery = asyncio.ensure_future(_nat64_step(options, addresses, resolver))
        lookup = None if resolver is None else dns_lookup(resolver)
        try:
            resolved = await asyncio.gather(*(server_specs(item, lookup) for item in names))
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
    # Without a resolver (no system configuration), discovery says so.
    return await probe_nat64(
        resolver, dns_server=options.dns_server, timeout=options.dns_timeout, interfaces=addresses
    )


__all__ = [
    "GatherOptions",
    "PortMapProvider",
    "PortMapperProvider",
    "ServerObservation",
    "gather_candidates",
    "observation_from_result",
]
