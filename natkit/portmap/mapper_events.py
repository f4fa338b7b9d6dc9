"""What the port mapper core hands its driver besides the lease events.

* Journal events (:class:`LeaseOpened`, :class:`LeaseExternalKnown`,
  :class:`LeaseClosed`): when to write, fill in and forget a lease journal
  entry (:mod:`natkit.portmap.journal`). A driver without a journal ignores
  them. :class:`LeaseOpened` comes before anything that may create the
  mapping is sent: the core sends that request only at its next timer,
  after the driver has handled the events of the call that opened it.
* :class:`PortMapSettled`: the race is over, with what every protocol said.
* :class:`MapperClosed`: after ``close()``, every deletion is over.
"""

from __future__ import annotations

from dataclasses import dataclass

from natkit.endpoint import Endpoint
from natkit.portmap.events import MappingDeleted, PortmapEvent
from natkit.portmap.journal import JournalEntry
from natkit.portmap.report import PortMapResult
from natkit.portmap.upnp_calls import UpnpCallRequested


@dataclass(frozen=True, slots=True)
class LeaseOpened:
    """A request that may create a mapping is about to go out: journal it.
    The driver fills in the owner and the time."""

    entry: JournalEntry


@dataclass(frozen=True, slots=True)
class LeaseExternalKnown:
    """The gateway granted (or moved) the entry's external endpoint."""

    entry_id: str
    external: Endpoint


@dataclass(frozen=True, slots=True)
class LeaseClosed:
    """Nothing of the entry can be left at the gateway: deleted, refused,
    or never answered (journal rule 2). Forget it."""

    entry_id: str


@dataclass(frozen=True, slots=True)
class PortMapSettled:
    """The race is over; ``result.mapping`` is held if it is not ``None``.
    The hint is judged without STUN (see :meth:`PortMapResult.with_stun`)."""

    result: PortMapResult


@dataclass(frozen=True, slots=True)
class MapperClosed:
    """After ``close()``: every deletion is over, but those sent to a gateway
    that never answered (not waited for); ``deleted`` is the held mapping's
    deletion (``None`` when none was held)."""

    deleted: MappingDeleted | None


MapperEvent = (
    PortmapEvent
    | UpnpCallRequested
    | LeaseOpened
    | LeaseExternalKnown
    | LeaseClosed
    | PortMapSettled
    | MapperClosed
)
