"""Runs any natkit sans-IO core on simulated sockets and the virtual clock.

This is the simulator's counterpart of the asyncio driver, and as thin:

* a datagram arriving on socket ``i`` becomes
  ``core.receive_datagram(data, source, i, now)``, and an ICMP error about
  one it sent from there ``core.receive_icmp_error(error, i, now)`` when the
  core has that method (``icmp_ignored`` counts the rest);
* after every call into the core, ``flush()`` sends what
  ``datagrams_to_send(now)`` returns (each from the socket it names), moves
  ``next_event()`` results into ``events``, and arms ``get_timer()``;
* when the armed deadline comes, ``handle_timer(now)`` is called.

There is one timer event in flight at a time for the earliest deadline
seen; a timer event whose deadline moved is ignored and re-armed, so cores
may move their deadline freely (the event loop has no cancellation).

Streams are not simulated packet by packet: a core's
:class:`~natkit.sansio.StreamRequest` goes to the ``streams`` responder the
scenario gives, which says what the network did and after how long; the
driver answers the core (``stream_answered``) that much virtual time later.
Without a responder a request gets no reply once its timeout has passed.
``on_send`` and ``on_receive`` observe the traffic, as in the asyncio driver.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, overload

from natkit.endpoint import Endpoint
from natkit.sansio import (
    IcmpError,
    ReceiveObserver,
    SansIOCore,
    SendObserver,
    StreamRequest,
    StreamResult,
)
from natkit.simulations.errors import SimulationError
from natkit.simulations.network import SimSocket
from natkit.simulations.packet import IcmpInfo, Packet

EventT = TypeVar("EventT")

#: How many times in a row a core may ignore a due timer before the driver
#: gives up (raising beats spinning forever at one virtual instant).
MAX_STUCK_TIMERS = 64

#: Serves one stream request in virtual time: ``(seconds until the answer, the answer)``.
StreamResponder = Callable[[StreamRequest], tuple[float, StreamResult]]


def no_streams(request: StreamRequest) -> tuple[float, StreamResult]:
    """The default :data:`StreamResponder`: nothing answers, so the request
    times out (what a host with no route for TCP would see)."""
    return request.timeout, StreamResult(None, None, None, f"no reply within {request.timeout:g} s")


class CoreDriver(Generic[EventT]):
    """Drives one core over ``sockets``; socket ``i`` is the core's socket index ``i``.

    Typical use::

        sockets = host.bind_all([("192.168.1.2", 0)])
        driver = CoreDriver(core, sockets)
        driver.invoke(lambda now: core.start(now))   # any call into the core
        network.loop.run_until_idle()
        assert driver.events == [...]

    A core that asks its driver for something (an event meaning "do X and
    call me back") is served by ``on_event``, which may call into the core
    via :meth:`invoke` or :meth:`invoke_later`. Stream requests are served by
    ``streams`` (module docstring).

    ``EventT`` is inferred from the core's ``next_event``; mypy widens a
    union of event classes to ``object``, so write ``CoreDriver[ClientEvent]
    (core, sockets)`` to keep the union. Event-less cores give ``CoreDriver[None]``.
    """

    # A core without events (``next_event() -> None``, e.g. a STUN server)
    # leaves EventT unsolvable; this overload makes it ``CoreDriver[None]``.
    @overload
    def __init__(
        self: CoreDriver[None],
        core: SansIOCore[None],
        sockets: Sequence[SimSocket],
        *,
        on_event: Callable[[None], object] | None = None,
        on_send: SendObserver | None = None,
        on_receive: ReceiveObserver | None = None,
        streams: StreamResponder = no_streams,
    ) -> None: ...

    @overload
    def __init__(
        self,
        core: SansIOCore[EventT],
        sockets: Sequence[SimSocket],
        *,
        on_event: Callable[[EventT], object] | None = None,
        on_send: SendObserver | None = None,
        on_receive: ReceiveObserver | None = None,
        streams: StreamResponder = no_streams,
    ) -> None: ...

    def __init__(
        self,
        core: SansIOCore[Any],
        sockets: Sequence[SimSocket],
        *,
        on_event: Callable[[Any], object] | None = None,
        on_send: SendObserver | None = None,
        on_receive: ReceiveObserver | None = None,
        streams: StreamResponder = no_streams,
    ) -> None:
        if not sockets:
            raise SimulationError("a core needs at least one socket")
        network = sockets[0].host.network
        if any(s.host.network is not network for s in sockets):
            raise SimulationError("all of a core's sockets must be in one network")
        self.core: SansIOCore[EventT] = core
        self.sockets = tuple(sockets)
        #: Everything ``next_event()`` returned, oldest first. Tests may clear it.
        self.events: list[EventT] = []
        #: Called with each event as it is collected, to answer requests a core
        #: makes of its driver (e.g. the classifier's TCP check) in virtual time.
        self.on_event: Callable[[EventT], object] | None = on_event
        #: Sees every datagram sent for the core (``now``, the datagram).
        self.on_send = on_send
        #: Sees every datagram before the core does (``now``, data, source, socket).
        self.on_receive = on_receive
        self.streams = streams
        #: Datagrams handed to the core / sent on its behalf.
        self.received = 0
        self.sent = 0
        #: ICMP errors handed to the core, and those it has no method for.
        self.icmp_received = 0
        self.icmp_ignored = 0
        #: Stream requests served.
        self.stream_requests = 0
        self._icmp_handler: Callable[[IcmpError, int, float], None] | None = None
        self._stream_source: Callable[[], list[StreamRequest]] | None = None
        self._stream_sink: Callable[[int, StreamResult, float], None] | None = None
        self._bind_optional_inputs(core)
        self._loop = network.loop
        # Time of the earliest timer event in flight, if any.
        self._armed: float | None = None
        # Consecutive handle_timer calls that left the deadline where it was.
        self._stuck = 0
        self._closed = False
        # Indices of sockets given back (``release_sockets``).
        self._released: set[int] = set()
        for index, sock in enumerate(self.sockets):
            if sock.handler is not None:
                raise SimulationError(f"{sock} is already driven")
            sock.handler = self._receiver(index)

    def add_sockets(self, sockets: Sequence[SimSocket]) -> list[int]:
        """Drive ``sockets`` too (a core that asked its driver for more, e.g. a
        birthday search); returns their indices, after the existing ones."""
        first = len(self.sockets)
        for offset, sock in enumerate(sockets):
            if sock.handler is not None:
                raise SimulationError(f"{sock} is already driven")
            sock.handler = self._receiver(first + offset)
        self.sockets = (*self.sockets, *sockets)
        return list(range(first, len(self.sockets)))

    def release_sockets(self, indices: Sequence[int]) -> None:
        """Unbind these sockets; their indices are never reused, and a core
        that sends from one again is an error."""
        for index in indices:
            sock = self.sockets[index]
            sock.handler = None
            sock.close()
            self._released.add(index)

    def _bind_optional_inputs(self, core: SansIOCore[Any]) -> None:
        self._icmp_handler = getattr(core, "receive_icmp_error", None)
        self._stream_source = getattr(core, "stream_requests", None)
        self._stream_sink = getattr(core, "stream_answered", None)

    def install(self, core: SansIOCore[EventT]) -> None:
        """Hand the sockets to ``core`` (the old core gets nothing more), so
        one driver serves successive cores; :meth:`flush` after."""
        self.core = core
        self._bind_optional_inputs(core)
        self._stuck = 0

    @property
    def now(self) -> float:
        return self._loop.now

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The sockets' bound endpoints, in socket-index order."""
        return tuple(s.local for s in self.sockets)

    def invoke(self, action: Callable[[float], object]) -> None:
        """Call into the core now (``action(now)``), then flush its output."""
        action(self._loop.now)
        self.flush()

    def invoke_later(self, delay: float, action: Callable[[float], object]) -> None:
        """:meth:`invoke` ``action`` ``delay`` virtual seconds from now."""
        self._loop.call_later(delay, self.invoke, action)

    def flush(self) -> None:
        """Send pending datagrams, collect events, and arm the timer.

        The driver calls this after each of its own calls into the core;
        call it yourself after calling the core directly.
        """
        self._drain()
        self._arm(self.core.get_timer())

    def _drain(self) -> None:
        """Send the core's datagrams and collect its events."""
        core = self.core
        now = self._loop.now
        sockets = self.sockets
        on_send = self.on_send
        for datagram in core.datagrams_to_send(now):
            if not 0 <= datagram.socket < len(sockets) or datagram.socket in self._released:
                raise SimulationError(
                    f"core sent from socket {datagram.socket}, it has {len(sockets)}"
                    f" ({len(self._released)} released)"
                )
            if on_send is not None:
                on_send(now, datagram)
            sockets[datagram.socket].send(datagram.data, datagram.remote, datagram.ttl)
            self.sent += 1
        if self._stream_source is not None:
            for request in self._stream_source():
                self._serve_stream(core, request)
        event = core.next_event()
        while event is not None:
            self.events.append(event)
            if self.on_event is not None:
                self.on_event(event)
            event = core.next_event()

    def _serve_stream(self, core: SansIOCore[Any], request: StreamRequest) -> None:
        delay, result = self.streams(request)
        sink = self._stream_sink
        self.stream_requests += 1
        if sink is None:
            raise SimulationError(f"{type(core).__name__} asks for streams but takes no answer")

        def answer(now: float) -> None:
            if not self._closed and self.core is core:
                sink(request.id, result, now)

        self.invoke_later(delay, answer)

    def close(self) -> None:
        """Detach from the sockets and stop the timer; the core gets nothing more."""
        for sock in self.sockets:
            sock.handler = None
        self._closed = True

    def _receiver(self, index: int) -> Callable[[Packet], None]:
        def receive(packet: Packet) -> None:
            icmp = packet.icmp
            if icmp is not None:
                self._receive_icmp(packet, icmp, index)
                return
            self.received += 1
            now = self._loop.now
            if self.on_receive is not None:
                self.on_receive(now, packet.data, packet.src, index)
            self.core.receive_datagram(packet.data, packet.src, index, now)
            self.flush()

        return receive

    def _receive_icmp(self, packet: Packet, icmp: IcmpInfo, index: int) -> None:
        handler = self._icmp_handler
        if handler is None:
            self.icmp_ignored += 1
            return
        self.icmp_received += 1
        error = IcmpError(
            kind=icmp.kind,
            offender=packet.src.address,
            destination=icmp.destination,
            icmp_type=icmp.icmp_type,
            icmp_code=icmp.icmp_code,
            quoted=packet.data,
        )
        handler(error, index, self._loop.now)
        self.flush()

    def _arm(self, deadline: float | None) -> None:
        """Make sure a timer event is in flight for ``deadline`` (the core's ``get_timer()``)."""
        if self._closed or deadline is None:
            return
        armed = self._armed
        if armed is not None and armed <= deadline:
            return  # an earlier timer event will fire, and re-arm
        now = self._loop.now
        when = deadline if deadline > now else now
        if self._stuck and when <= now:
            # The core did not consume a due deadline (float rounding in its
            # own "is it due" test, typically): let the clock move by one ulp.
            when = math.nextafter(now, math.inf)
        self._armed = when
        self._loop.call_at(when, self._on_timer, when)

    def _on_timer(self, when: float) -> None:
        if self._armed == when:
            self._armed = None
        if self._closed:
            return
        core = self.core
        now = self._loop.now
        deadline = core.get_timer()
        if deadline is None or deadline > now:
            self._arm(deadline)  # stale event: the deadline moved or went away
            return
        core.handle_timer(now)
        self._drain()
        # One get_timer() serves both the stuck check and the re-arming
        # (this runs once per paced send of a prober, so calls add up).
        after = core.get_timer()
        if after is not None and after <= deadline:
            self._stuck += 1
            if self._stuck > MAX_STUCK_TIMERS:
                raise SimulationError(
                    f"{type(core).__name__}.handle_timer({now}) keeps its deadline at {after}"
                )
        else:
            self._stuck = 0
        self._arm(after)
