"""The simulated network: realms, hosts, sockets, and the NATs joining realms.

Theory of operation.

* A **realm** is one address space (the internet, a home LAN, a carrier's
  100.64.0.0/10). Inside a realm, every address is held by one *interface*
  (a host's, or a NAT's outside interface for its public IP), and a realm
  may route whole prefixes to an interface (a firewall protecting them).
* A realm may have a **gateway**: the inside interface of the NAT or
  firewall whose inside it is. A datagram to an address nobody in the realm
  holds goes to the gateway, unless the address lies in one of the realm's
  own ``prefixes`` (then nobody has it, and it is dropped). NATs nest: a home
  NAT's outside interface can sit in a carrier NAT's inside realm.
* Every interface has a :class:`~natkit.simulations.link.Link`. A datagram crossing
  a realm from interface A to interface B suffers A's ``up`` and B's ``down``
  impairments; loss and jitter are drawn from the network's seeded
  ``random.Random`` when the datagram is sent, and its arrival at B becomes
  one event on the virtual clock. NATs translate in zero time.
* A **host** holds addresses in one realm and sockets bound to (address,
  port). A datagram for a held address with no socket on its port is
  dropped (no port unreachable is modelled).
* **TTL and ICMP Time Exceeded.** Every NAT or firewall forwarding a
  datagram takes one from its TTL (RFC 1812 §5.3.1); one that would leave
  with TTL 0 is dropped instead, and a NAT with an inside address (and
  ``NatConfig.sends_time_exceeded``) answers with ICMP Time Exceeded from
  the address facing the sender, as Linux does (RFC 1812 §4.3.2.4): its
  inside address toward the inside. An ICMP error crossing a NAT from
  outside is mapped back to the inside sender through the mapping that
  translated the datagram (RFC 5508 §7); the host hands it to the socket the
  datagram left from. Hosts deliver whatever TTL is left; crossing a realm
  costs none (a realm is one link).

Every discarded datagram is counted in ``Network.dropped`` by
:class:`PacketDropReason`; with ``trace=True`` every send, forward, delivery and
drop is also appended to ``Network.trace``.
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from natkit.endpoint import Endpoint, IPAddress
from natkit.sansio import (
    ICMP6_TIME_EXCEEDED,
    ICMP_TIME_EXCEEDED,
    IcmpKind,
)
from natkit.simulations.clock import EventLoop
from natkit.simulations.errors import SimulationError
from natkit.simulations.firewall import Firewall, FirewallConfig
from natkit.simulations.link import PERFECT, Link
from natkit.simulations.nat import Nat, NatConfig
from natkit.simulations.packet import (
    DEFAULT_TTL,
    ICMP_QUOTE,
    IcmpInfo,
    Packet,
    PacketDropReason,
    TraceEvent,
    TraceKind,
)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The IANA dynamic port range (RFC 6335 §6), where port 0 binds land.
EPHEMERAL_PORTS = (49152, 65535)

#: Called with each datagram a socket receives (set by the core driver).
Handler = Callable[[Packet], None]


def _ip(value: str | IPAddress) -> IPAddress:
    return ipaddress.ip_address(value) if isinstance(value, str) else value


class Interface:
    """A node's attachment to a realm: where datagrams for it are handed over."""

    __slots__ = ("link", "name", "realm", "receive")

    def __init__(self, name: str, realm: Realm, link: Link, receive: Handler) -> None:
        self.name = name
        self.realm = realm
        self.link = link
        self.receive = receive

    def __repr__(self) -> str:
        return f"<Interface {self.name} in {self.realm.name}>"


class Realm:
    """One address space; build with :meth:`Network.add_realm`."""

    def __init__(self, name: str, prefixes: Sequence[IPNetwork]) -> None:
        self.name = name
        #: Prefixes that are local to this realm: never sent to the gateway.
        self.prefixes = tuple(prefixes)
        #: The inside interface of the NAT or firewall in front of this realm.
        self.gateway: Interface | None = None
        self._holders: dict[IPAddress, Interface] = {}
        self._routes: list[tuple[IPNetwork, Interface]] = []

    def __repr__(self) -> str:
        return f"<Realm {self.name}>"

    def route(self, address: IPAddress, sender: Interface) -> Interface | None:
        """The interface a datagram to ``address`` from ``sender`` goes to next."""
        holder = self._holders.get(address)
        if holder is not None:
            return holder
        return self._route_unheld(address, sender)

    def _route_unheld(self, address: IPAddress, sender: Interface) -> Interface | None:
        for prefix, interface in self._routes:
            if address in prefix:
                return interface
        gateway = self.gateway
        if gateway is None or gateway is sender:
            return None
        for prefix in self.prefixes:
            if address in prefix:
                return None
        return gateway

    def _claim(self, address: IPAddress, interface: Interface) -> None:
        if address in self._holders:
            owner = self._holders[address].name
            raise SimulationError(f"{address} is already held by {owner} in realm {self.name}")
        self._holders[address] = interface

    def _set_gateway(self, interface: Interface) -> None:
        if self.gateway is not None:
            raise SimulationError(f"realm {self.name} already has gateway {self.gateway.name}")
        self.gateway = interface


