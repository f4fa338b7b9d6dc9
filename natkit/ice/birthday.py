"""Birthday probing inside a connect session: the coordination, sans-IO.

The ladder (:mod:`natkit.ice.ladder`) says when birthday probing is
worth it; this module carries it out with natkit's own prober core
(:class:`~natkit.birthday.prober.BirthdayProber`), on the agent's sockets
and timer. The two peers agree through signalling
(:mod:`natkit.ice.signals`):

1. The **controlling** side (it has both reports) sends a
   :class:`~natkit.ice.signals.BirthdayOffer`: a fresh 32-byte key and
   8-byte session for the probe packets (sealed in transit like every
   signal), the receiver's role and target, the ports, the port range, the
   budget, the rate and how long. It takes the other role itself.
2. A side that needs sockets (the **opener**, hard side of one-hard mode,
   or either side when both are hard) emits :class:`BirthdaySocketsWanted`;
   the driver binds that many UDP sockets and hands them back with
   ``ConnectAgent.birthday_sockets``. Binding is the driver's business, as
   in :mod:`natkit.aio.birthday`.
3. The opener opens its mappings toward the easy side's mapped endpoint
   (an :func:`~natkit.birthday.schedule.opener_plan`, re-opened every 15 s
   for the whole run) and, once the first round is out, sends
   :class:`~natkit.ice.signals.BirthdayReady`; the **sprayer** (easy
   side, from the socket of its server-reflexive candidate) then sprays
   its probes at the hard side's public address
   (:func:`~natkit.birthday.schedule.spray_plan`). Both hard: both spray
   at once from their sockets.
4. A hit (:class:`~natkit.birthday.events.PairFound`) hands the socket and
   the peer's endpoint to the session as a known pair
   (``ConnectAgent.add_known_pair``): it is checked like any pair and, being
   direct, replaces a relayed path through the usual hysteresis. The other
   sockets are given back (:class:`BirthdaySocketsReleased`); each side
   tells the other (:class:`~natkit.ice.signals.BirthdayDone`).

Probe packets are told from checks by their magic (``NKbp``, first bits
01: never STUN, RFC 7983), so the sprayer shares its socket with the
session. Every number in an offer is bounded by the receiver's own
:class:`~natkit.ice.report.BirthdayCapability`: a hostile offer cannot
make a node send more, faster or longer than it agreed to in its report.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING

from natkit.birthday.events import PairFound, SearchExhausted
from natkit.birthday.ports import PortRange
from natkit.birthday.prober import BirthdayProber, ProberConfig
from natkit.birthday.schedule import SendPlan, opener_plan, pacing_gap, spray_plan
from natkit.birthday.wire import Side, is_probe_packet
from natkit.endpoint import Endpoint, Family
from natkit.errors import LocalProtocolError
from natkit.ice.events import (
    BirthdayFinished,
    BirthdaySocketsReleased,
    BirthdaySocketsWanted,
    BirthdayStarted,
)
from natkit.ice.explain import BirthdayStatus
from natkit.ice.ladder import BirthdayPlan, Hard
from natkit.ice.report import BirthdayCapability
from natkit.ice.signals import (
    BIRTHDAY_KEY_LENGTH,
    BIRTHDAY_SESSION_LENGTH,
    BirthdayDone,
    BirthdayMessage,
    BirthdayOffer,
    BirthdayReady,
    BirthdayRole,
)

if TYPE_CHECKING:
    from natkit.ice.agent import ConnectAgent
    from natkit.ice.session import Session

#: How often the opener re-opens its mappings (natkit birthday's default).
KEEPALIVE = 15.0
#: Extra time an opener keeps its mappings after the sprayer's planned end.
GRACE = 10.0
#: The longest run an offer may ask for.
MAX_DURATION = 600.0
#: How much longer than its duration a run waits for sockets or the opener.
WAIT_MARGIN = 30.0


class RunState(Enum):
    WAITING_SOCKETS = "waiting for sockets"
    WAITING_READY = "waiting for the opener"
    PROBING = "probing"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class _Part:
    """One side's part of an attempt (what an offer asks of its receiver)."""

    role: BirthdayRole
    target: Endpoint
    ports: int
    port_range: PortRange
    probes: int
    rate: int
    duration: float


