"""The connect node's driver: the UDP runner, plus datagram ports beyond its sockets.

The agent sends from socket indices the runner's own sockets do not cover:

* a TURN server reached over TCP or TLS is a *stream slot*
  (:mod:`natkit.aio.connect_relay`): its datagrams are written to a
  connection the node keeps;
* a birthday search binds sockets of its own while it runs
  (:mod:`natkit.aio.connect_birthday`).

:class:`NodeRunner` is :class:`~natkit.aio.driver.CoreRunner` with a table
of such *extra ports*, index → a function that carries the datagram; a
datagram for any other index goes to the runner's sockets as before. Extra
indices come from one :class:`PortIndices` counter that starts far above
any socket index (:data:`FIRST_EXTRA_INDEX`), so they never meet the
agent's sockets, each other, or ports another part of the node attaches
later, and an index is never reused while the node runs (a late datagram
for a closed birthday socket cannot reach a new one).

It also taps the data path: a datagram that is neither STUN nor a birthday
probe, arriving on a socket from the remote end of a peer's selected direct
path, is a tunnel's datagram for the consumer (``data_tap``), not input for
the agent (which would count it as ``not_stun`` and drop it).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from natkit.aio.driver import CoreRunner
from natkit.endpoint import Endpoint
from natkit.ice.mux import MuxEvent
from natkit.sansio import Datagram

#: The first index handed out for extra ports (socket indices count from 0).
FIRST_EXTRA_INDEX = 1 << 20

#: ``tap(socket, data, remote, now)``: ``True`` when it took the datagram.
DataTap = Callable[[int, bytes, Endpoint, float], bool]


class PortIndices:
    """Hands out extra-port indices, never the same twice."""

    def __init__(self, first: int = FIRST_EXTRA_INDEX) -> None:
        self._next = itertools.count(first)

    def take(self) -> int:
        return next(self._next)


class NodeRunner(CoreRunner[MuxEvent]):
    """A :class:`CoreRunner` with extra ports and a data tap (module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Index -> what carries a datagram sent from it.
        self.extra: dict[int, Callable[[Datagram], None]] = {}
        self.indices = PortIndices()
        self.data_tap: DataTap | None = None
        #: Datagrams for an extra index that is gone (a closed birthday socket).
        self.orphans = 0

    def add_port(self, index: int, send: Callable[[Datagram], None]) -> None:
        self.extra[index] = send

    def remove_port(self, index: int) -> None:
        self.extra.pop(index, None)

    def _send(self, datagram: Datagram) -> None:
        if datagram.socket < FIRST_EXTRA_INDEX:
            super()._send(datagram)  # a socket, or a datagram port (attach_port)
            return
        send = self.extra.get(datagram.socket)
        if send is None:
            self.orphans += 1
            return
        send(datagram)

    def datagram_received(self, index: int, data: bytes, addr: tuple[Any, ...]) -> None:
        tap = self.data_tap
        if tap is not None and not self._closed:
            now = self.loop.time()
            if tap(index, data, Endpoint.from_sockaddr(addr), now):
                return
        super().datagram_received(index, data, addr)

    def port_received(self, index: int, data: bytes, remote: Endpoint) -> None:
        """A datagram that arrived on extra port ``index`` (a birthday socket:
        after a hit, the direct path's data arrives there too)."""
        if self._closed:
            return
        now = self.loop.time()
        tap = self.data_tap
        if tap is not None and tap(index, data, remote, now):
            return
        self.core.receive_datagram(data, remote, index, now)
        self.transmit(now)
