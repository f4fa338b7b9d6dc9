"""The standard test topology: a client behind zero, one or two middleboxes.

::

    internet ── stun host 203.0.113.10, 203.0.113.11 (ports 3478, 3479)
       │
       └─ 198.51.100.1  NAT (or the carrier NAT when two tiers)
            │
            ├─ [two tiers] carrier realm 100.64.0.0/10, carrier NAT inside 100.64.0.1
            │      └─ 100.64.0.2  home NAT
            │
            └─ home realm 192.168.1.0/24, home NAT inside 192.168.1.1 ── client 192.168.1.2

Each NAT answers expired datagrams with ICMP Time Exceeded from its inside
address, as the lab's Linux routers do, unless its ``NatConfig`` says
``sends_time_exceeded=False``.

With a :class:`FirewallConfig` instead of a NAT, the client holds the public
address 198.51.100.2 behind a firewall; with ``None`` it sits on the
internet directly with that address.

All impairment (``delay``, ``jitter``, ``loss``) is on the client's access
link, both directions, so every one-way trip between the client and the
server crosses it exactly once: ``loss=0.1`` loses 10% of requests and 10%
of responses, and the one-way delay is ``delay`` plus up to ``jitter``.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

from natkit.endpoint import Endpoint
from natkit.simulations.clock import EventLoop
from natkit.simulations.errors import SimulationError
from natkit.simulations.firewall import Firewall, FirewallConfig
from natkit.simulations.link import Link
from natkit.simulations.nat import Nat, NatConfig
from natkit.simulations.network import Host, Network, Realm, SimSocket

SERVER_PRIMARY_IP = ipaddress.IPv4Address("203.0.113.10")
SERVER_ALTERNATE_IP = ipaddress.IPv4Address("203.0.113.11")
SERVER_PORTS = (3478, 3479)
NAT_PUBLIC_IP = ipaddress.IPv4Address("198.51.100.1")
CLIENT_PUBLIC_IP = ipaddress.IPv4Address("198.51.100.2")
CARRIER_PREFIX = ipaddress.IPv4Network("100.64.0.0/10")
#: The carrier NAT's inside and the home NAT's outside address, in CARRIER_PREFIX.
CARRIER_NAT_INSIDE_IP = CARRIER_PREFIX[1]
HOME_NAT_CARRIER_IP = CARRIER_PREFIX[2]
HOME_PREFIX = ipaddress.IPv4Network("192.168.1.0/24")
HOME_NAT_INSIDE_IP = ipaddress.IPv4Address("192.168.1.1")
CLIENT_IP = ipaddress.IPv4Address("192.168.1.2")

#: The client's NAT unless told otherwise: a typical home router.
DEFAULT_NAT = NatConfig()


@dataclass(frozen=True)
class StandardTopology:
    """The built network and handles on its parts."""

    network: Network
    internet: Realm
    #: The STUN server host, holding both server addresses.
    server: Host
    client: Host
    #: The NATs between client and internet, client side first.
    nats: tuple[Nat, ...]
    firewall: Firewall | None

    @property
    def loop(self) -> EventLoop:
        return self.network.loop

    @property
    def server_endpoints(self) -> tuple[Endpoint, Endpoint, Endpoint, Endpoint]:
        """The RFC 5780 layout, index bit 1 = address, bit 0 = port.

        ``(A1:P1, A1:P2, A2:P1, A2:P2)``, the order ``natkit.stun.server``
        expects its sockets in.
        """
        p1, p2 = SERVER_PORTS
        a1, a2 = SERVER_PRIMARY_IP, SERVER_ALTERNATE_IP
        return (Endpoint(a1, p1), Endpoint(a1, p2), Endpoint(a2, p1), Endpoint(a2, p2))

    def bind_server(self) -> list[SimSocket]:
        """Bind the four server sockets in :attr:`server_endpoints` order."""
        return self.server.bind_all((e.address, e.port) for e in self.server_endpoints)

    def bind_client(self, count: int = 1, port: int = 0) -> list[SimSocket]:
        """Bind ``count`` client sockets (``port`` 0: ephemeral; else consecutive)."""
        ip = self.client.ips[0]
        return self.client.bind_all((ip, port + i if port else 0) for i in range(count))


def standard_topology(
    nat: NatConfig | FirewallConfig | None = DEFAULT_NAT,
    *,
    carrier: NatConfig | None = None,
    delay: float = 0.0,
    jitter: float = 0.0,
    loss: float = 0.0,
    seed: int = 0,
    trace: bool = False,
    client_link: Link | None = None,
    carrier_prefix: ipaddress.IPv4Network = CARRIER_PREFIX,
) -> StandardTopology:
    """Build the module-doc topology.

    ``nat`` is the client's own middlebox (default: ``NatConfig()``; ``None``
    for none); pass
    ``carrier`` to put a carrier-grade NAT between it and the internet.
    ``client_link`` overrides the link built from ``delay``/``jitter``/``loss``.
    ``carrier_prefix`` numbers the realm between the two NATs (its first two
    addresses: the carrier NAT's inside, the home NAT's outside); a private
    prefix such as 10.0.0.0/8 makes a double NAT that is not a carrier's.
    """
    network = Network(random.Random(seed), trace=trace)
    internet = network.add_realm("internet")
    server = network.add_host("stun", internet, [SERVER_PRIMARY_IP, SERVER_ALTERNATE_IP])
    access = client_link if client_link is not None else Link.symmetric(delay, jitter, loss)
    nats: list[Nat] = []
    firewall: Firewall | None = None

    if isinstance(nat, FirewallConfig) or nat is None:
        if carrier is not None:
            raise SimulationError("a carrier NAT needs a home NatConfig in front of the client")
        if nat is None:
            client = network.add_host("client", internet, [CLIENT_PUBLIC_IP], link=access)
        else:
            lan = network.add_realm("lan", [f"{CLIENT_PUBLIC_IP}/32"])
            firewall = network.add_firewall(
                "firewall", nat, inside=lan, outside=internet, protects=[f"{CLIENT_PUBLIC_IP}/32"]
            )
            client = network.add_host("client", lan, [CLIENT_PUBLIC_IP], link=access)
        return StandardTopology(network, internet, server, client, (), firewall)

    home = network.add_realm("home", [HOME_PREFIX])
    if carrier is None:
        nats.append(
            network.add_nat(
                "nat",
                nat,
                inside=home,
                outside=internet,
                public_ip=NAT_PUBLIC_IP,
                inside_ip=HOME_NAT_INSIDE_IP,
            )
        )
    else:
        cgn = network.add_realm("carrier", [carrier_prefix])
        nats.append(
            network.add_nat(
                "home-nat",
                nat,
                inside=home,
                outside=cgn,
                public_ip=carrier_prefix[2],
                inside_ip=HOME_NAT_INSIDE_IP,
            )
        )
        nats.append(
            network.add_nat(
                "carrier-nat",
                carrier,
                inside=cgn,
                outside=internet,
                public_ip=NAT_PUBLIC_IP,
                inside_ip=carrier_prefix[1],
            )
        )
    client = network.add_host("client", home, [CLIENT_IP], link=access)
    return StandardTopology(network, internet, server, client, tuple(nats), firewall)
