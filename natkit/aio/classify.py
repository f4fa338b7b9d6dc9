"""Run :class:`NatClassifier` on real sockets.

The driver picks the local address the kernel would use towards the first
server (a connected UDP socket sends nothing), binds the classifier's
sockets there, answers its TCP check, and returns the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Sequence

from natkit.aio.driver import CoreRunner, run_to_completion
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
from natkit.stun.codec import message_length
from natkit.stun.constants import HEADER_LENGTH

DEFAULT_STUN_PORT = 3478


def route_source(destination: Endpoint) -> str:
    """The source address the kernel picks towards ``destination``."""
    family = socket.AF_INET if destination.address.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(destination.sockaddr())
        return str(probe.getsockname()[0])


async def resolve_server(text: str, default_port: int = DEFAULT_STUN_PORT) -> Endpoint:
    """``HOST[:PORT]`` or ``[V6]:PORT`` to an endpoint (names via getaddrinfo)."""
    try:
        return Endpoint.parse(text, default_port)
    except ValueError:
        pass
    host, _, port_text = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if not host:
        host, port_text = text, ""
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise LocalProtocolError(f"bad server {text!r}") from None
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise LocalProtocolError(f"cannot resolve {host!r}: {exc.strerror}") from None
    return Endpoint.from_sockaddr(infos[0][4])


#: The TCP check's connection attempts start this far apart (seconds), so a
#: lost SYN or SYN-ACK costs a fraction of a second, not the kernel's 1 s RTO.
TCP_ATTEMPT_DELAYS = (0.0, 0.2, 0.5)


async def _tcp_once(server: Endpoint, request: bytes, delay: float) -> bytes | None:
    await asyncio.sleep(delay)
    try:
        reader, writer = await asyncio.open_connection(str(server.address), server.port)
    except OSError:
        return None
    try:
        writer.write(request)
        header = await reader.readexactly(HEADER_LENGTH)
        length = message_length(header) or HEADER_LENGTH
        return header + await reader.readexactly(length - HEADER_LENGTH)
    except (OSError, asyncio.IncompleteReadError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _tcp_exchange(server: Endpoint, request: bytes, timeout: float) -> bytes | None:
    """One Binding over TCP; staggered parallel attempts, the first reply wins."""
    attempts = [asyncio.ensure_future(_tcp_once(server, request, d)) for d in TCP_ATTEMPT_DELAYS]
    try:
        async with asyncio.timeout(timeout):
            for finished in asyncio.as_completed(attempts):
                reply = await finished
                if reply is not None:
                    return reply
    except TimeoutError:
        pass
    finally:
        for attempt in attempts:
            attempt.cancel()
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

    async def tcp_check(event: TcpCheckRequested, runner: CoreRunner[ClassifierEvent]) -> None:
        reply = await _tcp_exchange(event.server, event.request, config.timeout)
        cores[0].tcp_check_completed(reply, loop.time())
        runner.transmit()

    def on_event(event: ClassifierEvent, runner: CoreRunner[ClassifierEvent]) -> None:
        if isinstance(event, TcpCheckRequested):
            task = loop.create_task(tcp_check(event, runner))
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
