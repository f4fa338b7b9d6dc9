"""Connect to peers by public key: the connect core on asyncio sockets.

:func:`connect` is the library's entry point, in the manner of
``aioquic.asyncio.connect``: an async context manager that starts a
:class:`Connection` and closes it on the way out::

    import asyncio
    from natkit.aio.connect import PathSelected, connect


    async def main() -> None:
        async with connect(
            "node.key",                                  # or a PrivateKey
            ["Jg2A0fU3bXb5xJ1pF9tYbQyF0q2m6wYb8pV1cZ0h3X8="],  # peers' public keys
            rendezvous="203.0.113.5:7000",               # or channel=any SignalChannel
            stun=["203.0.113.10", "stun.example.org"],
        ) as connection:
            async for event in connection.events():
                if isinstance(event, PathSelected):
                    print(event.peer, event.kind.value, event.local, "->", event.remote)


    asyncio.run(main())

What a :class:`Connection` runs
-------------------------------
* **Sockets**: one UDP socket per family on the wildcard address, or one
  per address of ``local_addresses`` (a multihomed host: each address is
  its own base, so each uplink makes its own pairs, and answers leave from
  the address they were sent to), on ``port`` (0: any free one, the same for
  all when it can), served by one :class:`~natkit.aio.driver.CoreRunner`.
* **The core**: a :class:`~natkit.ice.ConnectAgent` (peers are
  :class:`~natkit.identity.PublicKey` objects, which order as their raw
  bytes, so the smaller key is controlling on both sides without a message),
  behind a :class:`~natkit.ice.mux.ConnectMux` that lets the candidate
  gatherer (and, in part 2, TURN clients) share its sockets.
* **Candidates** (:mod:`natkit.aio.connect_gather`): host and static at
  once; server-reflexive from every ``stun`` server at once, from the same
  sockets; a port mapping (PCP, NAT-PMP, UPnP IGD) unless ``portmap`` is off;
  NAT64. Each is added to the agent as it arrives, which trickles it to the
  peers. Server-reflexive candidates are gathered again after any
  :class:`~natkit.ice.PathLost` and whenever the interface addresses
  change (polled every ``interface_poll`` seconds, or on
  :meth:`Connection.network_changed`), so a NAT that rebinds to a new
  port is recovered.
* **Signalling** (:mod:`natkit.aio.connect_signal`): the agent's messages
  are encoded, sealed to the peer's key and sent through the channel; what
  arrives is opened, decoded and given to the agent, or counted and dropped
  (:attr:`Connection.counters`). When the channel reports ``UP`` again
  (a rendezvous reconnected), the agent re-announces itself to every peer.
* **Events** (:data:`NodeEvent`): the core's (``PathSelected``, ``PathLost``,
  ``PeerUnreachable``, ...; never ``SignalReady``, which is handled here),
  the channel's :class:`~natkit.signal.channel.StateChanged`,
  :class:`LocalCandidatesChanged`, a ``stun`` server that gives no address
  (:class:`~natkit.aio.connect_gather.StunServerFailed`: its name does not
  resolve, it does not answer, ...; once, until it answers again:
  ``StunServerAnswered``), through :meth:`Connection.events` (async
  iterators, as many as wanted, each getting every event: a queue of
  ``event_buffer`` events each, its oldest dropped and counted when that
  iterator falls behind; :mod:`natkit.aio.connect_events`) and the
  ``on_event`` callback (called on the loop for every event; an exception
  in it goes to the loop's exception handler and is counted, never into
  natkit).

:meth:`Connection.close` (also on leaving :func:`connect`) stops every task,
releases the port mapping, closes the sockets and the channel, and ends the
event iterators. Nothing a peer, a server or the channel sends can raise
out of the connection.

* **Relays, the ladder, data** (issue 12, :mod:`natkit.aio.connect_ladder`):
  the TURN servers of ``options.relay`` go to the agent (which allocates on
  the nearest, relays first and upgrades; TCP/TLS servers get a stream the
  node keeps); this node's traversal report (natkit's classifier against the
  ``stun`` servers, the gatherer's mapping, ``options.traversal``) is sent
  to every peer; birthday attempts get sockets bound on request; ICMP
  errors reach the agent. :meth:`Connection.send` sends a datagram over the
  selected path, ``on_data`` receives the peers' (direct or relayed), and
  :meth:`Connection.explain` says why a path is what it is.

Extension points for part 3: :attr:`Connection.mux` takes helper cores that
share the sockets (``add_helper(core, now, sources=...)``),
:attr:`Connection.agent` takes known pairs, ``sockets=`` to
:class:`Connection` gives it sockets bound elsewhere instead of its own, and
``ports=`` datagram ports (:class:`~natkit.aio.sharedsock.DatagramPort`,
e.g. WireGuard's port shared through raw sockets,
:mod:`natkit.aio.wireguard_node`) after them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from natkit.aio.candidates import GatherOptions, PortMapperProvider, PortMapProvider
from natkit.aio.connect_data import DataHandler
from natkit.aio.connect_events import EventFanout
from natkit.aio.connect_gather import (
    StunFailure,
    StunServerAnswered,
    StunServerFailed,
    TrickleGathering,
)
from natkit.aio.connect_ladder import LadderDriver
from natkit.aio.connect_relay import RelayOptions
from natkit.aio.connect_report import LocalReportChanged, TraversalOptions
from natkit.aio.connect_runner import NodeRunner
from natkit.aio.connect_signal import SignalBridge, SignalCounters
from natkit.aio.driver import open_udp_sockets
from natkit.aio.interfaces import list_interface_addresses, open_gathering_sockets
from natkit.aio.sharedsock import DatagramPort
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.gather.host import HostPolicy, InterfaceAddress
from natkit.ice import (
    ConnectAgent,
    ConnectConfig,
    ConnectCounters,
    ConnectEvent,
    ConnectStats,
    Explanation,
    PairChecked,
    PairStatus,
    Path,
    PathLost,
    PathSelected,
    PeerReportReceived,
    PeerRestarted,
    PeerUnreachable,
    RoleChanged,
    SignalMessage,
    SignalReady,
)
from natkit.ice.candidates import Candidate, LocalCandidate
from natkit.ice.mux import ConnectMux, HelperEvent, MuxEvent
from natkit.identity import PrivateKey, PublicKey, check_recipient
from natkit.signal.channel import ChannelEvent, ChannelState, SignalChannel, StateChanged

__all__ = [
    "ConnectOptions",
    "Connection",
    "LocalCandidatesChanged",
    "LocalReportChanged",
    "NodeCounters",
    "NodeEvent",
    "PairChecked",
    "PathLost",
    "PathSelected",
    "PeerReportReceived",
    "PeerRestarted",
    "PeerUnreachable",
    "RelayOptions",
    "RoleChanged",
    "StateChanged",
    "StunFailure",
    "StunServerAnswered",
    "StunServerFailed",
    "TraversalOptions",
    "connect",
]

#: Events kept per :meth:`Connection.events` iterator before its oldest are dropped.
EVENT_BUFFER = 4096


@dataclass(frozen=True, slots=True)
class LocalCandidatesChanged:
    """The node's own candidates changed (gathered, re-gathered, an interface
    came or went); the agent has already trickled them to the peers."""

    added: tuple[Candidate, ...]
    removed: tuple[Candidate, ...]


#: What a :class:`Connection` reports: the core's events (never
#: ``SignalReady``, which the connection handles, nor ``RelayedDataReceived``,
#: which goes to ``on_data``), the channel's ``StateChanged``,
#: ``LocalCandidatesChanged``, ``LocalReportChanged``, and the ``stun``
#: servers' ``StunServerFailed`` / ``StunServerAnswered``.
NodeEvent = (
    ConnectEvent
    | StateChanged
    | LocalCandidatesChanged
    | LocalReportChanged
    | StunServerFailed
    | StunServerAnswered
)
EventCallback = Callable[[NodeEvent], object]


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """How a :class:`Connection` runs (seconds)."""

    #: Local UDP port for every socket (0: any free one).
    port: int = 0
    #: Bind one socket to each of these addresses instead of one wildcard
    #: socket per family.
    local_addresses: tuple[str, ...] = ()
    #: Ask the gateway for a port mapping (PCP, NAT-PMP, UPnP IGD).
    portmap: bool = True
    #: The port-mapping gateway (``None``: the default route's).
    gateway: str | None = None
    #: Endpoints known to reach this node (a manual port forward).
    statics: tuple[Endpoint, ...] = ()
    #: Which interface addresses become host candidates (loopback and
    #: link-local ones are left out by default).
    host: HostPolicy = field(default_factory=HostPolicy)
    #: Look for a NAT64 (RFC 7050) when the host has IPv6.
    nat64: bool = True
    #: DNS server for NAT64 discovery and STUN server names (``None``: the system's).
    dns_server: str | None = None
    #: The connect core's timings (keepalive, loss bound, pacing...).
    config: ConnectConfig = field(default_factory=ConnectConfig)
    #: How often the interface addresses are compared (0: never).
    interface_poll: float = 5.0
    #: Events kept for each :meth:`Connection.events` iterator (the oldest dropped beyond).
    event_buffer: int = EVENT_BUFFER
    #: TURN servers and their credentials (issue 12; :mod:`natkit.aio.connect_relay`).
    relay: RelayOptions = field(default_factory=RelayOptions)
    #: What goes into this node's traversal report: classification, birthday
    #: probing, the NAT's port range (:mod:`natkit.aio.connect_report`).
    traversal: TraversalOptions = field(default_factory=TraversalOptions)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 0xFFFF:
            raise LocalProtocolError(f"port must be 0-65535, not {self.port}")
        if self.interface_poll < 0 or self.event_buffer < 1:
            raise LocalProtocolError("interface_poll must be >= 0 and event_buffer >= 1")


@dataclass(slots=True)
class NodeCounters:
    """What the connection dropped or survived, beside the agent's counters."""

    #: Events dropped from a full :meth:`Connection.events` queue (any iterator's).
    events_dropped: int = 0
    #: Exceptions raised by the ``on_event`` callback.
    callback_errors: int = 0
    #: Times the channel came up (the agent re-announced itself each time).
    signalling_up: int = 0


