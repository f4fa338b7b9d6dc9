"""Signalling: how two nodes exchange sealed messages before they have a path."""

from natkit.signal.channel import MAX_SEALED, Envelope, SignalChannel

__all__ = ["MAX_SEALED", "Envelope", "SignalChannel"]
