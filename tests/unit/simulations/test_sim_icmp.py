"""TTL and ICMP Time Exceeded in the simulator: NATs take a hop, answer from
their inside address, and map errors from outside back through the mapping
(RFC 5508 §7); cores get them through ``receive_icmp_error``."""

from __future__ import annotations

import ipaddress
import random
from collections import deque

from natkit.endpoint import Endpoint
from natkit.sansio import Datagram, IcmpError, IcmpKind
from natkit.simulations import (
    CoreDriver,
    FirewallConfig,
    Link,
    MappingBehavior,
    NatConfig,
    Network,
    OneWay,
    PacketDropReason,
    standard_topology,
)
from natkit.simulations.packet import DEFAULT_TTL
from natkit.simulations.topology import CARRIER_NAT_INSIDE_IP, HOME_NAT_INSIDE_IP

ip = ipaddress.ip_address


class Deaf:
    """Sends what it is told; a core written before ICMP (no ``receive_icmp_error``)."""

    def __init__(self) -> None:
        self.outbox: list[Datagram] = []

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        pass

    def handle_timer(self, now: float) -> None:
        pass

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self.outbox = self.outbox, []
        return out

    def get_timer(self) -> float | None:
        return None

    def next_event(self) -> None:
        return None


class TtlSender(Deaf):
    """The same, keeping the ICMP errors it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: deque[tuple[IcmpError, int]] = deque()

    def receive_icmp_error(self, error: IcmpError, socket: int, now: float) -> None:
        self.errors.append((error, socket))


def test_each_nat_answers_from_its_inside_address() -> None:
    topo = standard_topology(NatConfig(), carrier=NatConfig())
    server = topo.bind_server()[0]
    core = TtlSender()
    driver = CoreDriver(core, topo.bind_client(3))
    target = topo.server_endpoints[0]
    core.outbox = [Datagram(f"ttl{t}".encode(), target, t - 1, ttl=t) for t in (1, 2, 3)]
    driver.flush()
    assert topo.loop.run_until_idle()

    (first, s1), (second, s2) = core.errors
    assert (s1, first.offender, first.kind) == (0, HOME_NAT_INSIDE_IP, IcmpKind.TIME_EXCEEDED)
    # The carrier NAT's error went to the home NAT's outside address and was
    # mapped back to the client; its source stays the carrier NAT's inside one.
    assert (s2, second.offender, second.kind) == (1, CARRIER_NAT_INSIDE_IP, IcmpKind.TIME_EXCEEDED)
    assert (first.icmp_type, first.icmp_code) == (11, 0)
    assert first.destination == second.destination == target
    assert (first.quoted, second.quoted) == (b"ttl1", b"ttl2")
    assert [(p.data, p.ttl) for p in server.received] == [(b"ttl3", 1)]
    assert topo.network.dropped[PacketDropReason.TTL_EXPIRED] == 2
    assert topo.network.icmp_sent == 2
    assert driver.icmp_received == 2


def test_a_nat_that_sends_no_time_exceeded_leaves_a_gap() -> None:
    topo = standard_topology(NatConfig(), carrier=NatConfig(sends_time_exceeded=False))
    topo.bind_server()
    core = TtlSender()
    driver = CoreDriver(core, topo.bind_client())
    core.outbox = [Datagram(b"x", topo.server_endpoints[0], ttl=2)]
    driver.flush()
    assert topo.loop.run_until_idle()
    assert not core.errors
    assert topo.network.dropped[PacketDropReason.TTL_EXPIRED] == 1
    assert topo.network.icmp_sent == 0


def test_without_a_nat_ttl_one_reaches_the_server_and_hops_cost_ttl() -> None:
    topo = standard_topology(None)
    server = topo.bind_server()[0]
    core = TtlSender()
    driver = CoreDriver(core, topo.bind_client())
    core.outbox = [Datagram(b"a", topo.server_endpoints[0], ttl=1)]
    driver.flush()
    topo.loop.run_until_idle()
    behind = standard_topology(NatConfig())
    far = behind.bind_server()[0]
    other = TtlSender()
    driver = CoreDriver(other, behind.bind_client())
    other.outbox = [Datagram(b"b", behind.server_endpoints[0])]
    driver.flush()
    behind.loop.run_until_idle()
    assert [(p.data, p.ttl) for p in server.received] == [(b"a", 1)]
    assert [(p.data, p.ttl) for p in far.received] == [(b"b", DEFAULT_TTL - 1)]


def test_a_firewall_takes_a_hop_but_has_no_address_to_answer_from() -> None:
    topo = standard_topology(FirewallConfig())
    topo.bind_server()
    core = TtlSender()
    driver = CoreDriver(core, topo.bind_client())
    core.outbox = [Datagram(b"x", topo.server_endpoints[0], ttl=1)]
    driver.flush()
    assert topo.loop.run_until_idle()
    assert not core.errors
    assert topo.network.dropped[PacketDropReason.TTL_EXPIRED] == 1


def test_an_error_after_the_mapping_expired_is_dropped() -> None:
    """RFC 5508 §7 REQ-4: no live mapping for the quoted datagram, no forwarding."""
    net = Network(random.Random(1))
    internet = net.add_realm("internet")
    carrier = net.add_realm("carrier", ["100.64.0.0/10"])
    home = net.add_realm("home", ["192.168.1.0/24"])
    slow = Link(OneWay(delay=0.5), OneWay(delay=0.5))
    net.add_nat(
        "cgn", NatConfig(), inside=carrier, outside=internet, public_ip="198.51.100.1",
        inside_ip="100.64.0.1", inside_link=slow,
    )  # fmt: skip
    home_nat = NatConfig(MappingBehavior.APDM, mapping_timeout=0.1)
    net.add_nat(
        "home", home_nat, inside=home, outside=carrier, public_ip="100.64.0.2",
        inside_ip="192.168.1.1",
    )  # fmt: skip
    client = net.add_host("client", home, ["192.168.1.2"])
    core = TtlSender()
    driver = CoreDriver(core, [client.bind()])
    core.outbox = [Datagram(b"x", Endpoint.parse("203.0.113.10:3478"), ttl=2)]
    driver.flush()
    assert net.loop.run_until_idle()
    assert not core.errors
    assert net.icmp_sent == 1
    assert net.dropped[PacketDropReason.NO_MAPPING] == 1


def test_a_core_without_the_hook_only_has_errors_counted() -> None:
    topo = standard_topology(NatConfig())
    topo.bind_server()
    core = Deaf()
    driver = CoreDriver(core, topo.bind_client())
    core.outbox = [Datagram(b"x", topo.server_endpoints[0], ttl=1)]
    driver.flush()
    assert topo.loop.run_until_idle()
    assert (driver.icmp_received, driver.icmp_ignored) == (0, 1)


def test_a_nat_inside_address_is_its_own() -> None:
    topo = standard_topology(NatConfig())
    core = TtlSender()
    driver = CoreDriver(core, topo.bind_client())
    core.outbox = [Datagram(b"x", Endpoint(ip("192.168.1.1"), 53))]
    driver.flush()
    assert topo.loop.run_until_idle()
    assert topo.network.dropped[PacketDropReason.NO_SOCKET] == 1
