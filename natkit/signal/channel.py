"""The signalling transport every backend offers: opaque sealed bytes, by key.

A :class:`SignalChannel` carries messages that were sealed end to end
(:func:`natkit.identity.seal`) between nodes named by their public keys. It
never sees plaintext, so a backend needs no trust: the in-memory hub
(:mod:`natkit.aio.signal_hub`, tests), the built-in rendezvous
(:mod:`natkit.aio.rendezvous_client`) and, later, a DNS-SD directory all
fit behind it.

Delivery is best effort, by design: ``send`` to a peer that is offline, or
while the backend is unreachable, does not raise; the message may be lost.
The connect core re-sends its announcements with backoff until it hears
from the peer, and re-announces when the channel reports :attr:`ChannelState.UP`
again (:class:`StateChanged`), so no backend has to store messages.

What a backend may tell its user besides messages (:data:`ChannelEvent`):

* :class:`StateChanged`: the backend became reachable (``UP``) or not
  (``CONNECTING`` while retrying, with the delay; ``CLOSED`` at the end).
  A rendezvous client goes ``CONNECTING`` → ``UP`` → ``CONNECTING`` ... as
  its TCP connection comes and goes; a DNS directory is ``UP`` while its
  updates and queries succeed; the hub is ``UP`` until closed.
* :class:`Undeliverable`: the backend knows that one message did not
  reach its recipient (offline, its queue full, or we sent too fast). Not
  every backend can know; none is obliged to say.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from natkit.identity import SEAL_OVERHEAD, PublicKey

#: The largest sealed message every backend carries (a plaintext of
#: ``MAX_SEALED - SEAL_OVERHEAD`` bytes). Larger announcements must be split
#: (candidates are trickled anyway). Chosen to fit a DNS UPDATE over TCP as
#: comfortably as a rendezvous frame.
MAX_SEALED = 4096
#: The largest plaintext that seals into :data:`MAX_SEALED`.
MAX_PLAINTEXT = MAX_SEALED - SEAL_OVERHEAD


@dataclass(frozen=True, slots=True)
class Envelope:
    """One sealed message as it arrives."""

    #: Who sent it, as the backend authenticated it (the rendezvous checks
    #: that a client holds the private key of the key it claims). Unsealing
    #: with this key is what proves it.
    sender: PublicKey
    #: ``seal(sender_private, recipient_public, payload)``; opaque here.
    sealed: bytes


class ChannelState(enum.Enum):
    """Whether a channel can carry messages now."""

    #: Not yet, or no longer, reachable; retrying.
    CONNECTING = "connecting"
    #: Messages flow.
    UP = "up"
    #: Closed by its user; nothing flows any more.
    CLOSED = "closed"


class DownReason(enum.Enum):
    """Why a channel left :attr:`ChannelState.UP` (or never reached it)."""

    #: The server could not be reached (refused, unreachable, timed out).
    UNREACHABLE = "unreachable"
    #: The connection broke (reset, closed by the server, end of stream).
    LOST = "lost"
    #: The server went silent: no answer to our keepalive in time.
    SILENT = "silent"
    #: The server closed it with an error code (see ``detail``).
    REFUSED = "refused"
    #: The same key connected from elsewhere and took over.
    REPLACED = "replaced"
    #: The server broke the protocol (malformed frame, failed proof).
    PROTOCOL = "protocol"
    #: The user closed the channel.
    CLOSED = "closed"


class UndeliverableReason(enum.Enum):
    """Why one message did not reach its recipient."""

    #: The recipient is not connected to the backend.
    OFFLINE = "offline"
    #: The recipient is not reading fast enough; its queue is full.
    BUSY = "busy"
    #: We sent faster than the backend allows.
    RATE_LIMITED = "rate-limited"
    #: The channel was not up, and its small outbox overflowed.
    NOT_CONNECTED = "not-connected"


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The channel moved from ``previous`` to ``state``."""

    state: ChannelState
    previous: ChannelState
    #: Why it left ``UP`` or failed to get there; ``None`` on the way up.
    reason: DownReason | None = None
    #: For people: the error text or server code behind ``reason``.
    detail: str = ""
    #: When ``state`` is ``CONNECTING``: seconds until the next attempt.
    retry_in: float | None = None


@dataclass(frozen=True, slots=True)
class Undeliverable:
    """One message to ``recipient`` was dropped on the way."""

    recipient: PublicKey
    reason: UndeliverableReason


#: What a channel tells its subscribers.
ChannelEvent = StateChanged | Undeliverable
#: A subscriber; called on the event loop, must not block.
ChannelListener = Callable[[ChannelEvent], None]


class SignalChannel(Protocol):
    """Send and receive sealed messages by public key (see the module docs)."""

    async def send(self, recipient: PublicKey, sealed: bytes) -> None:
        """Hand one sealed message to the backend. Never raises for an offline
        peer or an unreachable backend (the message may be lost); raises
        :class:`natkit.errors.LocalProtocolError` for a message the backend
        can never carry (too large) or after :meth:`close`."""

    def receive(self) -> AsyncIterator[Envelope]:
        """The messages addressed to us, in arrival order, until :meth:`close`."""

    async def close(self) -> None:
        """Stop; ``receive`` iterators end, later ``send`` calls raise."""

    @property
    def state(self) -> ChannelState:
        """The current state."""

    def subscribe(self, listener: ChannelListener) -> Callable[[], None]:
        """Call ``listener`` with every later :data:`ChannelEvent`; returns
        the function that unsubscribes it."""
