"""The connect agent's signal messages on a :class:`~natkit.signal.channel.SignalChannel`.

Out: ``SignalReady(peer, message)`` → :func:`~natkit.ice.signals.encode_signal`
→ :func:`~natkit.identity.seal` to the peer's key → ``channel.send``. Sends
leave in order from one task through a bounded outbox (the core re-sends
what matters, so dropping the oldest when a slow backend lets it fill up
costs a little time, never correctness).

In: ``channel.receive()`` → the sender must be a peer → :func:`~natkit.identity.unseal`
(a forged, garbled or misaddressed box fails here) →
:func:`~natkit.ice.signals.decode_signal` (strict; malformed bytes fail
here) → the node's ``deliver``. Every failure is counted and the message
dropped; nothing a peer or the backend sends can end the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from natkit.errors import LocalProtocolError, NatkitError
from natkit.ice.signals import SignalDecodeError, SignalMessage, decode_signal, encode_signal
from natkit.identity import PrivateKey, PublicKey, SealError, seal, unseal
from natkit.signal.channel import Envelope, SignalChannel

#: Sealed messages waiting for the channel before the oldest are dropped.
OUTBOX_LIMIT = 256

Deliver = Callable[[PublicKey, SignalMessage], None]


@dataclass(slots=True)
class SignalCounters:
    """What the bridge did with signal messages (never raised)."""

    #: Handed to the channel.
    sent: int = 0
    #: Opened, decoded and given to the agent.
    received: int = 0
    #: From a key that is not one of our peers (dropped unopened).
    unknown_sender: int = 0
    #: Failed to open: forged, garbled, or sealed for someone else.
    forged: int = 0
    #: Opened, but not a valid signal message.
    malformed: int = 0
    #: The channel refused to carry one (too large, closed).
    send_failed: int = 0
    #: Dropped from a full outbox (the backend is slower than the core).
    outbox_dropped: int = 0
    #: The backend said a message did not reach its recipient.
    undeliverable: int = 0


class SignalBridge:
    """Seals outgoing and opens incoming signal messages (see the module doc)."""

    def __init__(
        self,
        key: PrivateKey,
        channel: SignalChannel,
        deliver: Deliver,
        is_peer: Callable[[PublicKey], bool],
        *,
        outbox_limit: int = OUTBOX_LIMIT,
    ) -> None:
        self.key = key
        self.channel = channel
        self._deliver = deliver
        self._is_peer = is_peer
        self.counters = SignalCounters()
        self._outbox: deque[tuple[PublicKey, bytes]] = deque()
        self._outbox_limit = outbox_limit
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._receive_loop(), name="natkit-connect-receive"),
            loop.create_task(self._send_loop(), name="natkit-connect-send"),
        ]

    async def close(self) -> None:
        """Stop both loops (the channel itself is the caller's to close)."""
        # Python 3.11's wait_for (inside dnspython) may swallow a cancel that
        # lands as its exchange completes: the loops also stop on this flag.
        self._closing = True
        self._wake.set()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- out ----------------------------------------------------------------------------------

    def send(self, peer: PublicKey, message: SignalMessage) -> None:
        """Seal ``message`` to ``peer`` and queue it for the channel."""
        try:
            sealed = seal(self.key, peer, encode_signal(message))
        except LocalProtocolError:  # too large to encode, a weak key
            self.counters.send_failed += 1
            return
        if len(self._outbox) >= self._outbox_limit:
            self._outbox.popleft()
            self.counters.outbox_dropped += 1
        self._outbox.append((peer, sealed))
        self._wake.set()

    async def _send_loop(self) -> None:
        while True:
            while self._outbox and not self._closing:
                peer, sealed = self._outbox.popleft()
                try:
                    await self.channel.send(peer, sealed)
                except NatkitError:  # too large, closed, a refused DNS update
                    self.counters.send_failed += 1
                else:
                    self.counters.sent += 1
            # Tested after the sends, before the wake is cleared: clearing
            # close()'s wake-up would leave a loop whose cancel was swallowed
            # waiting for ever.
            if self._closing:
                return
            self._wake.clear()
            await self._wake.wait()

    # -- in -----------------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        async for envelope in self.channel.receive():
            self.receive(envelope)

    def receive(self, envelope: Envelope) -> None:
        """Open, decode and deliver one envelope, or count why not."""
        sender = envelope.sender
        if not self._is_peer(sender):
            self.counters.unknown_sender += 1
            return
        try:
            message = decode_signal(unseal(self.key, sender, envelope.sealed))
        except SealError:
            self.counters.forged += 1
            return
        except SignalDecodeError:
            self.counters.malformed += 1
            return
        self.counters.received += 1
        self._deliver(sender, message)
