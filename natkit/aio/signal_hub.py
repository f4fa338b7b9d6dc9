"""An in-memory :class:`~natkit.signal.channel.SignalChannel` backend for tests.

One :class:`SignalHub` routes sealed messages between the channels made
from it, in one process, with the same best-effort rules as the rendezvous:
a message to a key without an attached, up channel is dropped and reported
(:class:`~natkit.signal.channel.Undeliverable`). Test knobs: take a channel
down and up again (:meth:`SignalHub.set_online`, which emits the same state
changes a reconnecting rendezvous client does) and an ``intercept`` hook
that sees every message and may drop it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from natkit.aio.channel_base import DEFAULT_INBOX_LIMIT, ChannelBase
from natkit.errors import LocalProtocolError
from natkit.identity import PublicKey
from natkit.signal.channel import (
    ChannelState,
    DownReason,
    Envelope,
    SignalChannel,
    UndeliverableReason,
)

#: ``intercept(sender, recipient, sealed)``: ``True`` lets the message through.
Intercept = Callable[[PublicKey, PublicKey, bytes], bool]


@dataclass(slots=True)
class HubCounters:
    """What the hub routed, for tests."""

    sent: int = 0
    delivered: int = 0
    offline: int = 0
    busy: int = 0
    intercepted: int = 0


class SignalHub:
    """Routes messages between the :class:`HubChannel` objects it made."""

    def __init__(self, *, inbox_limit: int = DEFAULT_INBOX_LIMIT) -> None:
        self._channels: dict[PublicKey, HubChannel] = {}
        self._inbox_limit = inbox_limit
        self.counters = HubCounters()
        #: Sees every message before delivery; return ``False`` to drop it.
        self.intercept: Intercept | None = None

    def channel(self, key: PublicKey) -> HubChannel:
        """Attach a channel for ``key`` (up at once); one open channel per key."""
        existing = self._channels.get(key)
        if existing is not None and existing.state is not ChannelState.CLOSED:
            raise LocalProtocolError(f"{key} already has an open hub channel")
        channel = HubChannel(self, key, inbox_limit=self._inbox_limit)
        self._channels[key] = channel
        return channel

    def set_online(self, key: PublicKey, online: bool) -> None:
        """Take ``key``'s channel down (``CONNECTING``, reason ``LOST``) or up."""
        channel = self._channels[key]
        if online:
            channel._set_state(ChannelState.UP)
        else:
            channel._set_state(ChannelState.CONNECTING, DownReason.LOST, "hub: set offline")

    def _route(self, sender: HubChannel, recipient: PublicKey, sealed: bytes) -> None:
        self.counters.sent += 1
        if self.intercept is not None and not self.intercept(sender.key, recipient, sealed):
            self.counters.intercepted += 1
            return
        if sender.state is not ChannelState.UP:
            sender._undeliverable(recipient, UndeliverableReason.NOT_CONNECTED)
            return
        target = self._channels.get(recipient)
        if target is None or target.state is not ChannelState.UP:
            self.counters.offline += 1
            sender._undeliverable(recipient, UndeliverableReason.OFFLINE)
            return
        if not target._deliver(Envelope(sender.key, sealed)):
            self.counters.busy += 1
            sender._undeliverable(recipient, UndeliverableReason.BUSY)
            return
        self.counters.delivered += 1


class HubChannel(ChannelBase):
    """One node's end of a :class:`SignalHub`."""

    def __init__(self, hub: SignalHub, key: PublicKey, *, inbox_limit: int) -> None:
        super().__init__(inbox_limit=inbox_limit)
        self._hub = hub
        #: The node this channel belongs to.
        self.key = key
        self._state = ChannelState.UP

    async def send(self, recipient: PublicKey, sealed: bytes) -> None:
        self._check_send(sealed)
        self._hub._route(self, recipient, sealed)

    async def close(self) -> None:
        self._set_state(ChannelState.CLOSED, DownReason.CLOSED)


def _conforms(channel: HubChannel) -> SignalChannel:
    return channel  # mypy checks that HubChannel is a SignalChannel