def _peer_key(peer: PublicKey | str) -> PublicKey:
    return peer if isinstance(peer, PublicKey) else PublicKey.from_base64(peer)


def _open_sockets(options: ConnectOptions) -> list[socket.socket]:
    if not options.local_addresses:
        return open_gathering_sockets(options.port)
    try:
        addresses = [Endpoint.parse(a, 0).address for a in options.local_addresses]
    except ValueError as exc:
        raise LocalProtocolError(f"local address: {exc}") from None
    sockets: list[socket.socket] = []
    try:
        port = options.port
        for address in dict.fromkeys(addresses):
            # The first socket's port for the rest: one port to forward, one to read.
            (sock,) = open_udp_sockets([Endpoint(address, port)])
            sockets.append(sock)
            port = port or sock.getsockname()[1]
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Connection:
    """A connect node: sockets, agent, gatherer, signalling (module doc).

    Build it and ``await start()``, or use :func:`connect`. It owns
    ``channel``: :meth:`close` closes it. ``sockets``: bound UDP sockets to
    use instead of its own; ``ports``: datagram ports to serve after them
    (with ``ports`` and no ``sockets``, the node opens no socket of its
    own; it never closes ports); ``port_mapper``: instead of natkit's
    :class:`~natkit.aio.candidates.PortMapperProvider`; ``interfaces``: what
    lists the host's addresses (tests); ``rng``: the source of ICE
    credentials and tie-breakers (default: the operating system's);
    ``on_data``: called with ``(peer, data, relayed)`` for every datagram a
    peer sends with :meth:`send` (:mod:`natkit.aio.connect_data`).
    """

    def __init__(
        self,
        key: PrivateKey,
        channel: SignalChannel,
        *,
        stun: Sequence[str] = (),
        options: ConnectOptions | None = None,
        on_event: EventCallback | None = None,
        sockets: Sequence[socket.socket] | None = None,
        ports: Sequence[DatagramPort] = (),
        port_mapper: PortMapProvider | None = None,
        rng: random.Random | None = None,
        interfaces: Callable[[], Sequence[InterfaceAddress]] | None = None,
        on_data: DataHandler | None = None,
    ) -> None:
        self.key = key
        self.channel = channel
        self.options = options or ConnectOptions()
        self.stun = tuple(stun)
        self.on_event = on_event
        self.on_data = on_data
        self.counters = NodeCounters()
        self._given_sockets = None if sockets is None and not ports else list(sockets or ())
        self._ports = tuple(ports)
        self._port_mapper = port_mapper
        self._interfaces = interfaces
        # ICE credentials are keys (MESSAGE-INTEGRITY): from the OS's source.
        self._rng = rng if rng is not None else random.SystemRandom()
        self._events: EventFanout[NodeEvent] = EventFanout(self.options.event_buffer)
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._started = False
        self._closed = False
        self.agent: ConnectAgent
        self.mux: ConnectMux
        self.runner: NodeRunner
        self.ladder: LadderDriver
        self.gathering: TrickleGathering
        self.signal: SignalBridge
        self.loop: asyncio.AbstractEventLoop

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, peers: Iterable[PublicKey | str] = ()) -> None:
        """Bind, gather, connect the channel, and add ``peers``.

        Raises :class:`~natkit.errors.LocalProtocolError` (a bad peer key,
        options) or :class:`OSError` (a port in use); nothing is left open then.
        """
        if self._started:
            raise LocalProtocolError("start: the connection was already started")
        self._started = True
        wanted = [_peer_key(p) for p in peers]
        self.loop = asyncio.get_running_loop()
        sockets: list[socket.socket] = []
        try:
            if self._given_sockets is None:
                sockets = _open_sockets(self.options)
            await self._start(sockets or list(self._given_sockets or ()), wanted)
        except BaseException:
            await self.close()
            for sock in sockets:
                sock.close()
            raise

    async def _start(self, sockets: list[socket.socket], peers: list[PublicKey]) -> None:
        bound = [Endpoint.from_sockaddr(s.getsockname()) for s in sockets]
        bound += [port.local for port in self._ports]
        self.agent = ConnectAgent(
            self.key.public_key, rng=self._rng, config=self.options.config, sockets=bound
        )
        self.mux = ConnectMux(self.agent)
        self.runner = NodeRunner(self.mux, self._on_core_event, self.loop)
        await self.runner.attach(sockets)
        for port in self._ports:
            self.runner.attach_port(port)
        self.ladder = LadderDriver(
            self.agent,
            self.runner,
            relay=self.options.relay,
            traversal=self.options.traversal,
            stun=self.stun,
            emit=self._emit,
            on_data=self.on_data,
            local_address=next(iter(self.options.local_addresses), None),
            dns_server=self.options.dns_server,
        )
        # Relays and the first report before any peer: the first announcement carries them.
        await self.ladder.start()
        self.signal = SignalBridge(self.key, self.channel, self._deliver_signal, self._is_peer)
        options = self.options
        port_mapper = self._port_mapper
        if port_mapper is None and options.portmap:
            port_mapper = PortMapperProvider(gateway=options.gateway)
        self.gathering = TrickleGathering(
            self.mux,
            self.runner.transmit,
            self.runner.local_endpoints,
            servers=self.stun,
            options=GatherOptions(
                port=options.port,
                host=options.host,
                nat64=options.nat64,
                dns_server=options.dns_server,
                statics=options.statics,
            ),
            on_change=self._candidates_changed,
            on_server=self._emit,
            port_mapper=port_mapper,
            interfaces=self._interfaces or list_interface_addresses,
        )
        for peer in peers:
            self._check_peer(peer)
        # Host candidates first, so the first announcement carries them.
        self.gathering.start()
        for peer in peers:
            self._add_peer(peer)
        self._unsubscribe = self.channel.subscribe(self._on_channel_event)
        start = getattr(self.channel, "start", None)
        if callable(start):
            start()
        self.signal.start()
        if options.interface_poll > 0:
            self._tasks.append(self.loop.create_task(self._watch_interfaces()))
        self.runner.transmit()

    async def close(self) -> None:
        """Stop everything (see the module doc); idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if hasattr(self, "signal"):
            await self.signal.close()
        if hasattr(self, "gathering"):
            await self.gathering.close()
        if hasattr(self, "runner"):
            # Deallocates relays (part 2) with what can still be sent.
            now = self.loop.time()
            self.agent.close(now)
            self.runner.transmit(now)
            if hasattr(self, "ladder"):
                await self.ladder.close()
            self.runner.close()
        await self.channel.close()
        self._events.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def started(self) -> bool:
        """The sockets are bound (``start`` got that far)."""
        return hasattr(self, "runner")

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- peers ------------------------------------------------------------------------------

    @property
    def public_key(self) -> PublicKey:
        return self.key.public_key

    @property
    def peers(self) -> tuple[PublicKey, ...]:
        return self.agent.peers

    def add_peer(self, peer: PublicKey | str) -> PublicKey:
        """Start connecting to ``peer`` (a key or its base64 text)."""
        key = _peer_key(peer)
        self._check_peer(key)
        self._add_peer(key)
        self.runner.transmit()
        return key

    def remove_peer(self, peer: PublicKey | str) -> None:
        """Stop connecting to ``peer`` (no events for it any more)."""
        now = self.loop.time()
        key = _peer_key(peer)
        self.agent.remove_peer(key, now)
        self.ladder.peer_removed(key)
        unwatch = getattr(self.channel, "unwatch", None)
        if callable(unwatch):
            unwatch(key)
        self.runner.transmit(now)

    def _check_peer(self, peer: PublicKey) -> None:
        if peer == self.key.public_key:
            raise LocalProtocolError(f"peer {peer} is this node's own key")
        check_recipient(self.key, peer)  # WeakKeyError for a key no box can be made with

    def _add_peer(self, peer: PublicKey) -> None:
        self.agent.add_peer(peer, self.loop.time())
        # A polled backend (the DNS directory) reads only the peers it watches.
        watch = getattr(self.channel, "watch", None)
        if callable(watch):
            watch(peer)

    def _is_peer(self, key: PublicKey) -> bool:
        return not self._closed and key in self.agent.peers

    # -- queries ------------------------------------------------------------------------------

    def selected(self, peer: PublicKey | str) -> Path | None:
        """The path in use for ``peer`` (``None``: none now)."""
        return self.agent.selected(_peer_key(peer))

    def pairs(self, peer: PublicKey | str) -> tuple[PairStatus, ...]:
        """``peer``'s candidate pairs, highest priority first."""
        return self.agent.pairs(_peer_key(peer))

    @property
    def local_candidates(self) -> tuple[LocalCandidate, ...]:
        return self.agent.local_candidates

    @property
    def local_endpoints(self) -> tuple[Endpoint, ...]:
        """The sockets' bound addresses."""
        return tuple(self.runner.local_endpoints)

    @property
    def core_counters(self) -> ConnectCounters:
        """What the agent dropped (forged checks, unknown transactions, ...)."""
        return self.agent.counters

    @property
    def stats(self) -> ConnectStats:
        return self.agent.stats

    @property
    def signal_counters(self) -> SignalCounters:
        return self.signal.counters

    @property
    def signalling(self) -> ChannelState:
        return self.channel.state

    def send(self, peer: PublicKey | str, data: bytes) -> bool:
        """Send ``data`` (one datagram) to ``peer`` over its selected path, direct
        or relayed; ``False`` when it has none now (nothing is queued)."""
        return self.ladder.send(_peer_key(peer), data)

    def explain(self, peer: PublicKey | str) -> Explanation:
        """Why ``peer``'s path is what it is ("why relayed?")."""
        return self.agent.explain(_peer_key(peer), self.loop.time())

    def network_changed(self) -> None:
        """The local network changed: re-check every pair now and re-gather."""
        now = self.loop.time()
        self.agent.network_changed(now)
        self.gathering.regather()
        self.runner.transmit(now)

    # -- events -----------------------------------------------------------------------------

    def events(self) -> AsyncIterator[NodeEvent]:
        """Every event from when the iteration starts, until :meth:`close`.

        Several iterators may run at once: each gets every event, in order
        (:mod:`natkit.aio.connect_events`: a queue of ``event_buffer`` events
        per iterator; a slow one loses its own oldest, counted in
        ``counters.events_dropped``). Events from before any iterator ran
        (those of :meth:`start`) go to the first one to start.
        """
        return self._events.subscribe()

    def _emit(self, event: NodeEvent) -> None:
        self._events.publish(event)
        self.counters.events_dropped = self._events.dropped
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception as exc:  # the consumer's bug must not stop the node
                self.counters.callback_errors += 1
                self.loop.call_exception_handler(
                    {"message": "natkit.connect: on_event raised", "exception": exc}
                )

    # -- wiring -------------------------------------------------------------------------------

    def _on_core_event(self, event: MuxEvent) -> None:
        if self._closed:
            # What closing makes the agent say (its relays' candidates removed,
            # their paths "lost") is not news; the sockets and streams close anyway.
            return
        if isinstance(event, SignalReady):
            self.signal.send(event.peer, event.message)
        elif isinstance(event, HelperEvent):
            self.gathering.helper_event(event.event)
        elif not self.ladder.handle(event):
            if isinstance(event, PathLost):
                # The NAT may have moved our mapping: learn it again.
                self.gathering.regather()
            self._emit(event)

    def _deliver_signal(self, peer: PublicKey, message: SignalMessage) -> None:
        now = self.loop.time()
        self.agent.receive_signal(peer, message, now)
        self.runner.transmit(now)

    def _on_channel_event(self, event: ChannelEvent) -> None:
        if self._closed:
            return
        if not isinstance(event, StateChanged):
            self.signal.counters.undeliverable += 1
            return
        if event.state is ChannelState.UP:
            self.counters.signalling_up += 1
            now = self.loop.time()
            self.agent.reannounce(now)
            self.runner.transmit(now)
        self._emit(event)

    def _candidates_changed(self, added: Sequence[Candidate], removed: Sequence[Candidate]) -> None:
        now = self.loop.time()
        known = {c.address for c in self.agent.local_candidates}
        for candidate in removed:
            if candidate.address in known:
                self.agent.remove_local_candidate(candidate.address, now)
        taken = {c.address for c in self.agent.local_candidates}
        accepted = []
        for candidate in added:
            index = self._socket_for(candidate)
            if index is None or candidate.address in taken:
                continue
            self.agent.add_local_candidate(candidate, now, socket=index)
            taken.add(candidate.address)
            accepted.append(candidate)
        if accepted or removed:
            self._emit(LocalCandidatesChanged(tuple(accepted), tuple(removed)))
            self.ladder.candidates_changed(self.gathering.port_mapping, self.gathering.candidates)
        self.runner.transmit(now)

    def _socket_for(self, candidate: Candidate) -> int | None:
        """The socket a candidate's traffic arrives at: the one bound to its
        base address, else the wildcard one of its base's family (a NAT64
        candidate is an IPv4 address of an IPv6 socket)."""
        base = candidate.base or candidate.address
        sockets = self.runner.local_endpoints
        for index, local in enumerate(sockets):
            if local.address == base.address:
                return index
        for index, local in enumerate(sockets):
            if local.family is base.family and local.address.is_unspecified:
                return index
        return None

    async def _watch_interfaces(self) -> None:
        while True:
            await asyncio.sleep(self.options.interface_poll)
            if self.gathering.check_interfaces():
                self.network_changed()


