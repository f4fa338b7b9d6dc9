"""Run :class:`NatClassifier` on real sockets.

:func:`classify` is the whole of ``natkit classify`` as a library call (and
``natkit.classify``): the classifier with its hop probe, NAT64 discovery
(RFC 7050) beside it, and the binding lifetime after it when asked for.
:func:`run_classifier` is the classifier alone: it picks the local address
the kernel would use towards the first server (a connected UDP socket sends
nothing), binds the classifier's sockets there, and returns the report; the
generic driver serves the classifier's TCP check (a
:class:`~natkit.sansio.StreamRequest`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

from natkit.aio.driver import run_to_completion
from natkit.aio.interfaces import has_routable_ipv6_here, route_source
from natkit.aio.stun_stream import serve_stream_request
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.nat64 import NAT64_NOT_APPLICABLE, Nat64Discovery
from natkit.probe.classifier import (
    TCP_ATTEMPT_DELAYS,
    TCP_CHECK,
    ClassifierConfig,
    NatClassifier,
)
from natkit.probe.events import ClassifierEvent
from natkit.probe.lifetime import (
    BindingLifetimeProber,
    LifetimeCompleted,
    LifetimeConfig,
    LifetimeResult,
)
from natkit.probe.report import ClassificationReport, RunStatus, Verdict
from natkit.sansio import StreamRequest, StreamResult
from natkit.stun.uri import parse_server


async def resolve_server(text: str) -> Endpoint:
    """``[stun:]HOST[:PORT]`` or ``[V6]:PORT`` (:func:`natkit.stun.uri.parse_server`)
    to the endpoint to classify against: a name's first address from the
    system resolver (:func:`natkit.aio.dns.system_lookup`)."""
    server = parse_server(text)
    if server.tls:
        raise LocalProtocolError(f"{text!r}: the classifier speaks STUN over UDP and TCP, not TLS")
    if server.literal is not None:
        return Endpoint(server.literal, server.port)
    # Only names need the resolver module (it pulls in dnspython, ~0.1 s to import).
    from natkit.aio.dns import server_specs, system_lookup  # noqa: PLC0415

    specs, problem = await server_specs(server, system_lookup)
    if problem is not None:
        raise LocalProtocolError(problem)
    return specs[0].address


async def tcp_check(server: Endpoint, request: bytes, timeout: float) -> StreamResult | None:
    """The classifier's TCP check on its own: ``request`` over TCP to
    ``server``, connections started :data:`TCP_ATTEMPT_DELAYS` apart, the
    first reply (``None``: none within ``timeout``)."""
    stream = StreamRequest(TCP_CHECK, server, request, timeout, stagger=TCP_ATTEMPT_DELAYS)
    answer = await serve_stream_request(stream)
    return answer if answer.reply is not None else None


async def classify(
    servers: str | Endpoint | Sequence[str | Endpoint],
    *,
    config: ClassifierConfig | None = None,
    local_address: str | None = None,
    nat64: bool = True,
    dns_server: str | None = None,
    lifetime: LifetimeConfig | None = None,
) -> ClassificationReport:
    """Classify the NAT(s) between this host and STUN ``servers``: the report
    ``natkit classify`` prints (``report_to_dict`` gives its JSON).

    ``servers``: ``[stun:]HOST[:PORT]`` texts or endpoints (one, or several;
    the first RFC 5780 one runs the behaviour tests). ``config``: the
    classifier's knobs (``timeout``, ``test_hairpin``, ``hop_limit=0`` for
    no hop probe, i.e. no ``path``). ``nat64``: look for a NAT64 (RFC 7050)
    beside the run when this host has IPv6, asking ``dns_server``
    (``IP[:PORT]``; default the system resolver); ``False`` leaves
    ``report.nat64`` ``None``. ``lifetime``: also measure the binding
    lifetime (RFC 5780 §4.6) after a run that worked; it takes about as
    long as the lifetime. Raises :class:`~natkit.errors.LocalProtocolError`
    for a server or DNS server that cannot be used, ``OSError`` when no
    route leads to the first server.
    """
    if isinstance(servers, str | Endpoint):
        servers = [servers]
    endpoints = [
        server if isinstance(server, Endpoint) else await resolve_server(server)
        for server in servers
    ]
    nat64_task: asyncio.Future[Nat64Discovery] | None = None
    if nat64 and has_routable_ipv6_here():
        # Imported before the run starts: dnspython takes 0.1-0.3 s to
        # import, and inside the run that would block the event loop while
        # the first answers wait in the socket buffers (a start-up RTT spike).
        from natkit.aio.dns import discover_nat64, parse_dns_server  # noqa: PLC0415

        if dns_server is not None:
            parse_dns_server(dns_server)
        timeout = min(2.0, (config or ClassifierConfig()).timeout)
        nat64_task = asyncio.ensure_future(discover_nat64(dns_server=dns_server, timeout=timeout))
    elif dns_server is not None:
        from natkit.aio.dns import parse_dns_server  # noqa: PLC0415 (dnspython: only when needed)

        parse_dns_server(dns_server)
    try:
        report = await run_classifier(endpoints, config=config, local_address=local_address)
    except BaseException:
        if nat64_task is not None:
            nat64_task.cancel()
        raise
    discovery: Nat64Discovery | None = None
    if nat64_task is not None:
        # Bounded by its own timeout; discovery never raises for DNS trouble.
        discovery = await nat64_task
    elif nat64:
        discovery = NAT64_NOT_APPLICABLE
    if discovery is not None:
        report = dataclasses.replace(
            report, nat64=discovery, reasons={**report.reasons, Verdict.NAT64: discovery.reason}
        )
    if lifetime is not None and report.status is RunStatus.OK:
        measured = await measure_binding_lifetime(
            endpoints[0], config=lifetime, local_address=local_address
        )
        report = dataclasses.replace(
            report,
            binding_lifetime=measured.lifetime,
            binding_lifetime_expired_after=measured.expired_after,
            reasons={**report.reasons, Verdict.BINDING_LIFETIME: measured.reason},
        )
    return report


async def run_classifier(
    servers: Sequence[Endpoint],
    *,
    config: ClassifierConfig | None = None,
    local_address: str | None = None,
) -> ClassificationReport:
    """The classifier alone against ``servers`` (no NAT64 discovery, no
    binding lifetime: :func:`classify` adds those)."""
    config = config or ClassifierConfig()
    if not servers:
        raise LocalProtocolError("at least one STUN server is needed")
    source = Endpoint.of(local_address or route_source(servers[0]), 0)

    def make_core(sockets: list[Endpoint], now: float) -> NatClassifier:
        return NatClassifier(servers, sockets, now, config)

    def result_of(event: ClassifierEvent) -> ClassificationReport:
        return event.report  # the classifier's one event ends the run

    return await run_to_completion(make_core, [source] * config.sockets_needed, result_of)


async def measure_binding_lifetime(
    server: Endpoint,
    *,
    config: LifetimeConfig | None = None,
    local_address: str | None = None,
) -> LifetimeResult:
    """RFC 5780 §4.6 against ``server`` (takes about as long as the lifetime)."""
    config = config or LifetimeConfig()
    source = Endpoint.of(local_address or route_source(server), 0)

    def make_core(sockets: list[Endpoint], now: float) -> BindingLifetimeProber:
        return BindingLifetimeProber(server, sockets, now, config)

    def result_of(event: LifetimeCompleted) -> LifetimeResult:
        return event.result

    count = BindingLifetimeProber.sockets_needed(config)
    return await run_to_completion(make_core, [source] * count, result_of)
