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

Streams (:class:`~natkit.sansio.StreamRequest`): after every input the
runner drains the core's ``stream_requests()`` (when it has that method),
serves each in a task (:func:`natkit.aio.stun_stream.serve_stream_request`,
TLS with the context ``tls`` makes) and feeds the result back through
``stream_answered``. ``on_send`` and ``on_receive`` observe the traffic.

Datagram ports (:meth:`CoreRunner.attach_port`): anything with the
:class:`~natkit.aio.sharedsock.DatagramPort` interface (``local``,
``send``, ``set_receiver``, ``close``), e.g. a
:class:`~natkit.aio.sharedsock.SharedUdpPort` on WireGuard's port, takes
the next socket index beside the UDP sockets; the core cannot tell them
apart. A port sends with its default hop limit: a datagram with a ``ttl``
is dropped (counted in ``socket_errors``), and it reports no ICMP errors
(a raw socket's error queue is not the port owner's). The runner never
closes a port: whoever opened it does.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import socket as socket_module
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, Final, Generic, Literal, TypeAlias, TypeVar

from natkit.aio.errqueue import enable_errors, errors_enabled, read_errors, send_with_ttl
from natkit.aio.sharedsock import DatagramPort
from natkit.aio.stun_stream import serve_stream_request
from natkit.endpoint import Endpoint
from natkit.errors import AddressNotLocal, NatkitError
from natkit.sansio import (
    Datagram,
    IcmpError,
    ReceiveObserver,
    SansIOCore,
    SendObserver,
    StreamRequest,
    StreamResult,
    StreamTransport,
)

EventT = TypeVar("EventT")

IcmpHandler = Callable[[IcmpError, int, float], None]
StreamSource = Callable[[], list[StreamRequest]]
StreamSink = Callable[[int, StreamResult, float], None]


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
            try:
                sock.bind(endpoint.sockaddr())
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
                    # Bare "[Errno 99] Cannot assign requested address" hides
                    # that the address given (--local-address) is not ours.
                    raise AddressNotLocal(str(endpoint.address)) from None
                raise
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
        *,
        on_send: SendObserver | None = None,
        on_receive: ReceiveObserver | None = None,
        tls: Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        self.core = core
        self.on_event = on_event
        self.loop = loop or asyncio.get_running_loop()
        #: Sees every datagram sent, with the ``now`` of the input that made it.
        self.on_send = on_send
        #: Sees every datagram received, before the core does.
        self.on_receive = on_receive
        #: Makes the context for TLS stream requests (``None``: the system's CAs).
        self.tls = tls
        self._tls_context: ssl.SSLContext | None = None
        self._stream_source: StreamSource | None = getattr(core, "stream_requests", None)
        self._stream_sink: StreamSink | None = getattr(core, "stream_answered", None)
        self._stream_tasks: set[asyncio.Task[None]] = set()
        #: The UDP sockets (and their transports) in the order attached.
        self.transports: list[asyncio.DatagramTransport] = []
        self.sockets: list[socket_module.socket] = []
        #: The datagram ports attached, by socket index.
        self.ports: dict[int, DatagramPort] = {}
        #: Every socket index's local address (sockets and ports alike).
        self.local_endpoints: list[Endpoint] = []
        # Socket index -> position in ``sockets`` (absent: a datagram port).
        self._socket_at: dict[int, int] = {}
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
            index = len(self.local_endpoints)
            transport, _ = await self.loop.create_datagram_endpoint(
                functools.partial(_SocketProtocol, self, index), sock=sock
            )
            self._socket_at[index] = len(self.sockets)
            self.transports.append(transport)
            self.sockets.append(sock)
            self._recverr_set.append(not errors_enabled(sock) and enable_errors(sock))
            self.local_endpoints.append(
                Endpoint.from_sockaddr(transport.get_extra_info("sockname"))
            )

    def attach_port(self, port: DatagramPort) -> int:
        """Serve a datagram port (module doc) as the next socket index; returns it."""
        index = len(self.local_endpoints)
        self.local_endpoints.append(port.local)
        self.ports[index] = port
        port.set_receiver(functools.partial(self._port_received, index))
        return index

    def _port_received(self, index: int, data: bytes, remote: Endpoint) -> None:
        if not self._closed:
            self._received(index, data, remote)

    def datagram_received(self, index: int, data: bytes, addr: tuple[Any, ...]) -> None:
        if not self._closed:
            self._received(index, data, Endpoint.from_sockaddr(addr))

    def _received(self, index: int, data: bytes, remote: Endpoint) -> None:
        now = self.loop.time()
        if self.on_receive is not None:
            self.on_receive(now, data, remote, index)
        self.core.receive_datagram(data, remote, index, now)
        self.transmit(now)

    def transmit(self, now: float | None = None) -> None:
        """Send what the core wants sent, open the streams it asks for,
        deliver its events, re-arm its timer.

        ``now``: the time given to the call into the core that came just
        before (the send time ``on_send`` sees); ``loop.time()`` by default.
        """
        if self._closed:
            return
        if now is None:
            now = self.loop.time()
        on_send = self.on_send
        for datagram in self.core.datagrams_to_send(now):
            if on_send is not None:
                on_send(now, datagram)
            self._send(datagram)
        if self._stream_source is not None:
            for request in self._stream_source():
                task = self.loop.create_task(self._serve_stream(request))
                self._stream_tasks.add(task)
                task.add_done_callback(self._stream_tasks.discard)
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
        port = self.ports.get(index)
        if port is not None:
            if ttl is None:
                port.send(datagram.data, datagram.remote)
            else:
                self.socket_errors += 1  # a port has no per-datagram hop limit
            return
        position = self._socket_at[index]
        transport, sock = self.transports[position], self.sockets[position]
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
        position = self._socket_at.get(index)
        if position is None or self._closed:
            return False
        sock = self.sockets[position]
        drained = read_errors(sock)
        if not drained.empty and drained.entries == 0:
            # The queue cannot be read, so POLLERR would stay up and spin the
            # loop: stop asking for errors on this socket (which purges it).
            enable_errors(sock, False)
            self._recverr_set[position] = False
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
        self.transmit(now)

    async def _serve_stream(self, request: StreamRequest) -> None:
        tls = None
        result: StreamResult | None = None
        if self.tls is not None and request.transport is StreamTransport.TLS:
            try:
                if self._tls_context is None:
                    self._tls_context = self.tls()  # made once: loading CAs costs ~20 ms
                tls = self._tls_context
            except (NatkitError, OSError) as exc:  # ssl.SSLError is an OSError
                # The core hears why, as for any other failed stream; raised
                # here, it would end the task and nobody would see it.
                result = StreamResult(None, None, None, f"TLS setup failed: {exc}")
        if result is None:
            result = await serve_stream_request(request, tls)
        if self._closed or self._stream_sink is None:
            return
        now = self.loop.time()
        self._stream_sink(request.id, result, now)
        self.transmit(now)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._closed:
            return
        now = self.loop.time()
        self.core.handle_timer(now)
        self.transmit(now)

    def close(self) -> None:
        """Close every socket and the timer; safe to call twice."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in self._stream_tasks:
            task.cancel()
        self._stream_tasks.clear()
        self._icmp_pending.clear()
        for sock, was_set in zip(self.sockets, self._recverr_set, strict=True):
            if was_set and sock.fileno() >= 0:
                # A socket the caller keeps (a dup, say) goes back as it came.
                enable_errors(sock, False)
        for transport in self.transports:
            transport.close()
        for port in self.ports.values():
            port.set_receiver(_ignore)
        self.transports.clear()
        self.sockets.clear()
        self.ports.clear()
        self._socket_at.clear()
        self._recverr_set.clear()


def _ignore(data: bytes, remote: Endpoint) -> None:
    """A closed runner's port receiver: the port may outlive the runner."""


