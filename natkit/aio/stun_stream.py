"""STUN over TCP and TLS (RFC 8489 §6.2.2, §6.2.3): one request, one reply.

Every stream exchange natkit makes goes through :func:`stun_over_stream`:
the candidate gatherer's TCP and TLS checks (one connection per server) and
the classifier's TCP check (staggered parallel connections, first reply
wins, :mod:`natkit.aio.classify`). It frames with natkit's own codec (the
20-byte header gives the length) and reports what the network did as a
:class:`StreamReply` instead of raising.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass

from natkit.endpoint import Endpoint
from natkit.stun.codec import message_length
from natkit.stun.constants import HEADER_LENGTH

#: Largest STUN message accepted over a stream (RFC 8489 has no limit;
#: a Binding response is a few hundred bytes).
MAX_STREAM_MESSAGE = 8192


@dataclass(frozen=True, slots=True)
class StreamReply:
    """What one STUN exchange over a stream gave."""

    #: The whole reply message (``None``: no reply, see ``detail``).
    reply: bytes | None
    #: Our end of the connection, once connected.
    local: Endpoint | None = None
    #: From sending the request to the end of the reply.
    rtt: float | None = None
    detail: str = ""


async def stun_over_stream(
    destination: Endpoint,
    request: bytes,
    timeout: float,
    *,
    tls: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> StreamReply:
    """Connect to ``destination`` (over TLS with ``tls``, checking the
    certificate against ``server_name``, else ``destination``'s address),
    send ``request``, read one message.

    Never raises for what the network does: refusals, resets, TLS failures
    and timeouts come back as a :class:`StreamReply` without a reply.
    """
    loop = asyncio.get_running_loop()
    local: Endpoint | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                str(destination.address),
                destination.port,
                ssl=tls,
                server_hostname=(server_name or str(destination.address)) if tls else None,
            )
            try:
                local = Endpoint.from_sockaddr(writer.get_extra_info("sockname"))
                sent_at = loop.time()
                writer.write(request)
                await writer.drain()
                header = await reader.readexactly(HEADER_LENGTH)
                length = message_length(header) or HEADER_LENGTH
                if length > MAX_STREAM_MESSAGE:
                    return StreamReply(None, local, None, f"reply of {length} bytes refused")
                body = await reader.readexactly(length - HEADER_LENGTH)
                return StreamReply(header + body, local, loop.time() - sent_at)
            finally:
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError):
                    await writer.wait_closed()
    except TimeoutError:
        return StreamReply(None, local, None, f"no reply within {timeout:g} s")
    except ssl.SSLError as exc:
        return StreamReply(None, None, None, f"TLS failed: {exc.reason or exc}")
    except asyncio.IncompleteReadError:
        return StreamReply(None, local, None, "connection closed before a full reply")
    except OSError as exc:
        return StreamReply(None, None, None, f"cannot connect: {exc.strerror or exc}")


def tls_context(cafile: str | None = None, *, verify: bool = True) -> ssl.SSLContext:
    """Certificates checked against the system store or ``cafile``; ``verify``
    off accepts any (the mapped address is information, not a secret)."""
    context = ssl.create_default_context(cafile=cafile)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


__all__ = ["MAX_STREAM_MESSAGE", "StreamReply", "stun_over_stream", "tls_context"]
