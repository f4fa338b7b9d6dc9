"""UPnP IGD mappings through miniupnpc, kept off the event loop (asyncio).

Theory of operation
-------------------
1. :func:`discover` multicasts natkit's own M-SEARCH (and unicasts it to the
   gateway when one is named), checks every answer with
   :mod:`natkit.portmap.ssdp`, and returns as soon as a usable one is in,
   after a short settle time so a preferred device can still win.
2. :func:`fetch_description` reads the description with a size limit and a
   deadline and :func:`~natkit.portmap.igd.parse_description` checks it; only
   then does miniupnpc get the URL (``selectigd(url)``), so its C parser
   never sees a huge or malformed document.
3. :class:`UpnpSession` runs each blocking miniupnpc call on its own daemon
   thread, one at a time, under a deadline. Not ``asyncio.to_thread``: the
   default executor is joined when the loop shuts down, so one call stuck on
   a slow device would keep the process from exiting; a daemon thread is
   abandoned instead. miniupnpc's ``Exception(text)`` becomes
   :class:`~natkit.portmap.igd.UpnpError` with the code by name.
4. :class:`UpnpLease` keeps one mapping: AddAnyPortMapping where the device
   has it (WANIPConnection:2), else AddPortMapping over candidate ports on
   718 ConflictInMappingEntry; 725 OnlyPermanentLeasesSupported retries with
   lease 0. miniupnpc's AddAnyPortMapping always asks for a permanent lease,
   so natkit re-adds the granted port at once with its own lease time.
   Renewal re-adds the same external port at half the lease; deletion is
   DeletePortMapping. It queues the same events as the PCP/NAT-PMP cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import random
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError, NatkitError
from natkit.portmap.events import (
    FailureReason,
    LossReason,
    MappingDeleted,
    MappingFailed,
    MappingGranted,
    MappingLost,
    MappingRenewed,
    PortmapEvent,
)
from natkit.portmap.igd import (
    MAX_DESCRIPTION_LENGTH,
    DescriptionError,
    DescriptionFailure,
    IgdDescription,
    MiniupnpcFailure,
    UpnpDetails,
    UpnpError,
    UpnpErrorCode,
    error_from_miniupnpc,
    parse_description,
)
from natkit.portmap.mapping import (
    LifetimeNote,
    LifetimePolicy,
    Mapping,
    MappingProtocol,
    TransportProtocol,
)
from natkit.portmap.ssdp import (
    SEARCH_TARGETS,
    SSDP_ENDPOINT,
    SSDP_PORT,
    SsdpDecodeError,
    SsdpResponse,
    build_msearch,
    parse_response,
    select_gateway,
)

T = TypeVar("T")

#: Largest HTTP header block accepted with a description.
_MAX_HEADER_LENGTH = 8192


@dataclass(frozen=True, slots=True)
class UpnpConfig:
    """Knobs of UPnP discovery and mapping (seconds)."""

    #: Give up discovery after this long without a usable answer.
    discovery_timeout: float = 2.0
    #: After the first usable answer, wait this long for a preferred one.
    settle: float = 0.05
    #: Repeat the M-SEARCH at these offsets (UDP may drop it).
    resend_at: tuple[float, ...] = (0.0, 0.25, 0.75)
    #: Multicast the search (off: only unicast to the named gateway).
    multicast: bool = True
    #: The SSDP destinations to unicast to besides the gateway (tests).
    extra_targets: tuple[Endpoint, ...] = ()
    #: Deadline of each miniupnpc call and of the description fetch.
    call_timeout: float = 5.0
    max_description: int = MAX_DESCRIPTION_LENGTH
    #: Ports tried after a 718 conflict when AddAnyPortMapping is missing.
    conflict_attempts: int = 8
    #: Renewals that fail are retried this long apart until the lease ends.
    retry_interval: float = 10.0


class UpnpUnavailable(NatkitError):
    """No usable IGD answered discovery."""

    def __init__(self, rejected: int = 0) -> None:
        self.rejected = rejected
        detail = f" ({rejected} answers refused)" if rejected else ""
        super().__init__(f"no UPnP IGD answered{detail}")


# --- discovery ----------------------------------------------------------------------


class _SsdpProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answers: asyncio.Queue[tuple[bytes, Endpoint]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.answers.put_nowait((data, Endpoint.from_sockaddr(addr)))

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error for a unicast search; the deadline decides


def _ssdp_socket(local: ipaddress.IPv4Address) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((str(local), 0))
        # Multicast leaves by the interface of our own address, with a TTL
        # that keeps it on the link (UDA 1.1 asks for 2).
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, local.packed)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def discover(
    local: ipaddress.IPv4Address,
    gateway: IPAddress | None = None,
    config: UpnpConfig | None = None,
) -> tuple[SsdpResponse, list[SsdpDecodeError]]:
    """Find an IGD (see the module docstring); :class:`UpnpUnavailable` if none."""
    config = config or UpnpConfig()
    loop = asyncio.get_running_loop()
    targets: list[Endpoint] = [SSDP_ENDPOINT] if config.multicast else []
    if gateway is not None:
        targets.append(Endpoint(gateway, SSDP_PORT))
    targets.extend(config.extra_targets)
    if not targets:
        raise LocalProtocolError("UPnP discovery has nowhere to send: name the gateway")
    transport, protocol = await loop.create_datagram_endpoint(
        _SsdpProtocol, sock=_ssdp_socket(local)
    )
    accepted: list[SsdpResponse] = []
    rejected: list[SsdpDecodeError] = []
    start = loop.time()

    def send() -> None:
        for target in targets:
            for search in SEARCH_TARGETS:
                with contextlib.suppress(OSError):
                    transport.sendto(build_msearch(search), target.sockaddr())

    handles = [loop.call_at(start + offset, send) for offset in config.resend_at]
    try:
        deadline = start + config.discovery_timeout
        while True:
            now = loop.time()
            if now >= deadline:
                break
            try:
                async with asyncio.timeout(deadline - now):
                    data, source = await protocol.answers.get()
            except TimeoutError:
                break
            try:
                response = parse_response(data, source)
            except SsdpDecodeError as exc:
                rejected.append(exc)
                continue
            if any(r.location == response.location for r in accepted):
                continue
            accepted.append(response)
            if len(accepted) == 1:
                deadline = min(deadline, loop.time() + config.settle)
    finally:
        for handle in handles:
            handle.cancel()
        transport.close()
    chosen = select_gateway(accepted, gateway)
    if chosen is None:
        raise UpnpUnavailable(len(rejected))
    return chosen, rejected


async def fetch_description(
    url: str, limit: int = MAX_DESCRIPTION_LENGTH, timeout: float = 5.0
) -> bytes:
    """GET ``url`` (plain HTTP, literal address) reading at most ``limit`` bytes."""
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
    async with asyncio.timeout(timeout):
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
                if (
                    name.strip().lower() == b"content-length"
                    and declared.isdigit()
                    and (int(declared) > limit)
                ):
                    raise DescriptionError(
                        DescriptionFailure.TOO_LARGE, f"Content-Length {int(value.strip())}"
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


# --- miniupnpc off the loop ---------------------------------------------------------


async def run_blocking(fn: Callable[[], T], timeout: float) -> T:
    """Run ``fn`` on a new daemon thread; ``TimeoutError`` after ``timeout``
    (the thread is then abandoned, see the module docstring)."""
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
    async with asyncio.timeout(timeout):
        return await future


class UpnpSession:
    """One IGD through one ``miniupnpc.UPnP`` object; calls are serialised."""

    def __init__(self, location: str, description: IgdDescription, call_timeout: float) -> None:
        import miniupnpc  # noqa: PLC0415 (a C extension: load it only for UPnP)

        self.location = location
        self.description = description
        self.call_timeout = call_timeout
        self._upnp: Any = miniupnpc.UPnP()
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(
        cls, location: str, config: UpnpConfig | None = None
    ) -> tuple[UpnpSession, IgdDescription]:
        """Check the description at ``location``, then let miniupnpc select it."""
        config = config or UpnpConfig()
        try:
            data = await fetch_description(location, config.max_description, config.call_timeout)
        except (OSError, TimeoutError) as exc:
            raise UpnpError("fetch description", str(exc) or type(exc).__name__, None,
                            MiniupnpcFailure.HTTP_ERROR) from None  # fmt: skip
        description = parse_description(data, location)
        session = cls(location, description, config.call_timeout)
        await session.call("selectigd", lambda u: u.selectigd(location))
        return session, description

    async def call(self, action: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(upnp)`` off the loop; miniupnpc's errors become :class:`UpnpError`."""
        async with self._lock:
            upnp = self._upnp

            def body() -> T:
                try:
                    return fn(upnp)
                except Exception as exc:
                    raise error_from_miniupnpc(action, exc) from None

            return await run_blocking(body, self.call_timeout)

    async def external_address(self) -> IPAddress | None:
        text = await self.call("GetExternalIPAddress", lambda u: u.externalipaddress())
        try:
            return ipaddress.ip_address(str(text))
        except ValueError:
            return None

    async def add(
        self,
        external_port: int,
        transport: TransportProtocol,
        internal: Endpoint,
        description: str,
        lease: int,
    ) -> None:
        """AddPortMapping (keyword-free in miniupnpc: order checked here once)."""
        await self.call(
            "AddPortMapping",
            lambda u: u.addportmapping(
                external_port,
                transport.name,
                str(internal.address),
                internal.port,
                description,
                "",
                lease,
            ),
        )

    async def add_any(
        self, external_port: int, transport: TransportProtocol, internal: Endpoint, description: str
    ) -> int:
        """AddAnyPortMapping; the port the device reserved."""
        port = await self.call(
            "AddAnyPortMapping",
            lambda u: u.addanyportmapping(
                external_port, transport.name, str(internal.address), internal.port,
                description, "",
            ),
        )  # fmt: skip
        return int(port)

    async def delete(self, external_port: int, transport: TransportProtocol) -> None:
        await self.call(
            "DeletePortMapping", lambda u: u.deleteportmapping(external_port, transport.name)
        )

    async def entry(
        self, external_port: int, transport: TransportProtocol
    ) -> tuple[Endpoint, str] | None:
        """GetSpecificPortMappingEntry: the internal endpoint and description, if any."""
        found = await self.call(
            "GetSpecificPortMappingEntry",
            lambda u: u.getspecificportmapping(external_port, transport.name),
        )
        if not found:
            return None
        client, port, text = found[0], found[1], found[2]
        try:
            return Endpoint(ipaddress.ip_address(client), int(port)), str(text)
        except ValueError:
            return None

    async def entries(self, limit: int = 256) -> list[tuple[int, str, Endpoint, str]]:
        """GetGenericPortMappingEntry 0, 1, ... (external port, transport,
        internal endpoint, description), at most ``limit``."""
        found: list[tuple[int, str, Endpoint, str]] = []
        for index in range(limit):
            entry = await self.call("GetGenericPortMappingEntry", _generic_entry(index))
            if not entry:
                break
            external, proto, (client, port), text = entry[0], entry[1], entry[2], entry[3]
            try:
                found.append((int(external), str(proto), Endpoint.of(client, int(port)), text))
            except ValueError:
                continue
        return found


