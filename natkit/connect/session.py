"""One peer's connect session: signalling state, check list, selection, keepalive.

The agent (:mod:`natkit.connect.agent`) owns sockets, pacing, the timer
heap and demultiplexing, and calls into the session of the peer a message
or a signal belongs to. A session never sends on its own: it asks the
agent (``send``, ``want_paced``, ``emit``), so pacing and the agent's
counters cover every session.

Theory of operation
-------------------
1. **Signalling.** On creation the session announces itself
   (:class:`~natkit.connect.signals.Announcement`) and re-sends with
   exponential backoff until the peer acknowledges our generation and
   every candidate. A peer's announcement of a new generation is an ICE
   restart: its old candidates, pairs and selected path are dropped.
2. **Pairs** form from the agent's pairing candidates and the peer's
   candidates as either side trickles them, frozen or waiting by
   foundation (RFC 8445 §6.1.2.6, RFC 8838 §8).
3. **Checks** (RFC 8445 §7.2): the pacer asks :meth:`Session.next_check`
   for the next one: triggered checks first, then due retransmissions and
   re-checks, then the highest-priority waiting pair, unfreezing one when
   none waits. Requests are answered at once (§7.3), teach peer-reflexive
   candidates (§7.3.1.3) and trigger checks (§7.3.1.4); role conflicts
   are repaired by tie-breaker (§7.3.1.1).
4. **Selection** (controlling side): once every pair was checked, or
   ``selection_settle`` after the first success, the best valid pair by
   :func:`~natkit.connect.selection.rank` is nominated with a USE-CANDIDATE
   check; its answer selects it (:class:`PathSelected`). Later samples of
   other pairs may replace it through the hysteresis of
   :func:`~natkit.connect.selection.clearly_better`. The controlled side
   selects the latest pair the peer nominated once its own check of that
   pair is answered.
5. **Keepalive and loss**: the selected pair is checked every keepalive
   interval; a keepalive unanswered for the loss window loses the path
   (:class:`PathLost`), every pair is re-checked at once, and the
   controlling side nominates the next best valid pair (its nomination is
   the fresh check).
6. **Unreachable**: when every pair failed, :class:`PeerUnreachable` is
   reported once; re-checks continue on the backoff of ``ConnectConfig``.
"""

from __future__ import annotations

import contextlib
import random
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from natkit.connect.candidates import (
    Base,
    CandidateKind,
    CandidateTransport,
    LocalCandidate,
    Relay,
    destination_for,
    path_kind,
    priority_of,
)
from natkit.connect.checks import (
    PWD_CHARS,
    CheckRequest,
    build_request,
    build_role_conflict,
    build_success,
    random_ice_string,
)
from natkit.connect.config import ConnectConfig
from natkit.connect.events import (
    LossReason,
    PairChecked,
    Path,
    PathLost,
    PathSelected,
    PeerReportReceived,
    PeerRestarted,
    PeerUnreachable,
    Role,
    RoleChanged,
    SignalReady,
    UnreachableReason,
)
from natkit.connect.pairs import CheckPurpose, Pair, PairState, PairStatus
from natkit.connect.selection import clearly_better, rank
from natkit.connect.signals import (
    Acknowledgement,
    Announcement,
    CandidatesAdded,
    SignalCandidate,
    SignalMessage,
)
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.stun.attributes import TextAttribute
from natkit.stun.codec import Message
from natkit.stun.constants import AttributeType, ErrorCode, MessageClass
from natkit.stun.integrity import IntegrityError, short_term_key, verify_integrity

if TYPE_CHECKING:
    from natkit.connect.agent import ConnectAgent


class SessionState:
    """Where a session is, for queries and error messages (see ``ConnectAgent.state``)."""

    #: No announcement from the peer yet.
    WAITING_FOR_PEER = "waiting for the peer's announcement"
    CHECKING = "checking"
    CONNECTED = "connected"
    #: The selected path was lost; looking for another.
    RECONNECTING = "reconnecting"
    UNREACHABLE = "unreachable"


