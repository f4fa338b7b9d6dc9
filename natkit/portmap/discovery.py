"""Asking without mapping: the probes a port mapper starts with (asyncio).

* :func:`probe_nat_pmp`: a NAT-PMP public address request (RFC 6886 §3.2)
  creates nothing at the gateway and tells whether it speaks NAT-PMP, its
  external address and its epoch, in one round trip.
* :func:`stun_mapped_address`: the address a STUN server sees us as, for
  the double-NAT hint (:mod:`natkit.portmap.hint`).

Each answer must come from the endpoint asked; anything else is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from dataclasses import dataclass
from typing import Any

from natkit.aio.driver import open_udp_sockets
from natkit.aio.stun_query import stun_binding
from natkit.endpoint import Endpoint, IPAddress
from natkit.portmap.pmp import (
    PmpAddressResponse,
    PmpResultCode,
    build_public_address_request,
    parse_response,
)
from natkit.portmap.wire import PmpDecodeError, UnsupportedVersion


@dataclass(frozen=True, slots=True)
class PmpProbe:
    """What a NAT-PMP public address request found."""

    #: The gateway answered with success.
    answered: bool
    external_address: ipaddress.IPv4Address | None = None
    epoch: int | None = None
    #: A non-success result code, or the version of an "unsupported version".
    result_code: int | None = None
    server_version: int | None = None
    #: Seconds from the first request to the answer.
    rtt: float | None = None
    #: Datagrams ignored (wrong source, malformed).
    ignored: int = 0


class _Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Endpoint]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.queue.put_nowait((data, Endpoint.from_sockaddr(addr)))

    def error_received(self, exc: Exception) -> None:
        pass  # port unreachable: a gateway without NAT-PMP; the deadline decides


async def probe_nat_pmp(
    gateway: Endpoint,
    local: IPAddress,
    timeout: float = 2.0,
    resend: tuple[float, ...] = (0.0, 0.25, 0.75),
) -> PmpProbe:
    """One public address exchange with RFC 6886 §3.1-style resends."""
    loop = asyncio.get_running_loop()
    sock = open_udp_sockets([Endpoint(local, 0)])[0]
    transport, protocol = await loop.create_datagram_endpoint(_Collector, sock=sock)
    request = build_public_address_request()
    start = loop.time()

    def send() -> None:
        with contextlib.suppress(OSError):
            transport.sendto(request, gateway.sockaddr())

    handles = [loop.call_at(start + offset, send) for offset in resend]
    ignored = 0
    try:
        deadline = start + timeout
        while (remaining := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(remaining):
                    data, source = await protocol.queue.get()
            except TimeoutError:
                break
            if source != gateway:
                ignored += 1
                continue
            try:
                message = parse_response(data)
            except PmpDecodeError:
                ignored += 1
                continue
            rtt = loop.time() - start
            if isinstance(message, UnsupportedVersion):
                return PmpProbe(False, server_version=message.server_version, rtt=rtt,
                                result_code=PmpResultCode.UNSUPPORTED_VERSION,
                                ignored=ignored)  # fmt: skip
            if not isinstance(message, PmpAddressResponse):
                ignored += 1
                continue
            if message.result != PmpResultCode.SUCCESS:
                return PmpProbe(False, epoch=message.epoch, result_code=int(message.result),
                                rtt=rtt, ignored=ignored)  # fmt: skip
            return PmpProbe(True, message.address, message.epoch, rtt=rtt, ignored=ignored)
        return PmpProbe(False, ignored=ignored)
    finally:
        for handle in handles:
            handle.cancel()
        transport.close()


async def stun_mapped_address(
    server: Endpoint, local: IPAddress, timeout: float = 2.0
) -> Endpoint | None:
    """The reflexive address ``server`` reports (``None`` without an answer)."""
    return await stun_binding(server, Endpoint(local, 0), timeout=timeout)
