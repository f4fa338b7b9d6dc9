"""Local candidates for a running connect node, trickled as they are found.

``natkit candidates`` gathers once and reports at the end
(:func:`natkit.aio.candidates.gather_candidates`); a connect node needs the
same candidates *as they arrive*, from the sockets its checks already use,
and again later. This module runs the same pieces (host addresses, the
sans-IO :class:`~natkit.gather.reflexive.ReflexiveGatherer`, the NAT64
discovery, the port mapper, static endpoints) and turns what they found
into candidates with the same pure function,
:func:`~natkit.gather.plan.assemble_candidates`, after each
finding. What changed since the last call goes to ``on_change(added,
removed)`` (the node adds them to its agent, which trickles them).

Order, with the reason:

1. host and static candidates, at once (no round trip);
2. at once: the port mapper; a round of STUN to every literal server from
   the node's own sockets (the gatherer is a helper of the node's
   :class:`~natkit.ice.mux.ConnectMux`, so the mappings learnt are the
   sockets' own); NAT64 discovery and server names;
3. the NAT64 paths and named servers join the round as soon as DNS answered.

:meth:`TrickleGathering.regather` runs another STUN round (after a path was
lost or the network changed): a NAT that rebinds a socket to a new port is
only recovered by learning the new mapping and trickling it. A server that
now reports another address for a socket replaces its old observation, so
the old candidate is removed; a server that stays silent keeps its last one
(silence does not prove that a mapping moved). Rounds never overlap: a
request during a round runs one more round after it. Only UDP is asked (a
TCP mapping dies with its connection and carries no checks).

:meth:`TrickleGathering.check_interfaces` compares the host addresses with
the last list and says whether they changed (the node then calls the
agent's ``network_changed`` and re-gathers).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from functools import partial
from typing import Any

import dns.asyncresolver
import dns.resolver

from natkit.aio.candidates import GatherOptions, PortMapProvider
from natkit.aio.dns import dns_lookup, make_resolver, probe_nat64, server_specs
from natkit.aio.interfaces import list_interface_addresses, source_address
from natkit.endpoint import Endpoint, IPAddress
from natkit.gather.candidates import (
    Candidate,
    CandidateKind,
    CandidateTransport,
    PortMapObservation,
    PortMapStatus,
    ServerObservation,
    ServerOutcome,
)
from natkit.gather.host import (
    InterfaceAddress,
    detect_clat,
    select_host_addresses,
)
from natkit.gather.plan import (
    ServerSpec,
    TargetPlan,
    assemble_candidates,
    host_candidates,
    plan_targets,
)
from natkit.gather.reflexive import (
    GatheringCompleted,
    ReflexiveAddressFound,
    ReflexiveGatherer,
    ServerFailed,
    StunTarget,
)
from natkit.ice.mux import ConnectMux
from natkit.nat64 import Nat64Discovery, Nat64Status
from natkit.stun.uri import ParsedServer, parse_server

#: ``on_change(added, removed)``.
ChangeHandler = Callable[[Sequence[Candidate], Sequence[Candidate]], None]


class StunFailure(Enum):
    """Why a ``stun`` server gave a node no server-reflexive candidate."""

    #: Its name does not resolve (or no resolver is configured).
    UNRESOLVED = "unresolved"
    #: No socket of the node can reach it (no route, no socket of its family,
    #: a ``stuns:`` server: the node asks over UDP only).
    NO_ROUTE = "no_route"
    #: No answer before the retransmissions ran out.
    TIMED_OUT = ServerOutcome.TIMED_OUT.value
    #: No answer while other servers answered (the round stopped waiting).
    CUT_OFF = ServerOutcome.CUT_OFF.value
    #: It answered with an error response.
    ERROR_RESPONSE = ServerOutcome.ERROR_RESPONSE.value
    #: It answered without a mapped address.
    NO_ADDRESS = ServerOutcome.NO_ADDRESS.value
    #: It could not be reached at all.
    UNREACHABLE = ServerOutcome.UNREACHABLE.value


@dataclass(frozen=True, slots=True)
class StunServerFailed:
    """A ``stun`` server gave no address (reported once until it answers
    again); the node goes on with its other candidates and asks it again on
    every later round."""

    #: The server as the user named it.
    server: str
    #: Why.
    reason: StunFailure
    #: A sentence (the resolver's or the gatherer's).
    detail: str
    #: The address asked (``None``: none, e.g. the name did not resolve).
    address: Endpoint | None = None
    #: The node's socket that asked (``None``: none did).
    local: Endpoint | None = None


@dataclass(frozen=True, slots=True)
class StunServerAnswered:
    """A ``stun`` server reported failed answered again (from ``local``)."""

    server: str
    address: Endpoint
    local: Endpoint | None


StunServerEvent = StunServerFailed | StunServerAnswered
#: ``on_server(event)``: a server's problems and recoveries.
ServerHandler = Callable[[StunServerEvent], None]
#: A failing server is known by its name, the address asked and the socket asking.
_FailureKey = tuple[str, Endpoint | None, Endpoint | None]

_REFLEXIVE = (CandidateKind.SRFLX, CandidateKind.NAT64)
#: Key of one server's observation of one socket on one path.
ObservationKey = tuple[str, Endpoint | None, Endpoint, str]


def _bound_source(bound: IPAddress, destination: IPAddress) -> IPAddress | None:
    """A socket bound to one address sends from it (to its own family only)."""
    return bound if bound.version == destination.version else None


def _key(observation: ServerObservation) -> ObservationKey:
    return (observation.server, observation.base, observation.destination, observation.path.value)


def _identity(candidate: Candidate) -> tuple[object, ...]:
    return (candidate.kind, candidate.address, candidate.transport)


class TrickleGathering:
    """Gathers the candidates of a node's sockets and reports every change
    (see the module doc). Call :meth:`start` once, :meth:`close` at the end."""

    def __init__(
        self,
        mux: ConnectMux,
        transmit: Callable[[], None],
        sockets: Sequence[Endpoint],
        *,
        servers: Sequence[str],
        options: GatherOptions,
        on_change: ChangeHandler,
        on_server: ServerHandler | None = None,
        port_mapper: PortMapProvider | None = None,
        interfaces: Callable[[], Sequence[InterfaceAddress]] = list_interface_addresses,
        resolver: dns.asyncresolver.Resolver | None = None,
        source_for: Callable[[IPAddress], IPAddress | None] = source_address,
    ) -> None:
        self.mux = mux
        #: Sends what the mux's cores queued (the node's ``runner.transmit``).
        self._transmit = transmit
        self.sockets = tuple(sockets)
        self.parsed: tuple[ParsedServer, ...] = tuple(parse_server(text) for text in servers)
        self.options = replace(options, tcp=False)
        self.on_change = on_change
        self.on_server = on_server
        self.port_mapper = port_mapper
        self._interfaces = interfaces
        self._resolver = resolver
        self._source_for = source_for
        self.loop = asyncio.get_running_loop()
        #: Every server's latest answer (or failure), by server, socket and path.
        self.observations: dict[ObservationKey, ServerObservation] = {}
        self.port_mapping = PortMapObservation(PortMapStatus.NOT_TESTED)
        self.nat64: Nat64Discovery | None = None
        #: Why a server could not be asked (names that do not resolve, ...).
        self.notes: list[str] = []
        #: Servers failing now (reported through ``on_server``), until they answer.
        self.failing: dict[_FailureKey, StunServerFailed] = {}
        self.host: tuple[Candidate, ...] = ()
        self._addresses: tuple[InterfaceAddress, ...] = ()
        self._published: dict[tuple[object, ...], Candidate] = {}
        self._specs: list[ServerSpec] | None = None
        self._round: ReflexiveGatherer | None = None
        self._round_done: asyncio.Event | None = None
        self._again = False
        #: STUN rounds run (the first one included).
        self.rounds = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Host and static candidates now; the rest in the background."""
        self._addresses = tuple(self._interfaces())
        self.host = self._host_candidates(self._addresses)
        self._publish()
        if self.port_mapper is not None:
            self._spawn(self._map_port())
        self._spawn(self._first_round())

    async def close(self) -> None:
        """Stop every task and release the port mapping; idempotent."""
        if self._closed:
            return
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._end_round()
        if self.port_mapper is not None:
            await self.port_mapper.release()

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        """What is published now, highest priority first."""
        return tuple(sorted(self._published.values(), key=lambda c: -c.priority))

    @property
    def gathering(self) -> bool:
        """A STUN round is running."""
        return self._round is not None

    # -- requests from the node -------------------------------------------------------------

    def regather(self) -> None:
        """Ask the STUN servers again (a round now, or one after the running one)."""
        if self._closed or not self.parsed:
            return
        if self._round is not None or self._specs is None:
            self._again = True
            return
        self._spawn(self._run_round(self._specs, self._prefixes()))

    def check_interfaces(self) -> bool:
        """Re-read the interface addresses; publish the host candidates that
        changed and say whether any did."""
        addresses = tuple(self._interfaces())
        if set(addresses) == set(self._addresses):
            return False
        self._addresses = addresses
        self.host = self._host_candidates(addresses)
        self._publish()
        return True

    def helper_event(self, event: object) -> None:
        """An event of this gathering's helper core (the node routes them here)."""
        if isinstance(event, ReflexiveAddressFound | ServerFailed):
            self._report(event.observation)
            self._observed(event.observation)
        elif isinstance(event, GatheringCompleted):
            for observation in event.observations:
                self._observed(observation)
            self._end_round()

    # -- candidates ----------------------------------------------------------------------------

    def _host_candidates(self, addresses: Sequence[InterfaceAddress]) -> tuple[Candidate, ...]:
        specific = [s for s in self.sockets if not s.address.is_unspecified]
        if specific:
            # A socket bound to one address is reachable at that address only,
            # listed or not (127.0.0.2 is local without being an interface's).
            known = {a.address: a for a in addresses}
            addresses = [
                known.get(s.address)
                or InterfaceAddress("bound", s.address, s.address.max_prefixlen)
                for s in specific
            ]
        usable, _ = select_host_addresses(addresses, self.options.host, detect_clat(addresses))
        if not specific:
            return host_candidates(usable, self.sockets)
        return tuple(
            candidate
            for item in usable
            for candidate in host_candidates(
                [item], [s for s in specific if s.address == item.address]
            )
        )

    def _publish(self) -> None:
        """Assemble every candidate from what is known; report the difference."""
        observations = [o for o in self.observations.values() if o.answered]
        assembled, _ = assemble_candidates(
            self.host, observations, self.port_mapping, self.options.statics, self.sockets
        )
        wanted = {_identity(c): c for c in assembled if c.transport is CandidateTransport.UDP}
        removed = [c for key, c in self._published.items() if key not in wanted]
        added = [c for key, c in wanted.items() if key not in self._published]
        self._published = wanted
        if added or removed:
            self.on_change(added, removed)

    def _report(self, observation: ServerObservation) -> None:
        """Tell ``on_server`` when a server starts failing or answers again."""
        key = (observation.server, observation.address, observation.base)
        if observation.answered:
            if self.failing.pop(key, None) is not None:
                self._server_event(
                    StunServerAnswered(observation.server, observation.address, observation.base)
                )
            return
        outcome = observation.outcome
        # An "answer" without a usable mapped address is no address.
        failure = (
            StunFailure.NO_ADDRESS
            if outcome is ServerOutcome.ANSWERED
            else StunFailure(outcome.value)
        )
        self._failed(
            key,
            StunServerFailed(
                observation.server,
                failure,
                observation.detail,
                observation.address,
                observation.base,
            ),
        )

    def _failed(self, key: _FailureKey, event: StunServerFailed) -> None:
        if key not in self.failing:
            self.failing[key] = event
            self._server_event(event)

    def _server_event(self, event: StunServerEvent) -> None:
        if self.on_server is not None and not self._closed:
            self.on_server(event)

    def _observed(self, observation: ServerObservation) -> None:
        key = _key(observation)
        previous = self.observations.get(key)
        if observation.answered or previous is None or not previous.answered:
            self.observations[key] = observation
            self._publish()

    # -- port mapping ----------------------------------------------------------------------------

    async def _map_port(self) -> None:
        assert self.port_mapper is not None
        v4 = next((s for s in self.sockets if s.address.version == 4), None)
        if v4 is None:
            self.port_mapping = PortMapObservation(PortMapStatus.NOT_TESTED, detail="no IPv4")
            return
        self.port_mapping = await self.port_mapper.map_port(v4)
        self._publish()

    # -- STUN rounds ---------------------------------------------------------------------------

    def _prefixes(self) -> tuple[ipaddress.IPv6Network, ...]:
        return () if self.nat64 is None else tuple(self.nat64.prefixes)

    async def _first_round(self) -> None:
        if not self.parsed:
            return
        literal = [
            ServerSpec(p.label, Endpoint(address, p.port), p.tls)
            for p in self.parsed
            if (address := p.literal) is not None
        ]
        done = self._begin_round(self._plan(literal, ()))
        # NAT64 discovery and names meanwhile; their targets join the round.
        resolver = self._resolver
        if resolver is None:
            with contextlib.suppress(dns.resolver.NoResolverConfiguration):
                resolver = make_resolver(self.options.dns_server, self.options.dns_timeout)
        lookup = None if resolver is None else dns_lookup(resolver)
        names = [p for p in self.parsed if p.literal is None]
        discovery = self.loop.create_task(self._nat64(resolver))
        try:
            resolved = await asyncio.gather(*(server_specs(p, lookup) for p in names))
            await discovery
        finally:
            discovery.cancel()
        specs = list(literal)
        for server, (found, problem) in zip(names, resolved, strict=True):
            specs.extend(found)
            if problem:
                self.notes.append(problem)
                detail = problem.removeprefix(f"{server.label}: ")
                failure = StunServerFailed(server.label, StunFailure.UNRESOLVED, detail)
                self._failed((server.label, None, None), failure)
        self._specs = specs
        plan = self._plan(specs, self._prefixes())
        self.notes.extend(plan.skipped)
        self._unasked(specs, plan)
        core = self._round
        if core is not None:
            now = self.loop.time()
            for target in plan.udp:
                core.add_target(target, now)
            core.no_more_targets(now)
            self._transmit()
        await done.wait()
        self._after_round()

    def _unasked(self, specs: Sequence[ServerSpec], plan: TargetPlan) -> None:
        """Report the servers no socket of this node will ask."""
        asked = {target.label for target in plan.udp}
        for spec in specs:
            if spec.label in asked:
                continue
            prefix = f"{spec.label}: "
            why = [n.removeprefix(prefix) for n in plan.skipped if n.startswith(prefix)]
            detail = "; ".join(dict.fromkeys(why)) or "no socket can reach it"
            if spec.tls:
                detail = "a stuns: (TLS) server, and the node asks over UDP only"
            failure = StunServerFailed(spec.label, StunFailure.NO_ROUTE, detail, spec.address)
            self._failed((spec.label, spec.address, None), failure)

    async def _nat64(self, resolver: dns.asyncresolver.Resolver | None) -> None:
        if not self.options.nat64:
            self.nat64 = Nat64Discovery(Nat64Status.NOT_TESTED, reason="switched off")
            return
        self.nat64 = await probe_nat64(
            resolver,
            dns_server=self.options.dns_server,
            timeout=self.options.dns_timeout,
            interfaces=self._addresses,
        )

    def _plan(
        self, specs: Sequence[ServerSpec], prefixes: Sequence[ipaddress.IPv6Network]
    ) -> TargetPlan:
        """Every socket asks every server (one plan per socket: a socket bound
        to one address of a multihomed host has its own mapping)."""
        udp: list[StunTarget] = []
        skipped: list[str] = []
        for index, local in enumerate(self.sockets):
            source_for = self._source_for
            if not local.address.is_unspecified:
                source_for = partial(_bound_source, local.address)
            plan = plan_targets(specs, [local], prefixes, source_for, tcp=False)
            udp.extend(replace(target, socket=index) for target in plan.udp)
            skipped.extend(plan.skipped)
        return TargetPlan(tuple(udp), (), tuple(dict.fromkeys(skipped)))

    async def _run_round(
        self, specs: Sequence[ServerSpec], prefixes: Sequence[ipaddress.IPv6Network]
    ) -> None:
        core_done = self._begin_round(self._plan(specs, prefixes), complete=True)
        await core_done.wait()
        self._after_round()

    def _begin_round(self, plan: TargetPlan, *, complete: bool = False) -> asyncio.Event:
        now = self.loop.time()
        core = ReflexiveGatherer(self.sockets, now, self.options.gatherer)
        for target in plan.udp:
            core.add_target(target, now)
        if complete:
            core.no_more_targets(now)
        self._round = core
        self._round_done = asyncio.Event()
        self.rounds += 1
        self.mux.add_helper(core, now)
        self._transmit()
        return self._round_done

    def _end_round(self) -> None:
        core, self._round = self._round, None
        if core is not None and core in self.mux.helpers:
            self.mux.remove_helper(core)
        if self._round_done is not None:
            self._round_done.set()

    def _after_round(self) -> None:
        if self._again and not self._closed and self._specs is not None:
            self._again = False
            self._spawn(self._run_round(self._specs, self._prefixes()))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
