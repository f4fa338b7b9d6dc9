"""Run :class:`NatClassifier` on real sockets.

The driver picks the local address the kernel would use towards the first
server (a connected UDP socket sends nothing), binds the classifier's
sockets there, and returns the report; the generic driver serves the
classifier's TCP check (a :class:`~natkit.sansio.StreamRequest`).
"""

from __future__ import annotations

from collections.abc import Sequence

from natkit.aio.driver import run_to_completion
from natkit.aio.interfaces import route_source
from natkit.aio.stun_stream import serve_stream_request
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
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
from natkit.probe.report import ClassificationReport
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
    servers: Sequence[Endpoint],
    *,
    config: ClassifierConfig | None = None,
    local_address: str | None = None,
) -> ClassificationReport:
    """Classify the NAT(s) between this host and ``servers``."""
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
