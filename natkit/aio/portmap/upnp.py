"""Making the UPnP calls a port-mapping core asks for (asyncio).

The cores never call miniupnpc: they emit
:class:`~natkit.portmap.upnp_calls.UpnpCallRequested`, and
:class:`UpnpEngine` makes the call and hands back an
:class:`~natkit.portmap.upnp_calls.UpnpAnswer`.

* The description is fetched here with a size limit and a deadline (plain
  HTTP/1.0 over asyncio streams); the core checks it before it asks for
  ``selectigd``, so miniupnpc's C parser never sees a huge or malformed one.
* Each blocking miniupnpc call runs on its own daemon thread, one at a time
  per device, under the call's deadline. Not ``asyncio.to_thread``: the
  default executor is joined when the loop shuts down, so one call stuck on
  a slow device would keep the process from exiting; a daemon thread is
  abandoned instead. miniupnpc's ``Exception(text)`` becomes
  :class:`~natkit.portmap.igd.UpnpError` with the code by name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from natkit.endpoint import Endpoint
from natkit.portmap.igd import (
    DescriptionError,
    DescriptionFailure,
    MiniupnpcFailure,
    UpnpError,
    error_from_miniupnpc,
)
from natkit.portmap.upnp_calls import PortMappingEntry, UpnpAction, UpnpAnswer, UpnpCall

T = TypeVar("T")

#: Largest HTTP header block accepted with a description.
_MAX_HEADER_LENGTH = 8192
#: An internal endpoint that matches nothing (an entry the device garbled).
_NOWHERE = Endpoint(ipaddress.IPv4Address(0), 0)


async def fetch_description(url: str, limit: int) -> bytes:
    """GET ``url`` (plain HTTP, literal address) reading at most ``limit``
    body bytes; :class:`DescriptionError` for a non-200 answer or more."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    request = (
        f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n"
        "User-Agent: natkit UPnP/1.1\r\n\r\n"
    ).encode("latin-1")
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await reader.read(1024)
            if not chunk:
                break
            head += chunk
            if len(head) > _MAX_HEADER_LENGTH:
                raise DescriptionError(DescriptionFailure.TOO_LARGE, "HTTP header block")
        header, _, body = head.partition(b"\r\n\r\n")
        status = header.split(b"\r\n", 1)[0].split()
        if len(status) < 2 or status[1] != b"200":
            raise DescriptionError(DescriptionFailure.HTTP_ERROR, repr(header[:80]))
        for line in header.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            declared = value.strip()
            named = name.strip().lower() == b"content-length"
            if named and declared.isdigit() and int(declared) > limit:
                raise DescriptionError(
                    DescriptionFailure.TOO_LARGE, f"Content-Length {int(declared)}"
                )
        while len(body) <= limit:
            chunk = await reader.read(65536)
            if not chunk:
                break
            body += chunk
        if len(body) > limit:
            raise DescriptionError(DescriptionFailure.TOO_LARGE, f"over {limit} bytes")
        return body
    finally:
        writer.close()


async def run_blocking(fn: Callable[[], T]) -> T:
    """Run ``fn`` on a new daemon thread (abandoned if the caller is
    cancelled, see the module docstring)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(cast(T, result))

    def body() -> None:
        try:
            result = fn()
        except BaseException as exc:  # delivered to the awaiting task
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=body, name="natkit-miniupnpc", daemon=True).start()
    return await future


def _entry(found: Any, external_port: int, transport: str) -> PortMappingEntry | None:
    """miniupnpc's GetSpecificPortMappingEntry tuple (client, port, description, ...)."""
    if not found:
        return None
    try:
        internal = Endpoint(ipaddress.ip_address(str(found[0])), int(found[1]))
    except (ValueError, TypeError, IndexError):
        internal = _NOWHERE
    return PortMappingEntry(external_port, transport, internal, str(found[2]))


def _generic_entry(found: Any) -> PortMappingEntry | None:
    """miniupnpc's GetGenericPortMappingEntry tuple
    (external port, protocol, (client, port), description, ...)."""
    if not found:
        return None
    try:
        client, port = found[2]
        internal = Endpoint(ipaddress.ip_address(str(client)), int(port))
        external = int(found[0])
    except (ValueError, TypeError, IndexError):
        return PortMappingEntry(0, "", _NOWHERE, "")  # unreadable: matches nothing
    return PortMappingEntry(external, str(found[1]), internal, str(found[3]))


