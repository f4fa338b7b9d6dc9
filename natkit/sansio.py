"""The one shape every natkit protocol core has.

Theory of operation (after aioquic's ``QuicConnection``): a core never touches
a socket, a clock or a random source of its own. Drivers feed it

* ``receive_datagram(data, remote, socket, now)`` when bytes arrive on one of
  the local sockets the core was given (``socket`` is that socket's index),
* ``handle_timer(now)`` when the deadline from ``get_timer()`` passes,

and after each call collect ``datagrams_to_send(now)`` and ``next_event()``
until it returns ``None``. ``now`` is a monotonic time in seconds; only its
differences matter. The asyncio driver (``natkit.aio.driver``) and the
virtual-clock simulator (``simulations``) are the two drivers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

from natkit.endpoint import Endpoint


@dataclass(frozen=True, slots=True)
class Datagram:
    """One UDP payload to send from local socket ``socket`` to ``remote``."""

    data: bytes
    remote: Endpoint
    socket: int = 0


EventT_co = TypeVar("EventT_co", covariant=True)


class SansIOCore(Protocol[EventT_co]):
    """What a driver needs from a core."""

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        """Feed one received datagram."""

    def handle_timer(self, now: float) -> None:
        """Called once the deadline from :meth:`get_timer` has passed."""

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        """Drain the datagrams the core wants sent now."""

    def get_timer(self) -> float | None:
        """The next absolute deadline, or ``None`` when nothing is pending."""

    def next_event(self) -> EventT_co | None:
        """Pop the oldest pending event, or ``None``."""
