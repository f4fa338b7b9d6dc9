"""SignalBridge.close() returns even when the channel swallows a cancel.

Python 3.11's ``asyncio.wait_for`` (which dnspython's exchanges use) drops a
cancel that lands as the awaited exchange completes: the send loop then
carries on as if nothing happened, and close() must still end it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from natkit.aio.connect_signal import SignalBridge
from natkit.ice.signals import Acknowledgement
from natkit.identity import PrivateKey, PublicKey


class SwallowingChannel:
    """A channel whose send is under way when close() comes, and eats the cancel."""

    def __init__(self) -> None:
        self.sending = asyncio.Event()
        self.sends = 0

    async def send(self, recipient: PublicKey, sealed: bytes) -> None:
        self.sends += 1
        self.sending.set()
        # What wait_for does when the exchange completed meanwhile:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)

    async def receive(self) -> AsyncIterator[object]:
        await asyncio.Event().wait()
        yield object()  # pragma: no cover

    async def close(self) -> None:
        pass


async def test_close_ends_a_send_loop_whose_cancel_was_swallowed() -> None:
    key, peer = PrivateKey.generate(), PrivateKey.generate().public_key
    channel = SwallowingChannel()
    bridge = SignalBridge(key, channel, lambda _p, _m: None, lambda _p: True)  # type: ignore[arg-type]
    bridge.start()
    bridge.send(peer, Acknowledgement(generation=1, peer_generation=2))
    await channel.sending.wait()
    closer = asyncio.create_task(bridge.close())
    done, _ = await asyncio.wait({closer}, timeout=5)  # a guard against a hang, not a bound
    assert closer in done, "close() still waits for the send loop"
    assert channel.sends == 1