ResultT = TypeVar("ResultT")


class Progress(Enum):
    """What ``result_of`` says of an event that does not end the run."""

    RUNNING = "running"


#: ``result_of``'s answer for every event but the one that ends the run.
RUNNING: Final = Progress.RUNNING
#: Its type, for annotations: ``def result_of(e) -> Report | Running``.
Running: TypeAlias = Literal[Progress.RUNNING]


async def run_to_completion(
    make_core: Callable[[list[Endpoint], float], SansIOCore[EventT]],
    endpoints: Sequence[Endpoint],
    result_of: Callable[[EventT], ResultT | Running],
    on_event: Callable[[EventT, CoreRunner[EventT]], None] | None = None,
    *,
    on_send: SendObserver | None = None,
    tls: Callable[[], ssl.SSLContext] | None = None,
) -> ResultT:
    """Bind ``endpoints``, build the core on their real local addresses, run
    it until ``result_of`` maps an event to a result (anything but
    :data:`RUNNING`, ``None`` included), and close everything.

    ``on_event`` sees every other event (with the runner, to call
    ``transmit()`` after feeding the core from outside); ``on_send`` and
    ``tls`` are the :class:`CoreRunner`'s.
    """
    loop = asyncio.get_running_loop()
    sockets = open_udp_sockets(endpoints)
    done: asyncio.Future[ResultT] = loop.create_future()
    runner: CoreRunner[EventT] | None = None
    try:
        started = loop.time()
        core = make_core([local_endpoint(s) for s in sockets], started)

        def dispatch(event: EventT) -> None:
            result = result_of(event)
            if result is not RUNNING:
                if not done.done():
                    done.set_result(result)
            elif on_event is not None and runner is not None:
                on_event(event, runner)

        runner = CoreRunner(core, dispatch, loop, on_send=on_send, tls=tls)
        await runner.attach(sockets)
        # What the core queued when it was made was decided at ``started``.
        runner.transmit(started)
        return await done
    finally:
        if runner is not None:
            runner.close()
        for sock in sockets:
            sock.close()
