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

from natkit.aio.driver import CoreRunner, local_endpoint, open_udp_sockets
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.probe.classifier import ClassifierConfig, NatClassifier
from natkit.probe.events import ClassificationCompleted, ClassifierEvent, TcpCheckRequested
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


async def _tcp_exchange(server: Endpoint, request: bytes, timeout: float) -> bytes | None:
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(str(server.address), server.port)
            try:
                writer.write(request)
                header = await reader.readexactly(HEADER_LENGTH)
                length = message_length(header) or HEADER_LENGTH
                body = await reader.readexactly(length - HEADER_LENGTH)
                return header + body
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
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
    source = local_address or route_source(servers[0])
    sockets = open_udp_sockets([Endpoint.of(source, 0)] * config.sockets_needed)
    core = NatClassifier(servers, [local_endpoint(s) for s in sockets], loop.time(), config)
    done: asyncio.Future[ClassificationReport] = loop.create_future()
    tasks: set[asyncio.Task[None]] = set()

    async def tcp_check(event: TcpCheckRequested) -> None:
        reply = await _tcp_exchange(event.server, event.request, config.timeout)
        core.tcp_check_completed(reply, loop.time())
        runner.transmit()

    def on_event(event: ClassifierEvent) -> None:
        if isinstance(event, TcpCheckRequested):
            task = loop.create_task(tcp_check(event))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elif isinstance(event, ClassificationCompleted) and not done.done():
            done.set_result(event.report)

    runner: CoreRunner[ClassifierEvent] = CoreRunner(core, on_event, loop)
    try:
        await runner.attach(sockets)
        runner.transmit()
        return await done
    finally:
        runner.close()
        for sock in sockets:
            sock.close()
        for task in tasks:
            task.cancel()
