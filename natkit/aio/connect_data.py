"""A connect node's data path: whose datagram is this?

``Connection.send(peer, data)`` sends over the peer's selected path (the
agent's ``send_data``: from a socket, or wrapped for the relay). What comes
back arrives two ways:

* on a socket, from the remote end of a direct path (or of a path to the
  peer's relayed candidate): the runner's data tap asks :meth:`DataRoutes.direct`;
* through our TURN allocation, as the agent's ``RelayedDataReceived(relay,
  remote, data)``: :meth:`DataRoutes.relayed`.

Routes are learnt from ``PathSelected``: a peer's current path and the few
before it (:data:`KEPT_PATHS`; the peer may still send on the old path for
a round trip after a switch). A datagram no such route claims is looked up
among every valid pair of every peer (:meth:`DataRoutes.learn`, at most
every :data:`REFRESH_INTERVAL`): the controlled side switches on the
nomination it receives, the controlling side on its answer, so for a round
trip one side sends on a path the other has not selected yet. A datagram
no route claims then is not data (a socket's) or is dropped and counted
(the relay's).

Data never goes through the event buffer: a tunnel's traffic would push
path events out of it. It goes to the ``on_data(peer, data, relayed)``
callback, called on the loop for each datagram.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from natkit.birthday.wire import is_probe_packet
from natkit.endpoint import Endpoint
from natkit.ice.candidates import CandidateKind
from natkit.ice.events import PathSelected
from natkit.ice.pairs import PairState, PairStatus
from natkit.stun.codec import is_stun

__all__ = ["KEPT_PATHS", "REFRESH_INTERVAL", "DataHandler", "DataRoutes", "is_data"]

#: Paths per peer whose datagrams are still taken as the peer's.
KEPT_PATHS = 3
#: Shortest time between two look-ups among the valid pairs (seconds): a
#: stranger's junk on the socket costs one look-up per interval, not one per
#: datagram.
REFRESH_INTERVAL = 0.1

#: ``on_data(peer, data, relayed)``.
DataHandler = Callable[[Any, bytes, bool], object]

_Key = tuple[int | str, Endpoint]


def is_data(data: bytes) -> bool:
    """Neither STUN (checks, TURN) nor a birthday probe: a tunnel's datagram,
    if it comes from a peer."""
    return not (is_stun(data) or is_probe_packet(data))


class DataRoutes:
    """Which peer a datagram comes from, by the paths selected (module doc)."""

    def __init__(self) -> None:
        #: Route -> (peer, whether the path is relayed).
        self._routes: dict[_Key, tuple[Any, bool]] = {}
        #: Routes of every valid pair, from the last look-up.
        self._valid: dict[_Key, tuple[Any, bool]] = {}
        self._learnt_at = float("-inf")
        self._recent: dict[Any, deque[_Key]] = {}
        #: Datagrams that came through the relay from no peer's path.
        self.unrouted = 0

    def path_selected(self, event: PathSelected) -> None:
        key: _Key = (event.socket if event.socket is not None else event.relay or "", event.remote)
        recent = self._recent.setdefault(event.peer, deque())
        if key in recent:
            recent.remove(key)
        recent.append(key)
        self._routes[key] = (event.peer, event.kind is CandidateKind.RELAY)
        while len(recent) > KEPT_PATHS:
            self._drop(recent.popleft(), event.peer)

    def _drop(self, key: _Key, peer: Any) -> None:
        route = self._routes.get(key)
        if route is not None and route[0] is peer:
            del self._routes[key]

    def forget(self, peer: Any) -> None:
        for key in self._recent.pop(peer, ()):
            self._drop(key, peer)

    def due(self, now: float) -> bool:
        """Whether a look-up among the valid pairs may run now."""
        return now - self._learnt_at >= REFRESH_INTERVAL

    def learn(self, rows: Iterable[tuple[Any, PairStatus]], now: float) -> None:
        """Every valid pair (peer, row) as a route."""
        self._learnt_at = now
        self._valid = {
            (row.socket if row.socket is not None else row.relay or "", row.remote): (
                peer,
                CandidateKind.RELAY in (row.local_kind, row.remote_kind),
            )
            for peer, row in rows
            if row.state is PairState.SUCCEEDED
        }

    def direct(self, socket: int, remote: Endpoint) -> tuple[Any, bool] | None:
        """(peer, relayed) a socket's datagram from ``remote`` is data from
        (``None``: not known); relayed: the path goes to the peer's relayed
        candidate."""
        key = (socket, remote)
        return self._routes.get(key) or self._valid.get(key)

    def relayed(self, relay: str, remote: Endpoint) -> Any | None:
        """The peer a datagram from our allocation is data from."""
        key = (relay, remote)
        route = self._routes.get(key) or self._valid.get(key)
        return None if route is None else route[0]
