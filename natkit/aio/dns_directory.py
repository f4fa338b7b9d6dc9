"""The DNS directory as a signal channel: sealed messages as DNS-SD records.

Each node publishes, with RFC 2136 UPDATEs signed by TSIG (RFC 8945), its
instance records and, per recipient, a window of its latest sealed
messages (:mod:`natkit.directory`, which also lays out the names); it reads
its peers' windows for it by polling. Any DNS server that takes signed
updates will do (knot, BIND); reads may go to secondaries or an anycast
resolver, so the directory scales as DNS does, with no system of natkit's
own in between.

* :meth:`DnsDirectory.send` pushes the message into the recipient's window
  (waiting, if need be, until the oldest message has been readable for
  ``retain`` seconds: that is what makes delivery at-least-once, see
  :mod:`natkit.directory.window`) and publishes the window in one UPDATE.
  A refused update raises :class:`~natkit.directory.errors.UpdateRefused`
  and publishes nothing; an unreachable server does not raise: the window
  is published again with backoff in the background.
* :meth:`DnsDirectory.receive` yields what the watched peers
  (:meth:`DnsDirectory.watch`, or all nodes in the zone with
  ``browse_interval``) wrote to us, each message once, by
  :mod:`natkit.directory.poll`'s schedule: every ``interval`` seconds per
  peer, ``max_rate`` reads per second in all, backoff on errors.
* :meth:`DnsDirectory.close` withdraws nothing unless asked: a sealed
  message is harmless after the fact, a peer that restarts may still need
  the announcement waiting for it, and a node that crashes cannot withdraw
  anyway, so readers must cope with stale records whatever this does.
  ``close(withdraw=True)`` removes the node's PTR, instance records and the
  windows it wrote in this run (e.g. a node leaving for good).

:func:`open_directory` builds one from the command line's
``dns:ZONE@SERVER[:PORT]`` and ``--tsig-key FILE``.

State (:class:`~natkit.aio.channel_base.ChannelBase`, as every channel):
``CONNECTING`` until an update succeeds, then ``UP``; a failed
update or read makes it ``CONNECTING`` again (reason ``unreachable``, the
error in ``detail``, ``retry_in`` the backoff's delay), the next success
``UP`` again, so a connect node re-announces itself to its peers after an
outage as it does after a rendezvous reconnects. A refused update makes it
``CONNECTING`` with reason ``refused`` and the refusal's sentence in
``detail``, and nothing is retried: a refusal is permanent until the key
or the server's configuration changes. :meth:`DnsDirectory.start` starts
in the background (what a connect node calls); :meth:`DnsDirectory.announce`
(and ``async with``) publishes at once and raises the refusal, which a
command calls first to fail fast.

:meth:`DnsDirectory.advertise` changes the endpoint the instance records
advertise (SRV and A/AAAA), e.g. once WireGuard's public mapping is known.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import stat
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import dns.exception
import dns.rcode

from natkit.aio.channel_base import ChannelBase
from natkit.aio.dns_transport import (
    EXCHANGE_ERRORS,
    DnsTransport,
    Do53Transport,
    exchange_failure,
)
from natkit.directory.errors import (
    DirectoryError,
    RefusalReason,
    TsigKeyFileError,
    UpdateRefused,
)
from natkit.directory.names import KEY_LENGTH, message_name
from natkit.directory.poll import PollConfig, PollSchedule, backoff_delay
from natkit.directory.spec import DirectorySpec, parse_directory, parse_read_server
from natkit.directory.tsig import TsigKey, parse_tsig_key
from natkit.directory.window import Outbox, Reader, WindowConfig
from natkit.directory.wire import (
    Presence,
    build_advertise,
    build_browse,
    build_read,
    build_update,
    build_withdraw,
    read_nodes,
    read_window,
    update_refusal,
    update_succeeded,
)
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.signal.channel import MAX_SEALED, ChannelState, DownReason, Envelope

if TYPE_CHECKING:
    from natkit.identity import PublicKey

#: Messages received and not yet taken by ``receive()`` before new ones are dropped.
INBOX_LIMIT = 1024
#: The largest TSIG key file read (a key file is ~200 bytes).
MAX_KEY_FILE = 64 * 1024


@dataclass(frozen=True, slots=True)
class DirectoryConfig:
    """Timing and sizes of a DNS directory (defaults suit a zone of a few
    hundred nodes on one primary)."""

    #: TTL of the published records, in seconds: short, as the records
    #: change with every message (a cache holds them this long at most).
    ttl: int = 5
    #: How peers are read (``interval``: the readers' promise to the TTL).
    poll: PollConfig = field(default_factory=PollConfig)
    #: Messages kept per recipient, and how long before they may be pushed
    #: out: at least the readers' interval plus a secondary's lag.
    window: WindowConfig = field(default_factory=WindowConfig)
    #: Seconds one DNS exchange may take.
    timeout: float = 2.0
    #: First delay before publishing again after a failed update (doubles
    #: per failure, up to ``poll.max_backoff``).
    retry: float = 1.0
    #: Read the zone's PTR set this often and watch every node in it
    #: (``None``: only the peers given to :meth:`DnsDirectory.watch`).
    browse_interval: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.ttl <= 86_400:
            raise ValueError(f"ttl must be 0..86400 s, got {self.ttl}")
        if not self.timeout > 0 or not self.retry > 0:
            raise ValueError("timeout and retry must be positive")
        if self.window.retain < self.poll.interval:
            # A message must outlive one read interval, or a reader polling
            # at this node's own pace may miss it (natkit.directory.window).
            raise ValueError("window.retain must be at least the poll interval")
        if self.browse_interval is not None and self.browse_interval < self.poll.interval:
            raise ValueError("browse_interval must be at least the poll interval")


@dataclass(slots=True)
class DirectoryCounters:
    """What the directory did; counters only grow."""

    #: UPDATEs answered NOERROR.
    updates: int = 0
    #: UPDATEs that failed transiently (timeout, network, SERVFAIL).
    update_failures: int = 0
    #: Reads of a window (or the PTR set) that got an answer.
    reads: int = 0
    #: Reads that failed (timeout, network, an error code).
    read_failures: int = 0
    #: Records (or whole sets) read back and dropped as malformed.
    records_dropped: int = 0
    #: Messages handed to ``receive()``.
    messages: int = 0
    #: Records read again that had been delivered already.
    duplicates: int = 0
    #: Messages pushed out of a peer's window before we read them (gaps).
    missed: int = 0
    #: Windows ignored because they belong to a replaced stream.
    stale_windows: int = 0
    #: Messages dropped because ``receive()`` was not keeping up.
    inbox_dropped: int = 0
    #: Our messages pushed out of a window before ``retain`` had passed
    #: (readers may miss them; zero unless sends bypass the wait).
    evicted_early: int = 0
    #: Our messages pushed out before any update carried them (the primary
    #: was unreachable for a whole window of sends).
    evicted_unpublished: int = 0


def _raw(key: Hashable) -> bytes:
    """A key's 32 raw bytes, from its base64 text (``str(key)``)."""
    try:
        raw = base64.b64decode(str(key), validate=True)
    except ValueError:
        raw = b""
    if len(raw) != KEY_LENGTH:
        raise LocalProtocolError(f"not a node key (base64 of {KEY_LENGTH} bytes): {key!s}")
    return raw


