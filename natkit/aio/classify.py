"""Run :class:`NatClassifier` on real sockets.

The driver picks the local address the kernel would use towards the first
server (a connected UDP socket sends nothing), binds the classifier's
sockets there, answers its TCP check (:mod:`natkit.aio.stun_stream`, several
staggered connections), and returns the report.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from natkit.aio.driver import CoreRunner, run_to_completion
from natkit.aio.interfaces import route_source
from natkit.aio.stun_stream import StreamReply, stun_over_stream
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.probe.classifier import ClassifierConfig, NatClassifier
from natkit.probe.events import ClassificationCompleted, ClassifierEvent, TcpCheckRequested
from natkit.probe.lifetime import (
    BindingLifetimeProber,
    LifetimeCompleted,
    LifetimeConfig,
    LifetimeResult,
)
from natkit.probe.report import ClassificationReport
from natkit.stun.uri import parse_server

#: The TCP check's connection attempts start this far apart (seconds), so a
#: lost SYN or SYN-ACK costs a fraction of a second, not the kernel's 1 s RTO.
TCP_ATTEMPT_DELAYS = (0.0, 0.1, 0.2, 0.4, 0.6, 0.9)


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
    from natkit.aio.dns import resolve_server as resolve_spec  # noqa: PLC0415
    from natkit.aio.dns import system_lookup  # noqa: PLC0415

    specs, problem = await resolve_spec(server, system_lookup)
    if problem is not None:
        raise LocalProtocolError(problem)
    return specs[0].address


async def tcp_check(server: Endpoint, request: bytes, timeout: float) -> StreamReply | None:
    """The classifier's TCP check: ``request`` over TCP to ``server``, the
    reply (``None``: none within ``timeout``). Connections start
    :data:`TCP_ATTEMPT_DELAYS` apart, in parallel; the first reply wins."""

    async def attempt(delay: float) -> StreamReply | None:
        await asyncio.sleep(delay)
        answer = await stun_over_stream(server, request, timeout)
        return answer if answer.reply is not None else None

    attempts = [asyncio.ensure_future(attempt(delay)) for delay in TCP_ATTEMPT_DELAYS]
    try:
        async with asyncio.timeout(timeout):
            for finished in asyncio.as_completed(attempts):
                reply = await finished
                if reply is not None:
                    return reply
    except TimeoutError:
        pass
    finally:
        for pending in attempts:
            pending.cancel()
    return None


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
    loop = asyncio.get_running_loop()
    source = Endpoint.of(local_address or route_source(servers[0]), 0)
    tasks: set[asyncio.Task[None]] = set()
    cores: list[NatClassifier] = []

    def make_core(sockets: list[Endpoint], now: float) -> NatClassifier:
        cores.append(NatClassifier(servers, sockets, now, config))
        return cores[0]

    async def answer_tcp_check(
        event: TcpCheckRequested, runner: CoreRunner[ClassifierEvent]
    ) -> None:
        answer = await tcp_check(event.server, event.request, config.timeout)
        if answer is None:
            cores[0].tcp_check_completed(None, loop.time())
        else:
            cores[0].tcp_check_completed(answer.reply, loop.time(), answer.rtt)
        runner.transmit()

    def on_event(event: ClassifierEvent, runner: CoreRunner[ClassifierEvent]) -> None:
        if isinstance(event, TcpCheckRequested):
            task = loop.create_task(answer_tcp_check(event, runner))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    def result_of(event: ClassifierEvent) -> ClassificationReport | None:
        return event.report if isinstance(event, ClassificationCompleted) else None

    try:
        return await run_to_completion(
            make_core, [source] * config.sockets_needed, result_of, on_event
        )
    finally:
        for task in tasks:
            task.cancel()


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