class SimSocket:
    """A UDP socket bound to one (address, port) of a host.

    Received datagrams go to ``handler`` if set (the core driver sets it),
    otherwise they are appended to ``received`` for the test to read.
    """

    __slots__ = ("_host", "handler", "local", "received")

    def __init__(self, host: Host, local: Endpoint) -> None:
        self._host = host
        #: The bound endpoint, as the host sees it (before any NAT).
        self.local = local
        self.handler: Handler | None = None
        self.received: list[Packet] = []

    @property
    def host(self) -> Host:
        return self._host

    def send(self, data: bytes, remote: Endpoint, ttl: int | None = None) -> None:
        """Send one datagram from this socket's endpoint (``ttl``: its hop limit)."""
        host = self._host
        packet = Packet(self.local, remote, data, DEFAULT_TTL if ttl is None else ttl)
        network = host.network
        network.sent += 1
        if network.trace is not None:
            network.record(TraceKind.SENT, host.name, packet)
        network.transmit(packet, host.interface)

    def close(self) -> None:
        """Unbind; later datagrams to the endpoint are dropped as NO_SOCKET."""
        self._host.unbind(self)

    def __repr__(self) -> str:
        return f"<SimSocket {self._host.name} {self.local}>"


class Host:
    """An end host with addresses in one realm; build with :meth:`Network.add_host`."""

    def __init__(
        self, network: Network, name: str, realm: Realm, ips: Sequence[IPAddress], link: Link
    ) -> None:
        if not ips:
            raise SimulationError(f"host {name} needs at least one address")
        self.network = network
        self.name = name
        self.ips = tuple(ips)
        self.interface = Interface(name, realm, link, self._receive)
        self._sockets: dict[Endpoint, SimSocket] = {}
        for ip in self.ips:
            realm._claim(ip, self.interface)

    def __repr__(self) -> str:
        return f"<Host {self.name} {', '.join(map(str, self.ips))}>"

    @property
    def realm(self) -> Realm:
        return self.interface.realm

    @property
    def sockets(self) -> tuple[SimSocket, ...]:
        return tuple(self._sockets.values())

    def bind(self, ip: str | IPAddress | None = None, port: int = 0) -> SimSocket:
        """Bind a socket to ``(ip, port)``.

        ``ip`` defaults to the host's first address; it must be one the host
        holds (no wildcard binds). Port 0 picks a free ephemeral port with
        the network's seeded RNG, so it is the same on every run.
        """
        address = self.ips[0] if ip is None else _ip(ip)
        if address not in self.ips:
            raise SimulationError(f"host {self.name} does not hold {address}")
        if port == 0:
            port = self._ephemeral_port(address)
        local = Endpoint(address, port)
        if local in self._sockets:
            raise SimulationError(f"{local} is already bound on host {self.name}")
        sock = SimSocket(self, local)
        self._sockets[local] = sock
        return sock

    def bind_all(self, endpoints: Iterable[tuple[str | IPAddress, int]]) -> list[SimSocket]:
        """Bind one socket per ``(ip, port)``, in order (port 0 picks one)."""
        return [self.bind(ip, port) for ip, port in endpoints]

    def unbind(self, sock: SimSocket) -> None:
        """Release a socket's endpoint."""
        if self._sockets.get(sock.local) is sock:
            del self._sockets[sock.local]

    def _ephemeral_port(self, address: IPAddress) -> int:
        lo, hi = EPHEMERAL_PORTS
        rng = self.network.rng
        for _ in range(hi - lo + 1):
            port = lo + int(rng.random() * (hi - lo + 1))  # uniform, cheaper than randint
            if Endpoint(address, port) not in self._sockets:
                return port
        raise SimulationError(f"no free ephemeral port on {address}")

    def _receive(self, packet: Packet) -> None:
        network = self.network
        # An ICMP error goes to the socket the datagram it quotes left from.
        icmp = packet.icmp
        sock = self._sockets.get(packet.dst if icmp is None else icmp.source)
        if sock is None:
            network.drop(packet, self.name, PacketDropReason.NO_SOCKET)
            return
        network.delivered += 1
        if network.trace is not None:
            network.record(TraceKind.DELIVERED, self.name, packet)
        handler = sock.handler
        if handler is None:
            sock.received.append(packet)
        else:
            handler(packet)


