"""Run any sans-IO core on asyncio UDP sockets.

One ``call_at`` handle is re-armed after every input, as in aioquic's
``QuicConnectionProtocol``; ``loop.time()`` (monotonic) is the core's
``now``. Send errors (an unreachable network, ICMP errors reported by the
kernel) are counted and otherwise ignored: to a core a lost datagram and a
refused one look the same, which is what UDP promises anyway.
"""

from __future__ import annotations

import asyncio
import functools
import socket as socket_module
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from natkit.endpoint import Endpoint
from natkit.sansio import SansIOCore

EventT = TypeVar("EventT")


def open_udp_sockets(endpoints: Sequence[Endpoint]) -> list[socket_module.socket]:
    """Bind one non-blocking UDP socket per endpoint; all or nothing."""
    sockets: list[socket_module.socket] = []
    try:
        for endpoint in endpoints:
            family = (
                socket_module.AF_INET if endpoint.address.version == 4 else socket_module.AF_INET6
            )
            sock = socket_module.socket(family, socket_module.SOCK_DGRAM)
            sockets.append(sock)
            sock.bind(endpoint.sockaddr())
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def local_endpoint(sock: socket_module.socket) -> Endpoint:
    return Endpoint.from_sockaddr(sock.getsockname())


class _SocketProtocol(asyncio.DatagramProtocol):
    def __init__(self, runner: CoreRunner[Any], index: int) -> None:
        self._runner = runner
        self._index = index

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._runner.datagram_received(self._index, data, addr)

    def error_received(self, exc: Exception) -> None:
        self._runner.socket_errors += 1


class CoreRunner(Generic[EventT]):
    """Feeds a core from a set of bound UDP sockets and its timer."""

    def __init__(
        self,
        core: SansIOCore[EventT],
        on_event: Callable[[EventT], None],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.core = core
        self.on_event = on_event
        self.loop = loop or asyncio.get_running_loop()
        self.transports: list[asyncio.DatagramTransport] = []
        self.local_endpoints: list[Endpoint] = []
        self.socket_errors = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False

    async def bind(self, endpoints: Sequence[Endpoint]) -> None:
        """Bind one UDP socket per endpoint (port 0 = any) and attach them."""
        await self.attach(open_udp_sockets(endpoints))

    async def attach(self, sockets: Sequence[socket_module.socket]) -> None:
        """Serve already-bound sockets; their order gives the core's socket indices."""
        for sock in sockets:
            index = len(self.transports)
            transport, _ = await self.loop.create_datagram_endpoint(
                functools.partial(_SocketProtocol, self, index), sock=sock
            )
            self.transports.append(transport)
            self.local_endpoints.append(
                Endpoint.from_sockaddr(transport.get_extra_info("sockname"))
            )

    def datagram_received(self, index: int, data: bytes, addr: tuple[Any, ...]) -> None:
        if self._closed:
            return
        self.core.receive_datagram(data, Endpoint.from_sockaddr(addr), index, self.loop.time())
        self.transmit()

    def transmit(self) -> None:
        """Send what the core wants sent, deliver its events, re-arm its timer."""
        if self._closed:
            return
        now = self.loop.time()
        for datagram in self.core.datagrams_to_send(now):
            try:
                self.transports[datagram.socket].sendto(datagram.data, datagram.remote.sockaddr())
            except OSError:
                self.socket_errors += 1
        while (event := self.core.next_event()) is not None:
            self.on_event(event)
            if self._closed:
                return
        deadline = self.core.get_timer()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None if deadline is None else self.loop.call_at(deadline, self._fire)
            self._timer_at = deadline

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._closed:
            return
        self.core.handle_timer(self.loop.time())
        self.transmit()

    def close(self) -> None:
        """Close every socket and the timer; safe to call twice."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for transport in self.transports:
            transport.close()
        self.transports.clear()


ResultT = TypeVar("ResultT")


async def run_to_completion(
    make_core: Callable[[list[Endpoint], float], SansIOCore[EventT]],
    endpoints: Sequence[Endpoint],
    result_of: Callable[[EventT], ResultT | None],
    on_event: Callable[[EventT, CoreRunner[EventT]], None] | None = None,
) -> ResultT:
    """Bind ``endpoints``, build the core on their real local addresses, run
    it until ``result_of`` maps an event to a result, and close everything.

    ``on_event`` sees every other event (with the runner, to call
    ``transmit()`` after feeding the core from outside).
    """
    loop = asyncio.get_running_loop()
    sockets = open_udp_sockets(endpoints)
    done: asyncio.Future[ResultT] = loop.create_future()
    runner: CoreRunner[EventT] | None = None
    try:
        core = make_core([local_endpoint(s) for s in sockets], loop.time())

        def dispatch(event: EventT) -> None:
            result = result_of(event)
            if result is not None:
                if not done.done():
                    done.set_result(result)
            elif on_event is not None and runner is not None:
                on_event(event, runner)

        runner = CoreRunner(core, dispatch, loop)
        await runner.attach(sockets)
        runner.transmit()
        return await done
    finally:
        if runner is not None:
            runner.close()
        for sock in sockets:
            sock.close()
