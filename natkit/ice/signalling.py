"""One session's signalling: what we announced, what the peer holds, re-sends.

The rules (the messages are in :mod:`natkit.ice.signals`):

1. On creation we announce ourselves, and re-send the announcement after
   ``signal_retry_min``, doubling up to ``signal_retry_max``, until the peer
   holds it: a message from the peer names our generation and at least as
   many candidates as we have (*acknowledged*).
2. A peer's announcement is answered with ours when the peer lacks any of
   it, else with an acknowledgement (the peer re-sends until it sees one).
   Acknowledgements are answered only when they show the peer lacks
   something, so two agents never bounce messages forever.
3. A new peer generation is an ICE restart (the session drops the old one's
   candidates and pairs); the same generation with other credentials is
   ignored and counted.
4. Trickled candidates go out as ``CandidatesAdded`` numbered from their
   index; the peer acknowledges what it holds, and a gap makes us announce
   everything again.
5. A peer silent for ``signal_timeout`` is reported once (``NO_SIGNAL``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from natkit.ice.events import (
    PeerReportReceived,
    PeerUnreachable,
    SignalReady,
    UnreachableReason,
)
from natkit.ice.signals import (
    Acknowledgement,
    Announcement,
    CandidatesAdded,
    SignalCandidate,
    SignalMessage,
)
from natkit.stun.integrity import short_term_key

if TYPE_CHECKING:
    from natkit.ice.agent import ConnectAgent


class SignalOwner(Protocol):
    """What :class:`SignalState` tells its session."""

    peer: Any

    def peer_restarted(self, generation: int, now: float) -> None:
        """The peer announced a new generation (not its first)."""

    def remote_candidates(
        self, candidates: tuple[SignalCandidate, ...], now: float, *, announced: bool
    ) -> None:
        """The peer told us these candidates (``announced``: in an announcement)."""

    def report_received(self, report: bytes, now: float) -> None:
        """The peer's report arrived or changed."""


