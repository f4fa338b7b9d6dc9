"""The exception tree shared by every natkit module.

Two branches, as in h11: a ``LocalProtocolError`` means the caller asked for
something the protocol cannot do (a bug or bad configuration on our side); a
``RemoteProtocolError`` means a peer sent something malformed or hostile.
Fields carry the details so callers never parse messages.
"""

from __future__ import annotations


class NatkitError(Exception):
    """Root of every exception natkit raises on purpose."""


class LocalProtocolError(NatkitError):
    """The caller misused an API or configured something impossible."""


class RemoteProtocolError(NatkitError):
    """A peer (server, gateway, client) sent bytes that break the protocol."""
