"""The connect agent: one sans-IO core per node, one session per peer.

Public API (all times are the driver's monotonic ``now``, in seconds)::

    agent = ConnectAgent(local_id, rng=random.Random(), config=ConnectConfig(),
                         sockets=[Endpoint(...)],          # socket i = index i
                         log_checks=False)                 # agent.check_log

    # inputs
    agent.add_local_candidate(candidate, now, socket=None, relay=None)
    agent.remove_local_candidate(address, now)
    agent.add_peer(peer, now, role=None)        # announces itself at once
    agent.remove_peer(peer, now)
    agent.receive_signal(peer, message, now)    # a decoded signals.SignalMessage
    agent.receive_datagram(data, remote, socket, now)
    agent.receive_relayed(relay, data, remote, now)
    agent.add_known_pair(peer, socket, local, remote, now)   # a birthday hit
    agent.path_unusable(peer, now, reason="")
    agent.network_changed(now)
    agent.reannounce(now)                       # the signalling channel is up again
    agent.set_report(report, now)               # opaque classification report
    agent.set_traversal_report(report, now)     # part 2: TraversalReport (ladder, explain)
    agent.birthday_sockets(peer, attempt, [(index, endpoint), ...], now)
    agent.add_relay_server(RelayServer(name, TurnConfig(...)), now)   # TURN (part 2)
    agent.relay_stream_data(socket, data, now)  # bytes from a TCP/TLS relay connection
    agent.relay_stream_lost(socket, now, detail)
    agent.send_data(peer, data, now) -> bool    # a datagram over the selected path
    agent.close(now)                            # deallocate relays
    agent.handle_timer(now)

    # outputs (SansIOCore)
    agent.datagrams_to_send(now) -> list[Datagram]
    agent.get_timer() -> float | None
    agent.next_event() -> ConnectEvent | None  # PathSelected, PathLost, PeerUnreachable,
                                               # SignalReady, ... (natkit.ice.events)
    # queries
    agent.peers, agent.selected(peer), agent.pairs(peer), agent.state(peer),
    agent.role(peer), agent.credentials(peer), agent.local_candidates,
    agent.ladder(peer), agent.explain(peer, now) ("why relayed?"),
    agent.counters (dropped input), agent.stats (traffic), agent.check_log

Theory of operation
-------------------
* **Many peers, one set of sockets.** Every session shares the agent's
  sockets (and relays). A request is routed to its session by the first
  half of USERNAME (each session has its own ufrag); a response by its
  transaction ID, which the agent registered when the attempt left.
  Anything else is dropped and counted in :attr:`ConnectAgent.counters`,
  never answered: bytes that are not STUN (a tunnel's traffic on a shared
  port), malformed STUN, an unknown USERNAME, failed integrity, an unknown
  or finished transaction, a response from another address than the
  request went to (RFC 8445 §7.2.5.2.1).
* **Pacing.** One paced check leaves per ``config.ta`` over all sessions:
  sessions with triggered checks are served first, the rest round-robin.
  Keepalives and responses are not paced.
* **One timer.** Sessions' deadlines sit in a heap (stale entries are
  skipped when popped), so 1,000 peers cost O(log n) per wake-up;
  :meth:`get_timer` is the earlier of the heap's top and the next pacing
  slot when a check waits.
* **Bases.** A local candidate's base is a socket index (``socket`` given,
  or found from ``candidate.base`` among ``sockets``: the exact endpoint,
  else a wildcard bind of the same family and port) or a
  :class:`~natkit.ice.candidates.Relay`. Datagrams for a relayed pair
  go through ``relay.wrap``; what the relay receives comes back through
  :meth:`receive_relayed`. The session logic cannot tell the two apart.
* **TURN** (:mod:`natkit.ice.relays`): the agent itself holds one
  allocation per node on the configured servers (nearest by RTT), on its own
  sockets and timer; its relayed candidate is a base like the others.

Peers and roles: a peer id is any hashable value (natkit passes public
keys, tests strings). By default the side whose ``local_id`` is smaller is
controlling, so ids must order against ``local_id`` (e.g. the 32 key bytes)
and both sides agree without a message; pass ``role`` to ``add_peer`` to
fix it instead (another ICE agent such as aioice). Conflicts are repaired
by tie-breaker (RFC 8445 §7.3.1.1) either way.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from natkit.birthday.ports import PortRange
from natkit.endpoint import Endpoint, Family, IPAddress
from natkit.errors import LocalProtocolError
from natkit.ice.candidates import (
    Base,
    Candidate,
    CandidateKind,
    Foundations,
    LocalCandidate,
    Relay,
    priority_of,
)
from natkit.ice.checks import UFRAG_CHARS, random_ice_string, read_request, split_username
from natkit.ice.config import ConnectConfig
from natkit.ice.counters import ConnectCounters, ConnectStats
from natkit.ice.events import (
    ConnectEvent,
    Path,
    RelayedDataReceived,
    Role,
)
from natkit.ice.explain import Explanation
from natkit.ice.ladder import Ladder
from natkit.ice.pairs import CheckPurpose, CheckSent, Pair, PairStatus, pairing_candidates
from natkit.ice.relays import RelayManager, RelayPolicy, RelayServer, TurnBase
from natkit.ice.report import (
    MAX_RELAYS,
    BirthdayCapability,
    RelayInUse,
    TraversalReport,
    encode_report,
)
from natkit.ice.session import Session
from natkit.ice.signals import SignalCandidate, SignalMessage
from natkit.sansio import Datagram, IcmpError
from natkit.stun.codec import Message, StunDecodeError, is_stun, parse_message
from natkit.stun.constants import HEADER_LENGTH, TRANSACTION_ID_LENGTH, Method
from natkit.stun.integrity import IntegrityError, verify_integrity

#: How many finished transaction IDs the agent remembers, to tell a late
#: answer from a stranger's.
FINISHED_MEMORY = 1024
_TID = slice(HEADER_LENGTH - TRANSACTION_ID_LENGTH, HEADER_LENGTH)


class ConnectAgent:
    """The connect core (see the module doc for the API and theory)."""

    def __init__(
        self,
        local_id: Any,
        *,
        rng: random.Random,
        config: ConnectConfig | None = None,
        sockets: Sequence[Endpoint] = (),
        log_checks: bool = False,
        relay_policy: RelayPolicy | None = None,
    ) -> None:
        self.config = config if config is not None else ConnectConfig()
        #: Every request sent, with its purpose (only with ``log_checks``).
        self.check_log: list[CheckSent] | None = [] if log_checks else None
        self.local_id = local_id
        self._rng = rng
        self._sockets = list(sockets)
        #: RFC 8445 §7.3.1.1 tie-breaker, one per agent.
        self.tie_breaker = rng.getrandbits(64)
        self.counters = ConnectCounters()
        self.stats = ConnectStats()
        #: The opaque classification report sent in announcements.
        self.report = b""
        #: This node's traversal report (``set_traversal_report``), for the ladder.
        self.traversal_report: TraversalReport | None = None
        # Sockets a birthday run listens on (agent socket -> sessions).
        self._birthday_routes: dict[int, list[Session]] = {}
        self._sessions: dict[Any, Session] = {}
        self._by_ufrag: dict[str, Session] = {}
        self._locals: list[LocalCandidate] = []
        self._by_address: dict[Endpoint, LocalCandidate] = {}
        self._relays: set[Relay] = set()
        self._foundations = Foundations()
        #: Local candidates that make pairs (RFC 8445 §6.1.2.4), and what peers are told.
        self.pairing: list[LocalCandidate] = []
        self.announced: tuple[SignalCandidate, ...] = ()
        # In-flight attempts: transaction ID -> (session, pair, sent at, USE-CANDIDATE).
        self._attempts: dict[bytes, tuple[Session, Pair, float, bool]] = {}
        self._finished: deque[bytes] = deque(maxlen=FINISHED_MEMORY)
        self._finished_set: set[bytes] = set()
        # One timer: a heap of session deadlines, plus the pacer.
        self._heap: list[tuple[float, int, Session]] = []
        self._seq = itertools.count()
        self._touched: list[Session] = []
        #: A session dropped remote candidates (an ICE restart): after this
        #: input, let the relay's permissions no session needs lapse.
        self._relay_peers_stale = False
        self._ready: deque[Session] = deque()
        self._urgent: deque[Session] = deque()
        self._next_check = float("-inf")
        self._outbox: list[Datagram] = []
        self._events: deque[ConnectEvent] = deque()
        #: The node's TURN allocations (one at a time, shared by every peer).
        self.relays = RelayManager(self, rng, relay_policy or RelayPolicy())

    # -- peers ----------------------------------------------------------------------------

    @property
    def peers(self) -> tuple[Any, ...]:
        return tuple(self._sessions)

    def _session(self, peer: Any, call: str) -> Session:
        session = self._sessions.get(peer)
        if session is None:
            raise LocalProtocolError(f"{call}: {peer!r} is not a peer of this agent")
        return session

    def add_peer(self, peer: Any, now: float, *, role: Role | None = None) -> None:
        """Start a session with ``peer``; emits its first ``SignalReady``."""
        if peer in self._sessions:
            raise LocalProtocolError(f"add_peer: {peer!r} is already a peer")
        if role is None:
            role = self._role_toward(peer)
        ufrag = random_ice_string(self._rng, UFRAG_CHARS)
        while ufrag in self._by_ufrag:
            ufrag = random_ice_string(self._rng, UFRAG_CHARS)
        session = Session(self, peer, role=role, ufrag=ufrag, rng=self._rng, now=now)
        self._sessions[peer] = session
        self._by_ufrag[ufrag] = session
        self.mark_changed(session)
        self._after_input(now)

    def _role_toward(self, peer: Any) -> Role:
        try:
            if peer == self.local_id:
                raise LocalProtocolError(f"add_peer: {peer!r} is this agent's own id")
            smaller = bool(self.local_id < peer)
        except TypeError:
            raise LocalProtocolError(
                f"add_peer: cannot order {peer!r} against {self.local_id!r}; pass role="
            ) from None
        return Role.CONTROLLING if smaller else Role.CONTROLLED

    def remove_peer(self, peer: Any, now: float) -> None:
        """End the session with ``peer`` (no events; datagrams for it are dropped)."""
        session = self._session(peer, "remove_peer")
        session.birthday.reset(now)
        for pair in list(session.pairs.values()):
            self.forget(pair.end())
            pair.removed = True
        session.closed = True
        del self._sessions[peer]
        del self._by_ufrag[session.local_ufrag]
        self.release_relay_peers(now)

    # -- local candidates ---------------------------------------------------------------------

    @property
    def local_candidates(self) -> tuple[LocalCandidate, ...]:
        return tuple(self._locals)

    def _base_of(self, candidate: Candidate, socket: int | None, relay: Relay | None) -> Base:
        if relay is not None:
            if candidate.kind is not CandidateKind.RELAY:
                raise LocalProtocolError(f"a relay base needs a relay candidate, not {candidate}")
            return relay
        if candidate.kind is CandidateKind.RELAY:
            raise LocalProtocolError("a relay candidate needs its relay (relay=...)")
        if socket is not None:
            if socket < 0:
                raise LocalProtocolError(f"socket index {socket} < 0")
            return socket
        base = candidate.base
        if base is None:
            raise LocalProtocolError(f"candidate {candidate.address} has no base: pass socket=")
        for index, local in enumerate(self._sockets):
            if local == base:
                return index
        for index, local in enumerate(self._sockets):
            if (
                local.port == base.port
                and local.family is base.family
                and local.address.is_unspecified
            ):
                return index
        raise LocalProtocolError(f"no socket of this agent is bound to {base}: pass socket=")

    def add_local_candidate(
        self,
        candidate: Candidate,
        now: float,
        *,
        socket: int | None = None,
        relay: Relay | None = None,
    ) -> LocalCandidate:
        """Add (trickle) a local candidate: every peer gets it (``CandidatesAdded``)
        and it is paired with every remote candidate of its family."""
        local = self._add_local(candidate, now, socket=socket, relay=relay)
        self._after_input(now)
        return local

    def _add_local(
        self, candidate: Candidate, now: float, *, socket: int | None, relay: Relay | None
    ) -> LocalCandidate:
        if candidate.address in self._by_address:
            raise LocalProtocolError(f"add_local_candidate: {candidate.address} is already known")
        base = self._base_of(candidate, socket, relay)
        local = self._make_local(candidate, base, announced=True)
        if relay is not None:
            self._relays.add(relay)
        self._adopt(local)
        signal = SignalCandidate(local.kind, local.address, local.priority, local.foundation)
        self.announced = (*self.announced, signal)
        pairing = local in self.pairing
        for session in self._sessions.values():
            session.signal.candidates_added((signal,), now)
            if pairing:
                session.local_candidate_added(local, now)
            self.mark_changed(session)
        return local

    def _make_local(self, candidate: Candidate, base: Base, *, announced: bool) -> LocalCandidate:
        priority = candidate.priority or priority_of(candidate.kind)
        foundation = self._foundations.of(candidate, base)
        return LocalCandidate(candidate, base, priority, foundation, announced)

    def _adopt(self, local: LocalCandidate) -> None:
        self._locals.append(local)
        self._by_address[local.address] = local
        self.pairing = pairing_candidates(c for c in self._locals if c.announced)

    def remove_local_candidate(self, address: Endpoint, now: float) -> None:
        """Forget a local candidate (an interface went away); pairs move to
        another candidate of the same base, or go (a selected one is lost)."""
        self._remove_local(address, now)
        self._after_input(now)

    def _remove_local(self, address: Endpoint, now: float) -> None:
        local = self._by_address.pop(address, None)
        if local is None:
            raise LocalProtocolError(f"remove_local_candidate: {address} is not a local candidate")
        self._locals.remove(local)
        self.pairing = pairing_candidates(c for c in self._locals if c.announced)
        self.announced = tuple(c for c in self.announced if c.address != address)
        for session in self._sessions.values():
            session.local_candidates_removed(now)
            self.mark_changed(session)

    def holds(self, local: LocalCandidate) -> bool:
        return self._by_address.get(local.address) is local

    def pairing_local(self, base: Base, source: Endpoint) -> LocalCandidate | None:
        """The pairing candidate on ``base`` for a remote of ``source``'s family."""
        for local in self.pairing:
            if local.base == base and local.pairs_with is source.family:
                return local
        return None

    def kind_of(self, address: Endpoint, local: LocalCandidate) -> CandidateKind:
        """What kind of our candidate ``address`` is (seen by the peer via ``local``'s base)."""
        if address == local.address:
            return local.kind
        known = self._by_address.get(address)
        if known is not None:
            return known.kind
        if address == local.base_endpoint:
            return CandidateKind.HOST
        return CandidateKind.PEER_REFLEXIVE

    def add_known_pair(
        self, peer: Any, socket: int, local: Endpoint, remote: Endpoint, now: float
    ) -> None:
        """A pair known to work (part 2: a birthday hit found ``remote`` from a new
        socket bound to ``local``): the socket becomes a private base of this
        session only, paired with ``remote`` alone, and is checked at once."""
        session = self._session(peer, "add_known_pair")
        self.add_known_pair_now(session, socket, local, remote, now)
        self._after_input(now)

    def add_known_pair_now(
        self, session: Session, socket: int, local: Endpoint, remote: Endpoint, now: float
    ) -> None:
        peer = session.peer
        if not session.signal.remote_known:
            raise LocalProtocolError(
                f"add_known_pair: no announcement from {peer!r} yet ({session.state})"
            )
        if socket < 0:
            raise LocalProtocolError(f"socket index {socket} < 0")
        existing = self._by_address.get(local)
        if existing is None or existing.base != socket:
            candidate = Candidate(CandidateKind.HOST, local, local, "known pair")
            existing = self._make_local(candidate, socket, announced=False)
            self._locals.append(existing)
            self._by_address[local] = existing
        session.add_known_pair(existing, remote, now)
        self.mark_changed(session)

    # -- the rest of the inputs ------------------------------------------------------------

    def receive_signal(self, peer: Any, message: SignalMessage, now: float) -> None:
        """A message from ``peer``'s agent, already unsealed and decoded."""
        session = self._session(peer, "receive_signal")
        session.receive_signal(message, now)
        self.mark_changed(session)
        self._after_input(now)

    def path_unusable(self, peer: Any, now: float, reason: str = "") -> None:
        """The consumer found the selected path unusable: drop it, keep it out of
        selection for ``unusable_hold``, and fail over."""
        session = self._session(peer, "path_unusable")
        session.path_unusable(now, reason)
        self.mark_changed(session)
        self._after_input(now)

    def network_changed(self, now: float) -> None:
        """Local interfaces changed: re-check every pair of every peer at once
        (and refresh the relay allocation: its 5-tuple may have changed)."""
        self.relays.doubt(now)
        for session in self._sessions.values():
            session.network_changed(now)
            self.mark_changed(session)
        self._after_input(now)

    def reannounce(self, now: float) -> None:
        """The signalling channel is (back) up: announce to every peer now and
        restart the re-send backoff of those that do not hold our announcement
        (messages sent while the channel was down may have been dropped, and
        the backoff may have grown to minutes meanwhile)."""
        for session in self._sessions.values():
            session.signal.reannounce(now)
            self.mark_changed(session)
        self._after_input(now)

    def set_report(self, report: bytes, now: float) -> None:
        """Carry ``report`` (opaque here; part 2's classification) in announcements."""
        if report == self.report:
            return
        self.report = report
        for session in self._sessions.values():
            session.signal.report_changed(now)
            self.mark_changed(session)
        self._after_input(now)

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        routes = self._birthday_routes.get(socket)
        if routes and any(s.birthday.datagram(data, remote, socket, now) for s in routes):
            for session in routes:
                self.mark_changed(session)
        elif not self.relays.receive(data, remote, socket, now):
            self._receive(data, remote, socket, now)
        self._after_input(now)

    def receive_icmp_error(self, error: IcmpError, socket: int, now: float) -> None:
        """An ICMP error about a datagram sent from ``socket`` (used to notice a
        dead TURN server early; the checks do not need them)."""
        self.relays.icmp(error, socket, now)
        self._after_input(now)

    def receive_relayed(self, relay: Relay, data: bytes, remote: Endpoint, now: float) -> None:
        """``data`` from ``remote`` that arrived through ``relay`` (part 2)."""
        if relay not in self._relays:
            raise LocalProtocolError(f"receive_relayed: {relay.name} is not a base of this agent")
        self._receive(data, remote, relay, now)
        self._after_input(now)

    # -- the ladder, birthday probing, "why relayed?" -----------------------------------

    def set_traversal_report(self, report: TraversalReport, now: float) -> None:
        """This node's :class:`~natkit.ice.report.TraversalReport`: sent to
        every peer (sealed through signalling) and the local half of each
        session's escalation ladder."""
        self.traversal_report = report
        for session in self._sessions.values():
            session.ladder_changed(now)
            self.mark_changed(session)
        self._send_report(now)

    def _send_report(self, now: float) -> None:
        """What peers are told: the report with this node's relays (the peer's
        ladder and "why relayed?" name the server of a path through ours)."""
        report = self.local_report()
        if report is not None:
            self.set_report(encode_report(report), now)

    def ladder(self, peer: Any) -> Ladder:
        """``peer``'s escalation ladder (from both reports)."""
        return self._session(peer, "ladder").ladder

    def explain(self, peer: Any, now: float) -> Explanation:
        """Why ``peer``'s session is where it is ("why relayed?")."""
        return self._session(peer, "explain").explain(now)

    def birthday_sockets(
        self, peer: Any, attempt: int, sockets: Sequence[tuple[int, Endpoint]], now: float
    ) -> None:
        """The sockets a ``BirthdaySocketsWanted`` asked for: (index, bound
        endpoint) each; the indices are the driver's, beside the agent's own
        sockets. An empty list: none could be bound (the attempt fails)."""
        session = self._session(peer, "birthday_sockets")
        slots = {s.socket for s in self.relays.servers if s.transport.reliable}
        for index, _ in sockets:
            if index < len(self._sockets) or index in self._birthday_routes or index in slots:
                raise LocalProtocolError(f"birthday_sockets: socket {index} is already in use")
        session.birthday.sockets_given(attempt, list(sockets), now)
        self.mark_changed(session)
        self._after_input(now)

    def local_report(self) -> TraversalReport | None:
        """The local half of every ladder: the traversal report, with the relays
        this agent is configured with when the report names none."""
        report = self.traversal_report
        servers = self.relays.servers
        if servers and (report is None or not report.relays):
            relays = tuple(RelayInUse(s.name, s.transport) for s in servers[:MAX_RELAYS])
            return replace(report or TraversalReport(), relays=relays)
        return report

    def birthday_capability(self) -> BirthdayCapability | None:
        report = self.traversal_report
        return None if report is None else report.birthday

    def local_port_range(self) -> PortRange | None:
        report = self.traversal_report
        return None if report is None else report.port_range

    def srflx_candidate(self, family: Family) -> LocalCandidate | None:
        """This node's first server-reflexive candidate of ``family``."""
        for local in self._locals:
            if local.kind is CandidateKind.SRFLX and local.address.family is family:
                return local
        return None

    def route_birthday(self, sockets: Sequence[int], session: Session) -> None:
        for socket in sockets:
            self._birthday_routes.setdefault(socket, []).append(session)

    def unroute_birthday(self, sockets: Sequence[int], session: Session) -> None:
        for socket in sockets:
            routes = self._birthday_routes.get(socket)
            if routes is not None and session in routes:
                routes.remove(session)
                if not routes:
                    del self._birthday_routes[socket]

    @property
    def rng(self) -> random.Random:
        return self._rng

    # -- TURN relays ---------------------------------------------------------------------

    def add_relay_server(self, server: RelayServer, now: float) -> None:
        """Relay through ``server`` too (several: the nearest by RTT is used,
        one allocation per node; see :mod:`natkit.ice.relays`)."""
        self.relays.add(server, now)
        for session in self._sessions.values():
            session.ladder_changed(now)
            self.mark_changed(session)
        if self.traversal_report is not None:
            self._send_report(now)
        self._after_input(now)

    def relay_stream_data(self, socket: int, data: bytes, now: float) -> None:
        """Bytes read from the TCP/TLS connection of relay stream slot ``socket``."""
        self.relays.stream_data(socket, data, now)
        self._after_input(now)

    def relay_stream_lost(self, socket: int, now: float, detail: str = "") -> None:
        """The connection of stream slot ``socket`` closed or could not be made."""
        self.relays.stream_lost(socket, now, detail or "connection closed")
        self._after_input(now)

    def close(self, now: float) -> None:
        """Deallocate the relays and end birthday runs, giving their sockets
        back (the agent keeps answering checks)."""
        for session in self._sessions.values():
            session.birthday.reset(now)
        self.relays.close(now)
        self._after_input(now)

    def send_data(self, peer: Any, data: bytes, now: float) -> bool:
        """Send ``data`` (a tunnel's datagram) to ``peer`` over its selected
        path, through a relay when that path is relayed; ``False``: no path."""
        session = self._session(peer, "send_data")
        pair = session.selected
        if pair is None:
            return False
        sent = self.send(pair.base, pair.destination, data, now)
        self._after_input(now)
        return sent

    def permit(self, address: IPAddress, now: float) -> None:
        """A peer's candidate address is known: let it reach our relayed one."""
        self.relays.permit(address, now)

    def relay_peers_changed(self) -> None:
        """A session forgot remote candidates; see :meth:`release_relay_peers`
        (deferred to the end of the input: a restarted peer's new candidates,
        often at the same addresses, usually arrive in the same message)."""
        self._relay_peers_stale = True

    def release_relay_peers(self, now: float) -> None:
        """Keep the relay's permissions and channels for the endpoints some
        session still pairs with, and let the others lapse (RFC 8656 §9: a
        permission is not refreshed, so it expires after 300 s; a channel
        after 600 s): a removed or restarted peer's addresses may not reach
        our relayed address for ever."""
        self._relay_peers_stale = False
        wanted: set[Endpoint] = set()
        for session in self._sessions.values():
            wanted.update(session.checks.remote)
            wanted.update(pair.destination for pair in session.pairs.values())
        self.relays.retain(wanted, now)

    # RelayOwner: what the relay manager tells the agent.

    def relay_ready(self, base: TurnBase, candidate: Candidate, now: float) -> None:
        self._add_local(candidate, now, socket=None, relay=base)
        for session in self._sessions.values():
            for address in session.checks.remote:
                base.permit(address.address, now)

    def relay_gone(self, base: TurnBase, now: float) -> None:
        self._relays.discard(base)
        if self._by_address.get(base.relayed) is not None:
            self._remove_local(base.relayed, now)

    def relayed_data(self, base: TurnBase, data: bytes, peer: Endpoint, now: float) -> None:
        if is_stun(data):
            self._receive(data, peer, base, now)
        else:
            self.emit(RelayedDataReceived(base.name, peer, data))

    def handle_timer(self, now: float) -> None:
        self.relays.handle_timer(now)
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, session = heapq.heappop(heap)
            if session.closed or session.scheduled != deadline:
                continue
            session.scheduled = None
            session.on_timer(now)
            self.mark_changed(session)
        self._after_input(now)

    # -- outputs --------------------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self._outbox = self._outbox, []
        return out + self.relays.datagrams_to_send(now)

    def get_timer(self) -> float | None:
        heap = self._heap
        while heap and (heap[0][2].closed or heap[0][2].scheduled != heap[0][0]):
            heapq.heappop(heap)
        deadline = heap[0][0] if heap else None
        if self._urgent or self._ready:
            slot = self._next_check
            deadline = slot if deadline is None else min(deadline, slot)
        relay = self.relays.get_timer()
        if relay is not None and (deadline is None or relay < deadline):
            deadline = relay
        return deadline

    def next_event(self) -> ConnectEvent | None:
        return self._events.popleft() if self._events else None

    # -- queries ----------------------------------------------------------------------------------

    def selected(self, peer: Any) -> Path | None:
        """The path in use for ``peer`` (``None``: none)."""
        session = self._session(peer, "selected")
        return None if session.selected is None else session.path_of(session.selected)

    def pairs(self, peer: Any) -> tuple[PairStatus, ...]:
        """``peer``'s candidate pairs, highest priority first (a ``--pairs`` table)."""
        return self._session(peer, "pairs").status()

    def state(self, peer: Any) -> str:
        return self._session(peer, "state").state

    def role(self, peer: Any) -> Role:
        return self._session(peer, "role").role

    def credentials(self, peer: Any) -> tuple[str, str]:
        """Our (ufrag, pwd) toward ``peer`` (what an announcement carries)."""
        session = self._session(peer, "credentials")
        return session.local_ufrag, session.local_pwd

    # -- services for sessions -----------------------------------------------------------------

    def emit(self, event: ConnectEvent) -> None:
        self._events.append(event)

    def random(self) -> float:
        return self._rng.random()

    def new_transaction_id(self) -> bytes:
        tid = self._rng.randbytes(TRANSACTION_ID_LENGTH)
        while tid in self._attempts:
            tid = self._rng.randbytes(TRANSACTION_ID_LENGTH)
        return tid

    def register(
        self, tid: bytes, session: Session, pair: Pair, now: float, use_candidate: bool
    ) -> None:
        self._attempts[tid] = (session, pair, now, use_candidate)
        paced = pair.purpose is not CheckPurpose.KEEPALIVE
        if paced:
            self.stats.checks_sent += 1
        else:
            self.stats.keepalives_sent += 1
        log = self.check_log
        if log is not None and pair.purpose is not None:
            log.append(CheckSent(now, session.peer, pair.destination, pair.purpose, paced))

    def forget(self, tids: list[bytes]) -> None:
        """The check these attempts belong to ended: later answers are late."""
        finished, known = self._finished, self._finished_set
        for tid in tids:
            if self._attempts.pop(tid, None) is None:
                continue
            if len(finished) == finished.maxlen:
                known.discard(finished[0])
            finished.append(tid)
            known.add(tid)

    def send(self, base: Base, destination: Endpoint, data: bytes, now: float) -> bool:
        if isinstance(base, int):
            self._outbox.append(Datagram(data, destination, base))
            return True
        if isinstance(base, TurnBase):
            if self.relays.send(base, data, destination, now):
                return True
            self.counters.relay_refused += 1
            return False
        datagram = base.wrap(data, destination, now)
        if datagram is None:
            self.counters.relay_refused += 1
            return False
        self._outbox.append(datagram)
        return True

    def mark_changed(self, session: Session) -> None:
        """``session`` changed: its deadline is recomputed before the call returns."""
        self._touched.append(session)

    def want_paced(self, session: Session, *, urgent: bool = False) -> None:
        """``session`` has a check to send when the pacer allows."""
        if urgent:
            if not session.urgent:
                session.urgent = True
                self._urgent.append(session)
        elif not session.queued:
            session.queued = True
            self._ready.append(session)

    # -- internals -------------------------------------------------------------------------------

    def _after_input(self, now: float) -> None:
        if self._relay_peers_stale:
            self.release_relay_peers(now)
        self._pace(now)
        touched, self._touched = self._touched, []
        for session in dict.fromkeys(touched):
            if session.closed:
                continue
            # A deadline that moved either way gets a fresh entry; the old one is
            # skipped when popped (cheaper than waking the session for nothing).
            deadline = session.deadline(now)
            if deadline != session.scheduled:
                session.scheduled = deadline
                if deadline is not None:
                    heapq.heappush(self._heap, (deadline, next(self._seq), session))

    def _pace(self, now: float) -> None:
        """Send one paced check if the slot is free (RFC 8445 §14.2)."""
        while now >= self._next_check and (self._urgent or self._ready):
            if self._urgent:
                session = self._urgent.popleft()
                session.urgent = False
            else:
                session = self._ready.popleft()
                session.queued = False
            if session.closed:
                continue
            pair = session.next_check(now)
            if pair is None:
                continue
            session.transmit(pair, now)
            self._next_check = now + self.config.ta
            if session.has_paced_work():
                self.want_paced(session, urgent=session.triggered_waiting)

    def _receive(self, data: bytes, remote: Endpoint, base: Base, now: float) -> None:
        counters = self.counters
        if not is_stun(data):
            counters.not_stun += 1
            return
        message_class = ((data[0] & 0x01) << 1) | ((data[1] >> 4) & 0x01)
        if message_class >= 2:  # a success or error response
            tid = bytes(data[_TID])
            attempt = self._attempts.get(tid)
            if attempt is None:
                if tid in self._finished_set:
                    counters.late_response += 1
                else:
                    counters.unknown_transaction += 1
                return
            message = self._parse(data)
            if message is None:
                return
            owner, pair, sent_at, use_candidate = attempt
            owner.receive_response(
                pair,
                sent_at=sent_at,
                use_candidate=use_candidate,
                message=message,
                source=remote,
                base=base,
                now=now,
            )
            self.mark_changed(owner)
            return
        if message_class == 1:  # an indication (RFC 8445 §11 keepalives): nothing to do
            counters.unexpected += 1
            return
        message = self._parse(data)
        if message is None:
            return
        names = split_username(message)
        session = None if names is None else self._by_ufrag.get(names[0])
        if session is None:
            counters.unknown_username += 1
            return
        try:
            verify_integrity(message, session.local_key)
        except IntegrityError:
            counters.bad_integrity += 1
            return
        request = read_request(message)
        if request is None:
            counters.bad_check += 1
            return
        session.receive_request(
            request, transaction_id=message.transaction_id, source=remote, base=base, now=now
        )
        self.mark_changed(session)

    def _parse(self, data: bytes) -> Message | None:
        try:
            message = parse_message(data)
        except StunDecodeError:
            self.counters.malformed += 1
            return None
        if message.method != Method.BINDING:
            self.counters.unexpected += 1
            return None
        return message
