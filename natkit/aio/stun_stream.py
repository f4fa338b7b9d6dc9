"""Streams for the cores (RFC 8489 §6.2.2 STUN over TCP, §6.2.3 over TLS).

Every stream exchange natkit makes goes through here: the asyncio driver
(:mod:`natkit.aio.driver`) serves a core's :class:`~natkit.sansio.StreamRequest`
with :func:`serve_stream_request`, one or several staggered connections of
:func:`stun_over_stream` each. Replies are framed with natkit's own codec
(the 20-byte header gives the length), and what the network did comes back
as a :class:`~natkit.sansio.StreamResult` instead of an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.sansio import MAX_STREAM_REPLY, StreamRequest, StreamResult, StreamTransport
from natkit.stun.codec import message_length
from natkit.stun.constants import HEADER_LENGTH

#: Largest STUN message accepted over a stream unless a request says otherwise.
MAX_STREAM_MESSAGE = MAX_STREAM_REPLY


async def stun_over_stream(
    destination: Endpoint,
    request: bytes,
    timeout: float,
    *,
    tls: ssl.SSLContext | None = None,
    server_name: str | None = None,
    max_reply: int = MAX_STREAM_MESSAGE,
) -> StreamResult:
    """One connection: connect to ``destination`` (over TLS with ``tls``,
    checking the certificate against ``server_name``, else ``destination``'s
    address), send ``request``, read one STUN message.

    Never raises for what the network does: refusals, resets, TLS failures
    and timeouts come back as a :class:`StreamResult` without a reply.
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
                if length > max_reply:
                    return StreamResult(None, local, None, f"reply of {length} bytes refused")
                body = await reader.readexactly(length - HEADER_LENGTH)
                return StreamResult(header + body, local, loop.time() - sent_at)
            finally:
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError):
                    await writer.wait_closed()
    except TimeoutError:
        return StreamResult(None, local, None, f"no reply within {timeout:g} s")
    except ssl.SSLCertVerificationError as exc:
        # The reason alone (CERTIFICATE_VERIFY_FAILED) hides which check failed.
        why = f" ({exc.verify_message})" if exc.verify_message else ""
        return StreamResult(None, None, None, f"TLS failed: {exc.reason or exc}{why}")
    except ssl.SSLError as exc:
        return StreamResult(None, None, None, f"TLS failed: {exc.reason or exc}")
    except asyncio.IncompleteReadError:
        return StreamResult(None, local, None, "connection closed before a full reply")
    except OSError as exc:
        return StreamResult(None, None, None, f"cannot connect: {exc.strerror or exc}")


async def serve_stream_request(
    request: StreamRequest, tls: ssl.SSLContext | None = None
) -> StreamResult:
    """Serve a core's :class:`~natkit.sansio.StreamRequest`: one connection
    per ``stagger`` entry, started that many seconds in, in parallel, each
    given what is left of ``timeout``; the first reply wins. Without one,
    the earliest attempt's failure is the answer. A TLS request without
    ``tls`` is checked against the system's CA store (:func:`tls_context`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + request.timeout
    if request.transport is StreamTransport.TCP:
        tls = None
    elif tls is None:
        tls = tls_context()

    async def attempt(delay: float) -> StreamResult:
        await asyncio.sleep(delay)
        return await stun_over_stream(
            request.remote,
            request.payload,
            max(deadline - loop.time(), 0.001),
            tls=tls,
            server_name=request.server_name,
            max_reply=request.max_reply,
        )

    delays = [d for d in request.stagger if d < request.timeout] or [0.0]
    attempts = [asyncio.ensure_future(attempt(delay)) for delay in delays]
    try:
        for finished in asyncio.as_completed(attempts):
            result = await finished
            if result.reply is not None:
                return result
    finally:
        for pending in attempts:
            pending.cancel()
    return attempts[0].result()


def tls_context(cafile: str | None = None, *, verify: bool = True) -> ssl.SSLContext:
    """Certificates checked against the system store or ``cafile``; ``verify``
    off accepts any (the mapped address is information, not a secret).

    Raises :class:`~natkit.errors.LocalProtocolError` saying why when
    ``cafile`` cannot be read or holds no certificate (a key, a CRL, junk):
    commands load it once while checking their flags, so a bad ``--tls-ca``
    is a usage error rather than a failure in the middle of a run.
    """
    try:
        context = ssl.create_default_context(cafile=cafile)
    except ssl.SSLError as exc:  # before OSError: SSLError is one
        raise LocalProtocolError(
            f"{cafile}: no CA certificate could be loaded ({exc.reason or exc}); PEM expected"
        ) from None
    except OSError as exc:
        raise LocalProtocolError(f"{cafile}: {exc.strerror or exc}") from None
    if cafile is not None and context.cert_store_stats()["x509"] == 0:
        raise LocalProtocolError(f"{cafile}: holds no certificate")
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


__all__ = ["MAX_STREAM_MESSAGE", "serve_stream_request", "stun_over_stream", "tls_context"]
