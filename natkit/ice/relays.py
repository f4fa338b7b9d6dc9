"""Relayed bases: TURN allocations run inside the connect agent, on its own sockets.

The agent holds one :class:`RelayManager`. It keeps **one allocation per
node** (not per peer): every session pairs with the same relayed candidate,
and each peer costs the allocation only its permissions and a channel.

Why the TURN client core runs *inside* the agent rather than beside it
-----------------------------------------------------------------------
:class:`~natkit.turn.TurnClient` is a sans-IO core like the agent, so the
agent embeds it instead of asking the driver to run a second core:

* **one timer**: the agent's deadline is the earlier of its sessions' heap
  and the manager's (the earliest of a few clients' deadlines);
* **one socket**: over UDP the allocation is made from the agent's own
  socket (a datagram from the server's endpoint on that socket is routed to
  the client by a dict lookup), so the relayed candidate shares the NAT
  mapping the server-reflexive one uses and nothing else is bound;
* **no per-datagram work outside the core**: ChannelData and Data
  indications are unwrapped and fed to the sessions in the same call;
  sending on a relayed pair is a ``TurnClient.send`` in the same call;
* **one place that knows the peers**: permissions for every peer's
  candidates are created as the sessions learn them (peer-first traffic,
  RFC 8656 §9), which an adapter outside the agent could not see.

Over TCP or TLS the driver keeps the connection: a server's ``socket`` in
its :class:`~natkit.turn.TurnConfig` is then a *stream slot*. Datagrams the
agent sends from that slot are written to the connection (opened on first
use), bytes read go to ``ConnectAgent.relay_stream_data``, a closed
connection to ``ConnectAgent.relay_stream_lost``, and :class:`RelayStreamIdle`
says when the driver may close it.

Rules
-----
1. **Nearest by RTT.** With several servers, every one that is not backing
   off is pinged (a Binding, RFC 8489 §10; no allocation) at the same
   moment; the first to answer unambiguously is the nearest and gets the
   Allocate, the others are dropped. One server is allocated on at once.
2. **Failures back off per server**: a retryable failure (timeout, 486,
   508, 437, lost connection...) waits 1, 2, 4 ... s up to
   ``RelayPolicy.backoff.cap`` (jittered down); a refusal of credentials
   or policy (401, 403, ...) waits ``refused_retry``. A new round starts at
   once with the servers that are not backing off, else when the first is.
3. **A lost allocation** removes the relayed candidate (a selected relayed
   path is lost with it) and a new one is made by rule 1-2; the new relayed
   candidate is trickled to every peer like any other.
4. ``close()`` deallocates (Refresh with LIFETIME 0).
"""

from __future__ import annotations

import ipaddress
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError
from natkit.ice.candidates import Candidate, CandidateKind
from natkit.ice.events import RelayAllocated, RelayFailed, RelayStreamIdle
from natkit.sansio import Datagram, IcmpError
from natkit.signal.backoff import Backoff
from natkit.turn.client import TurnClient
from natkit.turn.config import TurnConfig, TurnTransport
from natkit.turn.events import (
    AllocationCreated,
    AllocationFailed,
    AllocationLost,
    DataReceived,
    Outcome,
    PingCompleted,
    TurnFailure,
)
from natkit.turn.state import AllocationState

#: Retryable failures: 1, 2, 4 ... s, at most a minute (jittered down by half).
DEFAULT_BACKOFF = Backoff(initial=1.0, factor=2.0, cap=60.0, jitter=0.5)
#: A server that refused our credentials or our request is asked again this late.
REFUSED_RETRY = 300.0


@dataclass(frozen=True, slots=True)
class RelayServer:
    """A TURN server the agent may relay through.

    ``name`` is how events, the pair table and "why relayed?" name it (the
    URI the user gave, e.g. ``turns:relay.example.org:5349``); ``config``
    the resolved server, credentials and transport, with ``config.socket``
    the agent's UDP socket (``TurnTransport.UDP``) or the driver's stream
    slot (TCP, TLS) it is reached through.
    """

    name: str
    config: TurnConfig

    @property
    def transport(self) -> TurnTransport:
        return self.config.transport

    @property
    def endpoint(self) -> Endpoint:
        return self.config.server

    @property
    def socket(self) -> int:
        return self.config.socket


@dataclass(frozen=True, slots=True)
class RelayPolicy:
    """How the manager retries (see rule 2 of the module doc)."""

    backoff: Backoff = field(default_factory=lambda: DEFAULT_BACKOFF)
    refused_retry: float = REFUSED_RETRY

    def __post_init__(self) -> None:
        if not self.refused_retry > 0:
            raise LocalProtocolError("refused_retry must be > 0")


