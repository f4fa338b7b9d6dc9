"""Signalling: how two nodes exchange sealed messages before they have a path.

``channel`` is the interface every backend implements; ``frames`` is the
built-in rendezvous's wire format and ``server`` / ``client`` its sans-IO
cores (the asyncio adapters are in :mod:`natkit.aio`).
"""

from natkit.signal.channel import (
    MAX_PLAINTEXT,
    MAX_SEALED,
    ChannelEvent,
    ChannelListener,
    ChannelState,
    DownReason,
    Envelope,
    SignalChannel,
    StateChanged,
    Undeliverable,
    UndeliverableReason,
)

__all__ = [
    "MAX_PLAINTEXT",
    "MAX_SEALED",
    "ChannelEvent",
    "ChannelListener",
    "ChannelState",
    "DownReason",
    "Envelope",
    "SignalChannel",
    "StateChanged",
    "Undeliverable",
    "UndeliverableReason",
]
