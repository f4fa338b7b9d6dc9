"""Two peers on one internet, each behind its own NAT (or none), and a STUN server.

::

    internet ── stun host 192.0.2.10 (port 3478)
       │
       ├─ 203.0.113.1  site A's NAT ── LAN 10.1.0.0/24 ── host 10.1.0.2
       │               (no NAT: the host holds 203.0.113.1 itself)
       │
       └─ 198.51.100.1 site B's NAT ── LAN 10.2.0.0/24 ── host 10.2.0.2

This is the peer-to-peer counterpart of :func:`~natkit.simulations.topology.standard_topology`
(which has one client and an RFC 5780 server): the birthday Monte Carlo and
the traversal matrix both build it, once per run.

``delay`` is the one-way delay of each site's attachment to the internet,
so a datagram between the two sites takes ``2 * delay`` and one to the STUN
server ``delay``. Nothing is lost and there is no jitter: the questions asked
of this topology are about NAT behaviour, not about the path.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass

from natkit.endpoint import Endpoint, IPAddress
from natkit.simulations.clock import EventLoop
from natkit.simulations.link import PERFECT, Link
from natkit.simulations.nat import Nat, NatConfig
from natkit.simulations.network import Host, Network, Realm, SimSocket

STUN_SERVER = Endpoint(ipaddress.IPv4Address("192.0.2.10"), 3478)

#: (public address, LAN prefix, host address) of site A and site B.
_SITE_ADDRESSES = (
    ("203.0.113.1", "10.1.0.0/24", "10.1.0.2"),
    ("198.51.100.1", "10.2.0.0/24", "10.2.0.2"),
)


@dataclass(frozen=True)
class Site:
    """One peer: its host and the NAT in front of it (``None``: on the internet)."""

    name: str
    host: Host
    nat: Nat | None

    @property
    def public_ip(self) -> IPAddress:
        """The address the rest of the internet sees this peer at."""
        return self.nat.public_ip if self.nat is not None else self.host.ips[0]

    def bind(self, count: int, first_port: int) -> list[SimSocket]:
        """``count`` sockets on consecutive ports from ``first_port``.

        Explicit ports rather than port 0: they cost no RNG draws and the
        NATs pick the external ports anyway.
        """
        ip = self.host.ips[0]
        return [self.host.bind(ip, first_port + i) for i in range(count)]


@dataclass(frozen=True)
class TwoSites:
    """The built network and handles on its parts."""

    network: Network
    internet: Realm
    a: Site
    b: Site
    stun: Host

    @property
    def loop(self) -> EventLoop:
        return self.network.loop

    @property
    def sites(self) -> tuple[Site, Site]:
        return (self.a, self.b)


def two_sites(
    a: NatConfig | None,
    b: NatConfig | None,
    *,
    rng: random.Random,
    delay: float = 0.0,
) -> TwoSites:
    """Build the module-doc topology; ``None`` puts that peer on the internet."""
    network = Network(rng)
    internet = network.add_realm("internet")
    stun = network.add_host("stun", internet, [STUN_SERVER.address], link=_link(delay))
    sites = [
        _site(network, internet, name, config, addresses=addresses, delay=delay)
        for name, config, addresses in zip(("a", "b"), (a, b), _SITE_ADDRESSES, strict=True)
    ]
    return TwoSites(network, internet, sites[0], sites[1], stun)


def _link(delay: float) -> Link:
    return Link.symmetric(delay) if delay else PERFECT


def _site(
    network: Network,
    internet: Realm,
    name: str,
    config: NatConfig | None,
    *,
    addresses: Sequence[str],
    delay: float,
) -> Site:
    public, prefix, host_ip = addresses
    if config is None:
        host = network.add_host(name, internet, [public], link=_link(delay))
        return Site(name, host, None)
    lan = network.add_realm(f"{name}-lan", [prefix])
    nat = network.add_nat(
        f"{name}-nat", config, inside=lan, outside=internet, public_ip=public, link=_link(delay)
    )
    return Site(name, network.add_host(name, lan, [host_ip]), nat)
