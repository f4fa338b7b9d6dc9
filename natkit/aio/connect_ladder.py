"""Part 2 of a connect node: what the agent's relay and ladder outputs need from asyncio.

:class:`~natkit.aio.connect.Connection` holds one :class:`LadderDriver`
and calls it at four points (its start, every core event, every change of
its own candidates, its close); everything else is here and in the small
modules it wires together:

* :mod:`natkit.aio.connect_relay`: the TURN servers given to the agent
  (``add_relay_server``), their TCP/TLS stream slots;
* :mod:`natkit.aio.connect_birthday`: sockets bound and closed for the
  agent's birthday attempts (``BirthdaySocketsWanted`` / ``Released``);
* :mod:`natkit.aio.connect_report`: this node's traversal report
  (classifier, gatherer, options) and ``set_traversal_report``;
* :mod:`natkit.aio.connect_data`: the data path (``Connection.send``, the
  ``on_data`` callback, ``RelayedDataReceived``);
* :mod:`natkit.aio.connect_runner`: the runner that carries datagrams from
  stream slots and birthday sockets, and taps the data path.

ICMP errors reach the agent through the runner (the mux passes them on):
a TURN server that died is noticed after a few unanswered datagrams
instead of a whole transaction timeout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from natkit.aio.connect_birthday import BirthdaySockets
from natkit.aio.connect_data import DataHandler, DataRoutes, is_data
from natkit.aio.connect_relay import RelayOptions, RelayStreams, relay_servers
from natkit.aio.connect_report import LocalReportChanged, ReportKeeper, TraversalOptions
from natkit.aio.connect_runner import NodeRunner
from natkit.endpoint import Endpoint
from natkit.gather.candidates import Candidate, PortMapObservation
from natkit.ice import ConnectAgent
from natkit.ice.events import (
    BirthdaySocketsReleased,
    BirthdaySocketsWanted,
    PathSelected,
    RelayedDataReceived,
    RelayStreamIdle,
)
from natkit.probe.report import ClassificationReport

__all__ = ["LadderDriver"]


class LadderDriver:
    """Relays, birthday sockets, the traversal report and the data path of one node."""

    def __init__(
        self,
        agent: ConnectAgent,
        runner: NodeRunner,
        *,
        relay: RelayOptions,
        traversal: TraversalOptions,
        stun: Sequence[str],
        emit: Callable[[LocalReportChanged], None],
        on_data: DataHandler | None = None,
        local_address: str | None = None,
        dns_server: str | None = None,
    ) -> None:
        self.agent = agent
        self.runner = runner
        self.loop = runner.loop
        self.relay_options = relay
        self.traversal = traversal
        self.stun = tuple(stun)
        self.on_data = on_data
        self._local_address = local_address
        self._dns_server = dns_server
        self.streams = RelayStreams(
            agent, runner, tls_ca=relay.tls_ca, verify=relay.verify, tls=relay.tls
        )
        self.birthday = BirthdaySockets(agent, runner)
        self.routes = DataRoutes()
        self.report = ReportKeeper(
            agent, traversal, now=self.loop.time, transmit=runner.transmit, emit=emit
        )
        #: Why a relay server or the classification was left out.
        self.notes: list[str] = []
        #: Data callback exceptions (counted, never raised into natkit).
        self.data_errors = 0
        # TURN servers' endpoints: what comes from them is the agent's.
        self._servers: set[Endpoint] = set()
        runner.data_tap = self._tap

    async def start(self) -> None:
        """Give the agent its relays and first report; start classifying."""
        servers, notes = await relay_servers(
            self.relay_options, self.runner.local_endpoints, self.runner.indices.take
        )
        self.notes.extend(notes)
        now = self.loop.time()
        for server, resolved in servers:
            self._servers.add(server.endpoint)
            if server.transport.reliable:
                self.streams.add(server.socket, resolved)
            self.agent.add_relay_server(server, now)
        self.report.start(self._classifier())
        self.runner.transmit()

    def _classifier(self) -> Any:
        wanted = self.traversal.classify
        if wanted is None:
            wanted = bool(self.stun)
        if not wanted or not self.stun or self.traversal.classification is not None:
            return None
        # Imported now, before any peer is added: the import takes ~50 ms of the
        # loop, which in the middle of the first checks inflates their RTTs
        # enough to pick a slower first path (seen on connect-lan).
        from natkit.aio.classify import classify as run  # noqa: PLC0415

        servers, local, dns = self.stun, self._local_address, self._dns_server

        async def classify() -> ClassificationReport:
            return await run(servers, local_address=local, nat64=False, dns_server=dns)

        return classify

    # -- the node's hooks -----------------------------------------------------------------

    def handle(self, event: object) -> bool:
        """A core event; ``True``: consumed here (not for the consumer's events)."""
        if isinstance(event, RelayedDataReceived):
            peer = self.routes.relayed(event.relay, event.remote)
            if peer is None and self._learn():
                peer = self.routes.relayed(event.relay, event.remote)
            if peer is None:
                self.routes.unrouted += 1
            else:
                self._deliver(peer, event.data, True)
            return True
        if isinstance(event, PathSelected):
            self.routes.path_selected(event)
        elif isinstance(event, BirthdaySocketsWanted):
            self.birthday.wanted(event)
        elif isinstance(event, BirthdaySocketsReleased):
            self.birthday.released(event)
        elif isinstance(event, RelayStreamIdle):
            self.streams.idle(event.socket)
        return False

    def candidates_changed(
        self, port_mapping: PortMapObservation, candidates: Sequence[Candidate]
    ) -> None:
        """The gatherer's findings changed (the node's own candidates)."""
        self.report.gathered(port_mapping, [(c.kind, c.address) for c in candidates])

    def peer_removed(self, peer: Any) -> None:
        self.routes.forget(peer)

    def send(self, peer: Any, data: bytes) -> bool:
        """``data`` to ``peer`` over its selected path; ``False``: no path now."""
        now = self.loop.time()
        sent = self.agent.send_data(peer, data, now)
        self.runner.transmit(now)
        return sent

    async def close(self) -> None:
        """After the agent closed (deallocations written): streams, sockets, tasks."""
        await self.report.close()
        await self.birthday.close()
        await self.streams.close()

    # -- data ------------------------------------------------------------------------------

    def _tap(self, socket: int, data: bytes, remote: Endpoint, now: float) -> bool:
        if remote in self._servers or not is_data(data):
            return False  # the agent's (checks, our TURN server's ChannelData, probes)
        route = self.routes.direct(socket, remote)
        if route is None and self._learn(now):
            route = self.routes.direct(socket, remote)
        if route is None:
            return False
        self._deliver(route[0], data, route[1])
        return True

    def _learn(self, now: float | None = None) -> bool:
        """Look the valid pairs up (rate-limited); whether it ran."""
        now = self.loop.time() if now is None else now
        if not self.routes.due(now):
            return False
        agent = self.agent
        self.routes.learn(((peer, row) for peer in agent.peers for row in agent.pairs(peer)), now)
        return True

    def _deliver(self, peer: Any, data: bytes, relayed: bool) -> None:
        handler = self.on_data
        if handler is None:
            return
        try:
            handler(peer, data, relayed)
        except Exception as exc:  # the consumer's bug must not stop the node
            self.data_errors += 1
            with contextlib.suppress(Exception):
                self.loop.call_exception_handler(
                    {"message": "natkit.connect: on_data raised", "exception": exc}
                )
