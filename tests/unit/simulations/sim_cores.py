"""Two tiny sans-IO cores for exercising the simulator.

``Reflector`` is a STUN server in miniature: it answers each request with
the source endpoint it saw, from the socket the request asks for (what
CHANGE-REQUEST does). ``Prober`` sends requests, optionally retransmits
them on a timer, and reports replies and timeouts as events.

Wire format (not STUN, on purpose: these test the simulator, not the codec):

* request: ``b"Q"``, one byte naming the reflector socket to answer from
  (``SAME`` = the one it arrived on), a 4-byte token;
* reply: ``b"R"``, the token, then the seen endpoint as ``ip:port`` text.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from natkit.endpoint import Endpoint
from natkit.sansio import Datagram

SAME = 0xFF


@dataclass(frozen=True, slots=True)
class Reflected:
    """The reflector answered ``remote`` from socket ``socket``."""

    remote: Endpoint
    received_on: int
    socket: int


@dataclass(frozen=True, slots=True)
class Replied:
    """A reply to request ``token`` arrived."""

    token: int
    #: The endpoint the reflector saw (our mapped address).
    seen: Endpoint
    #: Where the reply came from.
    source: Endpoint
    socket: int
    time: float


@dataclass(frozen=True, slots=True)
class TimedOut:
    """Request ``token`` got no reply after all its transmissions."""

    token: int
    transmissions: int


class Reflector:
    """Answers every request with the endpoint it came from."""

    def __init__(self, endpoints: tuple[Endpoint, ...] = ()) -> None:
        self.endpoints = endpoints
        self._out: list[Datagram] = []
        self._events: deque[Reflected] = deque()

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        if len(data) != 6 or data[:1] != b"Q":
            return
        answer_from = socket if data[1] == SAME else data[1]
        self._out.append(Datagram(b"R" + data[2:6] + str(remote).encode(), remote, answer_from))
        self._events.append(Reflected(remote, socket, answer_from))

    def handle_timer(self, now: float) -> None:
        pass

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        return None

    def next_event(self) -> Reflected | None:
        return self._events.popleft() if self._events else None


@dataclass(slots=True)
class _Pending:
    data: bytes
    remote: Endpoint
    socket: int
    deadline: float
    transmissions: int


class Prober:
    """Sends requests; retransmits every ``interval`` seconds up to ``tries`` times."""

    def __init__(self, *, interval: float | None = None, tries: int = 1) -> None:
        self.interval = interval
        self.tries = tries
        self._next_token = 0
        self._pending: dict[int, _Pending] = {}
        self._out: list[Datagram] = []
        self._events: deque[Replied | TimedOut] = deque()

    def probe(self, now: float, remote: Endpoint, answer_from: int = SAME, socket: int = 0) -> int:
        """Queue one request; returns its token."""
        token = self._next_token
        self._next_token += 1
        data = b"Q" + bytes([answer_from]) + token.to_bytes(4, "big")
        self._out.append(Datagram(data, remote, socket))
        if self.interval is not None:
            self._pending[token] = _Pending(data, remote, socket, now + self.interval, 1)
        return token

    def send_raw(self, data: bytes, remote: Endpoint, socket: int = 0) -> None:
        """Queue arbitrary bytes (no retransmission)."""
        self._out.append(Datagram(data, remote, socket))

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        if len(data) < 6 or data[:1] != b"R":
            return
        token = int.from_bytes(data[1:5], "big")
        self._pending.pop(token, None)
        seen = Endpoint.parse(data[5:].decode())
        self._events.append(Replied(token, seen, remote, socket, now))

    def handle_timer(self, now: float) -> None:
        assert self.interval is not None
        for token, p in list(self._pending.items()):
            if p.deadline > now:
                continue
            if p.transmissions >= self.tries:
                del self._pending[token]
                self._events.append(TimedOut(token, p.transmissions))
            else:
                p.transmissions += 1
                p.deadline = now + self.interval
                self._out.append(Datagram(p.data, p.remote, p.socket))

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        return min((p.deadline for p in self._pending.values()), default=None)

    def next_event(self) -> Replied | TimedOut | None:
        return self._events.popleft() if self._events else None
