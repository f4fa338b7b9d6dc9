"""The core driver: timers, flushing, events, misuse; and natkit's own STUN cores."""

from __future__ import annotations

import functools
import math
import random

import pytest
from sim_cores import Prober, Reflector, Replied, TimedOut

from natkit.endpoint import Endpoint
from natkit.sansio import Datagram
from natkit.simulations import (
    CoreDriver,
    NatConfig,
    SimulationError,
    TraceKind,
    standard_topology,
)
from natkit.simulations.topology import NAT_PUBLIC_IP

BLACK_HOLE = Endpoint.of("203.0.113.10", 9)  # held by the server host, no socket there


def test_timer_drives_retransmission_until_timeout() -> None:
    topo = standard_topology(trace=True)
    prober = Prober(interval=1.0, tries=3)
    driver = CoreDriver(prober, topo.bind_client())
    driver.invoke(lambda now: prober.probe(now, BLACK_HOLE))
    assert topo.loop.run_until_idle()
    assert driver.events == [TimedOut(0, 3)]
    assert topo.network.trace is not None
    sends = [e.time for e in topo.network.trace if e.kind is TraceKind.SENT]
    assert sends == [0.0, 1.0, 2.0]
    assert topo.loop.now == 3.0
    assert driver.sent == 3


def test_retransmission_rides_out_loss() -> None:
    topo = standard_topology(NatConfig(), loss=0.5, seed=2)
    server = CoreDriver(
        Reflector(), topo.server.bind_all([(topo.server_endpoints[0].address, 3478)])
    )
    prober = Prober(interval=0.3, tries=10)
    client = CoreDriver(prober, topo.bind_client())
    client.invoke(lambda now: prober.probe(now, server.endpoints[0]))
    assert topo.loop.run_until(lambda: bool(client.events), timeout=10.0)
    (event,) = client.events
    assert isinstance(event, Replied)
    assert event.time > 0.3  # at least one try was lost with this seed
    assert client.sent >= 2  # it took a retransmission


def test_on_event_lets_the_test_answer_a_core_in_virtual_time() -> None:
    topo = standard_topology(delay=0.01)
    server = CoreDriver(Reflector(), [topo.server.bind(port=3478)])
    prober = Prober()

    def again(event: Replied | TimedOut) -> None:
        # Each reply triggers the next probe 1 s later, three in all.
        if isinstance(event, Replied) and event.token < 2:
            client.invoke_later(1.0, lambda now: prober.probe(now, server.endpoints[0]))

    client: CoreDriver[Replied | TimedOut] = CoreDriver(prober, topo.bind_client(), on_event=again)
    client.invoke(lambda now: prober.probe(now, server.endpoints[0]))
    assert topo.loop.run_until_idle()
    assert [(e.token, round(e.time, 6)) for e in client.events if isinstance(e, Replied)] == [
        (0, 0.02),
        (1, 1.04),
        (2, 2.06),
    ]


class Alarm:
    """A core whose deadline the test sets; it records when it fired."""

    def __init__(self, strict: bool = False) -> None:
        self.deadline: float | None = None
        self.fired: list[float] = []
        # Strict: only consume a deadline strictly in the past (a float-rounding bug).
        self.strict = strict
        self.stuck_forever = False

    def set(self, deadline: float | None) -> None:
        self.deadline = deadline

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        pass

    def handle_timer(self, now: float) -> None:
        assert self.deadline is not None
        if self.stuck_forever or (self.strict and not now > self.deadline):
            return
        self.fired.append(now)
        self.deadline = None

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        return []

    def get_timer(self) -> float | None:
        return self.deadline

    def next_event(self) -> None:
        return None


def test_deadline_moved_earlier_or_later_fires_only_when_due() -> None:
    topo = standard_topology()
    alarm = Alarm()
    driver = CoreDriver(alarm, topo.bind_client())
    driver.invoke(lambda now: alarm.set(10.0))
    driver.invoke_later(1.0, lambda now: alarm.set(2.0))  # earlier
    driver.invoke_later(1.5, lambda now: alarm.set(5.0))  # later again
    assert topo.loop.run_until_idle()
    assert alarm.fired == [5.0]


