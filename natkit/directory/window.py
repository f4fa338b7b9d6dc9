"""At-least-once delivery over records that readers poll: the sender's
window and the reader's cursor. Pure: ``now`` comes in, nothing is read.

Theory of operation (the DNS channel, :mod:`natkit.aio.dns_directory`,
drives both):

1. The sender numbers its messages to each recipient 1, 2, 3 ... within a
   *stream* drawn at random when it starts, and keeps the last ``window``
   of them (:class:`Outbox`). Each send replaces the recipient's record set
   with the whole window in one UPDATE, so a reader sees a consistent
   window, never half of one.
2. A reader polls each peer's set for it and delivers the messages whose
   ``seq`` is above the last one it delivered from that stream
   (:class:`Reader`): a message read twice is delivered once.
3. At-least-once: a message is not pushed out of the window until it has
   been in the zone for ``retain`` seconds (:meth:`Outbox.admit_at` says
   when the next send may go; the channel waits until then). A reader that
   polls at least every ``retain`` seconds (the TTL, plus the time a
   secondary takes to catch up) therefore sees every message.
4. A reader that fell further behind (it was down, the server was
   unreachable, or it started after the sender had sent more than a
   window) sees a gap: :attr:`Delivery.missed` counts the messages it will
   never see. The connect core repairs that: its messages name the
   generation of the peer's session they answer, and a peer that is not
   heard from correctly re-sends its announcement (CONNECT_DESIGN.md).
5. A new stream (the sender restarted) is delivered from its start; a
   stream once replaced is never read again, so a secondary that lags
   behind the primary cannot make a reader go back to the old one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from natkit.directory.records import MAX_WINDOW, MessageRecord

R = TypeVar("R", bound=Hashable)

#: Messages kept per recipient by default: enough for an announcement and a
#: few trickled candidate messages within one poll interval.
DEFAULT_WINDOW = 8
#: Replaced streams a reader remembers per peer, to ignore stale copies.
RETIRED_STREAMS = 4


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """How many messages a sender keeps per recipient, and for how long."""

    #: Messages kept per recipient (1..:data:`~natkit.directory.records.MAX_WINDOW`).
    window: int = DEFAULT_WINDOW
    #: Seconds a published message stays in the window before a newer one may
    #: push it out: the readers' poll interval plus the secondaries' lag.
    retain: float = 10.0

    def __post_init__(self) -> None:
        if not 1 <= self.window <= MAX_WINDOW:
            raise ValueError(f"window must be 1..{MAX_WINDOW}, got {self.window}")
        if self.retain < 0:
            raise ValueError(f"retain must not be negative, got {self.retain}")


@dataclass(slots=True)
class _Entry:
    record: MessageRecord
    #: When an UPDATE carrying it succeeded; ``None`` until then.
    published_at: float | None = None


@dataclass(slots=True)
class _Recipient:
    next_seq: int = 1
    entries: deque[_Entry] = field(default_factory=deque)


class Outbox(Generic[R]):
    """A sender's windows, one per recipient (see the module docs)."""

    def __init__(self, stream: str, config: WindowConfig | None = None) -> None:
        self.stream = stream
        self.config = config or WindowConfig()
        self._recipients: dict[R, _Recipient] = {}
        #: Messages pushed out before ``retain`` had passed (a caller that did
        #: not wait for :meth:`admit_at`): readers may miss them.
        self.evicted_early = 0
        #: Messages pushed out before any UPDATE carried them (the server was
        #: unreachable for a whole window's worth of sends).
        self.evicted_unpublished = 0

    def admit_at(self, recipient: R, now: float) -> float:
        """When a new message to ``recipient`` can be pushed without evicting
        one younger than ``retain``: ``now`` if at once.

        A message never published does not hold the window: nobody can have
        read it, so it does not delay the next one.
        """
        state = self._recipients.get(recipient)
        if state is None or len(state.entries) < self.config.window:
            return now
        oldest = state.entries[0].published_at
        if oldest is None:
            return now
        return max(now, oldest + self.config.retain)

    def push(self, recipient: R, sealed: bytes, now: float) -> MessageRecord:
        """Add a message to ``recipient``'s window, evicting the oldest if full."""
        state = self._recipients.setdefault(recipient, _Recipient())
        record = MessageRecord(self.stream, state.next_seq, sealed)
        if len(state.entries) >= self.config.window:
            evicted = state.entries.popleft()
            if evicted.published_at is None:
                self.evicted_unpublished += 1
            elif now < evicted.published_at + self.config.retain:
                self.evicted_early += 1
        state.entries.append(_Entry(record))
        state.next_seq += 1
        return record

    def window(self, recipient: R) -> tuple[MessageRecord, ...]:
        """What ``recipient``'s record set should hold now, oldest first."""
        state = self._recipients.get(recipient)
        return () if state is None else tuple(e.record for e in state.entries)

    def mark_published(self, recipient: R, up_to_seq: int, now: float) -> None:
        """An UPDATE holding the window up to ``up_to_seq`` succeeded at ``now``."""
        state = self._recipients.get(recipient)
        if state is None:
            return
        for entry in state.entries:
            if entry.record.seq <= up_to_seq and entry.published_at is None:
                entry.published_at = now

    def pending(self) -> tuple[R, ...]:
        """Recipients whose window holds messages no UPDATE carried yet."""
        return tuple(
            r
            for r, state in self._recipients.items()
            if any(e.published_at is None for e in state.entries)
        )

    def is_published(self, recipient: R, seq: int) -> bool:
        """Whether the message ``seq`` to ``recipient`` went out (or was evicted)."""
        state = self._recipients.get(recipient)
        if state is None:
            return False
        for entry in state.entries:
            if entry.record.seq == seq:
                return entry.published_at is not None
        return seq < state.next_seq  # no longer in the window

    @property
    def recipients(self) -> tuple[R, ...]:
        return tuple(self._recipients)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one read of a peer's window yields."""

    #: Messages not delivered before, by ``seq``.
    new: tuple[MessageRecord, ...]
    #: Messages of this stream that were pushed out of the window before this
    #: reader saw them (a gap; see the module docs, rule 4).
    missed: int = 0
    #: Records already delivered, read again.
    duplicates: int = 0
    #: The window belongs to a stream that was already replaced (a stale
    #: server's copy): ignored whole.
    stale: bool = False
    #: The peer started a new stream (it restarted).
    restarted: bool = False


