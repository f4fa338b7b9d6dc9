"""One session's check list: remote candidates, pairs, and what to check next.

* **Remote candidates** by address, announced or learnt from a check's
  source (peer-reflexive, RFC 8445 §7.3.1.3); a learnt one later announced
  keeps its pairs. At most ``max_remote_candidates``.
* **Pairs** by (base, destination), formed as either side's candidates
  arrive (RFC 8838 trickle) and pruned as RFC 8445 §6.1.2.4 says; a new
  pair waits unless a waiting or in-progress pair shares its foundation
  (§6.1.2.6). At most ``max_pairs``.
* **What next** (§6.1.4.2): checks queued for a transmission (triggered
  ones first), else the highest-priority waiting pair, else a frozen one
  unfrozen because no waiting or in-progress pair has its foundation.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterable

from natkit.endpoint import Endpoint
from natkit.ice.candidates import (
    Base,
    CandidateKind,
    CandidateTransport,
    LocalCandidate,
    destination_for,
)
from natkit.ice.config import ConnectConfig
from natkit.ice.counters import ConnectCounters
from natkit.ice.pairs import Pair, PairState
from natkit.ice.signals import SignalCandidate


class CheckList:
    """Remote candidates and pairs of one session (see the module doc)."""

    __slots__ = ("_config", "_counters", "_due", "_due_triggered", "_learnt", "pairs", "remote")

    def __init__(self, config: ConnectConfig, counters: ConnectCounters) -> None:
        self._config = config
        self._counters = counters
        self.remote: dict[Endpoint, SignalCandidate] = {}
        self.pairs: dict[tuple[Base, Endpoint], Pair] = {}
        self._due: deque[Pair] = deque()
        self._due_triggered: deque[Pair] = deque()
        self._learnt = 0

    # -- candidates and pairs ---------------------------------------------------------------

    def add_remote(
        self,
        candidates: Iterable[SignalCandidate],
        pairing: Iterable[LocalCandidate],
        *,
        controlling: bool,
    ) -> bool:
        """Add announced candidates; ``True`` when new pairs were formed."""
        locals_ = tuple(pairing)
        added = False
        for candidate in candidates:
            if candidate.transport is not CandidateTransport.UDP:
                continue  # a UDP tunnel cannot use TCP candidates (RFC 6544)
            known = self.remote.get(candidate.address)
            if known is not None:
                if known.kind is CandidateKind.PEER_REFLEXIVE:
                    self._replace(known, candidate, controlling)
                continue
            if len(self.remote) >= self._config.max_remote_candidates:
                self._counters.remote_candidates_dropped += 1
                continue
            self.remote[candidate.address] = candidate
            for local in locals_:
                added |= self.form(local, candidate, controlling=controlling) is not None
        return added

    def _replace(
        self, learnt: SignalCandidate, announced: SignalCandidate, controlling: bool
    ) -> None:
        self.remote[announced.address] = announced
        for pair in self.pairs.values():
            if pair.remote is learnt:
                pair.remote = announced
                pair.set_role(controlling)

    def learn(self, address: Endpoint, priority: int) -> SignalCandidate | None:
        """A peer-reflexive remote candidate (RFC 8445 §7.3.1.3)."""
        known = self.remote.get(address)
        if known is not None:
            return known
        if len(self.remote) >= self._config.max_remote_candidates:
            self._counters.remote_candidates_dropped += 1
            return None
        self._learnt += 1
        candidate = SignalCandidate(
            CandidateKind.PEER_REFLEXIVE, address, priority, f"prflx{self._learnt}"
        )
        self.remote[address] = candidate
        return candidate

    def form(
        self,
        local: LocalCandidate,
        remote: SignalCandidate,
        *,
        controlling: bool,
        destination: Endpoint | None = None,
    ) -> Pair | None:
        """A new pair of ``local`` and ``remote`` (``None``: none new)."""
        if destination is None:
            destination = destination_for(local, remote.address)
            if destination is None:
                return None
        key = (local.base, destination)
        existing = self.pairs.get(key)
        if existing is not None:
            if local.priority > existing.local.priority:  # RFC 8445 §6.1.2.4 pruning
                existing.local = local
                existing.set_role(controlling)
            return None
        if len(self.pairs) >= self._config.max_pairs:
            self._counters.pairs_dropped += 1
            return None
        foundation = f"{local.foundation}:{remote.foundation}"
        busy = any(
            p.foundation == foundation and p.state in (PairState.WAITING, PairState.IN_PROGRESS)
            for p in self.pairs.values()
        )
        state = PairState.FROZEN if busy else PairState.WAITING
        pair = Pair(local, remote, destination, state, controlling)
        self.pairs[key] = pair
        return pair

    def drop(self, pair: Pair) -> list[bytes]:
        """Remove ``pair``; returns the transaction IDs of its check in flight."""
        tids = pair.end()
        pair.removed = True
        self.pairs.pop((pair.base, pair.destination), None)
        return tids

    def clear(self) -> list[bytes]:
        """Forget every candidate and pair (an ICE restart)."""
        tids = [tid for pair in list(self.pairs.values()) for tid in self.drop(pair)]
        self.remote.clear()
        self._due.clear()
        self._due_triggered.clear()
        self._learnt = 0
        return tids

    def set_role(self, controlling: bool) -> None:
        for pair in self.pairs.values():
            pair.set_role(controlling)

    # -- what to check next -----------------------------------------------------------------

    @property
    def triggered_waiting(self) -> bool:
        return bool(self._due_triggered)

    def has_work(self) -> bool:
        return bool(self._due_triggered or self._due) or self.pick_ordinary() is not None

    def queue(self, pair: Pair, *, triggered: bool) -> None:
        """``pair``'s check wants its next transmission from the pacer."""
        if pair.queued:
            if not triggered:
                return
            with contextlib.suppress(ValueError):
                self._due.remove(pair)
        pair.queued = True
        (self._due_triggered if triggered else self._due).append(pair)

    def next_queued(self) -> Pair | None:
        for queue in (self._due_triggered, self._due):
            while queue:
                pair = queue.popleft()
                if pair.queued and not pair.removed:
                    pair.queued = False
                    return pair
        return None

    def pick_ordinary(self, *, relay_first: bool = False) -> Pair | None:
        """RFC 8445 §6.1.4.2: the highest-priority waiting pair, else unfreeze one
        whose foundation no waiting or in-progress pair has.

        ``relay_first`` (issue 12: no path yet): waiting relayed pairs go
        before direct ones, the most robust first (:func:`relay_order`), so
        traffic can start over the relay while direct checks run."""
        waiting = None
        active: set[str] = set()
        for pair in self.pairs.values():
            state = pair.state
            if state is PairState.WAITING:
                if not pair.in_flight and (
                    waiting is None
                    or (
                        relay_order(pair) > relay_order(waiting)
                        if relay_first
                        else pair.priority > waiting.priority
                    )
                ):
                    waiting = pair
                active.add(pair.foundation)
            elif state is PairState.IN_PROGRESS:
                active.add(pair.foundation)
        if waiting is not None:
            return waiting
        frozen = None
        for pair in self.pairs.values():
            if (
                pair.state is PairState.FROZEN
                and pair.foundation not in active
                and (frozen is None or pair.priority > frozen.priority)
            ):
                frozen = pair
        return frozen

    def direct_failed(self) -> bool:
        """Every direct (unrelayed) pair was checked and failed (and there is one)."""
        direct = [p for p in self.pairs.values() if not p.relayed]
        return bool(direct) and all(p.state is PairState.FAILED for p in direct)

    def unfreeze(self, foundation: str) -> bool:
        """RFC 8445 §7.2.5.3.3: a success unfreezes the pairs of its foundation."""
        woke = False
        for pair in self.pairs.values():
            if pair.state is PairState.FROZEN and pair.foundation == foundation:
                pair.state = PairState.WAITING
                woke = True
        return woke


def relay_order(pair: Pair) -> tuple[int, int]:
    """How early a pair is checked while no path is selected (larger: sooner).

    Relayed pairs first, and among them: from a direct base toward the
    peer's relayed candidate (it needs only the peer's permission for our
    address, which the peer asked for as it learnt our candidates, so the
    check of whichever side learnt the other's candidates last passes at
    once, and the answer comes back through our NAT's own mapping toward the
    relay); then relay to relay (both permissions, no NAT in the way: what a
    site without UDP has); then from our relayed base toward the peer's
    direct candidates (the peer's NAT lets it in only once the peer sent to
    our relayed address); then priority (RFC 8445 §6.1.2.3)."""
    local = pair.local.kind is CandidateKind.RELAY
    remote = pair.remote.kind is CandidateKind.RELAY
    rank = 3 if remote and not local else 2 if local and remote else 1 if local else 0
    return rank, pair.priority