def _miniupnpc_call(call: UpnpCall, upnp: Any) -> UpnpAnswer:
    """The blocking part: one miniupnpc method (argument order checked here once)."""
    proto = call.transport.name
    internal = call.internal
    action = call.action
    if action is UpnpAction.GET_EXTERNAL_ADDRESS:
        return UpnpAnswer(call.id, text=str(upnp.externalipaddress() or ""))
    if action is UpnpAction.ADD_PORT_MAPPING and internal is not None:
        upnp.addportmapping(call.external_port, proto, str(internal.address), internal.port,
                            call.description, "", call.lease)  # fmt: skip
        return UpnpAnswer(call.id)
    if action is UpnpAction.ADD_ANY_PORT_MAPPING and internal is not None:
        port = upnp.addanyportmapping(call.external_port, proto, str(internal.address),
                                      internal.port, call.description, "")  # fmt: skip
        return UpnpAnswer(call.id, port=int(port))
    if action is UpnpAction.DELETE_PORT_MAPPING:
        upnp.deleteportmapping(call.external_port, proto)
        return UpnpAnswer(call.id)
    if action is UpnpAction.GET_SPECIFIC_ENTRY:
        found = upnp.getspecificportmapping(call.external_port, proto)
        return UpnpAnswer(call.id, entry=_entry(found, call.external_port, proto))
    if action is UpnpAction.GET_GENERIC_ENTRY:
        return UpnpAnswer(call.id, entry=_generic_entry(upnp.getgenericportmapping(call.index)))
    raise UpnpError(action.value, "call without its arguments", None,
                    MiniupnpcFailure.INVALID_ARGUMENTS)  # fmt: skip


class UpnpEngine:
    """Makes :class:`UpnpCall` s: one miniupnpc session per device (made by
    SELECT_IGD), calls to one device serialised."""

    def __init__(self) -> None:
        self._sessions: dict[str, Any] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def call(self, call: UpnpCall) -> UpnpAnswer:
        """Make ``call``; every outcome is an answer (never raises but for
        cancellation)."""
        try:
            async with asyncio.timeout(call.timeout):
                if call.action is UpnpAction.FETCH_DESCRIPTION:
                    body = await fetch_description(call.location, call.limit)
                    return UpnpAnswer(call.id, body=body)
                lock = self._locks.setdefault(call.location, asyncio.Lock())
                async with lock:
                    return await run_blocking(lambda: self._blocking(call))
        except TimeoutError:
            return UpnpAnswer(call.id, timed_out=True)
        except (UpnpError, DescriptionError) as exc:
            return UpnpAnswer(call.id, error=exc)
        except (OSError, ValueError) as exc:  # the fetch's connection, a bad URL
            error = UpnpError(call.action.value, str(exc) or type(exc).__name__, None,
                              MiniupnpcFailure.HTTP_ERROR)  # fmt: skip
            return UpnpAnswer(call.id, error=error)

    def _blocking(self, call: UpnpCall) -> UpnpAnswer:
        try:
            if call.action is UpnpAction.SELECT_IGD:
                import miniupnpc  # noqa: PLC0415 (a C extension: load it only for UPnP)

                upnp = miniupnpc.UPnP()
                upnp.selectigd(call.location)
                self._sessions[call.location] = upnp
                return UpnpAnswer(call.id)
            session = self._sessions.get(call.location)
            if session is None:
                raise UpnpError(call.action.value, "device not selected", None,
                                MiniupnpcFailure.INVALID_ARGUMENTS)  # fmt: skip
            return _miniupnpc_call(call, session)
        except UpnpError:
            raise
        except Exception as exc:
            raise error_from_miniupnpc(call.action.value, exc) from None

    def start(self, call: UpnpCall, deliver: Callable[[UpnpAnswer], None]) -> None:
        """Make ``call`` in the background and ``deliver`` its answer (not
        after :meth:`close`)."""
        if self._closed:
            return

        async def run() -> None:
            answer = await self.call(call)
            if not self._closed:
                deliver(answer)

        task = asyncio.get_running_loop().create_task(run(), name=f"natkit-upnp-{call.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Stop delivering; calls in flight are abandoned (their threads too)."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
