"""The agent and its helpers on one set of sockets: a demultiplexing core.

A connect node's server-reflexive candidates must be learnt from the very
sockets its checks use (a NAT mapping belongs to a socket), while the agent
runs, and again later (a NAT that rebinds to a new port is only recovered
by learning the new mapping, then trickling it). So short-lived STUN
clients, *helpers* (natkit's gatherer), share the agent's sockets, and this
core sits in front of them all. (TURN allocations live inside the agent,
:mod:`natkit.ice.relays`, on sockets and streams of their own.)

Routing, per received datagram:

1. from a remote a helper claimed (``sources``: a server only it talks
   to) → that helper, whatever the bytes;
2. a STUN response whose transaction ID a helper's request carried → that
   helper (the IDs are read from the requests as they leave, so a helper
   needs no interface beyond :class:`~natkit.sansio.SansIOCore`);
3. everything else → the agent, which counts what it cannot use.

Outputs: every core's datagrams, the earliest of their timers, and events:
the agent's as they are, a helper's wrapped in :class:`HelperEvent`.
A removed helper's transaction IDs are forgotten, so a late answer to it
reaches the agent and is counted there as an unknown transaction.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.ice.agent import ConnectAgent
from natkit.ice.events import ConnectEvent
from natkit.sansio import Datagram, IcmpError, SansIOCore
from natkit.stun.codec import is_stun
from natkit.stun.constants import HEADER_LENGTH, TRANSACTION_ID_LENGTH

_TID = slice(HEADER_LENGTH - TRANSACTION_ID_LENGTH, HEADER_LENGTH)


@dataclass(frozen=True, slots=True)
class HelperEvent:
    """An event of a helper core (``helper`` is the core that made it)."""

    helper: SansIOCore[Any]
    event: Any


MuxEvent = ConnectEvent | HelperEvent


def _is_request(data: bytes) -> bool:
    return is_stun(data) and (data[0] & 0x01) == 0 and (data[1] & 0x10) == 0


def _is_response(data: bytes) -> bool:
    return is_stun(data) and (data[0] & 0x01) == 1


class ConnectMux:
    """:class:`ConnectAgent` plus helper cores on the same sockets (module doc)."""

    def __init__(self, agent: ConnectAgent) -> None:
        self.agent = agent
        self._helpers: list[SansIOCore[Any]] = []
        self._by_tid: dict[bytes, SansIOCore[Any]] = {}
        self._by_source: dict[Endpoint, SansIOCore[Any]] = {}
        self._tids_of: dict[int, set[bytes]] = {}
        self._events: deque[MuxEvent] = deque()
        #: Datagrams routed to helpers (by transaction or by source).
        self.to_helpers = 0

    @property
    def helpers(self) -> tuple[SansIOCore[Any], ...]:
        return tuple(self._helpers)

    def add_helper(
        self, helper: SansIOCore[Any], now: float, *, sources: Iterable[Endpoint] = ()
    ) -> None:
        """Run ``helper`` on the agent's sockets from now on; datagrams from
        ``sources`` go to it whole."""
        if any(h is helper for h in self._helpers):
            raise LocalProtocolError("add_helper: that core is already a helper")
        for source in sources:
            if source in self._by_source:
                raise LocalProtocolError(f"add_helper: {source} is claimed by another helper")
        self._helpers.append(helper)
        self._tids_of[id(helper)] = set()
        for source in sources:
            self._by_source[source] = helper
        self._collect(helper)

    def remove_helper(self, helper: SansIOCore[Any]) -> None:
        """Stop routing to ``helper`` (its pending datagrams and events are dropped)."""
        if not any(h is helper for h in self._helpers):
            raise LocalProtocolError("remove_helper: that core is not a helper")
        self._helpers = [h for h in self._helpers if h is not helper]
        for tid in self._tids_of.pop(id(helper), set()):
            self._by_tid.pop(tid, None)
        for source in [s for s, h in self._by_source.items() if h is helper]:
            del self._by_source[source]

    # -- SansIOCore -----------------------------------------------------------------------

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        helper = self._by_source.get(remote)
        if helper is None and _is_response(data):
            helper = self._by_tid.get(bytes(data[_TID]))
        if helper is None:
            self.agent.receive_datagram(data, remote, socket, now)
            return
        self.to_helpers += 1
        helper.receive_datagram(data, remote, socket, now)
        self._collect(helper)

    def receive_icmp_error(self, error: IcmpError, socket: int, now: float) -> None:
        """ICMP errors go to the agent (its TURN clients notice a dead server
        sooner); the helpers' own retransmissions time out without them."""
        self.agent.receive_icmp_error(error, socket, now)

    def handle_timer(self, now: float) -> None:
        deadline = self.agent.get_timer()
        if deadline is not None and deadline <= now:
            self.agent.handle_timer(now)
        for helper in list(self._helpers):
            deadline = helper.get_timer()
            if deadline is not None and deadline <= now:
                helper.handle_timer(now)
                self._collect(helper)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out = self.agent.datagrams_to_send(now)
        for helper in self._helpers:
            out.extend(self._take(helper, now))
        return out

    def get_timer(self) -> float | None:
        times = [t for t in (c.get_timer() for c in (self.agent, *self._helpers)) if t is not None]
        return min(times) if times else None

    def next_event(self) -> MuxEvent | None:
        event = self.agent.next_event()
        if event is not None:
            return event
        for helper in self._helpers:
            self._collect(helper)
        return self._events.popleft() if self._events else None

    # -- internals --------------------------------------------------------------------------

    def _take(self, helper: SansIOCore[Any], now: float) -> list[Datagram]:
        """``helper``'s datagrams, their requests' transaction IDs noted before
        they leave (so no answer can arrive first)."""
        datagrams = helper.datagrams_to_send(now)
        tids = self._tids_of[id(helper)]
        for datagram in datagrams:
            if _is_request(datagram.data):
                tid = bytes(datagram.data[_TID])
                tids.add(tid)
                self._by_tid[tid] = helper
        return datagrams

    def _collect(self, helper: SansIOCore[Any]) -> None:
        while (event := helper.next_event()) is not None:
            self._events.append(HelperEvent(helper, event))
