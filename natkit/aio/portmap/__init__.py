"""Port mapping on asyncio: the drivers of the cores in :mod:`natkit.portmap`.

* :class:`PortMapper` (:mod:`.mapper`): one mapping from whichever of PCP,
  NAT-PMP and UPnP IGD works, kept renewed and released on the way out.
* :func:`open_mapping` and :class:`MappingSession` (:mod:`.session`): one
  PCP or NAT-PMP lease client on its own.
* :class:`LeaseJournal` (:mod:`.journal`) and :func:`release_orphans`
  (:mod:`.release`): the lease journal file, and releasing what killed
  runs left in it.
* :mod:`.upnp`: the miniupnpc calls (and description fetches) the cores ask
  for; :mod:`.sockets`: the sockets and the default gateway.
"""

from natkit.aio.portmap.journal import CorruptJournal, LeaseJournal, default_journal_path
from natkit.aio.portmap.mapper import NoMappingError, PortMapper
from natkit.aio.portmap.release import release_entry, release_orphans
from natkit.aio.portmap.session import MappingSession, PortMappingError, open_mapping
from natkit.aio.portmap.sockets import read_default_route, resolve_gateway

__all__ = [
    "CorruptJournal",
    "LeaseJournal",
    "MappingSession",
    "NoMappingError",
    "PortMapper",
    "PortMappingError",
    "default_journal_path",
    "open_mapping",
    "read_default_route",
    "release_entry",
    "release_orphans",
    "resolve_gateway",
]