def _public_key(raw: bytes) -> PublicKey:
    # Imported when first needed: the directory works on any key type with
    # a base64 str() (tests pass their own), and natkit.identity pulls in PyNaCl.
    from natkit.identity import PublicKey  # noqa: PLC0415

    return PublicKey(raw)


class DnsDirectory(ChannelBase):
    """A :class:`~natkit.signal.channel.SignalChannel` over a DNS zone (see the
    module docs). Use it from one event loop; ``async with`` announces it
    (raising a refusal) and closes it."""

    def __init__(
        self,
        spec: DirectorySpec,
        own_key: PublicKey,
        *,
        tsig: TsigKey | None,
        read_servers: Sequence[Endpoint] = (),
        advertise: Endpoint | None = None,
        config: DirectoryConfig | None = None,
        transport: DnsTransport | None = None,
        stream: str | None = None,
        key_factory: Callable[[bytes], PublicKey] | None = None,
    ) -> None:
        super().__init__(inbox_limit=INBOX_LIMIT)
        self.spec = spec
        self.own_key = own_key
        self.tsig = tsig
        self.config = config or DirectoryConfig()
        #: Where reads go, in order of preference (the primary when none given).
        self.read_servers = tuple(read_servers) or (spec.server,)
        self.counters = DirectoryCounters()
        #: The last transient failure, for people (``None`` once things work).
        self.last_error: str | None = None
        self._own = _raw(own_key)
        self._presence = Presence(self._own, advertise)
        self._transport: DnsTransport = transport or Do53Transport()
        self._key_factory = key_factory or _public_key
        self._outbox: Outbox[bytes] = Outbox(stream or secrets.token_hex(8), self.config.window)
        self._reader: Reader[bytes] = Reader()
        self._schedule: PollSchedule[bytes] = PollSchedule(self.config.poll)
        self._peers: dict[bytes, Any] = {}
        self._locks: dict[bytes, asyncio.Lock] = {}
        self._presence_lock = asyncio.Lock()
        self._presence_published = False
        self._publish_failures = 0
        self._refused: UpdateRefused | None = None
        self._read_server_index = 0
        self._poll_wake = asyncio.Event()
        self._retry_wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._retrier: asyncio.Task[None] | None = None
        self._browse_due = 0.0
        self._starter: asyncio.Task[None] | None = None
        self._updated = False
        self._closed = False

    # -- life cycle

    async def __aenter__(self) -> Self:
        await self.announce()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def announce(self) -> None:
        """Publish this node's instance records and PTR, and start reading.

        Raises :class:`UpdateRefused` when the server refuses (wrong or no
        key): a CLI calls this first to fail fast. An unreachable server
        does not raise; publishing is retried in the background
        (:attr:`last_error` says why).
        """
        self._check_open()
        self._ensure_tasks()
        async with self._presence_lock:
            if not self._presence_published:
                await self._publish(set(), presence=True)

    def start(self) -> None:
        """:meth:`announce` in the background (a refusal becomes the state
        described in the module docs); call on the event loop."""
        if self._closed or self._starter is not None:
            return
        self._starter = asyncio.get_running_loop().create_task(self._start_quietly())

    async def _start_quietly(self) -> None:
        with contextlib.suppress(UpdateRefused):  # already the channel's state
            await self.announce()

    async def advertise(self, endpoint: Endpoint | None) -> None:
        """Advertise ``endpoint`` (``None``: none) in the instance records from
        now on, published at once (a failure is retried like any update;
        :class:`UpdateRefused` is raised)."""
        self._check_open()
        async with self._presence_lock:
            if endpoint == self._presence.endpoint and self._presence_published:
                return
            self._presence = Presence(self._own, endpoint)
            self._presence_published = False
            await self._publish(set(), presence=True)

    @property
    def advertised(self) -> Endpoint | None:
        """The endpoint the instance records advertise."""
        return self._presence.endpoint

    async def close(self, *, withdraw: bool = False) -> None:
        """Stop reading and publishing; ``receive()`` iterators end.

        ``withdraw``: also remove this node's records (see the module docs);
        a refusal raises :class:`UpdateRefused`, an unreachable server is
        only recorded in :attr:`last_error`.
        """
        if self._closed:
            return
        self._closed = True
        self._retry_wake.set()
        self._poll_wake.set()
        tasks = [
            t for t in (self._starter, self._poller, self._retrier, *self._tasks) if t is not None
        ]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_state(ChannelState.CLOSED, DownReason.CLOSED)
        if withdraw:
            update = build_withdraw(self.spec.zone, self._own, self._outbox.recipients, self.tsig)
            await self._exchange_update(update)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- sending

    async def send(self, recipient: PublicKey, sealed: bytes) -> None:
        """Publish ``sealed`` for ``recipient`` (see the module docs).

        Raises :class:`~natkit.errors.LocalProtocolError` for an empty or
        too large message or after :meth:`close`, and :class:`UpdateRefused`
        when the server refuses the update. Never raises because the server
        is unreachable or the peer is offline.
        """
        self._check_open()
        if not 1 <= len(sealed) <= MAX_SEALED:
            raise LocalProtocolError(
                f"a sealed message is 1..{MAX_SEALED} bytes, got {len(sealed)}"
            )
        raw = _raw(recipient)
        self._ensure_tasks()
        async with self._lock(raw):
            loop = asyncio.get_running_loop()
            while (at := self._outbox.admit_at(raw, loop.time())) > loop.time():
                await asyncio.sleep(at - loop.time())
            self._check_open()
            self._outbox.push(raw, sealed, loop.time())
            self.counters.evicted_early = self._outbox.evicted_early
            self.counters.evicted_unpublished = self._outbox.evicted_unpublished
            if self._publish_failures:
                # The server is failing: the retry loop publishes this with
                # the rest, on its backoff (the retry_in it reported), rather
                # than every send trying at once and growing the backoff.
                self._retry_wake.set()
                return
            await self._publish({raw}, presence=not self._presence_published)

    # -- receiving

    def watch(self, peer: PublicKey) -> None:
        """Read ``peer``'s messages to us from now on (call on the event loop)."""
        self._check_open()
        raw = _raw(peer)
        self._peers[raw] = peer
        self._schedule.watch(raw, asyncio.get_running_loop().time())
        self._ensure_tasks()
        self._poll_wake.set()

    def unwatch(self, peer: PublicKey) -> None:
        """Stop reading ``peer``; what it sends later is not delivered."""
        raw = _raw(peer)
        self._peers.pop(raw, None)
        self._schedule.unwatch(raw)
        self._reader.forget(raw)

    def poll_soon(self, peer: PublicKey | None = None) -> None:
        """Read ``peer`` (every watched peer: ``None``) as soon as the rate cap
        allows, e.g. after a network change, instead of at its next turn."""
        now = asyncio.get_running_loop().time()
        for raw in [_raw(peer)] if peer is not None else list(self._peers):
            self._schedule.poll_soon(raw, now)
        self._poll_wake.set()

    @property
    def watched(self) -> tuple[PublicKey, ...]:
        return tuple(self._peers.values())

    async def receive(self) -> AsyncIterator[Envelope]:
        """The messages watched peers wrote to us, each once, until :meth:`close`."""
        if not self._closed:
            self._ensure_tasks()
        async for envelope in super().receive():
            yield envelope

    async def nodes(self) -> tuple[PublicKey, ...]:
        """Every node the zone's PTR set names (malformed entries dropped).

        Raises :class:`DirectoryError` when the read fails.
        """
        self._check_open()
        server = self._read_server()
        try:
            response = await self._transport.query(
                build_browse(self.spec.zone), server, self.config.timeout
            )
        except EXCHANGE_ERRORS as exc:
            self._read_failed(f"reading the PTR set from {server}: {_describe(exc)}")
            raise DirectoryError(
                f"cannot read the nodes of {self.spec}: {_describe(exc)}"
            ) from None
        result = read_nodes(response, self.spec.zone)
        if result.failure is not None:
            self._read_failed(f"{server} answered {result.failure}")
            raise DirectoryError(f"cannot read the nodes of {self.spec}: {result.failure}")
        self.counters.reads += 1
        self._up()
        self.counters.records_dropped += len(result.dropped)
        return tuple(self._key_factory(raw) for raw in result.nodes)

    # -- publishing

    async def _publish(self, recipients: set[bytes], *, presence: bool) -> bool:
        """One UPDATE with the windows of ``recipients`` (and the presence
        records); ``True`` if it went through. Refusals raise."""
        windows = {r: self._outbox.window(r) for r in recipients}
        zone, ttl = self.spec.zone, self.config.ttl
        updates = [
            build_update(
                zone,
                self._own,
                ttl=ttl,
                windows=windows,
                presence=self._presence if presence else None,
                key=self.tsig,
            )
        ]
        if presence:
            updates.append(build_advertise(zone, self._own, ttl=ttl, key=self.tsig))
        for update in updates:
            if not await self._exchange_update(update):
                self._publish_failures += 1
                self._retry_wake.set()
                return False
        now = asyncio.get_running_loop().time()
        for recipient, window in windows.items():
            if window:
                self._outbox.mark_published(recipient, window[-1].seq, now)
        if presence:
            self._presence_published = True
        self._publish_failures = 0
        self._refused = None
        return True

    async def _exchange_update(self, update: Any) -> bool:
        """Send one UPDATE to the primary: ``True`` on NOERROR, ``False`` on a
        transient failure (recorded); :class:`UpdateRefused` on a refusal."""
        server = self.spec.server
        try:
            response = await self._transport.update(update, server, self.config.timeout)
        except EXCHANGE_ERRORS as exc:
            reason = exchange_failure(exc)
            if reason is not None:
                raise self._refusal(reason, _describe(exc)) from None
            self._update_failed(f"update to {server} failed: {_describe(exc)}")
            return False
        reason = update_refusal(response)
        if reason is not None:
            raise self._refusal(reason, _rcode_text(response))
        if not update_succeeded(response):
            self._update_failed(f"update to {server} failed: {_rcode_text(response)}")
            return False
        self.counters.updates += 1
        self.last_error = None
        self._updated = True
        self._up()
        return True

    def _update_failed(self, why: str) -> None:
        self.counters.update_failures += 1
        self.last_error = why
        config = self.config
        retry = backoff_delay(self._publish_failures, config.retry, config.poll.max_backoff)
        self._set_state(ChannelState.CONNECTING, DownReason.UNREACHABLE, why, retry)

    def _up(self) -> None:
        # UP needs the primary to take our updates: reads alone (which need
        # no key) prove nothing about whether our messages get out.
        if self._updated and self._refused is None and self.state is ChannelState.CONNECTING:
            self._set_state(ChannelState.UP)

    def _refusal(self, reason: RefusalReason, detail: str) -> UpdateRefused:
        refusal = UpdateRefused(
            reason,
            server=str(self.spec.server),
            zone=self.spec.zone.to_text(),
            key_name=None if self.tsig is None else self.tsig.name,
            detail=detail,
        )
        self._refused = refusal
        self._set_state(ChannelState.CONNECTING, DownReason.REFUSED, str(refusal))
        return refusal

    async def _retry_loop(self) -> None:
        """Publish what failed to go out, with backoff, until it does."""
        # Loops test the flag too: Python 3.11's wait_for (inside dnspython)
        # may swallow a cancel that lands as an exchange completes.
        while not self._closed:
            await self._retry_wake.wait()
            self._retry_wake.clear()
            while self._publish_failures and self._refused is None and not self._closed:
                delay = backoff_delay(
                    self._publish_failures - 1, self.config.retry, self.config.poll.max_backoff
                )
                await asyncio.sleep(delay)
                await self._republish()

    async def _republish(self) -> None:
        try:
            if not self._presence_published:
                async with self._presence_lock:
                    if not self._presence_published and not await self._publish(
                        set(), presence=True
                    ):
                        return
            # Until nothing is pending: sends made meanwhile queued here (they
            # wait for this loop while updates fail). Bounded, in case a
            # window stays pending after its update went through.
            for _ in range(_REPUBLISH_ROUNDS):
                pending = self._outbox.pending()
                if not pending:
                    break
                for recipient in pending:
                    async with self._lock(recipient):
                        if recipient in self._outbox.pending() and not await self._publish(
                            {recipient}, presence=False
                        ):
                            return
            # No await since the last look: a send from now on publishes itself.
            self._publish_failures = 0
        except UpdateRefused as refusal:
            self.last_error = str(refusal)

    # -- reading

    async def _poll_loop(self) -> None:
        """Start the reads that are due, as the schedule allows."""
        loop = asyncio.get_running_loop()
        while not self._closed:
            now = loop.time()
            while (peer := self._schedule.take(now)) is not None:
                self._spawn(self._read(peer))
            browse = self.config.browse_interval
            if browse is not None and now >= self._browse_due:
                self._browse_due = now + browse
                self._spawn(self._browse())
            deadline = self._schedule.next_deadline()
            if browse is not None:
                deadline = self._browse_due if deadline is None else min(deadline, self._browse_due)
            self._poll_wake.clear()
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poll_wake.wait(), timeout)

    async def _read(self, raw: bytes) -> None:
        """Read one peer's window for us and deliver what is new."""
        ok = False
        server = self._read_server()
        try:
            query = build_read(self.spec.zone, raw, self._own)
            qname = message_name(self.spec.zone, raw, self._own)
            try:
                response = await self._transport.query(query, server, self.config.timeout)
            except EXCHANGE_ERRORS as exc:
                self._read_failed(f"read from {server} failed: {_describe(exc)}")
                return
            result = read_window(response, qname)
            if result.failure is not None:
                self._read_failed(f"{server} answered {result.failure}")
                return
            ok = True
            self.counters.reads += 1
            self._up()
            self.counters.records_dropped += len(result.dropped)
            peer = self._peers.get(raw)
            if peer is None:  # unwatched meanwhile
                return
            delivery = self._reader.accept(raw, result.window)
            self.counters.duplicates += delivery.duplicates
            self.counters.missed += delivery.missed
            self.counters.stale_windows += delivery.stale
            for record in delivery.new:
                self._deliver(Envelope(peer, record.sealed))
        finally:
            self._schedule.done(raw, asyncio.get_running_loop().time(), ok=ok)
            self._poll_wake.set()

    async def _browse(self) -> None:
        with contextlib.suppress(DirectoryError):
            for key in await self.nodes():
                if _raw(key) != self._own and _raw(key) not in self._peers:
                    self.watch(key)

    def _read_failed(self, why: str) -> None:
        """Count a failed read and try the next read server next time."""
        self.counters.read_failures += 1
        self.last_error = why
        if self.state is ChannelState.UP:
            self._set_state(ChannelState.CONNECTING, DownReason.UNREACHABLE, why)
        self._read_server_index = (self._read_server_index + 1) % len(self.read_servers)

    def _read_server(self) -> Endpoint:
        return self.read_servers[self._read_server_index]

    def _deliver(self, envelope: Envelope) -> bool:
        if not super()._deliver(envelope):
            self.counters.inbox_dropped += 1
            return False
        self.counters.messages += 1
        return True

    # -- helpers

    def _check_open(self) -> None:
        if self._closed:
            raise LocalProtocolError("the DNS directory is closed")

    def _lock(self, raw: bytes) -> asyncio.Lock:
        return self._locks.setdefault(raw, asyncio.Lock())

    def _ensure_tasks(self) -> None:
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll_loop(), name="dns-directory-poll")
        if self._retrier is None:
            self._retrier = asyncio.create_task(self._retry_loop(), name="dns-directory-retry")

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