class _NatNode:
    """Glue between a :class:`Nat`'s pure decisions and its two interfaces."""

    __slots__ = ("inside", "inside_ip", "loop", "name", "nat", "network", "outside")

    def __init__(
        self,
        network: Network,
        name: str,
        nat: Nat,
        *,
        inside: Realm,
        outside: Realm,
        link: Link,
        inside_link: Link,
        inside_ip: IPAddress | None,
    ) -> None:
        self.network = network
        self.loop = network.loop
        self.name = name
        self.nat = nat
        self.inside_ip = inside_ip
        self.inside = Interface(name, inside, inside_link, self.from_inside)
        self.outside = Interface(name, outside, link, self.from_outside)

    def from_inside(self, packet: Packet) -> None:
        nat = self.nat
        now = self.loop.now
        if packet.icmp is not None:
            # Only errors from outside are mapped back (RFC 5508 §7 REQ-4).
            self.network.drop(packet, self.name, PacketDropReason.ICMP_UNTRANSLATED)
            return
        if type(packet.dst.address) is not type(nat.public_ip):
            # A NAT44 has no way to carry another family (no NAT64 is modelled).
            self.network.drop(packet, self.name, PacketDropReason.NO_ROUTE)
            return
        if packet.dst.address == self.inside_ip:
            self.network.drop(packet, self.name, PacketDropReason.NO_SOCKET)  # the router itself
            return
        if packet.ttl <= 1:
            self._expired(packet, self.inside_ip, self.inside)
            return
        if packet.dst.address == nat.public_ip:
            pair = nat.hairpin(packet.src, packet.dst, now)
            if isinstance(pair, PacketDropReason):
                self.network.drop(packet, self.name, pair)
            else:
                hairpinned = Packet(pair[0], pair[1], packet.data, packet.ttl - 1)
                self.network.forward(hairpinned, self.inside)
            return
        external = nat.outbound(packet.src, packet.dst, now)
        if isinstance(external, PacketDropReason):
            self.network.drop(packet, self.name, external)
        else:
            outbound = Packet(external, packet.dst, packet.data, packet.ttl - 1)
            self.network.forward(outbound, self.outside)

    def from_outside(self, packet: Packet) -> None:
        icmp = packet.icmp
        if icmp is not None:
            self._icmp_from_outside(packet, icmp)
            return
        internal = self.nat.inbound(packet.src, packet.dst, self.loop.now)
        if isinstance(internal, PacketDropReason):
            self.network.drop(packet, self.name, internal)
        elif packet.ttl <= 1:
            self._expired(packet, self.nat.public_ip, self.outside)
        else:
            inbound = Packet(packet.src, internal, packet.data, packet.ttl - 1)
            self.network.forward(inbound, self.inside)

    def _icmp_from_outside(self, packet: Packet, icmp: IcmpInfo) -> None:
        """RFC 5508 §7 REQ-4: revert the quoted datagram's translation, send
        the error to its inside sender, leave the offender's address alone."""
        internal = self.nat.icmp_inbound(icmp.source, icmp.destination, self.loop.now)
        if internal is None:
            self.network.drop(packet, self.name, PacketDropReason.NO_MAPPING)
            return
        if packet.ttl <= 1:
            self.network.drop(packet, self.name, PacketDropReason.TTL_EXPIRED)
            return
        reverted = IcmpInfo(icmp.kind, icmp.icmp_type, icmp.icmp_code, internal, icmp.destination)
        error = Packet(
            packet.src, Endpoint(internal.address, 0), packet.data, packet.ttl - 1, reverted
        )
        self.network.forward(error, self.inside)

    def _expired(self, packet: Packet, address: IPAddress | None, interface: Interface) -> None:
        self.network.drop(packet, self.name, PacketDropReason.TTL_EXPIRED)
        if address is not None and self.nat.config.sends_time_exceeded:
            self.network.send_time_exceeded(packet, address, interface)