class TurnBase:
    """One live allocation as a relayed base of the agent (a
    :class:`~natkit.ice.candidates.Relay`): datagrams for its pairs go
    through :meth:`send`; what arrives comes back from the manager."""

    __slots__ = ("client", "relayed", "server")

    def __init__(self, server: RelayServer, client: TurnClient, relayed: Endpoint) -> None:
        self.server = server
        self.client = client
        self.relayed = relayed

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def transport(self) -> TurnTransport:
        return self.server.transport

    def wrap(self, data: bytes, peer: Endpoint, now: float) -> Datagram | None:
        """Not used: the agent sends through :meth:`send` (several datagrams
        may result, e.g. a ChannelBind beside the data)."""
        raise LocalProtocolError("a TurnBase sends with send(), not wrap()")

    def send(self, data: bytes, peer: Endpoint, now: float) -> bool:
        """Relay ``data`` to ``peer``; ``False`` when it cannot be carried."""
        client = self.client
        if client.state is not AllocationState.ALLOCATED:
            return False
        if (
            not _relayable(peer.address, self.server.endpoint.address)
            or peer.address.version != self.relayed.address.version
        ):
            return False
        return client.send(peer, data, now)

    def permit(self, address: IPAddress, now: float) -> None:
        """Ask for a permission for ``address`` (ignored when it cannot have one)."""
        client = self.client
        if client.state is not AllocationState.ALLOCATED:
            return
        if (
            not _relayable(address, self.server.endpoint.address)
            or address.version != self.relayed.address.version
        ):
            return
        client.permit(address, now)

    def __repr__(self) -> str:
        return f"TurnBase({self.name}, {self.relayed})"


#: Addresses that only route inside a site: RFC 1918, RFC 6598 (carrier NAT)
#: and RFC 4193 (unique local IPv6).
SITE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)


def _in_site(address: IPAddress) -> bool:
    return any(address in network for network in SITE_NETWORKS)


def _relayable(address: IPAddress, server: IPAddress) -> bool:
    """Addresses a TURN server could ever relay to: no loopback, link-local,
    multicast or unspecified (RFC 8656 §21.1 lets servers refuse them, and a
    permission for them would only be refused), and no site-local address
    unless the server itself is in a site network. A server on the internet
    cannot reach a peer's private host candidate; trying costs a permission,
    a channel and a check per pair, and coturn in a network with no route
    to it drops the whole allocation when its relay socket's send fails
    (seen in natkit's lab: every allocation of a session lost within a
    second of its first relayed check to a 192.168.x.x host candidate)."""
    return not (
        address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None)
        or (_in_site(address) and not _in_site(server))
    )


class RelayOwner(Protocol):
    """What the manager tells the agent."""

    def relay_ready(self, base: TurnBase, candidate: Candidate, now: float) -> None:
        """A new allocation: add its relayed candidate (and permissions)."""

    def relay_gone(self, base: TurnBase, now: float) -> None:
        """The allocation is lost: remove its candidate."""

    def relayed_data(self, base: TurnBase, data: bytes, peer: Endpoint, now: float) -> None:
        """``data`` from ``peer`` arrived through the allocation."""

    def emit(self, event: RelayAllocated | RelayFailed | RelayStreamIdle) -> None:
        """Report to the driver."""


@dataclass(slots=True)
class _Server:
    server: RelayServer
    attempt: int = 0
    not_before: float = -math.inf
    last_failure: Outcome | None = None
    #: The round trip measured when it was last picked (seconds).
    rtt: float | None = None