#: Rounds of the retry loop's republishing (each one catches the sends that
#: queued during the previous).
_REPUBLISH_ROUNDS = 8


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    if isinstance(exc, dns.exception.FormError) and "TSIG" in text:
        # An unsigned answer to a signed update: knot answers NOTAUTH so for a
        # zone it does not serve. Unsigned, it may be forged, so it is not
        # taken as a refusal; the retries go on, saying what it likely means.
        return (
            "the server answered without a TSIG signature (is it authoritative for the"
            " zone, and does it know the key?)"
        )
    return f"{name}: {text}" if text else name


def _rcode_text(response: Any) -> str:
    return str(dns.rcode.to_text(response.rcode()))


def read_tsig_key_file(path: str | os.PathLike[str]) -> TsigKey:
    """Read and parse a TSIG key file; :class:`TsigKeyFileError` saying why not.

    The file holds a secret that lets anyone publish in the zone, so one
    that other users may read is refused (``chmod o-r`` it), as ``ssh``
    refuses a readable private key.
    """
    source = str(path)
    try:
        # O_NONBLOCK: a FIFO in its place must not hang the command.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise TsigKeyFileError(source, f"cannot read it: {exc.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise TsigKeyFileError(source, "not a regular file")
    with os.fdopen(fd, "rb") as f:
        if mode & stat.S_IROTH:
            raise TsigKeyFileError(
                source, "other users can read it (the secret lets anyone publish): chmod o-r"
            )
        try:
            data = f.read(MAX_KEY_FILE + 1)
        except OSError as exc:
            raise TsigKeyFileError(source, f"cannot read it: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE:
        raise TsigKeyFileError(source, f"larger than {MAX_KEY_FILE} bytes: not a key file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TsigKeyFileError(source, "not text") from None
    return parse_tsig_key(text, source)


def open_directory(
    directory: str,
    own_key: PublicKey,
    *,
    tsig_key_file: str | Path | None,
    read_servers: Sequence[str] = (),
    advertise: Endpoint | None = None,
    config: DirectoryConfig | None = None,
    key_factory: Callable[[bytes], PublicKey] | None = None,
) -> DnsDirectory:
    """A directory from ``--directory dns:ZONE@SERVER[:PORT] --tsig-key FILE``.

    Validation errors are :class:`~natkit.directory.errors.DirectorySpecError`
    and :class:`~natkit.directory.errors.TsigKeyFileError`, whose text a CLI
    prints as it is. Call :meth:`DnsDirectory.start` next, to find out
    whether the server takes the key.
    """
    spec = parse_directory(directory)
    tsig = None if tsig_key_file is None else read_tsig_key_file(tsig_key_file)
    readers = tuple(parse_read_server(text) for text in read_servers)
    return DnsDirectory(
        spec,
        own_key,
        tsig=tsig,
        read_servers=readers,
        advertise=advertise,
        config=config,
        key_factory=key_factory,
    )
