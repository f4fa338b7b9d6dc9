"""Port mapping: PCP (RFC 6887) and NAT-PMP (RFC 6886) as sans-IO cores.

* :mod:`~natkit.portmap.pcp`, :mod:`~natkit.portmap.pmp`: strict
  ``build_*``/``parse_*`` functions and result codes.
* :class:`PcpClient`, :class:`PmpClient`: cores that create, renew,
  re-create and delete one mapping, driven by ``now``.
* :class:`Mapping` and the events in :mod:`~natkit.portmap.events`: the
  same for every protocol, so a port mapper can race them.
* :mod:`natkit.aio.portmap` runs the cores on asyncio sockets.
"""

from natkit.portmap.events import (
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
from natkit.portmap.lease import ClientState, LeaseClient, LeaseDropReason
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
    "FailureReason",
    "GatewayRestarted",
    "LeaseClient",
    "LeaseDropReason",
    "LifetimeNote",
    "LifetimePolicy",
    "LossReason",
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
    "PortmapDecodeError",
    "PortmapDecodeFailure",
    "PortmapEvent",
    "TransportProtocol",
    "UnsupportedVersion",
]