class SignalState:
    """The signalling half of a session (see the module doc)."""

    __slots__ = (
        "_agent",
        "_config",
        "_interval",
        "_owner",
        "acked",
        "generation",
        "heard",
        "known_by_peer",
        "local_pwd",
        "local_ufrag",
        "remote_count",
        "remote_generation",
        "remote_key",
        "remote_pwd",
        "remote_tie_breaker",
        "remote_ufrag",
        "report",
        "resend_at",
        "silent_at",
    )

    def __init__(
        self,
        agent: ConnectAgent,
        owner: SignalOwner,
        *,
        ufrag: str,
        pwd: str,
        generation: int,
        now: float,
    ) -> None:
        self._agent = agent
        self._config = agent.config
        self._owner = owner
        self.local_ufrag = ufrag
        self.local_pwd = pwd
        self.generation = generation
        self.remote_generation: int | None = None
        self.remote_ufrag: str | None = None
        self.remote_pwd: str | None = None
        self.remote_key = b""
        self.remote_tie_breaker = 0
        #: How many of the peer's candidates we hold (contiguously from its first).
        self.remote_count = 0
        #: The peer's last classification report.
        self.report = b""
        #: The peer holds our whole announcement.
        self.acked = False
        #: We heard from the peer at all.
        self.heard = False
        #: The peer's last message named our generation (it holds our credentials).
        self.known_by_peer = False
        self._interval = self._config.signal_retry_min
        self.resend_at: float | None = now + self._interval
        self.silent_at: float | None = now + self._config.signal_timeout
        self._send(self.announcement())

    @property
    def remote_known(self) -> bool:
        return self.remote_generation is not None

    def announcement(self) -> Announcement:
        agent = self._agent
        return Announcement(
            generation=self.generation,
            ufrag=self.local_ufrag,
            pwd=self.local_pwd,
            tie_breaker=agent.tie_breaker,
            candidates=agent.announced,
            peer_generation=self.remote_generation,
            peer_candidates=self.remote_count,
            report=agent.report,
        )

    def _acknowledgement(self) -> Acknowledgement:
        return Acknowledgement(self.generation, self.remote_generation, self.remote_count)

    def _send(self, message: SignalMessage) -> None:
        self._agent.emit(SignalReady(self._owner.peer, message))

    def _resend_later(self, now: float, *, reset: bool = False) -> None:
        if reset:
            self._interval = self._config.signal_retry_min
        self.resend_at = now + self._interval

    def _peer_holds(self, generation: int | None, count: int, now: float) -> bool:
        """Record what the peer holds of ours; ``True`` when it holds everything."""
        self.known_by_peer = generation == self.generation
        self.acked = self.known_by_peer and count >= len(self._agent.announced)
        if self.acked:
            self.resend_at = None
        elif self.resend_at is None:
            self._resend_later(now, reset=True)
        return self.acked

    # -- input -------------------------------------------------------------------------------

    def receive(
        self, message: Announcement | CandidatesAdded | Acknowledgement, now: float
    ) -> None:
        self.heard = True
        self.silent_at = None
        if isinstance(message, Announcement):
            self._announcement_received(message, now)
        elif isinstance(message, CandidatesAdded):
            self._candidates_received(message, now)
        else:
            self._acknowledgement_received(message, now)

    def _announcement_received(self, message: Announcement, now: float) -> None:
        new = message.generation != self.remote_generation
        if new:
            if self.remote_generation is not None:
                self._owner.peer_restarted(message.generation, now)
            self.remote_generation = message.generation
            self.remote_ufrag = message.ufrag
            self.remote_pwd = message.pwd
            self.remote_key = short_term_key(message.pwd)
            self.remote_count = 0
        elif (message.ufrag, message.pwd) != (self.remote_ufrag, self.remote_pwd):
            self._agent.counters.signals_ignored += 1  # a confused peer
            return
        self.remote_tie_breaker = message.tie_breaker
        self.remote_count = max(self.remote_count, len(message.candidates))
        self._owner.remote_candidates(message.candidates, now, announced=True)
        changed = message.report != self.report
        if changed:
            self.report = message.report
            self._agent.emit(PeerReportReceived(self._owner.peer, message.report))
        if self._peer_holds(message.peer_generation, message.peer_candidates, now):
            self._send(self._acknowledgement())
        else:
            self._send(self.announcement())
            self._resend_later(now, reset=True)
        if changed or new:
            # After our answer: what the report sets off (a birthday offer)
            # must reach the peer after our announcement.
            self._owner.report_received(message.report, now)

    def _candidates_received(self, message: CandidatesAdded, now: float) -> None:
        if message.generation != self.remote_generation:
            self._agent.counters.signals_ignored += 1
        else:
            if message.first_index <= self.remote_count:  # else a gap: the count stays
                self.remote_count = max(
                    self.remote_count, message.first_index + len(message.candidates)
                )
            self._owner.remote_candidates(message.candidates, now, announced=False)
        # Either way the peer learns what we hold (and re-announces on a gap).
        self._send(self._acknowledgement())

    def _acknowledgement_received(self, message: Acknowledgement, now: float) -> None:
        if message.generation != self.remote_generation:
            self._agent.counters.signals_ignored += 1
        if not self._peer_holds(message.peer_generation, message.peer_candidates, now):
            self._send(self.announcement())

    def candidates_added(self, added: tuple[SignalCandidate, ...], now: float) -> None:
        """We have new candidates to trickle (RFC 8838)."""
        self.acked = False
        if self.remote_known and added:
            first = len(self._agent.announced) - len(added)
            self._send(CandidatesAdded(self.generation, first, added))
        self._resend_later(now, reset=True)

    def report_changed(self, now: float) -> None:
        self.acked = False
        self._send(self.announcement())
        self._resend_later(now, reset=True)

    def reannounce(self, now: float) -> None:
        """Signalling came back: whatever was sent while it was down may be
        lost, so announce at once and restart the re-send backoff. A peer
        that holds it all answers with one acknowledgement."""
        self._send(self.announcement())
        if not self.acked:
            self._resend_later(now, reset=True)

    # -- time ----------------------------------------------------------------------------------

    def on_timer(self, now: float) -> None:
        if self.resend_at is not None and self.resend_at <= now:
            if self.acked:
                self.resend_at = None
            else:
                self._send(self.announcement())
                self._interval = min(self._config.signal_retry_max, 2 * self._interval)
                self._resend_later(now)
        if self.silent_at is not None and self.silent_at <= now:
            self.silent_at = None
            if not self.heard:
                timeout = self._config.signal_timeout
                self._agent.emit(
                    PeerUnreachable(
                        self._owner.peer,
                        UnreachableReason.NO_SIGNAL,
                        f"no answer from the peer through signalling in {timeout:g} s",
                        0,
                        max(0.0, (self.resend_at or now) - now),
                    )
                )

    def deadline(self) -> float | None:
        times = [t for t in (self.resend_at, self.silent_at) if t is not None]
        return min(times) if times else None
