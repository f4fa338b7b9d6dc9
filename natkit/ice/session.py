"""One peer's connect session: signalling state, check list, selection, keepalive.

The agent (:mod:`natkit.ice.agent`) owns sockets, pacing, the timer
heap and demultiplexing, and calls into the session of the peer a message
or a signal belongs to. A session never sends on its own: it asks the
agent (``send``, ``want_paced``, ``emit``), so pacing and the agent's
counters cover every session.

Theory of operation
-------------------
1. **Signalling** (:mod:`natkit.ice.signalling`): announcements,
   acknowledgements, re-sends with backoff. A peer's announcement of a new
   generation is an ICE restart: its old candidates, pairs and selected
   path are dropped.
2. **Pairs** (:mod:`natkit.ice.checklist`) form from the agent's
   pairing candidates and the peer's candidates as either side trickles
   them, frozen or waiting by foundation (RFC 8445 §6.1.2.6, RFC 8838 §8).
3. **Checks** (RFC 8445 §7.2): the pacer asks :meth:`Session.next_check`
   for the next one: triggered checks first, then due retransmissions and
   re-checks, then the highest-priority waiting pair, unfreezing one when
   none waits. Requests are answered at once (§7.3), teach peer-reflexive
   candidates (§7.3.1.3) and trigger checks (§7.3.1.4); role conflicts
   are repaired by tie-breaker (§7.3.1.1).
4. **Selection** (controlling side): once every pair was checked, or
   ``selection_settle`` after the first success, the best valid pair by
   :func:`~natkit.ice.selection.choose` is nominated with a USE-CANDIDATE
   check; its answer selects it (:class:`PathSelected`). Later samples of
   other pairs may replace it through the hysteresis of
   :func:`~natkit.ice.selection.clearly_better`. The controlled side
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

import math
import random
from typing import TYPE_CHECKING, Any

from natkit.birthday.ports import PortRange
from natkit.endpoint import Endpoint, Family
from natkit.errors import LocalProtocolError
from natkit.ice.birthday import BirthdayCoordinator
from natkit.ice.candidates import (
    Base,
    CandidateKind,
    LocalCandidate,
    Relay,
    path_kind,
    priority_of,
)
from natkit.ice.checklist import CheckList
from natkit.ice.checks import (
    PWD_CHARS,
    CheckRequest,
    build_request,
    build_role_conflict,
    build_success,
    random_ice_string,
)
from natkit.ice.config import ConnectConfig
from natkit.ice.events import (
    EscalationDecided,
    LossReason,
    PairChecked,
    Path,
    PathLost,
    PathSelected,
    PeerRestarted,
    PeerUnreachable,
    Role,
    RoleChanged,
    SignalReady,
    UnreachableReason,
)
from natkit.ice.explain import Explanation, Observed, explain_session
from natkit.ice.ladder import Action, Ladder, Sides, Step, plan_ladder
from natkit.ice.pairs import CheckPurpose, Pair, PairState, PairStatus
from natkit.ice.relays import TurnBase
from natkit.ice.report import ReportDecodeError, TraversalReport, decode_report
from natkit.ice.selection import choose, clearly_better, rank
from natkit.ice.signalling import SignalState
from natkit.ice.signals import BirthdayMessage, SignalCandidate, SignalMessage
from natkit.stun.attributes import TextAttribute
from natkit.stun.codec import Message
from natkit.stun.constants import AttributeType, ErrorCode, MessageClass
from natkit.stun.integrity import IntegrityError, short_term_key, verify_integrity

if TYPE_CHECKING:
    from natkit.ice.agent import ConnectAgent


#: How live sentences name the two sides.
LIVE_SIDES = Sides("this site", "the peer's site")


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
        "_direct_lost",
        "_early_nomination",
        "_first_valid_at",
        "_keepalive_at",
        "_ladder",
        "_last_recheck",
        "_nominating",
        "_nominee",
        "_standby",
        "_unreachable_reported",
        "_username",
        "birthday",
        "checks",
        "closed",
        "local_key",
        "peer",
        "queued",
        "remote_report",
        "role",
        "scheduled",
        "selected",
        "signal",
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
        pwd = random_ice_string(rng, PWD_CHARS)
        self.local_key = short_term_key(pwd)
        self._username: TextAttribute | None = None
        self.checks = CheckList(self._config, agent.counters)
        # Selection.
        self.selected: Pair | None = None
        self._nominating: Pair | None = None
        self._nominee: Pair | None = None
        # A nomination that came before the peer's announcement (slow signalling).
        self._early_nomination: tuple[CheckRequest, Endpoint, Base] | None = None
        self._first_valid_at: float | None = None
        self._after_loss = False
        self._keepalive_at: float | None = None
        self._unreachable_reported = False
        # Part 2: the peer's report, the ladder, birthday attempts, what was seen.
        self.remote_report: TraversalReport | None = None
        self._ladder: Ladder | None = None
        self.birthday = BirthdayCoordinator(agent, self)
        self._direct_lost: str | None = None
        self._last_recheck: float | None = None
        self._standby: Pair | None = None
        # The agent's bookkeeping.
        self.queued = False
        self.urgent = False
        self.scheduled: float | None = None
        self.closed = False
        # Last: it announces us at once.
        self.signal = SignalState(
            agent, self, ufrag=ufrag, pwd=pwd, generation=rng.getrandbits(32), now=now
        )

    @property
    def pairs(self) -> dict[tuple[Base, Endpoint], Pair]:
        return self.checks.pairs

    @property
    def local_ufrag(self) -> str:
        return self.signal.local_ufrag

    @property
    def local_pwd(self) -> str:
        return self.signal.local_pwd

    # -- queries ------------------------------------------------------------------------

    @property
    def state(self) -> str:
        if not self.signal.remote_known:
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

    # -- signalling (SignalState calls back) ---------------------------------------------------

    def receive_signal(self, message: SignalMessage, now: float) -> None:
        if isinstance(message, BirthdayMessage):
            self.birthday.receive(message, now)
            return
        self.signal.receive(message, now)
        early = self._early_nomination
        if early is not None and self.signal.remote_ufrag is not None:
            # RFC 8445 §7.3.1.5: the nomination counts once the pair can be
            # formed; the controlling side will not send it again (it had its answer).
            self._early_nomination = None
            request, source, base = early
            if request.remote_ufrag == self.signal.remote_ufrag:
                self._pair_checked_by_peer(request, source, base, now)
        self._check_unreachable(now)
        self.maybe_birthday(now)

    def send_signal(self, message: SignalMessage) -> None:
        self._agent.emit(SignalReady(self.peer, message))

    # -- reports, the ladder, "why relayed?" --------------------------------------------

    def report_received(self, report: bytes, now: float) -> None:
        """The peer's traversal report arrived or changed (bytes from signalling)."""
        decoded = None
        if report:
            try:
                decoded = decode_report(report)
            except ReportDecodeError:
                self._agent.counters.bad_reports += 1
        self.remote_report = decoded
        self.ladder_changed(now)

    def ladder_changed(self, now: float) -> None:
        """Either report changed: decide the ladder again, log what changed."""
        old = self._ladder
        ladder = self._plan()
        self._ladder = ladder
        if old is not None and old == ladder:
            return
        self.birthday.tried = False
        for decision in ladder.decisions:
            if old is None or decision not in old.decisions:
                self._agent.emit(EscalationDecided(self.peer, decision))
        self.maybe_birthday(now)

    @property
    def ladder(self) -> Ladder:
        if self._ladder is None:
            self._ladder = self._plan()
        return self._ladder

    def _plan(self) -> Ladder:
        return plan_ladder(
            self._agent.local_report(), self.remote_report, self._config.ladder, LIVE_SIDES
        )

    def maybe_birthday(self, now: float) -> None:
        """The controlling side starts birthday probing when the ladder says so."""
        if (
            self.role is not Role.CONTROLLING
            or not self.signal.remote_known
            or not self.signal.known_by_peer
            or self.birthday.tried
            or self.birthday.run is not None
            or (self.selected is not None and not self.selected.relayed)
        ):
            return
        decision = self.ladder.decision(Step.BIRTHDAY)
        if decision.action is Action.TRY and decision.birthday is not None:
            self.birthday.offer(decision.birthday, now)

    def remote_srflx(self, family: Family) -> Endpoint | None:
        """The peer's first server-reflexive candidate of ``family``."""
        for candidate in self.checks.remote.values():
            if candidate.kind is CandidateKind.SRFLX and candidate.address.family is family:
                return candidate.address
        return None

    def remote_port_range(self) -> PortRange | None:
        report = self.remote_report
        return None if report is None else report.port_range

    def observed(self, now: float) -> Observed:
        """What this session saw, for :func:`~natkit.ice.explain.explain_session`."""
        direct = [p for p in self.pairs.values() if not p.relayed]
        selected = self.selected
        relayed = selected is not None and selected.relayed
        relay = transport = None
        if selected is not None and isinstance(selected.base, TurnBase):
            relay, transport = selected.base.name, selected.base.transport
        elif relayed and self.remote_report is not None and self.remote_report.relays:
            # Through the peer's allocation: its report names the server.
            theirs = self.remote_report.relays[0]
            relay, transport = theirs.name, theirs.transport
        next_recheck = None
        if relayed:
            times = [p.recheck_at for p in direct if p.recheck_at is not None]
            next_recheck = max(0.0, min(times) - now) if times else None
        last = None if self._last_recheck is None else now - self._last_recheck
        return Observed(
            direct_pairs=len(direct),
            direct_failed=self.checks.direct_failed(),
            direct_lost=self._direct_lost,
            relayed=relayed,
            relay=relay,
            transport=transport,
            birthday=self.birthday.status,
            birthday_plan=self.birthday.plan,
            birthday_probes=self.birthday.probes,
            rechecked=len(direct) if relayed else 0,
            last_recheck=last if relayed else None,
            next_recheck=next_recheck,
        )

    def explain(self, now: float) -> Explanation:
        return explain_session(self.ladder, self.observed(now))

    def peer_restarted(self, generation: int, now: float) -> None:
        """The peer restarted (RFC 8445 §9: an ICE restart): forget its state."""
        self.birthday.reset(now)
        self._direct_lost = None
        if self.selected is not None:
            self._emit_lost(self.selected, LossReason.PEER_RESTARTED, "the peer restarted")
            self.selected = None
        self._agent.forget(self.checks.clear())
        self._agent.relay_peers_changed()  # the old candidates' permissions may lapse
        self._nominating = self._nominee = None
        self._early_nomination = None
        self._first_valid_at = None
        self._after_loss = False
        self._keepalive_at = None
        self._unreachable_reported = False
        self._agent.emit(PeerRestarted(self.peer, generation))

    def remote_candidates(
        self, candidates: tuple[SignalCandidate, ...], now: float, *, announced: bool
    ) -> None:
        signal = self.signal
        if signal.remote_ufrag is not None:
            self._username = TextAttribute(
                AttributeType.USERNAME, f"{signal.remote_ufrag}:{signal.local_ufrag}"
            )
        controlling = self.role is Role.CONTROLLING
        for candidate in candidates:
            # Peer-first traffic through our relay needs its permission (RFC 8656 §9).
            self._agent.permit(candidate.address.address, now)
        if self.checks.add_remote(candidates, self._agent.pairing, controlling=controlling):
            self._unreachable_reported = False
            self.restart_checks(now)
            self._agent.want_paced(self)

    # -- pairs -------------------------------------------------------------------------------

    def local_candidate_added(self, local: LocalCandidate, now: float) -> None:
        """A new pairing candidate of the agent: pair it with every remote one."""
        controlling = self.role is Role.CONTROLLING
        added = False
        for remote in list(self.checks.remote.values()):
            added |= self.checks.form(local, remote, controlling=controlling) is not None
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
        if self.selected is None and self.signal.remote_known:
            self.restart_checks(now)
            self._maybe_select(now)
            self._check_unreachable(now)

    def add_known_pair(self, local: LocalCandidate, remote: Endpoint, now: float) -> None:
        """A pair known to work from elsewhere (part 2: a birthday hit): check it now."""
        candidate = self.checks.learn(remote, priority_of(CandidateKind.PEER_REFLEXIVE))
        if candidate is None:
            return
        pair = self.pairs.get((local.base, remote)) or self.checks.form(
            local, candidate, controlling=self.role is Role.CONTROLLING, destination=remote
        )
        if pair is not None:
            self._unreachable_reported = False
            self._trigger(pair, now)

    def _drop_pair(self, pair: Pair) -> None:
        self._agent.forget(self.checks.drop(pair))
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
        self.birthday.reset(now)
        self.maybe_birthday(now)
        if self.selected is not None and not self.selected.in_flight:
            self._keepalive_at = now

    def set_role(self, role: Role, now: float) -> None:
        if role is self.role:
            return
        self.role = role
        self.checks.set_role(role is Role.CONTROLLING)
        self._agent.emit(RoleChanged(self.peer, role))
        if role is Role.CONTROLLED:
            self._nominating = None
        else:
            self._maybe_select(now)

    # -- sending checks ----------------------------------------------------------------------

    @property
    def triggered_waiting(self) -> bool:
        """A triggered check waits for the pacer (served before ordinary ones)."""
        return self.checks.triggered_waiting

    def has_paced_work(self) -> bool:
        return self.signal.remote_known and self.checks.has_work()

    def next_check(self, now: float) -> Pair | None:
        """The pair the pacer should transmit on now, if any."""
        pair = self.checks.next_queued()
        if pair is not None or not self.signal.remote_known:
            return pair
        relay_first = self._config.relay_first and self.selected is None
        ordinary = self.checks.pick_ordinary(relay_first=relay_first)
        if ordinary is not None:
            ordinary.state = PairState.IN_PROGRESS
            ordinary.begin(CheckPurpose.CHECK, self._config.check_policy.rc)
        return ordinary

    def _queue(self, pair: Pair, *, triggered: bool) -> None:
        self.checks.queue(pair, triggered=triggered)
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
            key=self.signal.remote_key,
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
        agent.mark_changed(self)

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
        remote_ufrag = self.signal.remote_ufrag
        if remote_ufrag is not None and request.remote_ufrag != remote_ufrag:
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
        agent.stats.answers_sent += 1
        if remote_ufrag is None:
            # Answered; our own checks start with the peer's announcement, and
            # a nomination is kept until then (a slow channel: DNS polling).
            if request.use_candidate and self.role is Role.CONTROLLED:
                self._early_nomination = (request, source, base)
            return
        self._pair_checked_by_peer(request, source, base, now)

    def _pair_checked_by_peer(
        self, request: CheckRequest, source: Endpoint, base: Base, now: float
    ) -> None:
        """The peer's check of (``base``, ``source``) was answered: form the
        pair, trigger our own check of it, take a nomination (RFC 8445 §7.3.1.4-5)."""
        agent = self._agent
        pair = self.pairs.get((base, source))
        if pair is None:
            pair = self._pair_for_request(source, base, request.priority, now)
            if pair is None:
                return
            self._unreachable_reported = False
        if pair.state is not PairState.SUCCEEDED and not pair.in_flight:
            self._trigger(pair, now)
        if request.use_candidate and self.role is Role.CONTROLLED:
            self._nominated(pair, now)
        agent.mark_changed(self)

    def _pair_for_request(
        self, source: Endpoint, base: Base, priority: int, now: float
    ) -> Pair | None:
        local = self._agent.pairing_local(base, source)
        if local is None:
            self._agent.counters.unpaired_requests += 1
            return None
        remote = self.checks.learn(source, priority)
        if remote is None:
            return None
        self._agent.permit(source.address, now)
        controlling = self.role is Role.CONTROLLING
        return self.checks.form(local, remote, controlling=controlling, destination=source)

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
            verify_integrity(message, self.signal.remote_key)
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
            agent.mark_changed(self)
            return
        mapped = message.xor_mapped_address
        if mapped is None:
            counters.malformed += 1
            return
        agent.stats.answers_received += 1
        self._check_succeeded(pair, now - sent_at, mapped, use_candidate, now)
        agent.mark_changed(self)

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
        if self.checks.unfreeze(pair.foundation):
            self._agent.want_paced(self)
        self._pair_event(pair, True, rtt)
        if pair is self.selected:
            self._schedule_keepalive(now)
        elif pair is self.standby():
            # The relayed fallback stays warm: its NAT mappings and the TURN
            # permissions are exercised every keepalive interval, so a
            # downgrade needs no new allocation and no re-learning.
            pair.recheck_interval = config.keepalive_interval
            pair.recheck_at = now + pair.recheck_interval
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
        if was_valid and isinstance(pair.base, TurnBase):
            # A relayed pair went silent: is our allocation still there?
            self._agent.relays.doubt(now)
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
        # A frozen pair of the same foundation may be next (RFC 8445 §6.1.4.2).
        self._agent.want_paced(self)
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
        best = choose(eligible, self._config)
        standby = self._standby
        if self._after_loss and standby is not None and standby in eligible and best.relayed:
            best = standby  # the warm one: its mappings and permissions were just used
        # Relay-first: a relayed pair is used at once (a direct one replaces it
        # through the hysteresis); a direct one waits for the first round.
        relay_now = best.relayed and self._config.relay_first
        if not self._after_loss and not relay_now and self._settle_deadline(best) > now:
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
        if not clearly_better(pair, sample, selected, self._config) or (
            pair.relayed and self._direct_valid(now)
        ):
            # A relayed challenger never races a valid direct one: direct
            # beats relay, so a relay-to-relay switch then is wasted churn.
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
        if not pair.relayed:
            self._direct_lost = None
        elif previous is not None and not previous.relayed and self._direct_lost is None:
            # The controlled side follows the peer, which saw the direct path die.
            self._direct_lost = "it stopped answering"
        path = self.path_of(pair)
        reason = self.explain(now).sentence if pair.relayed else self._direct_reason(pair)
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
                reason=reason,
            )
        )

    def _direct_reason(self, pair: Pair) -> str:
        if self.birthday.found is not None and pair.destination == self.birthday.found:
            return "direct: birthday probing found a path"
        path = self.path_of(pair)
        # Either end's mapped port: the other end's is peer-reflexive (the kind
        # of a path is its less direct end), yet the mapping is what made it.
        if CandidateKind.MAPPED in (path.kind, path.local_kind, path.remote_kind):
            return "direct through a mapped port"
        return "direct path confirmed by connectivity checks"

    def _direct_valid(self, now: float) -> bool:
        return any(not p.relayed for p in self._eligible(now))

    def standby(self) -> Pair | None:
        """The relayed pair that takes over if the selected direct path dies:
        the best valid one, kept while it stays valid (two near-equal relayed
        pairs must not take turns, or neither would stay warm)."""
        selected = self.selected
        if selected is None or selected.relayed:
            return None
        current = self._standby
        if current is not None and current.valid and not current.removed:
            return current
        relayed = [p for p in self.pairs.values() if p.relayed and p.valid]
        self._standby = min(relayed, key=rank) if relayed else None
        return self._standby

    def _keepalive_interval(self) -> float:
        config = self._config
        if self.standby() is not None:
            return config.standby_interval
        return config.keepalive_interval

    def _schedule_keepalive(self, now: float) -> None:
        config = self._config
        jitter = self._agent.random() * config.keepalive_jitter
        self._keepalive_at = now + self._keepalive_interval() * (1 - jitter)

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
        if not pair.relayed:
            self._direct_lost = detail
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
            or not self.signal.remote_known
            or not self.checks.remote
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
                if not pair.relayed:
                    self._last_recheck = now
                self._start(pair, purpose, now)
        if self._keepalive_at is not None and self._keepalive_at <= now:
            self._keepalive_at = None
            if self.selected is not None:
                self._start(self.selected, CheckPurpose.KEEPALIVE, now)
        self.signal.on_timer(now)
        self.birthday.on_timer(now)
        self._maybe_select(now)

    def deadline(self, now: float) -> float | None:
        """The earliest time something of this session is due (``None``: nothing)."""
        inf = math.inf
        signal = self.signal.deadline()
        birthday = self.birthday.deadline()
        earliest = min(
            inf if self._keepalive_at is None else self._keepalive_at,
            inf if signal is None else signal,
            inf if birthday is None else birthday,
        )
        for pair in self.pairs.values():
            due = pair.next_send if pair.next_send is not None else pair.fail_at
            if due is not None and due < earliest:
                earliest = due
            recheck = pair.recheck_at
            if recheck is not None and recheck < earliest and pair.purpose is None:
                earliest = recheck
            held = pair.held_until
            if held is not None and held < earliest:
                earliest = held
        if (
            self._first_valid_at is not None
            and self.selected is None
            and self._nominating is None
            and not self._after_loss
            and self.role is Role.CONTROLLING
        ):
            eligible = self._eligible(now)
            if eligible:
                settle = self._settle_deadline(choose(eligible, self._config))
                if now < settle < earliest:
                    earliest = settle
        return None if earliest == inf else earliest
