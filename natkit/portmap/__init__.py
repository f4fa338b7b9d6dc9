"""Port mapping: PCP (RFC 6887), NAT-PMP (RFC 6886) and UPnP IGD as sans-IO cores.

Nothing here touches a socket, a clock, a thread or a file; the asyncio
drivers are in :mod:`natkit.aio.portmap`.

* Codecs: :mod:`~natkit.portmap.pcp`, :mod:`~natkit.portmap.pmp`
  (:mod:`~natkit.portmap.wire` for what they share),
  :mod:`~natkit.portmap.ssdp`, :mod:`~natkit.portmap.igd` (the device
  description and UPnP error codes).
* The lease engine (:mod:`~natkit.portmap.lease`, its states in
  :mod:`~natkit.portmap.lease_state`) and its three clients:
  :class:`PcpClient`, :class:`PmpClient`, :class:`UpnpClient` (whose calls
  the driver makes: :mod:`~natkit.portmap.upnp_calls`). Each creates,
  renews, re-creates and deletes one mapping, driven by ``now``.
* :class:`MapperCore` (:mod:`~natkit.portmap.mapper`): all three on one
  socket, the winner picked by the table in :mod:`~natkit.portmap.choice`,
  SSDP by :mod:`~natkit.portmap.ssdp_search`; its report types are in
  :mod:`~natkit.portmap.report`, its journal model in
  :mod:`~natkit.portmap.journal`.
* :class:`Mapping` and the events in :mod:`~natkit.portmap.events`: the
  same for every protocol.
"""

from natkit.portmap.events import (
    ExternalAddressFound,
    FailureReason,
    GatewayRestarted,
    LossReason,
    MappingDeleted,
    MappingFailed,
    MappingGranted,
    MappingLost,
    MappingRenewed,
    PortmapEvent,
)
from natkit.portmap.lease import LeaseClient, LeaseDropReason
from natkit.portmap.lease_state import ClientState, LeaseStateError
from natkit.portmap.mapper import MapperCore, PortMapperConfig
from natkit.portmap.mapping import (
    LifetimeNote,
    LifetimePolicy,
    Mapping,
    MappingDetails,
    MappingProtocol,
    PcpDetails,
    PmpDetails,
    TransportProtocol,
)
from natkit.portmap.pcp_client import PcpClient, PcpConfig
from natkit.portmap.pmp_client import PmpClient, PmpConfig
from natkit.portmap.report import PortMapResult, ProbeStatus, ProtocolResult, ReleaseOutcome
from natkit.portmap.upnp_calls import UpnpConfig
from natkit.portmap.upnp_client import UpnpClient
from natkit.portmap.wire import (
    CLIENT_PORT,
    SERVER_PORT,
    PcpDecodeError,
    PmpDecodeError,
    PortmapDecodeError,
    PortmapDecodeFailure,
    UnsupportedVersion,
)

__all__ = [
    "CLIENT_PORT",
    "SERVER_PORT",
    "ClientState",
    "ExternalAddressFound",
    "FailureReason",
    "GatewayRestarted",
    "LeaseClient",
    "LeaseDropReason",
    "LeaseStateError",
    "LifetimeNote",
    "LifetimePolicy",
    "LossReason",
    "MapperCore",
    "Mapping",
    "MappingDeleted",
    "MappingDetails",
    "MappingFailed",
    "MappingGranted",
    "MappingLost",
    "MappingProtocol",
    "MappingRenewed",
    "PcpClient",
    "PcpConfig",
    "PcpDecodeError",
    "PcpDetails",
    "PmpClient",
    "PmpConfig",
    "PmpDecodeError",
    "PmpDetails",
    "PortMapResult",
    "PortMapperConfig",
    "PortmapDecodeError",
    "PortmapDecodeFailure",
    "PortmapEvent",
    "ProbeStatus",
    "ProtocolResult",
    "ReleaseOutcome",
    "TransportProtocol",
    "UnsupportedVersion",
    "UpnpClient",
    "UpnpConfig",
]
