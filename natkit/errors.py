"""The exception tree shared by every natkit module.

Three branches, the first two as in h11: a ``LocalProtocolError`` means the
caller asked for something the protocol cannot do (a bug or bad
configuration on our side); a ``RemoteProtocolError`` means a peer sent
something malformed or hostile; a ``NatkitTimeout`` means a peer said
nothing in time (no bytes were wrong, so it is neither of the others).
Fields carry the details so callers never parse messages.

Errors about values a caller passed in (an endpoint, a hop limit) are also
``ValueError``s, so code written against the standard library's conventions
(``except ValueError``) keeps catching them.
"""

from __future__ import annotations

import errno
from enum import Enum
from typing import Generic, TypeVar

#: The enum of reasons one decoder gives (values are sentences).
ReasonT = TypeVar("ReasonT", bound=Enum)


class NatkitError(Exception):
    """Root of every exception natkit raises on purpose."""


class LocalProtocolError(NatkitError):
    """The caller misused an API or configured something impossible."""


class RemoteProtocolError(NatkitError):
    """A peer (server, gateway, client) sent bytes that break the protocol."""


class MalformedInput(RemoteProtocolError, Generic[ReasonT]):
    """Bytes a decoder refused: ``reason`` (its enum, whose value is the
    sentence) and ``detail`` (what exactly, may be empty).

    Each decoder subclasses this with its own reason enum, so callers catch
    one protocol's errors by class and every protocol's by this one.
    """

    def __init__(self, reason: ReasonT, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}" if detail else str(reason.value))


class NatkitTimeout(NatkitError, TimeoutError):
    """A peer did not answer in time (also a built-in ``TimeoutError``)."""


class InvalidEndpoint(LocalProtocolError, ValueError):
    """An address or port that is not one: ``text`` as given, ``problem`` in words."""

    def __init__(self, text: str, problem: str) -> None:
        super().__init__(problem)
        self.text = text
        self.problem = problem


class AddressNotLocal(LocalProtocolError, OSError):
    """A socket was to be bound to ``address``, which no interface of this
    host has (EADDRNOTAVAIL; also an ``OSError``, so code that catches
    failed binds keeps catching it)."""

    def __init__(self, address: str) -> None:
        super().__init__(errno.EADDRNOTAVAIL, f"{address} is not an address of this host")
        self.address = address

    def __str__(self) -> str:
        return str(self.strerror)


class InvalidArgument(LocalProtocolError, ValueError):
    """A field of something handed to natkit (a datagram, a stream request)
    holds an impossible ``value``; ``field`` names it."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.value = value