def _generic_entry(index: int) -> Callable[[Any], Any]:
    return lambda upnp: upnp.getgenericportmapping(index)


# --- one lease ----------------------------------------------------------------------


class UpnpLease:
    """Creates, renews and deletes one UPnP mapping; queues portmap events.

    Its surface matches :class:`natkit.aio.portmap.MappingSession` so the
    port mapper treats all three protocols alike.
    """

    protocol = MappingProtocol.UPNP_IGD

    def __init__(
        self,
        session: UpnpSession,
        internal: Endpoint,
        *,
        transport: TransportProtocol = TransportProtocol.UDP,
        lifetime: LifetimePolicy | None = None,
        description: str = "natkit",
        config: UpnpConfig | None = None,
        rng: random.Random | None = None,
        suggested_port: int | None = None,
    ) -> None:
        self.session = session
        self.internal = internal
        self.transport = transport
        self.lifetime = lifetime or LifetimePolicy()
        self.description = description
        self.config = config or UpnpConfig()
        self._rng = rng or random.Random()
        self._suggested = suggested_port or internal.port
        self._events: asyncio.Queue[PortmapEvent] = asyncio.Queue()
        self._mapping: Mapping | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._finished = False
        self._permanent = False

    @property
    def mapping(self) -> Mapping | None:
        mapping = self._mapping
        loop = asyncio.get_running_loop()
        return mapping if mapping is not None and mapping.is_valid(loop.time()) else None

    @property
    def finished(self) -> bool:
        return self._finished

    def start(self) -> None:
        """Begin creating the mapping in a background task."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="natkit-upnp")

    def revalidate(self) -> None:
        """Renew now (after a suspected device restart, or in tests)."""
        self._wake.set()

    async def next_event(self, timeout: float | None = None) -> PortmapEvent:
        async with asyncio.timeout(timeout):
            return await self._events.get()

    async def wait_for_mapping(self, timeout: float | None = None) -> Mapping:
        from natkit.aio.portmap import PortMappingError  # noqa: PLC0415 (avoid a cycle)

        async with asyncio.timeout(timeout):
            while True:
                event = await self._events.get()
                if isinstance(event, MappingGranted | MappingRenewed):
                    return event.mapping
                if isinstance(event, MappingFailed) and event.terminal:
                    raise PortMappingError(event)

    async def delete(self, timeout: float | None = None) -> MappingDeleted:
        """Stop renewing and delete the mapping at the device."""
        await self._stop_task()
        self._finished = True
        mapping = self._mapping
        self._mapping = None
        if mapping is None:
            return MappingDeleted(None, confirmed=True)
        try:
            async with asyncio.timeout(timeout):
                await self.session.delete(mapping.external.port, self.transport)
        except UpnpError as exc:
            # 714: already gone (miniupnpd says success for a missing one).
            gone = exc.code is UpnpErrorCode.NO_SUCH_ENTRY_IN_ARRAY
            code = None if exc.code is None else int(exc.code)
            return MappingDeleted(mapping, confirmed=gone, result_code=code)
        except TimeoutError:
            return MappingDeleted(mapping, confirmed=False)
        return MappingDeleted(mapping, confirmed=True)

    async def aclose(self, delete_timeout: float = 15.0) -> None:
        if not self._finished:
            await self.delete(delete_timeout)
        await self._stop_task()

    async def _stop_task(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise

    # -- the lease loop ---------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            mapping = await self._create(recreated=False)
        except UpnpError as exc:
            self._fail(exc)
            return
        except TimeoutError:
            self._fail(None)
            return
        while True:
            wait = max(mapping.renew_at - loop.time(), 0.0)
            self._wake.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            except TimeoutError:
                pass
            try:
                mapping = await self._renew(mapping)
            except UpnpError as exc:
                self._fail(exc)
                return
            except TimeoutError:
                self._fail(None)
                return

    async def _renew(self, mapping: Mapping) -> Mapping:
        loop = asyncio.get_running_loop()
        lease = 0 if self._permanent else self.lifetime.requested
        try:
            await self.session.add(
                mapping.external.port, self.transport, self.internal, self.description, lease
            )
        except UpnpError as exc:
            if exc.code is UpnpErrorCode.CONFLICT_IN_MAPPING_ENTRY:
                # Someone else holds our port now: report the loss, map anew.
                self._events.put_nowait(MappingLost(mapping, LossReason.REFUSED, int(exc.code)))
                self._mapping = None
                return await self._create(recreated=True)
            return self._retry_later(mapping, exc)
        except TimeoutError:
            return self._retry_later(mapping, None)
        renewed = self._make(mapping.external, mapping.gateway, loop.time())
        self._mapping = renewed
        self._events.put_nowait(MappingRenewed(renewed, mapping))
        return renewed

    def _retry_later(self, mapping: Mapping, exc: UpnpError | None) -> Mapping:
        loop = asyncio.get_running_loop()
        retry_at = loop.time() + self.config.retry_interval
        self._events.put_nowait(
            MappingFailed(
                FailureReason.TIMED_OUT if exc is None else FailureReason.UNKNOWN_RESULT,
                self.protocol,
                terminal=False,
                result_code=None if exc is None or exc.code is None else int(exc.code),
                retry_at=retry_at,
            )
        )
        return _replace_renew(mapping, retry_at)

    async def _create(self, *, recreated: bool) -> Mapping:
        loop = asyncio.get_running_loop()
        description = self.session.description
        port: int | None = None
        if description.has_add_any_port_mapping:
            try:
                port = await self.session.add_any(
                    self._suggested, self.transport, self.internal, self.description
                )
            except UpnpError as exc:
                if exc.code not in (
                    UpnpErrorCode.INVALID_ACTION,
                    UpnpErrorCode.OPTIONAL_ACTION_NOT_IMPLEMENTED,
                ):
                    raise
        if port is not None:
            # miniupnpc's AddAnyPortMapping asks for a permanent lease: bring
            # it down to ours at once, so a crash leaks hours, not forever.
            await self._add_with_lease(port)
        else:
            port = await self._add_over_candidates()
        external_address = await self.session.external_address()
        if external_address is None:
            raise UpnpError("GetExternalIPAddress", "no address", None, MiniupnpcFailure.UNKNOWN)
        control = urlsplit(self.session.description.control_url)
        gateway = Endpoint.of(control.hostname or "0.0.0.0", control.port or 80)
        mapping = self._make(Endpoint(external_address, port), gateway, loop.time())
        self._mapping = mapping
        self._suggested = port
        self._events.put_nowait(MappingGranted(mapping, recreated=recreated))
        return mapping

    async def _add_with_lease(self, port: int) -> None:
        try:
            lease = 0 if self._permanent else self.lifetime.requested
            await self.session.add(port, self.transport, self.internal, self.description, lease)
        except UpnpError as exc:
            if exc.code is not UpnpErrorCode.ONLY_PERMANENT_LEASES_SUPPORTED:
                raise
            self._permanent = True
            await self.session.add(port, self.transport, self.internal, self.description, 0)

    async def _add_over_candidates(self) -> int:
        candidates = [self._suggested]
        while len(candidates) < self.config.conflict_attempts:
            candidates.append(self._rng.randint(1024, 65535))
        last: UpnpError | None = None
        for port in candidates:
            try:
                await self._add_with_lease(port)
            except UpnpError as exc:
                if exc.code is not UpnpErrorCode.CONFLICT_IN_MAPPING_ENTRY:
                    raise
                last = exc
                continue
            return port
        assert last is not None
        raise last

    def _make(self, external: Endpoint, gateway: Endpoint, now: float) -> Mapping:
        requested = self.lifetime.requested
        notes = (LifetimeNote.ZERO_ON_SUCCESS,) if self._permanent else ()
        return Mapping(
            protocol=self.protocol,
            transport=self.transport,
            internal=self.internal,
            external=external,
            gateway=gateway,
            lifetime=requested,
            granted_lifetime=0 if self._permanent else requested,
            granted_at=now,
            renew_at=now + requested / 2,
            expires_at=now + requested,
            notes=notes,
            details=UpnpDetails(
                location=self.session.location,
                igd_version=self.session.description.igd_version,
                service_type=self.session.description.service_type,
                description=self.description,
            ),
        )

    def _fail(self, exc: UpnpError | None) -> None:
        self._finished = True
        reason = FailureReason.TIMED_OUT
        if exc is not None:
            reason = _FAILURE_FOR_CODE.get(exc.code, FailureReason.UNKNOWN_RESULT)
        self._events.put_nowait(
            MappingFailed(
                reason,
                self.protocol,
                terminal=True,
                result_code=None if exc is None or exc.code is None else int(exc.code),
            )
        )


_FAILURE_FOR_CODE: dict[UpnpErrorCode | None, FailureReason] = {
    UpnpErrorCode.ACTION_NOT_AUTHORIZED: FailureReason.NOT_AUTHORIZED,
    UpnpErrorCode.CONFLICT_IN_MAPPING_ENTRY: FailureReason.CANNOT_PROVIDE_EXTERNAL,
    UpnpErrorCode.NO_PORT_MAPS_AVAILABLE: FailureReason.NO_RESOURCES,
    UpnpErrorCode.INVALID_ARGS: FailureReason.MALFORMED_REQUEST,
    UpnpErrorCode.INVALID_ACTION: FailureReason.UNSUPPORTED_OPCODE,
    UpnpErrorCode.CONFLICT_WITH_OTHER_MECHANISMS: FailureReason.CANNOT_PROVIDE_EXTERNAL,
}


def _replace_renew(mapping: Mapping, renew_at: float) -> Mapping:
    return dataclasses.replace(mapping, renew_at=min(renew_at, mapping.expires_at))
