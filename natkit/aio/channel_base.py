"""What every asyncio :class:`~natkit.signal.channel.SignalChannel` shares:
its state, its subscribers, and the inbox that ``receive()`` drains.

Listeners are called with ``loop.call_soon``, in order, never from inside
the channel's own bookkeeping: a listener that sends or closes sees a
consistent channel, and one that raises goes to the loop's exception
handler instead of breaking the channel.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Self

from natkit.errors import LocalProtocolError
from natkit.identity import PublicKey
from natkit.signal.channel import (
    MAX_SEALED,
    ChannelEvent,
    ChannelListener,
    ChannelState,
    DownReason,
    Envelope,
    StateChanged,
    Undeliverable,
    UndeliverableReason,
)

#: Received messages kept for a slow ``receive()`` consumer before new ones
#: are dropped (counted in ``inbox_dropped``).
DEFAULT_INBOX_LIMIT = 1024


class ChannelBase:
    """State, listeners and inbox; subclasses add ``send`` and the transport."""

    def __init__(self, *, inbox_limit: int = DEFAULT_INBOX_LIMIT) -> None:
        self._state = ChannelState.CONNECTING
        self._reason: DownReason | None = None
        self._listeners: list[ChannelListener] = []
        self._inbox: deque[Envelope] = deque()
        self._inbox_limit = inbox_limit
        self._wake = asyncio.Event()
        #: Messages received while the inbox was full, and dropped.
        self.inbox_dropped = 0

    @property
    def state(self) -> ChannelState:
        return self._state

    def start(self) -> None:
        """Begin connecting, for backends that connect (a no-op here)."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def subscribe(self, listener: ChannelListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    async def receive(self) -> AsyncIterator[Envelope]:
        while True:
            while self._inbox:
                yield self._inbox.popleft()
            if self._state is ChannelState.CLOSED:
                return
            self._wake.clear()
            await self._wake.wait()

    def _check_send(self, sealed: bytes, limit: int = MAX_SEALED) -> None:
        """Refuse what no backend could carry, and sends after close."""
        if self._state is ChannelState.CLOSED:
            raise LocalProtocolError("send on a closed signal channel")
        if not sealed:
            raise LocalProtocolError("an empty sealed message")
        if len(sealed) > limit:
            raise LocalProtocolError(f"sealed message of {len(sealed)} bytes; the limit is {limit}")

    def _deliver(self, envelope: Envelope) -> bool:
        """Queue one received message for ``receive()``; ``False`` if dropped."""
        if self._state is ChannelState.CLOSED:
            return False
        if len(self._inbox) >= self._inbox_limit:
            self.inbox_dropped += 1
            return False
        self._inbox.append(envelope)
        self._wake.set()
        return True

    def _emit(self, event: ChannelEvent) -> None:
        loop = asyncio.get_running_loop()
        for listener in list(self._listeners):
            loop.call_soon(listener, event)

    def _undeliverable(self, recipient: PublicKey, reason: UndeliverableReason) -> None:
        self._emit(Undeliverable(recipient, reason))

    def _set_state(
        self,
        state: ChannelState,
        reason: DownReason | None = None,
        detail: str = "",
        retry_in: float | None = None,
    ) -> None:
        previous, previous_reason = self._state, self._reason
        if previous is ChannelState.CLOSED:
            return
        self._state, self._reason = state, reason
        if state is ChannelState.CLOSED:
            self._wake.set()  # end the receive() iterators
        # A new reason is news even in the same state (still CONNECTING, but
        # now refused rather than unreachable).
        if state is not previous or retry_in is not None or reason is not previous_reason:
            self._emit(StateChanged(state, previous, reason, detail, retry_in))
