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

from simulations.clock import EventLoop
from simulations.driver import CoreDriver
from simulations.errors import SimulationError
from simulations.firewall import Firewall, FirewallConfig
from simulations.link import Link, OneWay
from simulations.nat import (
    FILTER_SCOPE,
    MAPPING_SCOPE,
    FilteringBehavior,
    MappingBehavior,
    MappingView,
    Nat,
    NatConfig,
    PortAllocation,
)
from simulations.network import Host, Interface, Network, Realm, SimSocket
from simulations.packet import DropReason, Packet, TraceEvent, TraceKind
from simulations.topology import StandardTopology, standard_topology

__all__ = [
    "FILTER_SCOPE",
    "MAPPING_SCOPE",
    "CoreDriver",
    "DropReason",
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
    "PortAllocation",
    "Realm",
    "SimSocket",
    "SimulationError",
    "StandardTopology",
    "TraceEvent",
    "TraceKind",
    "standard_topology",
]