class BirthdayRun:
    """This side's part of one attempt: a prober on some of the agent's sockets."""

    def __init__(
        self,
        attempt: int,
        part: _Part,
        *,
        key: bytes,
        session: bytes,
        side: Side,
        rng: random.Random,
    ) -> None:
        self.attempt = attempt
        self.part = part
        self.key = key
        self.session = session
        self.side = side
        self._rng = rng
        self.state = (
            RunState.WAITING_READY
            if part.role is BirthdayRole.SPRAYER
            else RunState.WAITING_SOCKETS
        )
        self.prober: BirthdayProber | None = None
        #: Agent socket index of each prober socket.
        self.sockets: list[int] = []
        #: Of those, the ones the driver bound for this run (given back after).
        self.private: list[int] = []
        #: When an opener tells the sprayer its mappings are open.
        self.ready_at: float | None = None
        #: Give up waiting for sockets or for the opener at this time.
        self.give_up_at: float | None = None
        self.probes = 0

    @property
    def needs_sockets(self) -> int:
        return 0 if self.part.role is BirthdayRole.SPRAYER else self.part.ports

    def start(self, sockets: list[tuple[int, Endpoint]], now: float) -> None:
        """Build the plan on ``sockets`` and start the prober."""
        part = self.part
        endpoints = [endpoint for _, endpoint in sockets]
        self.sockets = [index for index, _ in sockets]
        budget = 0 if part.role is BirthdayRole.OPENER else part.probes
        config = ProberConfig(
            self.key,
            self.session,
            self.side,
            rate=float(part.rate),
            budget=budget,
            peer_address=part.target.address,
        )
        plan: SendPlan
        if part.role is BirthdayRole.OPENER:
            rounds = max(1, int(part.duration // KEEPALIVE) + 1)
            plan = opener_plan(
                part.target,
                len(endpoints),
                part.rate,
                start=now,
                keepalive=KEEPALIVE,
                rounds=rounds,
            )
            first_round = plan.sends[min(len(endpoints), len(plan.sends)) - 1].at
            self.ready_at = first_round
            # Listen for the whole run: the last OPEN goes out long before the last probe.
            wait = max(config.answer_timeout, now + part.duration - plan.sends[-1].at)
            config = replace(config, answer_timeout=wait)
        else:
            plan = spray_plan(
                part.target.address,
                part.port_range,
                part.probes,
                part.rate,
                self._rng,
                sockets=len(endpoints),
                start=now,
            )
        self.prober = BirthdayProber(config, endpoints, plan, now)
        self.state = RunState.PROBING

    def owns(self, socket: int) -> bool:
        return self.prober is not None and socket in self.sockets

    def deadline(self) -> float | None:
        waiting = self.give_up_at if self.state is not RunState.PROBING else None
        times = [t for t in (self.ready_at, self._prober_timer(), waiting) if t is not None]
        return min(times) if times else None

    def _prober_timer(self) -> float | None:
        return None if self.prober is None else self.prober.get_timer()


class BirthdayCoordinator:
    """A session's birthday attempts (see the module doc)."""

    __slots__ = (
        "_agent",
        "_attempts",
        "_session",
        "found",
        "plan",
        "probes",
        "run",
        "status",
        "tried",
    )

    def __init__(self, agent: ConnectAgent, session: Session) -> None:
        self._agent = agent
        self._session = session
        self._attempts = 0
        self.run: BirthdayRun | None = None
        #: The last attempt's status, plan and probes (for "why relayed?").
        self.status: BirthdayStatus | None = None
        self.plan: BirthdayPlan | None = None
        self.probes = 0
        self.found: Endpoint | None = None
        #: An attempt was made for the current reports and network.
        self.tried = False

    # -- starting ----------------------------------------------------------------------

    def offer(self, plan: BirthdayPlan, now: float) -> None:
        """The controlling side starts an attempt with ``plan`` (from the ladder)."""
        session = self._session
        ours, theirs = self._parts(plan)
        self.tried = True
        self.plan = plan
        if ours is None or theirs is None:
            self._finish(now, found=False, detail="no server-reflexive candidate to aim at")
            self.status = BirthdayStatus.FAILED
            return
        self._attempts += 1
        rng = self._agent.rng
        key = rng.randbytes(BIRTHDAY_KEY_LENGTH)
        probe_session = rng.randbytes(BIRTHDAY_SESSION_LENGTH)
        offer = BirthdayOffer(
            generation=session.signal.generation,
            attempt=self._attempts,
            key=key,
            session=probe_session,
            role=theirs.role,
            target=theirs.target,
            ports=theirs.ports,
            port_low=theirs.port_range.low,
            port_high=theirs.port_range.high,
            probes=theirs.probes,
            rate=theirs.rate,
            duration_ms=round(theirs.duration * 1000),
        )
        session.send_signal(offer)
        self._begin(self._attempts, ours, key=key, session=probe_session, side=Side.A, now=now)

    def _parts(self, plan: BirthdayPlan) -> tuple[_Part | None, _Part | None]:
        """(ours, theirs) for ``plan``; ``None`` when an endpoint is unknown."""
        session = self._session
        local_srflx = self._agent.srflx_candidate(Family.IPV4)
        remote_srflx = session.remote_srflx(Family.IPV4)
        if local_srflx is None or remote_srflx is None:
            return None, None
        rate = max(1, min(1000, round(plan.rate)))
        spray = plan.probes / rate
        opening = plan.ports * pacing_gap(rate)
        duration = min(MAX_DURATION, opening + spray + GRACE)
        local_ip = Endpoint(local_srflx.address.address, 0)
        remote_ip = Endpoint(remote_srflx.address, 0)
        remote_range = session.remote_port_range() or plan.port_range
        local_range = self._agent.local_port_range() or plan.port_range
        if plan.hard is Hard.BOTH:
            ours = _Part(
                BirthdayRole.BOTH, remote_ip, plan.ports, remote_range, plan.probes, rate, duration
            )
            theirs = _Part(
                BirthdayRole.BOTH, local_ip, plan.ports, local_range, plan.probes, rate, duration
            )
        elif plan.hard is Hard.LOCAL:
            ours = _Part(
                BirthdayRole.OPENER, remote_srflx, plan.ports, plan.port_range, 0, rate, duration
            )
            theirs = _Part(
                BirthdayRole.SPRAYER, local_ip, 1, plan.port_range, plan.probes, rate, duration
            )
        else:
            ours = _Part(
                BirthdayRole.SPRAYER, remote_ip, 1, plan.port_range, plan.probes, rate, duration
            )
            theirs = _Part(
                BirthdayRole.OPENER,
                local_srflx.address,
                plan.ports,
                plan.port_range,
                0,
                rate,
                duration,
            )
        return ours, theirs

    def _begin(
        self, attempt: int, part: _Part, *, key: bytes, session: bytes, side: Side, now: float
    ) -> None:
        self._stop(now)
        run = BirthdayRun(attempt, part, key=key, session=session, side=side, rng=self._agent.rng)
        # An opener that never gets ready, or a driver that never binds, is not waited for.
        run.give_up_at = now + part.duration + WAIT_MARGIN
        self.run = run
        self.status = BirthdayStatus.RUNNING
        self.probes = 0
        self.found = None
        peer = self._session.peer
        self._agent.emit(
            BirthdayStarted(
                peer, attempt, part.role, part.target, part.ports, part.probes, float(part.rate)
            )
        )
        if run.needs_sockets:
            family = Family.IPV4 if part.target.address.version == 4 else Family.IPV6
            self._agent.emit(BirthdaySocketsWanted(peer, attempt, run.needs_sockets, family))

    # -- inputs ------------------------------------------------------------------------

    def receive(self, message: BirthdayMessage, now: float) -> None:
        session = self._session
        if message.generation != session.signal.remote_generation:
            self._agent.counters.signals_ignored += 1
            return
        run = self.run
        if isinstance(message, BirthdayOffer):
            self._offered(message, now)
        elif isinstance(message, BirthdayReady):
            if (
                run is not None
                and run.attempt == message.attempt
                and run.state is RunState.WAITING_READY
            ):
                self._start_sprayer(run, now)
        elif run is not None and run.attempt == message.attempt:
            if message.found and run.state is not RunState.DONE:
                # The peer heard our probe or ACK, we missed its answer: our
                # side's checks on the known pair (its side) will find us.
                self._stop(now)
            elif not message.found and run.part.role is BirthdayRole.OPENER:
                self._finish(now, found=False, detail="the sprayer's budget is spent")

    def _offered(self, offer: BirthdayOffer, now: float) -> None:
        capability = self._agent.birthday_capability()
        problem = _refusal(offer, capability) or self._foreign_target(offer)
        if problem is not None:
            self._agent.counters.birthday_refused += 1
            self._session.send_signal(
                BirthdayDone(self._session.signal.generation, offer.attempt, False, 0)
            )
            self._agent.emit(
                BirthdayFinished(self._session.peer, offer.attempt, False, 0, None, problem)
            )
            return
        part = _Part(
            offer.role,
            offer.target,
            offer.ports,
            PortRange(offer.port_low, offer.port_high),
            offer.probes,
            offer.rate,
            offer.duration_ms / 1000,
        )
        self.tried = True
        self._begin(offer.attempt, part, key=offer.key, session=offer.session, side=Side.B, now=now)
        if part.role is BirthdayRole.SPRAYER and self.run is not None:
            self.run.state = RunState.WAITING_READY

    def _foreign_target(self, offer: BirthdayOffer) -> str | None:
        """Probes and openers go to the peer only: a peer may not aim this node
        at a third party (the target must be one of its own candidates)."""
        known = self._session.checks.remote
        if offer.role is BirthdayRole.OPENER:
            if offer.target in known:
                return None
        elif any(candidate.address == offer.target.address for candidate in known):
            return None
        return f"the target {offer.target} is none of the peer's candidates"

    def sockets_given(self, attempt: int, sockets: list[tuple[int, Endpoint]], now: float) -> None:
        run = self.run
        if run is None or run.attempt != attempt or run.state is not RunState.WAITING_SOCKETS:
            raise LocalProtocolError(
                f"birthday_sockets: attempt {attempt} of {self._session.peer!r} wants none"
            )
        if not sockets:
            self._finish(now, found=False, detail="the driver bound no sockets")
            self.status = BirthdayStatus.FAILED
            return
        run.private = [index for index, _ in sockets]
        self._agent.route_birthday(run.private, self._session)
        run.start(sockets, now)
        self._drain(now)

    def _start_sprayer(self, run: BirthdayRun, now: float) -> None:
        found = self._agent.srflx_candidate(Family.IPV4)
        if found is None or not isinstance(found.base, int) or found.base_endpoint is None:
            self._finish(now, found=False, detail="no socket behind the server-reflexive candidate")
            self.status = BirthdayStatus.FAILED
            return
        self._agent.route_birthday([found.base], self._session)
        run.start([(found.base, found.base_endpoint)], now)
        self._drain(now)

    def datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> bool:
        """A probe packet on one of the run's sockets; ``True``: taken."""
        run = self.run
        if run is None or run.prober is None or not run.owns(socket) or not is_probe_packet(data):
            return False
        run.prober.receive_datagram(data, remote, run.sockets.index(socket), now)
        self._drain(now)
        return True

    def on_timer(self, now: float) -> None:
        run = self.run
        if run is None:
            return
        if (
            run.state is not RunState.PROBING
            and run.give_up_at is not None
            and run.give_up_at <= now
        ):
            self._finish(now, found=False, detail=f"gave up {run.state.value}")
            self.status = BirthdayStatus.FAILED
            return
        if run.ready_at is not None and run.ready_at <= now:
            run.ready_at = None
            self._session.send_signal(BirthdayReady(self._session.signal.generation, run.attempt))
        prober = run.prober
        if prober is not None:
            deadline = prober.get_timer()
            if deadline is not None and deadline <= now:
                prober.handle_timer(now)
        self._drain(now)

    def deadline(self) -> float | None:
        return None if self.run is None else self.run.deadline()

    def reset(self, now: float) -> None:
        """New network or new reports: a new attempt may be made (any run stops)."""
        self._stop(now)
        self.tried = False

    # -- outcomes ----------------------------------------------------------------------

    def _drain(self, now: float) -> None:
        run = self.run
        if run is None or run.prober is None:
            return
        prober = run.prober
        for datagram in prober.datagrams_to_send(now):
            self._agent.send(run.sockets[datagram.socket], datagram.remote, datagram.data, now)
        run.probes = prober.stats.probes_sent
        while (event := prober.next_event()) is not None:
            if isinstance(event, PairFound):
                self._found(run, event, now)
            elif isinstance(event, SearchExhausted):
                detail = f"no hit: {event.reason.value} ({event.stats.probes_sent} probes)"
                self._finish(now, found=False, detail=detail)
            if self.run is not run:
                return

    def _found(self, run: BirthdayRun, event: PairFound, now: float) -> None:
        winner = run.sockets[event.pair.socket]
        remote = event.pair.remote
        self.found = remote
        keep = winner if winner in run.private else None
        self._finish(now, found=True, detail=f"hit via {event.via.name}", keep=keep)
        self._agent.add_known_pair_now(self._session, winner, event.pair.local, remote, now)

    def _finish(self, now: float, *, found: bool, detail: str, keep: int | None = None) -> None:
        run = self.run
        session = self._session
        attempt = run.attempt if run is not None else self._attempts
        probes = run.probes if run is not None else 0
        self.probes = probes
        self.status = BirthdayStatus.FOUND if found else BirthdayStatus.EXHAUSTED
        if run is not None:
            self._release(run, keep)
            run.state = RunState.DONE
            self.run = None
            session.send_signal(BirthdayDone(session.signal.generation, attempt, found, probes))
        self._agent.emit(BirthdayFinished(session.peer, attempt, found, probes, self.found, detail))

    def _stop(self, now: float) -> None:
        run = self.run
        if run is None:
            return
        self._release(run, None)
        run.state = RunState.DONE
        self.run = None
        if self.status is BirthdayStatus.RUNNING:
            self.status = BirthdayStatus.FAILED

    def _release(self, run: BirthdayRun, keep: int | None) -> None:
        self._agent.unroute_birthday(run.sockets, self._session)
        released = tuple(s for s in run.private if s != keep)
        if released:
            self._agent.emit(BirthdaySocketsReleased(self._session.peer, run.attempt, released))


def _refusal(offer: BirthdayOffer, capability: BirthdayCapability | None) -> str | None:
    """Why this node declines ``offer`` (``None``: it takes it)."""
    if capability is None:
        return "this node does no birthday probing"
    if offer.ports > capability.ports and offer.role is not BirthdayRole.SPRAYER:
        return f"{offer.ports} sockets asked, at most {capability.ports}"
    if offer.probes > capability.probes:
        return f"{offer.probes} probes asked, at most {capability.probes}"
    if offer.rate > capability.rate:
        return f"{offer.rate} probes/s asked, at most {capability.rate}"
    if offer.duration_ms > MAX_DURATION * 1000:
        return f"a run of {offer.duration_ms / 1000:g} s asked, at most {MAX_DURATION:g}"
    if offer.role is BirthdayRole.OPENER and offer.target.port == 0:
        return "an opener needs a target port"
    return None