def test_a_deadline_in_the_past_fires_at_once() -> None:
    topo = standard_topology()
    topo.loop.run_until(7.0)
    alarm = Alarm()
    driver = CoreDriver(alarm, topo.bind_client())
    driver.invoke(lambda now: alarm.set(3.0))
    topo.loop.run_until_idle()
    assert alarm.fired == [7.0]


def test_a_core_that_rounds_its_deadline_gets_nudged_by_an_ulp() -> None:
    topo = standard_topology()
    alarm = Alarm(strict=True)
    driver = CoreDriver(alarm, topo.bind_client())
    driver.invoke(lambda now: alarm.set(0.3))
    topo.loop.run_until_idle()
    assert alarm.fired == [math.nextafter(0.3, 1.0)]


def test_a_core_that_never_consumes_its_deadline_is_reported() -> None:
    topo = standard_topology()
    alarm = Alarm()
    alarm.stuck_forever = True
    driver = CoreDriver(alarm, topo.bind_client())
    driver.invoke(lambda now: alarm.set(1.0))
    with pytest.raises(SimulationError, match=r"Alarm.handle_timer\(1.0\d*\) keeps its deadline"):
        topo.loop.run_until_idle()


def test_close_stops_timers_and_delivery() -> None:
    topo = standard_topology()
    alarm = Alarm()
    driver = CoreDriver(alarm, topo.bind_client())
    driver.invoke(lambda now: alarm.set(1.0))
    driver.close()
    topo.loop.run_until_idle()
    assert alarm.fired == []
    assert driver.sockets[0].handler is None


def test_core_misuse_is_reported() -> None:
    topo = standard_topology()
    sockets = topo.bind_client()
    prober = Prober()
    driver = CoreDriver(prober, sockets)
    with pytest.raises(SimulationError, match="already driven"):
        CoreDriver(Prober(), sockets)
    with pytest.raises(SimulationError, match="core sent from socket 3, it has 1"):
        driver.invoke(lambda now: prober.send_raw(b"x", BLACK_HOLE, socket=3))
    with pytest.raises(SimulationError, match="at least one socket"):
        CoreDriver(Prober(), [])


# -- natkit's real STUN cores, driven unchanged -------------------------------------------------


def test_natkit_stun_client_and_server_through_a_symmetric_nat() -> None:
    server_mod = pytest.importorskip("natkit.stun.server")
    client_mod = pytest.importorskip("natkit.stun.client")
    codec = pytest.importorskip("natkit.stun.codec")
    attributes = pytest.importorskip("natkit.stun.attributes")
    constants = pytest.importorskip("natkit.stun.constants")
    events = pytest.importorskip("natkit.stun.events")

    topo = standard_topology(NatConfig.symmetric(), delay=0.01, seed=4)
    server = server_mod.StunServer(server_mod.ServerConfig(topo.server_endpoints))
    CoreDriver(server, topo.bind_server())
    client = client_mod.StunClient(require_matching_source=False, rng=random.Random(0))
    driver = CoreDriver(client, topo.bind_client())

    def send(request: object, remote: Endpoint, now: float) -> None:
        client.send_request(request, remote, now)

    a1p1, _, a2p1, _ = topo.server_endpoints
    change_both = attributes.ChangeRequest(
        constants.ChangeFlags.CHANGE_IP | constants.ChangeFlags.CHANGE_PORT
    )
    for remote, attrs in [(a1p1, ()), (a2p1, ()), (a1p1, (change_both,))]:
        request = codec.binding_request(client.new_transaction_id(), *attrs)
        driver.invoke(functools.partial(send, request, remote))
    topo.loop.run_until(lambda: len(driver.events) == 3, timeout=60.0)

    answered = [e for e in driver.events if isinstance(e, events.ResponseReceived)]
    timed_out = [e for e in driver.events if isinstance(e, events.TransactionTimedOut)]
    assert len(answered) == 2  # the changed-address reply is filtered by the APDF NAT
    assert len(timed_out) == 1
    mapped = [e.response.xor_mapped_address for e in answered]
    assert all(m.address == NAT_PUBLIC_IP for m in mapped)
    assert mapped[0] != mapped[1]  # APDM: a new mapping per destination
    assert answered[0].rtt == pytest.approx(0.02)
