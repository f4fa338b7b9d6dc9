"""Run natkit's NAT classifier, unchanged, against a simulated network.

Used by the classifier's unit tests and by soak scripts: one call builds the
standard topology, a STUN server (RFC 5780, plain RFC 5389, or a broken one
that ignores CHANGE-REQUEST), runs :class:`NatClassifier` to completion on
the virtual clock and returns the report with what it cost.
"""

from __future__ import annotations

import functools
import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from natkit.endpoint import Endpoint
from natkit.probe.classifier import ClassifierConfig, NatClassifier
from natkit.probe.events import ClassificationCompleted, ClassifierEvent
from natkit.probe.report import ClassificationReport
from natkit.sansio import StreamRequest, StreamResult
from natkit.simulations.driver import CoreDriver
from natkit.simulations.firewall import FirewallConfig
from natkit.simulations.link import Link
from natkit.simulations.nat import NatConfig
from natkit.simulations.topology import CARRIER_PREFIX, standard_topology
from natkit.stun.constants import ChangeFlags
from natkit.stun.server import ServerConfig, StunServer, Transport

#: The classifier's defaults without the hop probe: what a run without a
#: ``config`` uses (see :func:`simulate_classification`).
NO_HOP_PROBE = ClassifierConfig(hop_limit=0)

#: Address of the optional second (plain RFC 5389) server.
SECOND_SERVER = Endpoint.parse("203.0.113.20:3478")


class ServerKind(Enum):
    RFC5780 = "rfc5780"
    #: One address, one port: no OTHER-ADDRESS, 420 to CHANGE-REQUEST.
    BASIC = "basic"
    #: Advertises OTHER-ADDRESS but answers change requests from where they
    #: arrived, like servers behind a single-address load balancer.
    IGNORES_CHANGE_REQUEST = "ignores-change-request"


class _ChangeIgnoringServer(StunServer):
    def _source_socket(self, socket: int, flags: ChangeFlags) -> int:
        return socket


@dataclass(frozen=True, slots=True)
class SimulatedRun:
    report: ClassificationReport
    #: Virtual seconds from start to report.
    seconds: float
    #: Datagrams the classifier sent.
    datagrams: int


def simulate_classification(
    nat: NatConfig | FirewallConfig | None,
    *,
    carrier: NatConfig | None = None,
    carrier_prefix: ipaddress.IPv4Network = CARRIER_PREFIX,
    server: ServerKind = ServerKind.RFC5780,
    second_server: bool = False,
    tcp_reachable: bool = True,
    loss: float = 0.0,
    delay: float = 0.01,
    jitter: float = 0.0,
    seed: int = 1,
    config: ClassifierConfig | None = None,
    link_changes: Sequence[tuple[float, Link]] = (),
) -> SimulatedRun:
    """Classify the client of :func:`standard_topology` (see module doc).

    ``loss`` and ``delay`` are per direction on the client's access link.
    TCP is not simulated: the TCP check is answered by the server core one
    round trip later when ``tcp_reachable``, and fails otherwise. Without a
    ``config`` the hop probe is off (:data:`NO_HOP_PROBE`); pass
    ``ClassifierConfig()`` for the classifier's real defaults.
    ``link_changes``: ``(t, link)`` pairs; ``t`` virtual seconds after the
    start the client's access link becomes ``link`` (a datagram keeps the
    delay it got when it left), e.g. an RTT that jumps and recovers.
    """
    topo = standard_topology(
        nat,
        carrier=carrier,
        carrier_prefix=carrier_prefix,
        delay=delay,
        jitter=jitter,
        loss=loss,
        seed=seed,
    )
    endpoints = topo.server_endpoints
    if server is ServerKind.BASIC:
        stun = StunServer(ServerConfig((endpoints[0],)))
        CoreDriver(stun, topo.bind_server()[:1])
    else:
        cls = _ChangeIgnoringServer if server is ServerKind.IGNORES_CHANGE_REQUEST else StunServer
        stun = cls(ServerConfig(endpoints))
        CoreDriver(stun, topo.bind_server())
    servers = [endpoints[0]]
    if second_server:
        host = topo.network.add_host("stun2", topo.internet, [SECOND_SERVER.address])
        extra = StunServer(ServerConfig((SECOND_SERVER,)))
        CoreDriver(extra, host.bind_all([(SECOND_SERVER.address, SECOND_SERVER.port)]))
        servers.append(SECOND_SERVER)

    # Seeded runs keep the packet traces they had before the hop probe
    # existed (its datagrams would take draws from the network's RNG);
    # ask for it with a config that has ``hop_limit``.
    config = config or NO_HOP_PROBE
    sockets = topo.bind_client(config.sockets_needed)
    start = topo.loop.now
    interface = topo.client.interface
    for at, link in link_changes:
        topo.loop.call_at(start + at, functools.partial(setattr, interface, "link"), link)
    core = NatClassifier(servers, [s.local for s in sockets], start, config, random.Random(seed))

    def tcp(request: StreamRequest) -> tuple[float, StreamResult]:
        if not tcp_reachable:
            return request.timeout, StreamResult(None, detail="TCP unreachable")
        reply = stun.handle(request.payload, sockets[0].local, 0, Transport.TCP)
        data = None if reply is None else reply.data
        return 2 * delay, StreamResult(data, sockets[0].local)

    driver: CoreDriver[ClassifierEvent] = CoreDriver(core, sockets, streams=tcp)
    driver.flush()

    def done() -> bool:
        return core.report is not None

    topo.loop.run_until(done, timeout=config.timeout + 5)
    report = core.report
    if report is None:
        raise AssertionError("the classifier did not finish before its own timeout")
    completed = [e for e in driver.events if isinstance(e, ClassificationCompleted)]
    assert len(completed) == 1
    return SimulatedRun(report, topo.loop.now - start, driver.sent)
