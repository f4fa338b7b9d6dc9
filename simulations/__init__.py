"""A discrete-event network and NAT simulator that drives natkit's sans-IO cores.

Everything runs on a virtual clock (:class:`EventLoop`) with randomness from
one seeded ``random.Random``: the same seed gives the same packet trace, and
simulated minutes take milliseconds. See ``simulations/README.md``.

Quick start::

    topo = standard_topology(NatConfig.symmetric(), loss=0.05, seed=7)
    server = CoreDriver(MyServerCore(topo.server_endpoints), topo.bind_server())
    client_core = MyClientCore()
    client = CoreDriver(client_core, topo.bind_client())
    client.invoke(lambda now: client_core.start(now))
    topo.loop.run_until(lambda: bool(client.events), timeout=10.0)
"""

from natkit.simulations.clock import EventLoop
from natkit.simulations.driver import CoreDriver
from natkit.simulations.errors import SimulationError
from natkit.simulations.firewall import Firewall, FirewallConfig
from natkit.simulations.link import Link, OneWay
from natkit.simulations.nat import (
    FILTER_SCOPE,
    MAPPING_SCOPE,
    FilteringBehavior,
    MappingBehavior,
    MappingView,
    Nat,
    NatConfig,
    PortAllocation,
)
from natkit.simulations.network import Host, Interface, Network, Realm, SimSocket
from natkit.simulations.packet import Packet, PacketDropReason, TraceEvent, TraceKind
from natkit.simulations.topology import StandardTopology, standard_topology

__all__ = [
    "FILTER_SCOPE",
    "MAPPING_SCOPE",
    "CoreDriver",
    "EventLoop",
    "FilteringBehavior",
    "Firewall",
    "FirewallConfig",
    "Host",
    "Interface",
    "Link",
    "MappingBehavior",
    "MappingView",
    "Nat",
    "NatConfig",
    "Network",
    "OneWay",
    "Packet",
    "PacketDropReason",
    "PortAllocation",
    "Realm",
    "SimSocket",
    "SimulationError",
    "StandardTopology",
    "TraceEvent",
    "TraceKind",
    "standard_topology",
]
