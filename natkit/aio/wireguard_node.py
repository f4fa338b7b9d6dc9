"""``natkit connect --wireguard IFACE``: natkit finds the paths, WireGuard carries the traffic.

:class:`WireGuardAdapter` runs a connect node
(:class:`~natkit.aio.connect.Connection`) for one WireGuard interface:

* **Peers and keys.** It reads the interface with ``wg`` (its listen port,
  public key and peers) and uses WireGuard's own key pair as the node's
  natkit key (``wg show IFACE private-key``): WireGuard and natkit keys are
  the same X25519 keys, so peers are named by their WireGuard public keys,
  signalling is sealed to them, and nothing has to bind a second key to the
  first (NetBird's choice; Tailscale keeps a separate "disco" key because
  its node key may live in another process). One session per peer; the
  peer list is read again every ``peer_poll`` seconds.
* **One port for both.** Its sockets are WireGuard's listen port itself,
  shared through raw sockets (:class:`~natkit.aio.sharedsock.SharedUdpPort`,
  one per address family): checks, keepalives and the STUN of the
  server-reflexive candidates leave from WireGuard's port and their answers
  arrive there, so every NAT mapping natkit opens and measures is the one
  WireGuard's packets use, and many peers share it (demultiplexed by
  USERNAME and transaction ID). WireGuard keeps its socket and its data
  path: on a direct path not one of its packets passes through Python.
  The WireGuard interface's own addresses are never offered as candidates
  (a check through the tunnel would make the tunnel its own endpoint).
* **Endpoints.** Whenever a peer's selected path changes, the adapter
  points WireGuard at it (``wg set IFACE peer KEY endpoint IP:PORT``) and
  makes WireGuard send at once (:mod:`natkit.wireguard.verify`), so the
  handshake follows within a round trip. A path whose socket is not
  WireGuard's (a TURN relay, a birthday socket) gets a loopback bridge:
  WireGuard's endpoint becomes ``127.0.0.1:PORT`` of a socket natkit reads
  and forwards over the path (:mod:`natkit.aio.wireguard_bridge`).
* **Trust, then verify.** After each change WireGuard must show a fresh
  handshake or traffic from the peer within two of its REKEY_TIMEOUTs
  (10 s); otherwise the adapter puts the last verified endpoint back,
  rejects the path (``agent.path_unusable``: the core fails over and keeps
  it out of selection for ``unusable_hold``), logs a warning and emits
  :class:`~natkit.wireguard.events.EndpointReverted`.

Events: every event of the node (:data:`~natkit.aio.connect.NodeEvent`)
plus :data:`~natkit.wireguard.events.WireGuardEvent`, through ``on_event``
and :meth:`WireGuardAdapter.events`. Needs root (raw sockets, ``wg``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from natkit.aio.candidates import PortMapProvider
from natkit.aio.connect import Connection, ConnectOptions, LocalCandidatesChanged, NodeEvent
from natkit.aio.interfaces import list_interface_addresses
from natkit.aio.sharedsock import SharedPortError, SharedUdpPort, SocketFactory
from natkit.aio.wireguard import WireGuardControl
from natkit.aio.wireguard_bridge import Bridges
from natkit.endpoint import Endpoint, Family
from natkit.errors import LocalProtocolError, NatkitError
from natkit.gather.host import InterfaceAddress
from natkit.ice import PathSelected
from natkit.ice.candidates import CandidateKind
from natkit.identity import PrivateKey, PublicKey
from natkit.signal.channel import SignalChannel
from natkit.wireguard.dump import InterfaceStatus
from natkit.wireguard.errors import WireGuardError
from natkit.wireguard.events import (
    EndpointReverted,
    EndpointSet,
    EndpointVerified,
    WireGuardEvent,
    WireGuardFailed,
    WireGuardPeersChanged,
)
from natkit.wireguard.keys import WireGuardKey
from natkit.wireguard.verify import VERIFY_WINDOW, Baseline, endpoint_change, evidence

logger = logging.getLogger("natkit.wireguard")

#: What the adapter reports: the node's events and its own.
AdapterEvent = NodeEvent | WireGuardEvent
AdapterCallback = Callable[[AdapterEvent], object]
#: Makes the signalling channel once the node's key (WireGuard's) is known.
ChannelFactory = Callable[[PrivateKey], SignalChannel]
#: ``SO_MARK`` (``asm-generic/socket.h``): Python has no name for it.
SO_MARK = 36


class WireGuardSetupError(NatkitError):
    """The interface cannot be used as it is (no listen port, no key, a
    peer that is not on it); the message says what to change."""


@dataclass(frozen=True, slots=True)
class WireGuardOptions:
    """How the adapter drives WireGuard (seconds)."""

    #: How long a changed endpoint has to show WireGuard working.
    verify_window: float = VERIFY_WINDOW
    #: How often ``wg show dump`` is read while a change is being verified.
    verify_poll: float = 0.25
    #: How often the interface's peers are read again (0: never).
    peer_poll: float = 30.0
    #: Share the port for IPv6 too (skipped when the host has no IPv6).
    ipv6: bool = True

    def __post_init__(self) -> None:
        if not self.verify_window > 0 or not self.verify_poll > 0 or self.peer_poll < 0:
            raise LocalProtocolError("verify_window and verify_poll > 0, peer_poll >= 0")


@dataclass(slots=True)
class _Pending:
    """A change being verified."""

    endpoint: Endpoint
    baseline: Baseline
    started: float
    #: The path's far end (its ``remote``), to reject it if unverified.
    remote: Endpoint


@dataclass(slots=True)
class AdapterCounters:
    """What the adapter did."""

    endpoints_set: int = 0
    verified: int = 0
    reverted: int = 0
    wg_failures: int = 0
    events_dropped: int = 0
    callback_errors: int = 0
    #: ``wg set`` runs skipped: WireGuard already had that endpoint.
    unchanged: int = 0
    by_evidence: dict[str, int] = field(default_factory=dict)


def _wg_key(peer: PublicKey) -> WireGuardKey:
    return WireGuardKey(peer.raw)


def _natkit_key(peer: WireGuardKey) -> PublicKey:
    return PublicKey(peer.raw)


def marked_socket_factory(mark: int, base: SocketFactory | None = None) -> SocketFactory:
    """Raw sockets carrying WireGuard's fwmark, so policy routing (wg-quick's
    ``Table = auto`` with a default route into the tunnel) sends natkit's
    checks where it sends WireGuard's own packets, not into the tunnel."""
    make = base or socket.socket

    def factory(family: int, kind: int, proto: int) -> socket.socket:
        sock = make(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
        except BaseException:
            sock.close()
            raise
        return sock

    return factory


class WireGuardAdapter:
    """A connect node on a WireGuard interface (see the module doc).

    ``control``: the interface (``WireGuardControl("wg0")``);
    ``make_channel``: the signalling channel for the node's key;
    ``peers``: which of the interface's peers to connect to (default: all,
    and those added later); ``options``: the node's (its ``port`` is
    WireGuard's listen port whatever is given); ``socket_factory``: makes
    the raw sockets (the lab makes them in a namespace).
    """

    def __init__(
        self,
        control: WireGuardControl,
        make_channel: ChannelFactory,
        *,
        peers: Iterable[PublicKey | str] | None = None,
        stun: Sequence[str] = (),
        options: ConnectOptions | None = None,
        wireguard: WireGuardOptions | None = None,
        on_event: AdapterCallback | None = None,
        socket_factory: SocketFactory | None = None,
        port_mapper: PortMapProvider | None = None,
        interfaces: Callable[[], Sequence[InterfaceAddress]] = list_interface_addresses,
    ) -> None:
        self.control = control
        self._make_channel = make_channel
        self._only = (
            None
            if peers is None
            else [p if isinstance(p, PublicKey) else PublicKey.from_base64(p) for p in peers]
        )
        self.stun = tuple(stun)
        self.options = options or ConnectOptions()
        self.wireguard = wireguard or WireGuardOptions()
        self.on_event = on_event
        self._socket_factory = socket_factory
        self._port_mapper = port_mapper
        self._list_interfaces = interfaces
        self.counters = AdapterCounters()
        self.ports: list[SharedUdpPort] = []
        self.connection: Connection
        self.bridges: Bridges
        self.status: InterfaceStatus
        self.loop: asyncio.AbstractEventLoop
        #: The peers' own persistent keepalive (``None``: off), kept across changes.
        self._keepalive: dict[PublicKey, int | None] = {}
        #: What natkit set last, and the last endpoint verified, per peer.
        self._current: dict[PublicKey, Endpoint] = {}
        self._verified: dict[PublicKey, Endpoint] = {}
        self._pending: dict[PublicKey, _Pending] = {}
        self._wanted: dict[PublicKey, PathSelected] = {}
        self._workers: dict[PublicKey, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._verify_wake = asyncio.Event()
        self._advertised: Endpoint | None = None
        self._advertiser: asyncio.Task[None] | None = None
        self._events: deque[AdapterEvent] = deque()
        self._wake = asyncio.Event()
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the interface, share its port, start the node.

        Raises :class:`WireGuardSetupError`,
        :class:`~natkit.wireguard.errors.WireGuardError` (``wg`` failed),
        :class:`~natkit.aio.sharedsock.SharedPortError` (no raw socket);
        nothing is left open then.
        """
        self.loop = asyncio.get_running_loop()
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        status = await self.control.status()
        self.status = status
        name = self.control.interface
        if status.public_key is None:
            raise WireGuardSetupError(
                f"WireGuard interface {name} has no private key: wg set {name} private-key FILE"
            )
        if status.listen_port == 0:
            raise WireGuardSetupError(
                f"WireGuard interface {name} has no listen port: wg set {name} listen-port PORT"
                " (natkit shares that port)"
            )
        key = await self.control.private_key()
        if key.public_key.raw != status.public_key.raw:
            raise WireGuardSetupError(f"WireGuard interface {name} changed its key meanwhile")
        peers = self._select_peers(status)
        self.ports = self._open_ports(status)
        # ChannelData has no STUN cookie: the shared port's filter keeps it
        # out, so a UDP relay is spoken to with Send and Data indications.
        relay = replace(self.options.relay, channels=False)
        options = replace(self.options, port=status.listen_port, local_addresses=(), relay=relay)
        self.connection = Connection(
            key,
            self._make_channel(key),
            stun=self.stun,
            options=options,
            on_event=self._on_node_event,
            on_data=self._on_data,
            ports=self.ports,
            port_mapper=self._port_mapper,
            interfaces=self._interfaces,
        )
        # Before the node starts: a path may be selected while it starts.
        self.bridges = Bridges(status.listen_port, self._send_data, self.loop)
        await self.connection.start(peers)
        self._tasks.append(self.loop.create_task(self._verify_loop(), name="wireguard-verify"))
        if self.wireguard.peer_poll > 0:
            self._tasks.append(self.loop.create_task(self._peer_loop(), name="wireguard-peers"))

    async def close(self) -> None:
        """Stop the node and release the port (WireGuard keeps the endpoints
        natkit set); idempotent."""
        if self._closed:
            return
        self._closed = True
        tasks = [*self._tasks, *self._workers.values()]
        if self._advertiser is not None:
            tasks.append(self._advertiser)
        self._tasks, self._workers = [], {}
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if hasattr(self, "bridges"):
            self.bridges.close()
        if hasattr(self, "connection"):
            await self.connection.close()
        for port in self.ports:
            port.close()
        self._wake.set()

    async def __aenter__(self) -> WireGuardAdapter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def public_key(self) -> PublicKey:
        return self.connection.public_key

    @property
    def listen_port(self) -> int:
        return self.status.listen_port

    def endpoint(self, peer: PublicKey) -> Endpoint | None:
        """What natkit last set for ``peer`` (``None``: nothing yet)."""
        return self._current.get(peer)

    def verified(self, peer: PublicKey) -> Endpoint | None:
        """The last endpoint WireGuard was seen working over."""
        return self._verified.get(peer)

    # -- set-up helpers ---------------------------------------------------------------------

    def _select_peers(self, status: InterfaceStatus) -> list[PublicKey]:
        on_interface = {_natkit_key(p.public_key): p for p in status.peers}
        for key, line in on_interface.items():
            self._keepalive[key] = line.persistent_keepalive
            if line.endpoint is not None:
                self._current[key] = line.endpoint
        if self._only is None:
            return list(on_interface)
        missing = [str(p) for p in self._only if p not in on_interface]
        if missing:
            raise WireGuardSetupError(
                f"not a peer of WireGuard interface {self.control.interface}: {', '.join(missing)}"
                " (natkit sets endpoints only for peers the interface has)"
            )
        return list(dict.fromkeys(self._only))

    def _open_ports(self, status: InterfaceStatus) -> list[SharedUdpPort]:
        factory = self._socket_factory
        if status.fwmark is not None:
            factory = marked_socket_factory(status.fwmark, factory)
        port = status.listen_port
        self.ports = [SharedUdpPort.open(port, socket_factory=factory, loop=self.loop)]
        if self.wireguard.ipv6 and socket.has_ipv6:
            # No IPv6 on this host: IPv4 serves alone.
            with contextlib.suppress(SharedPortError):
                v6 = SharedUdpPort.open(
                    port, family=Family.IPV6, socket_factory=factory, loop=self.loop
                )
                self.ports.append(v6)
        return self.ports

    def _interfaces(self) -> Sequence[InterfaceAddress]:
        """The host's addresses but the WireGuard interface's own."""
        name = self.control.interface
        return [a for a in self._list_interfaces() if a.interface != name]

    def _shared(self, socket_index: int | None) -> bool:
        """Whether a path's socket is one of WireGuard's shared ports."""
        return socket_index is not None and socket_index in self.connection.runner.ports

    # -- events -----------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[AdapterEvent]:
        """Every event from now on (and those buffered), until :meth:`close`."""
        while True:
            while self._events:
                yield self._events.popleft()
            if self._closed:
                return
            self._wake.clear()
            await self._wake.wait()

    def _emit(self, event: AdapterEvent) -> None:
        if len(self._events) >= self.connection.options.event_buffer:
            self._events.popleft()
            self.counters.events_dropped += 1
        self._events.append(event)
        self._wake.set()
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception as exc:  # the consumer's bug must not stop the adapter
                self.counters.callback_errors += 1
                self.loop.call_exception_handler(
                    {"message": "natkit wireguard: on_event raised", "exception": exc}
                )

    def _on_data(self, peer: PublicKey, data: bytes, relayed: bool) -> None:
        """WireGuard's traffic from ``peer`` on a bridged path (relayed or on
        a birthday socket; a direct path's never reaches natkit)."""
        if not self._closed:
            self.bridges.from_peer(peer, data)

    def _on_node_event(self, event: NodeEvent) -> None:
        self._emit(event)
        if self._closed:
            return
        if isinstance(event, PathSelected):
            self._want(event)
        elif isinstance(event, LocalCandidatesChanged):
            self._advertise()

    # -- the endpoint a directory advertises ---------------------------------------------------

    def advertised_endpoint(self) -> Endpoint | None:
        """What the node tells a directory it can be reached at: WireGuard's
        port as the internet sees it (the best server-reflexive candidate),
        else a host address with it."""
        best: tuple[int, int, Endpoint] | None = None
        for candidate in self.connection.local_candidates:
            rank = {CandidateKind.SRFLX: 2, CandidateKind.MAPPED: 3, CandidateKind.HOST: 1}
            order = rank.get(candidate.kind)
            if order is None or candidate.address.address.version != 4:
                continue
            key = (order, candidate.priority, candidate.address)
            if best is None or key[:2] > best[:2]:
                best = key
        return None if best is None else best[2]

    def _advertise(self) -> None:
        advertise = getattr(self.connection.channel, "advertise", None)
        endpoint = self.advertised_endpoint()
        if not callable(advertise) or endpoint is None or endpoint == self._advertised:
            return
        self._advertised = endpoint
        if self._advertiser is None or self._advertiser.done():
            self._advertiser = self.loop.create_task(self._advertise_latest(advertise))

    async def _advertise_latest(self, advertise: Callable[[Endpoint], Any]) -> None:
        done: Endpoint | None = None
        while self._advertised is not None and self._advertised != done:
            done = self._advertised
            with contextlib.suppress(NatkitError):  # a refusal is the channel's state already
                await advertise(done)

    # -- moving endpoints ---------------------------------------------------------------------

    def _want(self, event: PathSelected) -> None:
        peer = event.peer
        self._wanted[peer] = event
        if peer not in self._workers:
            task = self.loop.create_task(self._apply_loop(peer), name="wireguard-endpoint")
            self._workers[peer] = task

    async def _apply_loop(self, peer: PublicKey) -> None:
        try:
            while (event := self._wanted.pop(peer, None)) is not None:
                await self._apply(peer, event)
        finally:
            self._workers.pop(peer, None)

    def endpoint_for(self, event: PathSelected) -> tuple[Endpoint, bool]:
        """Where WireGuard must send for the path ``event`` selected, and
        whether that is a bridge: the path's remote when it leaves from
        WireGuard's port, else the peer's loopback bridge
        (:mod:`natkit.aio.wireguard_bridge`)."""
        if self._shared(event.socket):
            return event.remote, False
        return self.bridges.endpoint(event.peer), True

    def _send_data(self, peer: PublicKey, data: bytes) -> bool:
        """A bridge's datagram from WireGuard, over ``peer``'s selected path."""
        return not self._closed and self.connection.send(peer, data)

    async def _apply(self, peer: PublicKey, event: PathSelected) -> None:
        try:
            endpoint, bridged = self.endpoint_for(event)
        except OSError as exc:
            self._fail(peer, f"no loopback bridge: {exc.strerror or exc}")
            return
        if (
            endpoint == self._current.get(peer) == self._verified.get(peer)
            and peer not in self._pending
        ):
            self.counters.unchanged += 1
            return
        try:
            status = await self.control.status()
            line = status.peer(_wg_key(peer))
            if line is None:
                self._fail(peer, "not a peer of the interface any more")
                return
            baseline = Baseline.of(line, int(time.time()))
            for step in endpoint_change(_wg_key(peer), endpoint, self._keepalive.get(peer)):
                await self.control.set_peer(step)
        except WireGuardError as exc:
            self._fail(peer, str(exc))
            return
        previous = line.endpoint
        self._current[peer] = endpoint
        self.counters.endpoints_set += 1
        self._pending[peer] = _Pending(endpoint, baseline, self.loop.time(), event.remote)
        self._verify_wake.set()
        self._emit(EndpointSet(peer, endpoint, previous, event.kind, event.remote, bridged))

    def _fail(self, peer: PublicKey | None, detail: str) -> None:
        self.counters.wg_failures += 1
        logger.warning("wireguard %s: %s", peer or self.control.interface, detail)
        self._emit(WireGuardFailed(peer, detail))

    # -- trust, then verify ---------------------------------------------------------------

    async def _verify_loop(self) -> None:
        while True:
            if not self._pending:
                self._verify_wake.clear()
                await self._verify_wake.wait()
                continue
            await asyncio.sleep(self.wireguard.verify_poll)
            try:
                status = await self.control.status()
            except WireGuardError as exc:
                self._fail(None, str(exc))
                continue
            now = self.loop.time()
            for peer, pending in list(self._pending.items()):
                line = status.peer(_wg_key(peer))
                found = evidence(pending.baseline, line, pending.endpoint)
                waited = now - pending.started
                if found is not None:
                    del self._pending[peer]
                    self._verified[peer] = pending.endpoint
                    self.counters.verified += 1
                    by = self.counters.by_evidence
                    by[found.value] = by.get(found.value, 0) + 1
                    self._emit(EndpointVerified(peer, pending.endpoint, found, waited))
                elif waited >= self.wireguard.verify_window:
                    del self._pending[peer]
                    await self._revert(peer, pending, waited)

    async def _revert(self, peer: PublicKey, pending: _Pending, waited: float) -> None:
        restored = self._verified.get(peer)
        reason = (
            f"no WireGuard handshake or traffic from the peer within {waited:.1f} s"
            f" of pointing it at {pending.endpoint}"
        )
        self.counters.reverted += 1
        logger.warning(
            "wireguard %s: %s; %s", peer, reason,
            f"back to {restored}" if restored is not None else "no earlier endpoint to restore",
        )  # fmt: skip
        if restored is not None and restored != pending.endpoint:
            try:
                for step in endpoint_change(_wg_key(peer), restored, self._keepalive.get(peer)):
                    await self.control.set_peer(step)
                self._current[peer] = restored
            except WireGuardError as exc:
                self._fail(peer, str(exc))
        self._emit(EndpointReverted(peer, pending.endpoint, restored, waited, reason))
        selected = self.connection.selected(peer)
        if selected is not None and selected.remote == pending.remote:
            now = self.loop.time()
            self.connection.agent.path_unusable(peer, now, reason)
            self.connection.runner.transmit(now)

    # -- the interface's peers ----------------------------------------------------------------

    async def _peer_loop(self) -> None:
        while True:
            await asyncio.sleep(self.wireguard.peer_poll)
            await self.sync_peers()

    async def sync_peers(self) -> None:
        """Read the interface's peers again: connect to new ones, stop
        connecting to removed ones (all peers unless ``peers`` was given)."""
        try:
            status = await self.control.status()
        except WireGuardError as exc:
            self._fail(None, str(exc))
            return
        present = {_natkit_key(p.public_key): p for p in status.peers}
        known = set(self.connection.peers)
        wanted = set(present) if self._only is None else set(self._only) & set(present)
        added = [p for p in present if p in wanted and p not in known]
        removed = [p for p in known if p not in wanted]
        for peer in removed:
            self.connection.remove_peer(peer)
            self._current.pop(peer, None)
            self._verified.pop(peer, None)
            self._pending.pop(peer, None)
            self._wanted.pop(peer, None)
            self.bridges.remove(peer)
        for peer in added:
            self._keepalive[peer] = present[peer].persistent_keepalive
            self.connection.add_peer(peer)
        for peer, line in present.items():
            self._keepalive[peer] = line.persistent_keepalive
        if added or removed:
            self._emit(WireGuardPeersChanged(tuple(added), tuple(removed)))


@contextlib.asynccontextmanager
async def connect_wireguard(
    interface: str,
    *,
    rendezvous: str | None = None,
    channel: ChannelFactory | None = None,
    peers: Iterable[PublicKey | str] | None = None,
    stun: Sequence[str] = (),
    options: ConnectOptions | None = None,
    wireguard: WireGuardOptions | None = None,
    on_event: AdapterCallback | None = None,
    command_prefix: Sequence[str] = (),
) -> AsyncIterator[WireGuardAdapter]:
    """Connect WireGuard interface ``interface``'s peers (``natkit.connect``
    for WireGuard): signalling through a ``rendezvous`` (``HOST:PORT``) or
    ``channel``, a factory taking the node's key (WireGuard's) and returning
    any :class:`~natkit.signal.channel.SignalChannel`, e.g.
    ``lambda key: open_directory("dns:ZONE@SERVER", key.public_key,
    tsig_key_file="update.key")``. ``command_prefix`` runs ``wg`` elsewhere
    (``nsenter ...``). Yields the started :class:`WireGuardAdapter` and
    closes it on exit (WireGuard keeps its endpoints)."""
    if (rendezvous is None) == (channel is None):
        raise LocalProtocolError("connect_wireguard: give exactly one of rendezvous= and channel=")
    make_channel = channel
    if make_channel is None:
        from natkit.aio.rendezvous_client import RendezvousChannel  # noqa: PLC0415
        from natkit.stun.uri import split_host_port  # noqa: PLC0415

        assert rendezvous is not None
        host, port = split_host_port(rendezvous, None)

        def make_channel(key: PrivateKey) -> SignalChannel:
            return RendezvousChannel(host, port, key)

    adapter = WireGuardAdapter(
        WireGuardControl(interface, command_prefix=command_prefix),
        make_channel,
        peers=peers,
        stun=stun,
        options=options,
        wireguard=wireguard,
        on_event=on_event,
    )
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.close()


def open_wireguard(
    interface: str,
    make_channel: ChannelFactory,
    *,
    command_prefix: Sequence[str] = (),
    **kwargs: Any,
) -> WireGuardAdapter:
    """A :class:`WireGuardAdapter` for ``interface`` (not started): ``wg``
    runs with ``command_prefix``; ``kwargs`` are the adapter's."""
    return WireGuardAdapter(
        WireGuardControl(interface, command_prefix=command_prefix), make_channel, **kwargs
    )