class _FirewallNode:
    """Glue between a :class:`Firewall` and its two interfaces."""

    __slots__ = ("firewall", "inside", "loop", "name", "network", "outside")

    def __init__(
        self,
        network: Network,
        name: str,
        firewall: Firewall,
        *,
        inside: Realm,
        outside: Realm,
        link: Link,
        inside_link: Link,
    ) -> None:
        self.network = network
        self.loop = network.loop
        self.name = name
        self.firewall = firewall
        self.inside = Interface(name, inside, inside_link, self.from_inside)
        self.outside = Interface(name, outside, link, self.from_outside)

    # A firewall routes, so it takes a TTL, but it has no address of its own
    # to answer Time Exceeded from: an expired datagram just disappears.

    def from_inside(self, packet: Packet) -> None:
        if packet.icmp is not None:
            self._pass(packet, self.outside)
            return
        reason = self.firewall.outbound(packet.src, packet.dst, self.loop.now)
        if reason is not None:
            self.network.drop(packet, self.name, reason)
        else:
            self._pass(packet, self.outside)

    def from_outside(self, packet: Packet) -> None:
        icmp = packet.icmp
        if icmp is not None:
            # Related to a datagram the inside sent, like Linux's conntrack.
            reason = self.firewall.inbound(icmp.destination, icmp.source, self.loop.now)
        else:
            reason = self.firewall.inbound(packet.src, packet.dst, self.loop.now)
        if reason is not None:
            self.network.drop(packet, self.name, reason)
        else:
            self._pass(packet, self.inside)

    def _pass(self, packet: Packet, interface: Interface) -> None:
        if packet.ttl <= 1:
            self.network.drop(packet, self.name, PacketDropReason.TTL_EXPIRED)
        else:
            self.network.forward(packet._replace(ttl=packet.ttl - 1), interface)


