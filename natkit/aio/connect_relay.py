"""TURN relays for a connect node: the servers given to its agent, and their TCP/TLS streams.

The agent holds the allocation itself (:mod:`natkit.ice.relays`: one per
node, the nearest server by RTT, re-allocation with backoff); the node
only has to

1. resolve the ``turn:``/``turns:`` URIs (RFC 7065) and hand each server to
   ``agent.add_relay_server`` with credentials (long-term, or minted from a
   TURN REST API secret) and the index the agent reaches it through: the
   node's UDP socket of the server's family for ``transport=udp``, a fresh
   *stream slot* (:class:`~natkit.aio.connect_runner.PortIndices`) for TCP
   and TLS;
2. carry each stream slot (:class:`RelayStreams`): the first datagram the
   agent sends from a slot opens the connection (TCP, then TLS checked
   against ``tls_ca`` or the system's CAs), datagrams wait in order while it
   opens (at most :data:`~natkit.aio.turn.STREAM_WRITE_LIMIT` bytes), what
   is read goes to ``agent.relay_stream_data``, a connection that fails or
   closes to ``agent.relay_stream_lost`` (the agent backs off and tries
   again, which opens a new one), and ``RelayStreamIdle`` closes it quietly.

A server whose name does not resolve is left out with a note
(:attr:`RelayStreams.notes`); bad URIs and credentials are refused before
anything runs (:func:`check_relay_options`).

REST API credentials (``secret``) are minted once, valid for
:attr:`RelayOptions.rest_validity` (a day by default): a node that runs
longer re-reads nothing, and coturn refuses its refresh after the expiry
(a ``relay`` event with ``unauthorized``). Restart it, or give it long-term
credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from natkit.aio.connect_runner import NodeRunner
from natkit.aio.stun_stream import tls_context
from natkit.aio.turn import (
    STREAM_WRITE_LIMIT,
    TurnServer,
    TurnStreamError,
    open_turn_stream,
    resolve_turn_server,
)
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError, NatkitError
from natkit.ice import ConnectAgent
from natkit.ice.relays import RelayServer
from natkit.sansio import Datagram
from natkit.stun.uri import parse_turn_server
from natkit.turn.config import TurnConfig, TurnTransport
from natkit.turn.credentials import Credentials, rest_credentials

#: How long minted REST API credentials are valid (seconds).
REST_VALIDITY = 86400
_READ_SIZE = 65536

__all__ = [
    "RelayOptions",
    "RelayStreams",
    "check_relay_options",
    "relay_servers",
]


@dataclass(frozen=True, slots=True)
class RelayOptions:
    """The TURN servers a node relays through (``natkit connect --relay``)."""

    #: ``turn:HOST[:PORT][?transport=udp|tcp]`` or ``turns:HOST[:PORT]``;
    #: several: the nearest by RTT is used.
    servers: tuple[str, ...] = ()
    #: Long-term credentials (RFC 8489 §9.2)...
    user: str | None = None
    password: str | None = None
    #: ...or a TURN REST API secret (coturn's ``static-auth-secret``).
    secret: str | None = None
    #: The name REST credentials carry (the server's logs show it).
    rest_name: str = "natkit"
    rest_validity: int = REST_VALIDITY
    #: CA file for ``turns:`` servers (``None``: the system's CAs).
    tls_ca: str | None = None
    #: A context made beforehand (``natkit connect`` loads ``--tls-ca`` while
    #: checking its flags); wins over ``tls_ca`` and ``verify``.
    tls: ssl.SSLContext | None = None
    #: Check TLS certificates (off: any certificate is accepted).
    verify: bool = True
    #: Bind TURN channels over UDP (ChannelData, 4 bytes a datagram); off:
    #: Send and Data indications only, which are STUN, for a node whose UDP
    #: socket receives only STUN (WireGuard's port shared through a filter).
    channels: bool = True

    def __post_init__(self) -> None:
        check_relay_options(self)

    def credentials(self, now: float | None = None) -> Credentials | None:
        """Long-term credentials, or REST ones minted at ``now`` (Unix time)."""
        if self.secret is not None:
            start = time.time() if now is None else now
            return rest_credentials(self.secret, int(start) + self.rest_validity, self.rest_name)
        if self.user is not None and self.password is not None:
            return Credentials(self.user, self.password)
        return None


def check_relay_options(options: RelayOptions) -> None:
    """Raise :class:`LocalProtocolError` saying what is wrong with ``options``."""
    for text in options.servers:
        parse_turn_server(text)
    if options.secret is not None and (options.user is not None or options.password is not None):
        raise LocalProtocolError("give a TURN user and password, or a REST secret, not both")
    if (options.user is None) != (options.password is None):
        raise LocalProtocolError("a TURN user needs a password (and a password a user)")
    if options.user == "":
        raise LocalProtocolError("a TURN username cannot be empty")
    if options.secret == "":
        raise LocalProtocolError("a TURN REST secret cannot be empty")
    if ":" in options.rest_name or options.rest_validity < 1:
        raise LocalProtocolError("a REST name has no ':' and credentials need a validity")
    if options.servers and options.credentials() is None:
        raise LocalProtocolError(
            "--relay needs credentials: --relay-user and --relay-password, or --relay-secret"
        )


async def _resolve(text: str) -> tuple[list[TurnServer], str | None]:
    try:
        return await resolve_turn_server(text), None
    except LocalProtocolError as exc:
        return [], f"{text}: {exc}"


async def relay_servers(
    options: RelayOptions,
    sockets: Sequence[Endpoint],
    take_slot: Callable[[], int],
) -> tuple[list[tuple[RelayServer, TurnServer]], list[str]]:
    """Every configured server as the agent's :class:`RelayServer` (with
    the server as resolved, for its stream), and notes on those left out.

    One address per URI: the first of a family the node has a socket for
    (a TURN allocation is made from that family's socket or stream)."""
    credentials = options.credentials()
    found = await asyncio.gather(*(_resolve(text) for text in options.servers))
    servers: list[tuple[RelayServer, TurnServer]] = []
    notes: list[str] = []
    for text, (resolved, problem) in zip(options.servers, found, strict=True):
        if problem is not None:
            notes.append(problem)
            continue
        usable = [
            (server, index)
            for server in resolved
            if (index := _socket_of(server.endpoint, sockets)) is not None
        ]
        if not usable:
            notes.append(f"{text}: no socket of its address family")
            continue
        server, index = usable[0]
        if server.transport.reliable:
            index = take_slot()
        config = TurnConfig(
            server.endpoint,
            credentials,
            server.transport,
            socket=index,
            # ChannelData carries no magic cookie: a socket that lets only
            # STUN in (WireGuard's shared port) needs Data indications.
            auto_channel=options.channels or server.transport.reliable,
        )
        servers.append((RelayServer(text, config), server))
    return servers, notes


def _socket_of(server: Endpoint, sockets: Sequence[Endpoint]) -> int | None:
    for index, local in enumerate(sockets):
        if local.family is server.family:
            return index
    return None


class _Slot:
    """One stream slot: its server and the connection, if any."""

    def __init__(self, index: int, server: TurnServer) -> None:
        self.index = index
        self.server = server
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        #: Datagrams written while the connection opens.
        self.pending: deque[bytes] = deque()
        self.pending_bytes = 0
        #: Bumped whenever the connection is dropped on purpose: a task of an
        #: older connection reports nothing.
        self.generation = 0


class RelayStreams:
    """The TCP/TLS connections of a node's stream slots (module doc)."""

    def __init__(
        self,
        agent: ConnectAgent,
        runner: NodeRunner,
        *,
        tls_ca: str | None = None,
        verify: bool = True,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.agent = agent
        self.runner = runner
        self.loop = runner.loop
        self._tls_ca = tls_ca
        self._verify = verify
        self._tls = tls
        self._slots: dict[int, _Slot] = {}
        self._closed = False
        #: Connections opened, and datagrams dropped (a full buffer).
        self.connections = 0
        self.dropped = 0
        self.tls_retries = 0

    def add(self, index: int, server: TurnServer) -> None:
        """Carry stream slot ``index`` to ``server``."""
        self._slots[index] = _Slot(index, server)
        self.runner.add_port(index, self._send)

    @property
    def open_slots(self) -> tuple[int, ...]:
        """Slots with a connection (open or opening)."""
        return tuple(s.index for s in self._slots.values() if s.task is not None)

    # -- the agent's datagrams ------------------------------------------------------------

    def _send(self, datagram: Datagram) -> None:
        slot = self._slots[datagram.socket]
        if self._closed:
            return
        writer = slot.writer
        if writer is not None:
            transport = writer.transport
            if transport.is_closing():
                return
            if transport.get_write_buffer_size() > STREAM_WRITE_LIMIT:
                self.dropped += 1
                return
            writer.write(datagram.data)
            return
        if slot.pending_bytes + len(datagram.data) > STREAM_WRITE_LIMIT:
            self.dropped += 1
            return
        slot.pending.append(datagram.data)
        slot.pending_bytes += len(datagram.data)
        if slot.task is None:
            slot.task = self.loop.create_task(
                self._run(slot, slot.generation), name=f"natkit-relay-stream-{slot.index}"
            )

    def idle(self, index: int) -> None:
        """``RelayStreamIdle``: close the slot's connection without a word to the agent."""
        slot = self._slots.get(index)
        if slot is not None:
            self._drop(slot)

    # -- connections ----------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = tls_context(self._tls_ca, verify=self._verify)
        return self._tls

    async def _run(self, slot: _Slot, generation: int) -> None:
        server = slot.server
        try:
            tls = self._tls_context() if server.transport is TurnTransport.TLS else None
        except (NatkitError, OSError) as exc:  # ssl.SSLError is an OSError
            # Said in the relay's failure event; raised, it would end this
            # task unseen ("Task exception was never retrieved").
            self._lost(slot, generation, f"TLS setup failed: {exc}")
            return
        detail = "the server closed the connection"
        try:
            stream = await open_turn_stream(server.endpoint, tls, server_name=server.server_name)
        except TurnStreamError as exc:
            self.tls_retries += exc.tls_retries
            self._lost(slot, generation, exc.detail)
            return
        self.connections += 1
        self.tls_retries += stream.tls_retries
        writer = stream.writer
        if slot.generation != generation or self._closed:
            writer.close()
            return
        with contextlib.suppress(OSError):
            writer.get_extra_info("socket").setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )  # relayed datagrams are small and latency matters
        slot.writer = writer
        while slot.pending:
            writer.write(slot.pending.popleft())
        slot.pending_bytes = 0
        try:
            while data := await stream.reader.read(_READ_SIZE):
                if slot.generation != generation:
                    return
                now = self.loop.time()
                self.agent.relay_stream_data(slot.index, data, now)
                self.runner.transmit(now)
        except (OSError, ssl.SSLError) as exc:
            detail = f"connection failed: {exc}"
        finally:
            writer.close()
        self._lost(slot, generation, detail)

    def _lost(self, slot: _Slot, generation: int, detail: str) -> None:
        if slot.generation != generation or self._closed:
            return
        slot.generation += 1
        slot.writer = None
        slot.task = None
        slot.pending.clear()
        slot.pending_bytes = 0
        now = self.loop.time()
        self.agent.relay_stream_lost(slot.index, now, detail)
        self.runner.transmit(now)

    def _drop(self, slot: _Slot) -> None:
        slot.generation += 1
        task, slot.task = slot.task, None
        writer, slot.writer = slot.writer, None
        slot.pending.clear()
        slot.pending_bytes = 0
        if writer is not None:
            writer.close()  # flushes what was written (a deallocation) first
        if task is not None and not task.done():
            task.cancel()

    async def close(self) -> None:
        """Close every connection (after the agent's deallocations were written)."""
        self._closed = True
        tasks = [s.task for s in self._slots.values() if s.task is not None]
        for slot in self._slots.values():
            self._drop(slot)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for index in self._slots:
            self.runner.remove_port(index)
