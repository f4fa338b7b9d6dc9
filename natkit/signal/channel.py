"""The signalling transport every backend offers: opaque sealed bytes, by key.

Minimal form of the interface in the connect design (CONNECT_DESIGN.md),
written for the DNS directory; the signalling work owns the full module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from natkit.identity import PublicKey  # type: ignore[import-not-found, unused-ignore]

#: The largest sealed message every backend carries.
MAX_SEALED = 4096


@dataclass(frozen=True, slots=True)
class Envelope:
    """One sealed message as it arrives."""

    #: Who sent it, as the backend knows it; unsealing with this key proves it.
    sender: PublicKey
    #: ``seal(sender_private, recipient_public, payload)``; opaque here.
    sealed: bytes


class SignalChannel(Protocol):
    """Send and receive sealed messages by public key."""

    async def send(self, recipient: PublicKey, sealed: bytes) -> None:
        """Hand one sealed message to the backend."""

    def receive(self) -> AsyncIterator[Envelope]:
        """The messages addressed to us, until :meth:`close`."""

    async def close(self) -> None:
        """Stop; ``receive`` iterators end, later ``send`` calls raise."""
