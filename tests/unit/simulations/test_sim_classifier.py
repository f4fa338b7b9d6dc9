"""End to end: natkit's NAT classifier and STUN server, unchanged, against simulated NATs.

This shows the simulator does its job. The classifier's own tests own its
behaviour; if its constructor changes, adapt ``classify`` below.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from simulations import (
    CoreDriver,
    FilteringBehavior,
    FirewallConfig,
    MappingBehavior,
    NatConfig,
    PortAllocation,
    standard_topology,
)

classifier_mod = pytest.importorskip("natkit.probe.classifier")
probe_events = pytest.importorskip("natkit.probe.events")
stun_server = pytest.importorskip("natkit.stun.server")


def classify(
    nat: NatConfig | FirewallConfig | None,
    *,
    carrier: NatConfig | None = None,
    loss: float = 0.0,
    seed: int = 1,
) -> tuple[Any, float]:
    """Run one classification; returns the report and the virtual time it took."""
    topo = standard_topology(nat, carrier=carrier, delay=0.01, loss=loss, seed=seed)
    server = stun_server.StunServer(stun_server.ServerConfig(topo.server_endpoints))
    CoreDriver(server, topo.bind_server())
    config = classifier_mod.ClassifierConfig()
    sockets = topo.bind_client(config.sockets_needed)
    core = classifier_mod.NatClassifier(
        [topo.server_endpoints[0]],
        [s.local for s in sockets],
        topo.loop.now,
        config,
        random.Random(seed),
    )

    def on_event(event: object) -> None:
        # TCP is not simulated and nothing in these topologies blocks it:
        # answer the classifier's TCP check as the server would, one RTT later
        # (the TCP mapped address is not modelled; the local one stands in).
        if isinstance(event, probe_events.TcpCheckRequested):
            tcp = stun_server.Transport.TCP
            reply = server.handle(event.request, sockets[0].local, 0, tcp)
            data = reply.data if reply is not None else None
            driver.invoke_later(0.02, lambda now: core.tcp_check_completed(data, now))

    driver = CoreDriver(core, sockets, on_event=on_event)
    driver.flush()  # the classifier queues its first requests when constructed

    def done() -> bool:
        return any(isinstance(e, probe_events.ClassificationCompleted) for e in driver.events)

    assert topo.loop.run_until(done, timeout=30.0)
    (completed,) = [e for e in driver.events if isinstance(e, probe_events.ClassificationCompleted)]
    return completed.report, topo.loop.now


@pytest.mark.parametrize(
    ("mapping", "filtering"),
    list(itertools.product(MappingBehavior, FilteringBehavior)),
    ids=lambda b: b.name,
)
def test_classifier_names_every_rfc4787_combination_despite_loss(
    mapping: MappingBehavior, filtering: FilteringBehavior
) -> None:
    report, took = classify(NatConfig(mapping, filtering, PortAllocation.RANDOM), loss=0.05)
    assert report.mapping.name == mapping.name
    assert report.filtering.name == filtering.name
    assert took < 5.0


@pytest.mark.parametrize("allocation", list(PortAllocation), ids=lambda a: a.name)
def test_classifier_sees_port_allocation(allocation: PortAllocation) -> None:
    nat = NatConfig(MappingBehavior.APDM, allocation=allocation, sequential_delta=2)
    report, _ = classify(nat)
    assert report.port_allocation.name == allocation.name


@pytest.mark.parametrize("hairpinning", [True, False])
def test_classifier_sees_hairpinning(hairpinning: bool) -> None:
    report, _ = classify(NatConfig(filtering=FilteringBehavior.EIF, hairpinning=hairpinning))
    assert report.hairpin is hairpinning


def test_classifier_on_special_topologies() -> None:
    double, _ = classify(NatConfig.full_cone(), carrier=NatConfig.symmetric())
    assert double.mapping.name == "APDM"
    firewalled, _ = classify(FirewallConfig())
    assert firewalled.nat_type == "no NAT, firewalled"
    open_internet, _ = classify(None)
    assert open_internet.nat_type == "open internet"
    blocked, _ = classify(NatConfig(udp_blocked=True))
    assert blocked.udp_blocked