class RelayManager:
    """The agent's TURN allocations (see the module doc)."""

    def __init__(self, owner: RelayOwner, rng: random.Random, policy: RelayPolicy) -> None:
        self._owner = owner
        self._rng = rng
        self._policy = policy
        self._servers: list[_Server] = []
        #: Every client still able to send or receive, with its server.
        self._clients: list[tuple[_Server, TurnClient]] = []
        #: Clients of the current round being pinged (several servers).
        self._pinging: dict[int, tuple[_Server, TurnClient]] = {}
        self._allocating: tuple[_Server, TurnClient] | None = None
        self.active: TurnBase | None = None
        self._round_at: float | None = None
        self._closed = False

    # -- configuration -------------------------------------------------------------

    @property
    def servers(self) -> tuple[RelayServer, ...]:
        return tuple(s.server for s in self._servers)

    def add(self, server: RelayServer, now: float) -> None:
        """Relay through ``server`` too; a round starts at ``now`` (so servers
        added at the same moment are all pinged together)."""
        if self._closed:
            raise LocalProtocolError("add_relay_server() after close()")
        for known in self._servers:
            if known.server.name == server.name:
                raise LocalProtocolError(f"relay server {server.name} is already known")
            if known.server.socket == server.socket and known.server.endpoint == server.endpoint:
                raise LocalProtocolError(
                    f"{server.name}: same server and socket as {known.server.name}"
                )
        self._servers.append(_Server(server))
        if self.active is None and self._allocating is None and not self._pinging:
            self._round_at = now

    def status(self) -> tuple[tuple[str, float | None, Outcome | None], ...]:
        """(server name, retry time or ``None``, last failure) of every server."""
        return tuple(
            (s.server.name, None if s.not_before == -math.inf else s.not_before, s.last_failure)
            for s in self._servers
        )

    # -- inputs ---------------------------------------------------------------------

    def receive(self, data: bytes, remote: Endpoint, socket: int, now: float) -> bool:
        """Route a datagram from a UDP server to its client; ``False``: not one."""
        for server, client in self._clients:
            config = server.server.config
            if (
                config.socket == socket
                and config.server == remote
                and config.transport is TurnTransport.UDP
            ):
                client.receive_datagram(data, remote, socket, now)
                self._drain(now)
                return True
        return False

    def stream_data(self, socket: int, data: bytes, now: float) -> None:
        client = self._stream_client(socket, "relay_stream_data")
        if client is not None:
            client.receive_stream_data(data, now)
        self._drain(now)

    def stream_lost(self, socket: int, now: float, detail: str) -> None:
        client = self._stream_client(socket, "relay_stream_lost")
        if client is not None:
            client.connection_lost(now, detail)
        self._drain(now)

    def _stream_client(self, socket: int, call: str) -> TurnClient | None:
        if not any(
            s.server.socket == socket and s.server.transport.reliable for s in self._servers
        ):
            raise LocalProtocolError(f"{call}: socket {socket} is no relay server's stream")
        for server, client in self._clients:
            if server.server.socket == socket and server.server.transport.reliable:
                return client
        return None  # nothing open on it any more: late bytes

    def doubt(self, now: float) -> None:
        """The allocation may be gone (the network changed, a relayed path went
        silent): refresh it now; 437 or no answer makes a new one (rule 3)."""
        if self.active is not None:
            self.active.client.refresh(now)
            self._drain(now)

    def icmp(self, error: IcmpError, socket: int, now: float) -> None:
        """An ICMP error about a datagram from ``socket`` (the clients check
        that it is about their server: a dead server is noticed sooner)."""
        for _, client in list(self._clients):
            if client.config.socket == socket and not client.config.transport.reliable:
                client.receive_icmp_error(error, socket, now)
        self._drain(now)

    def permit(self, address: IPAddress, now: float) -> None:
        """A peer's candidate address was learnt: let it reach us through the relay."""
        if self.active is not None:
            self.active.permit(address, now)
            self._drain(now)

    def retain(self, peers: Iterable[Endpoint], now: float) -> None:
        """Only ``peers`` (every session's remote candidates and destinations)
        may still reach us through the relay: the permissions and channels of
        any other address stop being refreshed and lapse (RFC 8656 §9, §12), so
        a peer that left or restarted elsewhere does not keep a hole open."""
        if self.active is not None and self.active.client.state is AllocationState.ALLOCATED:
            self.active.client.retain(peers, now)
            self._drain(now)

    def send(self, base: TurnBase, data: bytes, peer: Endpoint, now: float) -> bool:
        sent = base.send(data, peer, now)
        self._drain(now)
        return sent

    def handle_timer(self, now: float) -> None:
        for _, client in list(self._clients):
            deadline = client.get_timer()
            if deadline is not None and deadline <= now:
                client.handle_timer(now)
        if self._round_at is not None and self._round_at <= now:
            self._round_at = None
            self._start_round(now)
        self._drain(now)

    def close(self, now: float) -> None:
        """Deallocate (Refresh with LIFETIME 0) and stop trying."""
        self._closed = True
        self._round_at = None
        for _, client in list(self._clients):
            client.close(now)
        self._pinging.clear()
        self._allocating = None
        if self.active is not None:
            base, self.active = self.active, None
            self._owner.relay_gone(base, now)
        self._drain(now)

    # -- outputs --------------------------------------------------------------------

    def get_timer(self) -> float | None:
        deadline = self._round_at
        for _, client in self._clients:
            due = client.get_timer()
            if due is not None and (deadline is None or due < deadline):
                deadline = due
        return deadline

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out: list[Datagram] = []
        ended = []
        for entry in self._clients:
            client = entry[1]
            out += client.datagrams_to_send(now)
            if client.state.terminal:
                ended.append(entry)
        # A client that ended is dropped once its last datagram (a
        # deallocation) is out; a stream's connection may be closed after it.
        for entry in ended:
            self._forget(entry)
        return out

    # -- rounds ---------------------------------------------------------------------

    def _start_round(self, now: float) -> None:
        if self._closed or self.active is not None or self._allocating or self._pinging:
            return
        ready = [s for s in self._servers if s.not_before <= now]
        if not ready:
            waits = [s.not_before for s in self._servers]
            self._round_at = min(waits) if waits else None
            return
        if len(ready) == 1:
            self._allocate(ready[0], self._new_client(ready[0]), None, now)
            return
        for server in ready:
            client = self._new_client(server)
            self._pinging[id(client)] = (server, client)
            client.ping(now)

    def _new_client(self, server: _Server) -> TurnClient:
        client = TurnClient(server.server.config, rng=self._rng)
        self._clients.append((server, client))
        return client

    def _allocate(self, server: _Server, client: TurnClient, rtt: float | None, now: float) -> None:
        server.rtt = rtt
        self._allocating = (server, client)
        client.allocate(now)

    def _failed(self, server: _Server, outcome: Outcome, now: float, *, lost: bool) -> None:
        server.last_failure = outcome
        if outcome.failure.retryable:
            delay = self._policy.backoff.delay(server.attempt, self._rng)
        else:
            delay = self._policy.refused_retry
        server.attempt += 1
        server.not_before = now + delay
        self._owner.emit(
            RelayFailed(
                server.server.name,
                outcome.failure,
                outcome.code,
                outcome.reason,
                lost=lost,
                retry_in=delay,
            )
        )

    # -- what the clients said ------------------------------------------------------

    def _drain(self, now: float) -> None:
        """Act on every client's events (clients that ended are dropped by
        :meth:`datagrams_to_send`, after their last datagram)."""
        progress = True
        while progress:
            progress = False
            for server, client in list(self._clients):
                while (event := client.next_event()) is not None:
                    progress = True
                    self._on_event(server, client, event, now)
        if (
            self._round_at is None
            and not self._closed
            and self.active is None
            and self._allocating is None
            and not self._pinging
            and self._servers
        ):
            self._start_round(now)

    def _forget(self, entry: tuple[_Server, TurnClient]) -> None:
        server, _ = entry
        self._clients.remove(entry)
        if server.server.transport.reliable:
            self._owner.emit(RelayStreamIdle(server.server.socket, server.server.name))

    def _on_event(self, server: _Server, client: TurnClient, event: object, now: float) -> None:
        key = id(client)
        if isinstance(event, DataReceived):
            active = self.active
            if active is not None and active.client is client:
                self._owner.relayed_data(active, event.data, event.peer, now)
        elif isinstance(event, PingCompleted):
            if key not in self._pinging:
                return
            if event.rtt is None:
                self._ping_failed(key, now)
                return
            del self._pinging[key]
            for _, loser in self._pinging.values():
                loser.close(now)
            self._pinging.clear()
            self._allocate(server, client, event.rtt, now)
        elif isinstance(event, AllocationCreated):
            if self._allocating is None or self._allocating[1] is not client:
                return
            self._allocating = None
            server.attempt = 0
            server.last_failure = None
            if server.rtt is None:
                server.rtt = client.srtt
            base = TurnBase(server.server, client, event.relayed)
            self.active = base
            candidate = Candidate(
                CandidateKind.RELAY, event.relayed, None, server.server.name, rtt=server.rtt
            )
            self._owner.emit(
                RelayAllocated(
                    server.server.name,
                    event.relayed,
                    server.server.transport,
                    server.rtt,
                    event.mapped,
                )
            )
            self._owner.relay_ready(base, candidate, now)
        elif isinstance(event, AllocationFailed):
            if key in self._pinging:
                # No connection for the ping (TCP/TLS): this server is out of the round.
                self._pinging.pop(key)
                self._failed(server, event.outcome, now, lost=False)
                if not self._pinging:
                    self._round_at = now
            elif self._allocating is not None and self._allocating[1] is client:
                self._allocating = None
                self._failed(server, event.outcome, now, lost=False)
        elif isinstance(event, AllocationLost):
            active = self.active
            if active is not None and active.client is client:
                self.active = None
                self._failed(server, event.outcome, now, lost=True)
                self._owner.relay_gone(active, now)

    def _ping_failed(self, key: int, now: float) -> None:
        server, client = self._pinging.pop(key)
        client.close(now)
        self._failed(server, _NO_PING_ANSWER, now, lost=False)
        if not self._pinging:
            self._round_at = now


_NO_PING_ANSWER = Outcome(TurnFailure.TIMEOUT, None, "no answer to a Binding request")