@contextlib.asynccontextmanager
async def connect(
    key: PrivateKey | str | os.PathLike[str],
    peers: Iterable[PublicKey | str] = (),
    *,
    rendezvous: str | None = None,
    channel: SignalChannel | None = None,
    stun: Sequence[str] = (),
    options: ConnectOptions | None = None,
    on_event: EventCallback | None = None,
    on_data: DataHandler | None = None,
) -> AsyncIterator[Connection]:
    """Connect to ``peers`` through a rendezvous (or any signalling channel).

    ``key``: this node's private key, or the path of its key file (``natkit
    keygen``). ``peers``: public keys (or their base64 text, ``natkit
    pubkey``); more can be added with :meth:`Connection.add_peer`.
    ``rendezvous``: ``HOST:PORT`` of a ``natkit rendezvous`` (reconnected
    with backoff up to 5 min); or ``channel``: a
    :class:`~natkit.signal.channel.SignalChannel` (the connection owns it).
    ``stun``: ``[stun:]HOST[:PORT]`` servers, all asked at once.
    ``on_event``: called with every :data:`NodeEvent` (see the module doc);
    ``on_data``: with ``(peer, data, relayed)`` for each datagram a peer sends.

    Yields the started :class:`Connection` and closes it on exit. Raises
    :class:`~natkit.errors.LocalProtocolError` for bad arguments (a key
    file, a peer key, a server) before anything is opened.
    """
    from natkit.aio.rendezvous_client import RendezvousChannel  # noqa: PLC0415
    from natkit.stun.uri import parse_server, split_host_port  # noqa: PLC0415

    if isinstance(key, PrivateKey):
        private = key
    else:
        from natkit.identity.keyfile import load_private_key  # noqa: PLC0415

        private = load_private_key(key)
    if (rendezvous is None) == (channel is None):
        raise LocalProtocolError("connect: give exactly one of rendezvous= and channel=")
    wanted = [_peer_key(p) for p in peers]
    for peer in wanted:
        check_recipient(private, peer)
    for server in stun:
        parse_server(server)
    if channel is None:
        assert rendezvous is not None
        host, port = split_host_port(rendezvous, None)
        channel = RendezvousChannel(host, port, private)
    connection = Connection(
        private, channel, stun=stun, options=options, on_event=on_event, on_data=on_data
    )
    await connection.start(wanted)
    try:
        yield connection
    finally:
        await connection.close()