@dataclass(slots=True)
class _Cursor:
    stream: str
    last_seq: int
    retired: deque[str] = field(default_factory=lambda: deque(maxlen=RETIRED_STREAMS))


class Reader(Generic[R]):
    """A reader's position in each peer's stream (see the module docs)."""

    def __init__(self) -> None:
        self._cursors: dict[R, _Cursor] = {}

    def accept(self, peer: R, window: Sequence[MessageRecord]) -> Delivery:
        """Take one read of ``peer``'s window for us (as
        :func:`~natkit.directory.records.check_window` returns it: one
        stream, sorted by ``seq``) and say what is new."""
        if not window:
            return Delivery(())
        stream = window[0].stream
        cursor = self._cursors.get(peer)
        restarted = False
        if cursor is None:
            cursor = self._cursors[peer] = _Cursor(stream, 0)
        elif stream in cursor.retired:
            return Delivery((), stale=True)
        elif stream != cursor.stream:
            cursor.retired.append(cursor.stream)
            cursor.stream, cursor.last_seq = stream, 0
            restarted = True
        last = cursor.last_seq
        new = tuple(r for r in window if r.seq > last)
        missed = new[0].seq - last - 1 if new else 0
        if new:
            cursor.last_seq = new[-1].seq
        return Delivery(new, missed, len(window) - len(new), restarted=restarted)

    def forget(self, peer: R) -> None:
        self._cursors.pop(peer, None)