class Network:
    """Owns the clock, the RNG, the realms and the counters of one simulation."""

    def __init__(
        self, rng: random.Random, *, loop: EventLoop | None = None, trace: bool = False
    ) -> None:
        #: The only source of randomness: loss, jitter, port choices.
        self.rng = rng
        self.loop = loop if loop is not None else EventLoop()
        #: Datagrams sent by sockets.
        self.sent = 0
        #: Datagrams delivered to sockets.
        self.delivered = 0
        #: ICMP errors routers originated.
        self.icmp_sent = 0
        #: Datagrams discarded, by reason.
        self.dropped: Counter[PacketDropReason] = Counter()
        #: Every send, forward, delivery and drop, when tracing is on.
        self.trace: list[TraceEvent] | None = [] if trace else None
        self.realms: list[Realm] = []
        self._names: set[str] = set()
        # Drop rules: address pairs (either direction) whose datagrams are dropped.
        self._blocked: set[tuple[IPAddress, IPAddress]] = set()

    @property
    def now(self) -> float:
        return self.loop.now

    # -- building ----------------------------------------------------------------

    def add_realm(self, name: str, prefixes: Iterable[str | IPNetwork] = ()) -> Realm:
        """A new address space; ``prefixes`` are the ones local to it."""
        nets = [ipaddress.ip_network(p) if isinstance(p, str) else p for p in prefixes]
        realm = Realm(name, nets)
        self.realms.append(realm)
        return realm

    def add_host(
        self,
        name: str,
        realm: Realm,
        ips: Sequence[str | IPAddress],
        *,
        link: Link = PERFECT,
    ) -> Host:
        """A host holding ``ips`` in ``realm``."""
        self._claim_name(name)
        return Host(self, name, realm, [_ip(ip) for ip in ips], link)

    def add_nat(
        self,
        name: str,
        config: NatConfig,
        *,
        inside: Realm,
        outside: Realm,
        public_ip: str | IPAddress,
        link: Link = PERFECT,
        inside_link: Link = PERFECT,
        inside_ip: str | IPAddress | None = None,
    ) -> Nat:
        """A NAT that is ``inside``'s gateway and holds ``public_ip`` in ``outside``.

        ``link`` is the NAT's attachment to the outside realm, ``inside_link``
        its attachment to the inside one. ``inside_ip``, its address on the
        inside (e.g. 192.168.1.1), is what it answers Time Exceeded from;
        without one it cannot answer.
        """
        if inside is outside:
            raise SimulationError(f"NAT {name} needs two different realms")
        self._claim_name(name)
        nat = Nat(config, _ip(public_ip), self.rng)
        inside_address = None if inside_ip is None else _ip(inside_ip)
        node = _NatNode(
            self,
            name,
            nat,
            inside=inside,
            outside=outside,
            link=link,
            inside_link=inside_link,
            inside_ip=inside_address,
        )
        outside._claim(nat.public_ip, node.outside)
        if inside_address is not None:
            inside._claim(inside_address, node.inside)
        inside._set_gateway(node.inside)
        return nat

    def add_firewall(
        self,
        name: str,
        config: FirewallConfig,
        *,
        inside: Realm,
        outside: Realm,
        protects: Iterable[str | IPNetwork],
        link: Link = PERFECT,
        inside_link: Link = PERFECT,
    ) -> Firewall:
        """A firewall that is ``inside``'s gateway; ``outside`` routes ``protects`` to it."""
        if inside is outside:
            raise SimulationError(f"firewall {name} needs two different realms")
        self._claim_name(name)
        firewall = Firewall(config)
        node = _FirewallNode(
            self, name, firewall, inside=inside, outside=outside, link=link, inside_link=inside_link
        )
        for prefix in protects:
            net = ipaddress.ip_network(prefix) if isinstance(prefix, str) else prefix
            outside._routes.append((net, node.outside))
        inside._set_gateway(node.inside)
        return firewall

    def _claim_name(self, name: str) -> None:
        if name in self._names:
            raise SimulationError(f"a node is already named {name!r}")
        self._names.add(name)

    def block(self, a: str | IPAddress, b: str | IPAddress) -> None:
        """Drop every datagram between ``a`` and ``b`` from now on, both ways
        (a drop rule on a router between them, e.g. two sites' public addresses)."""
        first, second = _ip(a), _ip(b)
        self._blocked |= {(first, second), (second, first)}

    def unblock(self, a: str | IPAddress, b: str | IPAddress) -> None:
        """Remove the drop rule between ``a`` and ``b``."""
        first, second = _ip(a), _ip(b)
        self._blocked -= {(first, second), (second, first)}

    # -- moving datagrams ----------------------------------------------------------

    def transmit(self, packet: Packet, sender: Interface) -> None:
        """Carry ``packet`` across ``sender``'s realm to the next interface."""
        realm = sender.realm
        address = packet.dst.address
        if self._blocked and (packet.src.address, address) in self._blocked:
            self.drop(packet, sender.name, PacketDropReason.BLOCKED)
            return
        # The common case, an address held in the realm, without a method call.
        target = realm._holders.get(address) or realm._route_unheld(address, sender)
        if target is None:
            self.drop(packet, sender.name, PacketDropReason.NO_ROUTE)
            return
        up = sender.link.up
        down = target.link.down
        rng = self.rng
        # Zero loss and jitter draw nothing, so ideal links cost no RNG calls.
        if (up.loss and rng.random() < up.loss) or (down.loss and rng.random() < down.loss):
            self.drop(packet, sender.name, PacketDropReason.LOSS)
            return
        delay = up.delay + down.delay
        if up.jitter:
            delay += rng.random() * up.jitter
        if down.jitter:
            delay += rng.random() * down.jitter
        self.loop.call_later(delay, target.receive, packet)

    def forward(self, packet: Packet, interface: Interface) -> None:
        """A middlebox passes ``packet`` (already translated) out of ``interface``."""
        if self.trace is not None:
            self.record(TraceKind.FORWARDED, interface.name, packet)
        self.transmit(packet, interface)

    def send_time_exceeded(self, packet: Packet, offender: IPAddress, interface: Interface) -> None:
        """Answer an expired datagram with ICMP Time Exceeded from ``offender``
        out of ``interface``; never for an ICMP error (RFC 1122 §3.2.2)."""
        if packet.icmp is not None:
            return
        v4 = offender.version == 4
        error = Packet(
            Endpoint(offender, 0),
            Endpoint(packet.src.address, 0),
            packet.data[:ICMP_QUOTE],
            DEFAULT_TTL,
            IcmpInfo(
                IcmpKind.TIME_EXCEEDED,
                ICMP_TIME_EXCEEDED if v4 else ICMP6_TIME_EXCEEDED,
                0,
                packet.src,
                packet.dst,
            ),
        )
        self.icmp_sent += 1
        self.forward(error, interface)

    def drop(self, packet: Packet, node: str, reason: PacketDropReason) -> None:
        """Discard ``packet`` at ``node``, counting why."""
        self.dropped[reason] += 1
        if self.trace is not None:
            self.record(TraceKind.DROPPED, node, packet, reason)

    def record(
        self, kind: TraceKind, node: str, packet: Packet, reason: PacketDropReason | None = None
    ) -> None:
        """Append one trace line (only called when tracing is on)."""
        if self.trace is not None:
            self.trace.append(
                TraceEvent(
                    self.loop.now, kind, node, packet.src, packet.dst, len(packet.data), reason
                )
            )
