"""Run any sans-IO core on asyncio UDP sockets.

One ``call_at`` handle is re-armed after every input, as in aioquic's
``QuicConnectionProtocol``; ``loop.time()`` (monotonic) is the core's
``now``. Send errors (an unreachable network) are counted and otherwise
ignored: to a core a lost datagram and a refused one look the same, which
is what UDP promises anyway.

ICMP errors (:mod:`natkit.aio.errqueue`): every socket gets ``IP_RECVERR``
(``IPV6_RECVERR``) where the platform has it, and its error queue is read
whenever asyncio reports the socket in error. The errors go to the core's
``receive_icmp_error`` when it has one (``runner.icmp_errors`` counts them
either way). Because a queued error also fails the socket's next ``sendto``
(the kernel hands the pending error to whichever call comes first), the
runner sends itself, not through the transport, and after such a failure
reads the queue and sends once more.

A datagram with a ``ttl`` carries its hop limit as ancillary data on that
one ``sendmsg``, so the socket's default never changes and nothing queued
behind it can pick the limit up; if the socket cannot take it at once it is
dropped (counted) rather than queued without its hop limit.
"""

from __future__ import annotations

import asyncio
import functools
import socket as socket_module
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from natkit.aio.errqueue import enable_errors, errors_enabled, read_errors, send_with_ttl
from natkit.endpoint import Endpoint
from natkit.sansio import Datagram, IcmpError, SansIOCore

EventT = TypeVar("EventT")

IcmpHandler = Callable[[IcmpError, int, float], None]


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
        # The transport's recvfrom (or a buffered sendto) met the socket's
        # pending error: with IP_RECVERR, an ICMP error waits in the queue.
        if not self._runner.read_icmp_errors(self._index):
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
        self.sockets: list[socket_module.socket] = []
        self.local_endpoints: list[Endpoint] = []
        #: Sends that failed, and socket errors that were not ICMP errors.
        self.socket_errors = 0
        #: ICMP errors read from the error queues, delivered to the core or not.
        self.icmp_errors = 0
        self._icmp_handler: IcmpHandler | None = getattr(core, "receive_icmp_error", None)
        self._icmp_pending: deque[tuple[int, IcmpError]] = deque()
        self._icmp_scheduled = False
        # Per socket: whether this runner turned IP_RECVERR on (and turns it off).
        self._recverr_set: list[bool] = []
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
            self.sockets.append(sock)
            self._recverr_set.append(not errors_enabled(sock) and enable_errors(sock))
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
            self._send(datagram)
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

    def _send(self, datagram: Datagram) -> None:
        index, ttl = datagram.socket, datagram.ttl
        transport, sock = self.transports[index], self.sockets[index]
        address = datagram.remote.sockaddr()
        for retry in (False, True):
            try:
                if ttl is None:
                    sock.sendto(datagram.data, address)
                else:
                    send_with_ttl(sock, datagram.data, datagram.remote, ttl)
                return
            except (BlockingIOError, InterruptedError):
                if ttl is None:
                    transport.sendto(datagram.data, address)  # asyncio holds it until writable
                else:
                    self.socket_errors += 1
                return
            except OSError:
                # A queued ICMP error's pending errno fails this send (and is
                # consumed by it): read the queue and try once more.
                if retry or not self.read_icmp_errors(index):
                    self.socket_errors += 1
                    return

    def read_icmp_errors(self, index: int) -> bool:
        """Drain socket ``index``'s error queue; whether it held anything.

        Errors reach the core on the next loop iteration, never in the
        middle of a :meth:`transmit` that is sending the core's datagrams.
        """
        if index >= len(self.sockets) or self._closed:
            return False
        sock = self.sockets[index]
        drained = read_errors(sock)
        if not drained.empty and drained.entries == 0:
            # The queue cannot be read, so POLLERR would stay up and spin the
            # loop: stop asking for errors on this socket (which purges it).
            enable_errors(sock, False)
            self._recverr_set[index] = False
        self.icmp_errors += len(drained.errors)
        if self._icmp_handler is not None and drained.errors:
            self._icmp_pending.extend((index, error) for error in drained.errors)
            if not self._icmp_scheduled:
                self._icmp_scheduled = True
                self.loop.call_soon(self._deliver_icmp)
        return drained.entries > 0

    def _deliver_icmp(self) -> None:
        self._icmp_scheduled = False
        handler = self._icmp_handler
        if self._closed or handler is None:
            self._icmp_pending.clear()
            return
        now = self.loop.time()
        while self._icmp_pending:
            index, error = self._icmp_pending.popleft()
            handler(error, index, now)
        self.transmit()

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
        self._icmp_pending.clear()
        for sock, was_set in zip(self.sockets, self._recverr_set, strict=True):
            if was_set and sock.fileno() >= 0:
                # A socket the caller keeps (a dup, say) goes back as it came.
                enable_errors(sock, False)
        for transport in self.transports:
            transport.close()
        self.transports.clear()
        self.sockets.clear()
        self._recverr_set.clear()


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