class Session:
    """The connect state of one peer (driven by the agent; see the module doc)."""

    __slots__ = (
        "_after_loss",
        "_agent",
        "_config",
        "_due",
        "_due_triggered",
        "_first_valid_at",
        "_heard",
        "_keepalive_at",
        "_no_signal_at",
        "_nominating",
        "_nominee",
        "_prflx_count",
        "_report",
        "_signal_at",
        "_signal_interval",
        "_unreachable_reported",
        "_username",
        "acked",
        "closed",
        "generation",
        "local_key",
        "local_pwd",
        "local_ufrag",
        "pairs",
        "peer",
        "queued",
        "remote",
        "remote_count",
        "remote_generation",
        "remote_key",
        "remote_pwd",
        "remote_tie_breaker",
        "remote_ufrag",
        "role",
        "scheduled",
        "selected",
        "urgent",
    )

    def __init__(
        self,
        agent: ConnectAgent,
        peer: Any,
        *,
        role: Role,
        ufrag: str,
        rng: random.Random,
        now: float,
    ) -> None:
        self._agent = agent
        self._config: ConnectConfig = agent.config
        self.peer = peer
        self.role = role
        self.local_ufrag = ufrag
        self.local_pwd = random_ice_string(rng, PWD_CHARS)
        self.local_key = short_term_key(self.local_pwd)
        self.generation = rng.getrandbits(32)
        # The peer's announcement.
        self.remote_generation: int | None = None
        self.remote_ufrag: str | None = None
        self.remote_pwd: str | None = None
        self.remote_key = b""
        self.remote_tie_breaker = 0
        #: How many of the peer's candidates we hold (contiguously from its first).
        self.remote_count = 0
        self.remote: dict[Endpoint, SignalCandidate] = {}
        self._report = b""
        self._username: TextAttribute | None = None
        self._prflx_count = 0
        # Pairs, keyed by (base, destination).
        self.pairs: dict[tuple[Base, Endpoint], Pair] = {}
        self._due: deque[Pair] = deque()
        self._due_triggered: deque[Pair] = deque()
        # Selection.
        self.selected: Pair | None = None
        self._nominating: Pair | None = None
        self._nominee: Pair | None = None
        self._first_valid_at: float | None = None
        self._after_loss = False
        self._keepalive_at: float | None = None
        self._unreachable_reported = False
        # Signalling.
        self.acked = False
        self._heard = False
        self._signal_interval = self._config.signal_retry_min
        self._signal_at: float | None = now + self._signal_interval
        self._no_signal_at: float | None = now + self._config.signal_timeout
        # The agent's bookkeeping.
        self.queued = False
        self.urgent = False
        self.scheduled: float | None = None
        self.closed = False
        self._emit_signal(self._announcement())

    # -- queries ------------------------------------------------------------------------

    @property
    def state(self) -> str:
        if self.remote_generation is None:
            return SessionState.WAITING_FOR_PEER
        if self.selected is not None:
            return SessionState.CONNECTED
        if self._unreachable_reported:
            return SessionState.UNREACHABLE
        if self._after_loss:
            return SessionState.RECONNECTING
        return SessionState.CHECKING

    def path_of(self, pair: Pair) -> Path:
        """The event view of ``pair``."""
        base = pair.base
        local = pair.mapped if pair.mapped is not None else pair.local.address
        local_kind = self._agent.kind_of(local, pair.local)
        remote_kind = pair.remote.kind
        return Path(
            local=local,
            remote=pair.destination,
            kind=path_kind(local_kind, remote_kind),
            local_kind=local_kind,
            remote_kind=remote_kind,
            socket=base if isinstance(base, int) else None,
            relay=base.name if isinstance(base, Relay) else None,
        )

    def status(self) -> tuple[PairStatus, ...]:
        rows = []
        for pair in sorted(self.pairs.values(), key=lambda p: -p.priority):
            path = self.path_of(pair)
            rows.append(
                PairStatus(
                    local=path.local,
                    remote=path.remote,
                    local_kind=path.local_kind,
                    remote_kind=path.remote_kind,
                    socket=path.socket,
                    relay=path.relay,
                    state=pair.state,
                    priority=pair.priority,
                    rtt=pair.srtt,
                    last_rtt=pair.last_rtt,
                    checks=pair.checks,
                    answers=pair.answers,
                    selected=pair is self.selected,
                    nominated=pair is self._nominee or pair is self._nominating,
                )
            )
        return tuple(rows)

    # -- signalling -----------------------------------------------------------------------

    def _announcement(self) -> Announcement:
        return Announcement(
            generation=self.generation,
            ufrag=self.local_ufrag,
            pwd=self.local_pwd,
            tie_breaker=self._agent.tie_breaker,
            candidates=self._agent.announced,
            peer_generation=self.remote_generation,
            peer_candidates=self.remote_count,
            report=self._agent.report,
        )

    def _acknowledgement(self) -> Acknowledgement:
        return Acknowledgement(self.generation, self.remote_generation, self.remote_count)

    def _emit_signal(self, message: SignalMessage) -> None:
        self._agent.emit(SignalReady(self.peer, message))

    def _resend_later(self, now: float, *, reset: bool = False) -> None:
        if reset:
            self._signal_interval = self._config.signal_retry_min
        self._signal_at = now + self._signal_interval

    def _note_peer_holds(self, generation: int | None, count: int, now: float) -> bool:
        """Record what the peer holds of ours; ``True`` when it holds everything."""
        self.acked = generation == self.generation and count >= len(self._agent.announced)
        if self.acked:
            self._signal_at = None
        elif self._signal_at is None:
            self._resend_later(now, reset=True)
        return self.acked

    def receive_signal(self, message: SignalMessage, now: float) -> None:
        self._heard = True
        self._no_signal_at = None
        if isinstance(message, Announcement):
            self._receive_announcement(message, now)
        elif isinstance(message, CandidatesAdded):
            self._receive_candidates(message, now)
        else:
            self._receive_acknowledgement(message, now)

    def _receive_announcement(self, message: Announcement, now: float) -> None:
        if message.generation != self.remote_generation:
            if self.remote_generation is not None:
                self._restart_for_peer(message.generation, now)
            self.remote_generation = message.generation
            self.remote_ufrag = message.ufrag
            self.remote_pwd = message.pwd
            self.remote_key = short_term_key(message.pwd)
            self._username = TextAttribute(
                AttributeType.USERNAME, f"{message.ufrag}:{self.local_ufrag}"
            )
            self.remote_count = 0
        elif (message.ufrag, message.pwd) != (self.remote_ufrag, self.remote_pwd):
            # The same generation with other credentials: a confused peer.
            self._agent.counters.signals_ignored += 1
            return
        self.remote_tie_breaker = message.tie_breaker
        self._add_remote(message.candidates, 0, now)
        if message.report != self._report:
            self._report = message.report
            self._agent.emit(PeerReportReceived(self.peer, message.report))
        # Answer: our announcement if the peer lacks any of it, else an
        # acknowledgement (it re-sends until it sees one).
        if self._note_peer_holds(message.peer_generation, message.peer_candidates, now):
            self._emit_signal(self._acknowledgement())
        else:
            self._emit_signal(self._announcement())
            self._resend_later(now, reset=True)
        self._check_unreachable(now)

    def _receive_candidates(self, message: CandidatesAdded, now: float) -> None:
        if message.generation != self.remote_generation:
            self._agent.counters.signals_ignored += 1
        else:
            self._add_remote(message.candidates, message.first_index, now)
        # Either way the peer learns what we hold (and re-announces on a gap).
        self._emit_signal(self._acknowledgement())

    def _receive_acknowledgement(self, message: Acknowledgement, now: float) -> None:
        if message.generation != self.remote_generation:
            self._agent.counters.signals_ignored += 1
        if not self._note_peer_holds(message.peer_generation, message.peer_candidates, now):
            self._emit_signal(self._announcement())

    def resend_due(self, now: float) -> None:
        if self.acked:
            self._signal_at = None
            return
        self._emit_signal(self._announcement())
        self._signal_interval = min(self._config.signal_retry_max, 2 * self._signal_interval)
        self._resend_later(now)

    def local_candidates_added(self, added: tuple[SignalCandidate, ...], now: float) -> None:
        """The agent has new announced candidates (trickle, RFC 8838)."""
        self.acked = False
        if self.remote_generation is not None and added:
            first = len(self._agent.announced) - len(added)
            self._emit_signal(CandidatesAdded(self.generation, first, added))
        self._resend_later(now, reset=True)

    def report_changed(self, now: float) -> None:
        self.acked = False
        self._emit_signal(self._announcement())
        self._resend_later(now, reset=True)

    def _restart_for_peer(self, generation: int, now: float) -> None:
        """The peer restarted (RFC 8445 §9: an ICE restart): forget its state."""
        if self.selected is not None:
            self._emit_lost(self.selected, LossReason.PEER_RESTARTED, "the peer restarted")
            self.selected = None
        for pair in list(self.pairs.values()):
            self._drop_pair(pair)
        self.remote.clear()
        self._due.clear()
        self._due_triggered.clear()
        self._nominating = self._nominee = None
        self._first_valid_at = None
        self._after_loss = False
        self._keepalive_at = None
        self._unreachable_reported = False
        self._prflx_count = 0
        self._agent.emit(PeerRestarted(self.peer, generation))

    # -- pairs -------------------------------------------------------------------------------

    def _add_remote(
        self, candidates: Iterable[SignalCandidate], first_index: int, now: float
    ) -> None:
        candidates = tuple(candidates)
        if first_index <= self.remote_count:
            self.remote_count = max(self.remote_count, first_index + len(candidates))
        added = False
        for candidate in candidates:
            if candidate.transport is not CandidateTransport.UDP:
                continue  # a UDP tunnel cannot use TCP candidates (RFC 6544)
            known = self.remote.get(candidate.address)
            if known is not None:
                if known.kind is CandidateKind.PEER_REFLEXIVE:
                    self._replace_remote(known, candidate)
                continue
            if len(self.remote) >= self._config.max_remote_candidates:
                self._agent.counters.remote_candidates_dropped += 1
                continue
            self.remote[candidate.address] = candidate
            for local in self._agent.pairing:
                added |= self._form_pair(local, candidate) is not None
        if added:
            self._unreachable_reported = False
            self.restart_checks(now)
            self._agent.want_paced(self)

    def _replace_remote(self, learnt: SignalCandidate, announced: SignalCandidate) -> None:
        """A peer-reflexive candidate later announced keeps its pairs (RFC 8445 §7.3.1.3)."""
        self.remote[announced.address] = announced
        for pair in self.pairs.values():
            if pair.remote is learnt:
                pair.remote = announced
                pair.set_role(self.role is Role.CONTROLLING)

    def _form_pair(
        self, local: LocalCandidate, remote: SignalCandidate, destination: Endpoint | None = None
    ) -> Pair | None:
        if destination is None:
            destination = destination_for(local, remote.address)
            if destination is None:
                return None
        key = (local.base, destination)
        existing = self.pairs.get(key)
        if existing is not None:
            if local.priority > existing.local.priority:  # RFC 8445 §6.1.2.4 pruning
                existing.local = local
                existing.set_role(self.role is Role.CONTROLLING)
            return None
        if len(self.pairs) >= self._config.max_pairs:
            self._agent.counters.pairs_dropped += 1
            return None
        foundation = f"{local.foundation}:{remote.foundation}"
        busy = any(
            p.foundation == foundation and p.state in (PairState.WAITING, PairState.IN_PROGRESS)
            for p in self.pairs.values()
        )
        state = PairState.FROZEN if busy else PairState.WAITING
        pair = Pair(local, remote, destination, state, self.role is Role.CONTROLLING)
        self.pairs[key] = pair
        return pair

    def local_candidate_added(self, local: LocalCandidate, now: float) -> None:
        """A new pairing candidate of the agent: pair it with every remote one."""
        added = False
        for remote in list(self.remote.values()):
            added |= self._form_pair(local, remote) is not None
        if added:
            self._unreachable_reported = False
            self._agent.want_paced(self)

    def local_candidates_removed(self, now: float) -> None:
        """Re-pair after the agent dropped local candidates."""
        pairing = {(c.base, c.pairs_with, c.candidate.prefix): c for c in self._agent.pairing}
        for pair in list(self.pairs.values()):
            local = pair.local
            if not local.announced or self._agent.holds(local):
                continue
            replacement = pairing.get((local.base, local.pairs_with, local.candidate.prefix))
            if replacement is not None:
                pair.local = replacement
                pair.set_role(self.role is Role.CONTROLLING)
                continue
            if pair is self.selected:
                self.selected = None
                self._emit_lost(
                    pair, LossReason.LOCAL_CANDIDATE_REMOVED, "its local candidate was removed"
                )
                self._after_loss = True
                self._keepalive_at = None
            self._drop_pair(pair)
        if self.selected is None and self.remote_generation is not None:
            self.restart_checks(now)
            self._maybe_select(now)
            self._check_unreachable(now)

    def add_known_pair(self, local: LocalCandidate, remote: Endpoint, now: float) -> None:
        """A pair known to work from elsewhere (part 2: a birthday hit): check it now."""
        candidate = self.remote.get(remote)
        if candidate is None:
            candidate = self._learn_remote(remote, priority_of(CandidateKind.PEER_REFLEXIVE))
            if candidate is None:
                return
        pair = self.pairs.get((local.base, remote)) or self._form_pair(local, candidate, remote)
        if pair is not None:
            self._unreachable_reported = False
            self._trigger(pair, now)

    def _learn_remote(self, address: Endpoint, priority: int) -> SignalCandidate | None:
        """A peer-reflexive remote candidate (RFC 8445 §7.3.1.3)."""
        if len(self.remote) >= self._config.max_remote_candidates:
            self._agent.counters.remote_candidates_dropped += 1
            return None
        self._prflx_count += 1
        candidate = SignalCandidate(
            CandidateKind.PEER_REFLEXIVE, address, priority, f"prflx{self._prflx_count}"
        )
        self.remote[address] = candidate
        return candidate

    def _drop_pair(self, pair: Pair) -> None:
        self._agent.forget(pair.end())
        pair.removed = True
        self.pairs.pop((pair.base, pair.destination), None)
        if pair is self._nominating:
            self._nominating = None
        if pair is self._nominee:
            self._nominee = None

    def restart_checks(self, now: float) -> None:
        """Re-check every finished, unselected pair at once, backoff reset."""
        for pair in self.pairs.values():
            if pair is self.selected or pair.state in (PairState.FROZEN, PairState.WAITING):
                continue
            pair.recheck_interval = self._config.recheck_min
            if not pair.in_flight:
                pair.recheck_at = now

    def network_changed(self, now: float) -> None:
        self.restart_checks(now)
        if self.selected is not None and not self.selected.in_flight:
            self._keepalive_at = now

    def set_role(self, role: Role, now: float) -> None:
        if role is self.role:
            return
        self.role = role
        for pair in self.pairs.values():
            pair.set_role(role is Role.CONTROLLING)
        self._agent.emit(RoleChanged(self.peer, role))
        if role is Role.CONTROLLED:
            self._nominating = None
        else:
            self._maybe_select(now)

    # -- sending checks ----------------------------------------------------------------------

    @property
    def triggered_waiting(self) -> bool:
        """A triggered check waits for the pacer (served before ordinary ones)."""
        return bool(self._due_triggered)

    def has_paced_work(self) -> bool:
        if self._due_triggered or self._due:
            return True
        return self.remote_generation is not None and self._pick_ordinary() is not None

    def _pick_ordinary(self) -> Pair | None:
        """RFC 8445 §6.1.4.2: the highest-priority waiting pair, else unfreeze one
        whose foundation no waiting or in-progress pair has."""
        waiting = None
        frozen = None
        active: set[str] = set()
        for pair in self.pairs.values():
            state = pair.state
            if state is PairState.WAITING:
                if not pair.in_flight and (waiting is None or pair.priority > waiting.priority):
                    waiting = pair
                active.add(pair.foundation)
            elif state is PairState.IN_PROGRESS:
                active.add(pair.foundation)
        if waiting is not None:
            return waiting
        for pair in self.pairs.values():
            if (
                pair.state is PairState.FROZEN
                and pair.foundation not in active
                and (frozen is None or pair.priority > frozen.priority)
            ):
                frozen = pair
        return frozen

    def next_check(self, now: float) -> Pair | None:
        """The pair the pacer should transmit on now, if any."""
        for queue in (self._due_triggered, self._due):
            while queue:
                pair = queue.popleft()
                if pair.queued and not pair.removed:
                    pair.queued = False
                    return pair
        if self.remote_generation is None:
            return None
        ordinary = self._pick_ordinary()
        if ordinary is not None:
            ordinary.state = PairState.IN_PROGRESS
            ordinary.begin(CheckPurpose.CHECK, self._config.check_policy.rc)
        return ordinary

    def _queue(self, pair: Pair, *, triggered: bool) -> None:
        if pair.queued:
            if not triggered:
                return
            with contextlib.suppress(ValueError):
                self._due.remove(pair)
        pair.queued = True
        (self._due_triggered if triggered else self._due).append(pair)
        self._agent.want_paced(self, urgent=triggered)

    def _start(
        self, pair: Pair, purpose: CheckPurpose, now: float, *, triggered: bool = False
    ) -> None:
        """Begin a check on ``pair`` and queue its first transmission."""
        keepalive = purpose is CheckPurpose.KEEPALIVE
        # The controlling side's keepalives repeat the nomination, so a peer
        # that lost track of it (a restart, a missed answer) picks it up again.
        nominate = purpose is CheckPurpose.NOMINATE or (keepalive and self.role is Role.CONTROLLING)
        if pair.in_flight:
            # One check at a time per pair: the one in flight takes the new purpose
            # when it matters more, and goes out at once.
            if nominate or keepalive:
                pair.purpose = purpose
                pair.nominate = pair.nominate or nominate
                pair.limit = pair.transmissions + self._limit(pair, purpose)
            if keepalive:
                pair.queued = False
                self.transmit(pair, now)
            elif triggered or purpose is CheckPurpose.NOMINATE:
                pair.next_send = None
                pair.fail_at = None
                self._queue(pair, triggered=True)
            return
        if pair.state is PairState.WAITING or pair.state is PairState.FROZEN:
            pair.state = PairState.IN_PROGRESS
        pair.recheck_at = None
        pair.begin(purpose, self._limit(pair, purpose), nominate=nominate)
        if keepalive:
            self.transmit(pair, now)
        else:
            self._queue(pair, triggered=triggered or nominate)

    def _limit(self, pair: Pair, purpose: CheckPurpose) -> int:
        if purpose is CheckPurpose.KEEPALIVE:
            return self._config.loss_transmissions
        if purpose is CheckPurpose.RECHECK and pair.state is PairState.FAILED:
            return self._config.recheck_transmissions
        return self._config.check_policy.rc

    def _trigger(self, pair: Pair, now: float) -> None:
        """A triggered check (RFC 8445 §7.3.1.4)."""
        self._start(pair, CheckPurpose.CHECK, now, triggered=True)

    def transmit(self, pair: Pair, now: float) -> None:
        """Send one attempt of ``pair``'s check (paced by the agent unless a keepalive)."""
        agent = self._agent
        username = self._username
        if username is None or pair.purpose is None:
            return
        tid = agent.new_transaction_id()
        controlling = self.role is Role.CONTROLLING
        use_candidate = pair.nominate and controlling
        data = build_request(
            tid,
            username=username,
            priority=pair.check_priority,
            controlling=controlling,
            tie_breaker=agent.tie_breaker,
            use_candidate=use_candidate,
            key=self.remote_key,
        )
        agent.register(tid, self, pair, now, use_candidate)
        agent.send(pair.base, pair.destination, data, now)
        pair.tids.append(tid)
        if pair.transmissions == 0:
            pair.started = now
        pair.transmissions += 1
        pair.checks += 1
        pair.queued = False
        config = self._config
        if pair.purpose is CheckPurpose.KEEPALIVE:
            interval = final = config.loss_retransmit
        else:
            policy = config.check_policy
            interval = policy.rto * (1 << (pair.transmissions - 1))
            final = policy.rto * policy.rm
        if pair.transmissions < pair.limit:
            pair.next_send, pair.fail_at = now + interval, None
        else:
            pair.next_send, pair.fail_at = None, now + final
        agent.touch(self)

    # -- receiving checks --------------------------------------------------------------------

    def receive_request(
        self,
        request: CheckRequest,
        *,
        transaction_id: bytes,
        source: Endpoint,
        base: Base,
        now: float,
    ) -> None:
        """An authenticated Binding request for us (integrity already checked)."""
        agent = self._agent
        if self.remote_ufrag is not None and request.remote_ufrag != self.remote_ufrag:
            agent.counters.unknown_username += 1  # a previous generation's check
            return
        # RFC 8445 §7.3.1.1: repair a role conflict by tie-breaker.
        ours = agent.tie_breaker
        if request.controlling and self.role is Role.CONTROLLING:
            agent.counters.role_conflicts += 1
            if ours >= request.tie_breaker:
                agent.send(base, source, build_role_conflict(transaction_id, self.local_key), now)
                return
            self.set_role(Role.CONTROLLED, now)
        elif not request.controlling and self.role is Role.CONTROLLED:
            agent.counters.role_conflicts += 1
            if ours < request.tie_breaker:
                agent.send(base, source, build_role_conflict(transaction_id, self.local_key), now)
                return
            self.set_role(Role.CONTROLLING, now)
        agent.send(base, source, build_success(transaction_id, source, self.local_key), now)
        if self.remote_ufrag is None:
            return  # answered; our own checks start with the peer's announcement
        pair = self.pairs.get((base, source))
        if pair is None:
            pair = self._pair_for_request(source, base, request.priority)
            if pair is None:
                return
            self._unreachable_reported = False
        if pair.state is not PairState.SUCCEEDED and not pair.in_flight:
            self._trigger(pair, now)
        if request.use_candidate and self.role is Role.CONTROLLED:
            self._nominated(pair, now)
        agent.touch(self)

    def _pair_for_request(self, source: Endpoint, base: Base, priority: int) -> Pair | None:
        local = self._agent.pairing_local(base, source)
        if local is None:
            self._agent.counters.unpaired_requests += 1
            return None
        remote = self.remote.get(source) or self._learn_remote(source, priority)
        if remote is None:
            return None
        return self._form_pair(local, remote, source)

    def _nominated(self, pair: Pair, now: float) -> None:
        """The controlling peer nominated ``pair`` (RFC 8445 §7.3.1.5); the latest
        nomination wins once our own check of it is answered."""
        if pair.held_until is not None and pair.held_until > now:
            return
        self._nominee = pair
        if pair.valid and pair is not self.selected:
            self._select(pair, now)

    def receive_response(
        self,
        pair: Pair,
        *,
        sent_at: float,
        use_candidate: bool,
        message: Message,
        source: Endpoint,
        base: Base,
        now: float,
    ) -> None:
        """An answer to one of our checks on ``pair`` (matched by transaction ID)."""
        agent = self._agent
        counters = agent.counters
        # RFC 8445 §7.2.5.2.1: only from where the request went, to where it left.
        if source != pair.destination or base != pair.base:
            counters.wrong_source += 1
            return
        try:
            verify_integrity(message, self.remote_key)
        except IntegrityError:
            counters.bad_integrity += 1
            return
        if message.message_class is MessageClass.ERROR_RESPONSE:
            error = message.error_code
            if error is not None and error.code == ErrorCode.ROLE_CONFLICT:
                # RFC 8445 §7.2.5.1: switch role, check the pair again.
                counters.role_conflicts += 1
                agent.forget(pair.end())
                switched = Role.CONTROLLED if self.role is Role.CONTROLLING else Role.CONTROLLING
                self.set_role(switched, now)
                self._trigger(pair, now)
            else:
                counters.error_responses += 1
                self._check_failed(pair, now)
            agent.touch(self)
            return
        mapped = message.xor_mapped_address
        if mapped is None:
            counters.malformed += 1
            return
        self._check_succeeded(pair, now - sent_at, mapped, use_candidate, now)
        agent.touch(self)

    # -- outcomes ---------------------------------------------------------------------------

    def _check_succeeded(
        self, pair: Pair, rtt: float, mapped: Endpoint, use_candidate: bool, now: float
    ) -> None:
        config = self._config
        purpose = pair.purpose
        self._agent.forget(pair.end())
        was_valid = pair.valid
        pair.state = PairState.SUCCEEDED
        pair.mapped = mapped
        pair.record_rtt(rtt)
        if self._first_valid_at is None:
            self._first_valid_at = now
        # RFC 8445 §7.2.5.3.3: a success unfreezes the pairs of its foundation.
        for other in self.pairs.values():
            if other.state is PairState.FROZEN and other.foundation == pair.foundation:
                other.state = PairState.WAITING
                self._agent.want_paced(self)
        self._pair_event(pair, True, rtt)
        if pair is self.selected:
            self._schedule_keepalive(now)
        elif purpose is CheckPurpose.RECHECK and was_valid:
            pair.recheck_interval = min(config.recheck_max, 2 * pair.recheck_interval)
            pair.recheck_at = now + pair.recheck_interval
        else:
            pair.recheck_interval = config.recheck_min
            pair.recheck_at = now + pair.recheck_interval
        if self.role is Role.CONTROLLING:
            if use_candidate and pair is self._nominating:
                self._nominating = None
                self._select(pair, now)
            elif self.selected is not None and pair is not self.selected:
                self._challenge(pair, rtt, now)
            else:
                self._maybe_select(now)
        elif pair is self._nominee and pair is not self.selected:
            self._select(pair, now)

    def _check_failed(self, pair: Pair, now: float) -> None:
        config = self._config
        self._agent.forget(pair.end())
        was_valid = pair.valid
        pair.state = PairState.FAILED
        pair.confirmations = 0
        self._pair_event(pair, False, None)
        if pair is self._nominating:
            self._nominating = None
        if pair is self.selected:
            self._lose(LossReason.KEEPALIVE_TIMEOUT, now)
            return
        if was_valid:
            pair.recheck_interval = config.recheck_min
        else:
            pair.recheck_interval = min(
                config.retry_max, max(config.recheck_min, 2 * pair.recheck_interval)
            )
        pair.recheck_at = now + pair.recheck_interval
        if self.role is Role.CONTROLLING:
            self._maybe_select(now)
        self._check_unreachable(now)

    def _pair_event(self, pair: Pair, succeeded: bool, rtt: float | None) -> None:
        if not self._config.pair_events:
            return
        path = self.path_of(pair)
        self._agent.emit(
            PairChecked(
                self.peer,
                path.local,
                path.remote,
                path.local_kind,
                path.remote_kind,
                path.socket,
                succeeded,
                rtt,
            )
        )

    # -- selection ------------------------------------------------------------------------------

    def _eligible(self, now: float) -> list[Pair]:
        return [
            p
            for p in self.pairs.values()
            if p.valid and (p.held_until is None or p.held_until <= now)
        ]

    def _settle_deadline(self, best: Pair) -> float:
        """When the first selection may be made: once no unchecked pair could
        still beat ``best`` (each pair sent, and unanswered for longer than
        ``best``'s RTT), at the latest ``selection_settle`` after the first success."""
        assert self._first_valid_at is not None
        latest = self._first_valid_at + self._config.selection_settle
        threshold = best.srtt or 0.0
        ready = 0.0
        for pair in self.pairs.values():
            if pair.state is PairState.WAITING or pair.state is PairState.FROZEN:
                return latest
            if pair.state is PairState.IN_PROGRESS:
                if pair.transmissions == 0:
                    return latest
                ready = max(ready, pair.started + threshold)
        return min(latest, ready)

    def _maybe_select(self, now: float) -> None:
        """Controlling side without a selected path: nominate the best valid pair
        when the first round has settled (at once after a loss)."""
        if (
            self.role is not Role.CONTROLLING
            or self.selected is not None
            or self._nominating is not None
        ):
            return
        eligible = self._eligible(now)
        if not eligible:
            return
        best = min(eligible, key=rank)
        if not self._after_loss and self._settle_deadline(best) > now:
            return
        self._nominate(best, now)

    def _nominate(self, pair: Pair, now: float) -> None:
        self._nominating = pair
        pair.confirmations = 0
        self._start(pair, CheckPurpose.NOMINATE, now, triggered=True)

    def _challenge(self, pair: Pair, sample: float, now: float) -> None:
        """Hysteresis: count ``pair``'s clear wins over the selected pair."""
        selected = self.selected
        assert selected is not None
        held = pair.held_until is not None and pair.held_until > now
        if held or self._nominating is not None:
            return
        if not clearly_better(pair, sample, selected, self._config):
            pair.confirmations = 0
            return
        pair.confirmations += 1
        if pair.confirmations >= self._config.switch_confirmations:
            self._nominate(pair, now)
        else:
            pair.recheck_at = now + self._config.confirm_interval

    def _select(self, pair: Pair, now: float) -> None:
        previous = self.selected
        self.selected = pair
        self._nominee = pair if self.role is Role.CONTROLLED else self._nominee
        self._after_loss = False
        self._unreachable_reported = False
        pair.recheck_at = None
        for other in self.pairs.values():
            other.confirmations = 0
        if previous is not None and previous is not pair and not previous.removed:
            previous.recheck_interval = self._config.recheck_min
            previous.recheck_at = now + previous.recheck_interval
        self._schedule_keepalive(now)
        path = self.path_of(pair)
        self._agent.emit(
            PathSelected(
                peer=self.peer,
                local=path.local,
                remote=path.remote,
                kind=path.kind,
                rtt=pair.srtt if pair.srtt is not None else 0.0,
                previous=None if previous is None else self.path_of(previous),
                local_kind=path.local_kind,
                remote_kind=path.remote_kind,
                socket=path.socket,
                relay=path.relay,
            )
        )

    def _schedule_keepalive(self, now: float) -> None:
        config = self._config
        jitter = self._agent.random() * config.keepalive_jitter
        self._keepalive_at = now + config.keepalive_interval * (1 - jitter)

    def _emit_lost(self, pair: Pair, reason: LossReason, detail: str) -> None:
        path = self.path_of(pair)
        self._agent.emit(
            PathLost(
                peer=self.peer,
                local=path.local,
                remote=path.remote,
                kind=path.kind,
                reason=reason,
                detail=detail,
                socket=path.socket,
                relay=path.relay,
            )
        )

    def _lose(self, reason: LossReason, now: float, detail: str | None = None) -> None:
        """The selected path is gone: report it, re-check everything, fail over."""
        pair = self.selected
        assert pair is not None
        if detail is None:
            detail = (
                f"no answer to keepalives for {self._config.loss_window:g} s"
                if reason is LossReason.KEEPALIVE_TIMEOUT
                else reason.value
            )
        self.selected = None
        self._keepalive_at = None
        self._after_loss = True
        if self._nominee is pair:
            self._nominee = None
        self._emit_lost(pair, reason, detail)
        self._maybe_select(now)
        self.restart_checks(now)
        self._check_unreachable(now)

    def path_unusable(self, now: float, reason: str) -> None:
        pair = self.selected
        if pair is None:
            raise LocalProtocolError(
                f"path_unusable: no path is selected for peer {self.peer!r} ({self.state})"
            )
        pair.held_until = now + self._config.unusable_hold
        self._agent.forget(pair.end())
        self._lose(LossReason.REJECTED, now, reason or "the consumer rejected the path")

    def _check_unreachable(self, now: float) -> None:
        if (
            self._unreachable_reported
            or self.remote_generation is None
            or not self.remote
            or not self._agent.pairing
            or self.selected is not None
            or self._nominating is not None
        ):
            return
        if any(p.state is not PairState.FAILED for p in self.pairs.values()):
            return
        self._unreachable_reported = True
        if not self.pairs:
            reason = UnreachableReason.NO_COMPATIBLE_PAIRS
            detail = "no local candidate pairs with the peer's (address families differ)"
            retry = self._config.recheck_min
        else:
            reason = UnreachableReason.CHECKS_FAILED
            checks = sum(p.checks for p in self.pairs.values())
            detail = (
                f"no direct path: {len(self.pairs)} candidate pairs checked"
                f" ({checks} checks), none answered"
            )
            retry = min(
                (p.recheck_at - now for p in self.pairs.values() if p.recheck_at is not None),
                default=self._config.recheck_min,
            )
        self._agent.emit(
            PeerUnreachable(self.peer, reason, detail, len(self.pairs), max(0.0, retry))
        )

    # -- time ----------------------------------------------------------------------------------

    def on_timer(self, now: float) -> None:
        """Handle everything due at ``now``."""
        for pair in list(self.pairs.values()):
            if pair.removed:
                continue
            if pair.next_send is not None and pair.next_send <= now:
                pair.next_send = None
                if pair.purpose is CheckPurpose.KEEPALIVE:
                    self.transmit(pair, now)
                else:
                    self._queue(pair, triggered=pair.purpose is CheckPurpose.NOMINATE)
            elif pair.fail_at is not None and pair.fail_at <= now:
                self._check_failed(pair, now)
            if pair.held_until is not None and pair.held_until <= now:
                pair.held_until = None
            if (
                not pair.in_flight
                and not pair.removed
                and pair.recheck_at is not None
                and pair.recheck_at <= now
            ):
                pair.recheck_at = None
                purpose = CheckPurpose.CONFIRM if pair.confirmations else CheckPurpose.RECHECK
                self._start(pair, purpose, now)
        if self._keepalive_at is not None and self._keepalive_at <= now:
            self._keepalive_at = None
            if self.selected is not None:
                self._start(self.selected, CheckPurpose.KEEPALIVE, now)
        if self._signal_at is not None and self._signal_at <= now:
            self.resend_due(now)
        if self._no_signal_at is not None and self._no_signal_at <= now:
            self._no_signal_at = None
            if not self._heard:
                self._agent.emit(
                    PeerUnreachable(
                        self.peer,
                        UnreachableReason.NO_SIGNAL,
                        f"no answer from the peer through signalling in"
                        f" {self._config.signal_timeout:g} s",
                        0,
                        max(0.0, (self._signal_at or now) - now),
                    )
                )
        self._maybe_select(now)

    def deadline(self, now: float) -> float | None:
        """The earliest time something of this session is due (``None``: nothing)."""
        times = [
            t for t in (self._keepalive_at, self._signal_at, self._no_signal_at) if t is not None
        ]
        for pair in self.pairs.values():
            if pair.next_send is not None:
                times.append(pair.next_send)
            elif pair.fail_at is not None:
                times.append(pair.fail_at)
            if pair.recheck_at is not None and not pair.in_flight:
                times.append(pair.recheck_at)
            if pair.held_until is not None:
                times.append(pair.held_until)
        if (
            self.role is Role.CONTROLLING
            and self.selected is None
            and self._nominating is None
            and self._first_valid_at is not None
            and not self._after_loss
        ):
            eligible = self._eligible(now)
            if eligible:
                settle = self._settle_deadline(min(eligible, key=rank))
                if settle > now:
                    times.append(settle)
        return min(times) if times else None
