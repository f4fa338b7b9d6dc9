"""How the DNS directory talks to its servers: one exchange at a time.

:class:`Do53Transport` is plain DNS (RFC 1035) through dnspython's asyncio
query functions: updates over TCP (a full window is ~45 KB, beyond any UDP
payload, and TCP gives an update one clear answer rather than a
retransmission that may be applied twice), queries over UDP with the
fallback to TCP that a truncated answer asks for (RFC 7766 §5).

:func:`exchange_failure` sorts what can go wrong with an exchange into a
refusal (raise: the configuration is wrong) or a transient failure (count,
back off, retry).
"""

from __future__ import annotations

from typing import Protocol

import dns.asyncquery
import dns.exception
import dns.message
import dns.tsig

from natkit.directory.errors import RefusalReason
from natkit.endpoint import Endpoint

#: TSIG errors the server reports about our signature (RFC 8945 §5.3).
_TSIG_REFUSALS: tuple[tuple[type[Exception], RefusalReason], ...] = (
    (dns.tsig.PeerBadSignature, RefusalReason.BAD_SIGNATURE),
    (dns.tsig.PeerBadKey, RefusalReason.BAD_KEY),
    (dns.tsig.PeerBadTime, RefusalReason.BAD_TIME),
    (dns.tsig.PeerBadTruncation, RefusalReason.OTHER),
)


class DnsTransport(Protocol):
    """One DNS exchange with one server (tests pass an in-memory zone)."""

    async def update(
        self, message: dns.message.Message, server: Endpoint, timeout: float
    ) -> dns.message.Message:
        """Send an RFC 2136 UPDATE and return the answer (TSIG checked)."""

    async def query(
        self, message: dns.message.Message, server: Endpoint, timeout: float
    ) -> dns.message.Message:
        """Send a query and return the answer."""


class Do53Transport:
    """DNS over UDP and TCP port 53 (or the server's port), via dnspython."""

    async def update(
        self, message: dns.message.Message, server: Endpoint, timeout: float
    ) -> dns.message.Message:
        return await dns.asyncquery.tcp(
            message, str(server.address), timeout=timeout, port=server.port
        )

    async def query(
        self, message: dns.message.Message, server: Endpoint, timeout: float
    ) -> dns.message.Message:
        response, _ = await dns.asyncquery.udp_with_fallback(
            message, str(server.address), timeout=timeout, port=server.port
        )
        return response


def exchange_failure(exc: BaseException) -> RefusalReason | None:
    """The refusal an exception from an exchange stands for, or ``None``
    when it is transient (timeout, network error, a garbled or forged
    answer: dnspython raises ``dns.tsig.BadSignature`` for an answer whose
    own TSIG does not verify)."""
    for kind, reason in _TSIG_REFUSALS:
        if isinstance(exc, kind):
            return reason
    return None


#: What an exchange may raise that is the network's or the server's doing.
EXCHANGE_ERRORS: tuple[type[BaseException], ...] = (
    dns.exception.DNSException,
    OSError,
    TimeoutError,
    EOFError,
    ValueError,
)
