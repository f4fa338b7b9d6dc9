"""Birthday sockets for a connect node: bound when the agent asks, closed when it is done.

The agent coordinates birthday probing itself (:mod:`natkit.ice.birthday`);
a side that opens mappings needs sockets of its own, which only the driver
can bind. On :class:`~natkit.ice.events.BirthdaySocketsWanted` this binds
``count`` UDP sockets (any port) on the address the node's candidates of
that family leave from (the bound address of its socket, or else its first
host candidate of the family: the probes must leave where the checks
leave), gives each an extra-port index of the runner
(:class:`~natkit.aio.connect_runner.NodeRunner`), and hands them to
``agent.birthday_sockets``. On ``BirthdaySocketsReleased`` it closes them.
A socket that wins stays (the agent keeps it as a known pair's base) until
the node closes.

When fewer than ``count`` sockets can be bound (the process is out of file
descriptors), the attempt gets the ones that were; none at all makes the
agent fail the attempt, as the agent's contract says.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from typing import Any

from natkit.aio.connect_runner import NodeRunner
from natkit.endpoint import Endpoint, Family
from natkit.errors import LocalProtocolError
from natkit.ice import ConnectAgent
from natkit.ice.candidates import CandidateKind
from natkit.ice.events import BirthdaySocketsReleased, BirthdaySocketsWanted
from natkit.sansio import Datagram

__all__ = ["BirthdaySockets"]


class _Port(asyncio.DatagramProtocol):
    def __init__(self, owner: BirthdaySockets, index: int) -> None:
        self._owner = owner
        self._index = index

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._owner.runner.port_received(self._index, data, Endpoint.from_sockaddr(addr))

    def error_received(self, exc: Exception) -> None:
        # An ICMP error after a probe to a closed port: expected while spraying.
        self._owner.errors += 1


class BirthdaySockets:
    """Sockets bound for the agent's birthday attempts (module doc)."""

    def __init__(self, agent: ConnectAgent, runner: NodeRunner) -> None:
        self.agent = agent
        self.runner = runner
        self.loop = runner.loop
        self._ports: dict[int, tuple[asyncio.DatagramTransport, socket.socket]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        #: Sockets bound in all, and send or ICMP errors seen on them.
        self.bound = 0
        self.errors = 0

    @property
    def open(self) -> tuple[int, ...]:
        return tuple(self._ports)

    def wanted(self, event: BirthdaySocketsWanted) -> None:
        if self._closed:
            return
        task = self.loop.create_task(self._bind(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def released(self, event: BirthdaySocketsReleased) -> None:
        for index in event.sockets:
            self._close(index)

    def _address(self, family: Family) -> str:
        for local in self.runner.local_endpoints:
            if local.family is family and not local.address.is_unspecified:
                return str(local.address)
        for candidate in self.agent.local_candidates:
            if candidate.kind is CandidateKind.HOST and candidate.address.family is family:
                return str(candidate.address.address)
        return "0.0.0.0" if family is Family.IPV4 else "::"

    async def _bind(self, event: BirthdaySocketsWanted) -> None:
        address = self._address(event.family)
        given: list[tuple[int, Endpoint]] = []
        kind = socket.AF_INET if event.family is Family.IPV4 else socket.AF_INET6
        for _ in range(event.count):
            try:
                sock = socket.socket(kind, socket.SOCK_DGRAM)
            except OSError:
                self.errors += 1
                break
            try:
                sock.bind((address, 0))
                sock.setblocking(False)
                index = self.runner.indices.take()
                transport, _ = await self.loop.create_datagram_endpoint(
                    functools.partial(_Port, self, index), sock=sock
                )
            except OSError:
                sock.close()
                self.errors += 1
                break
            self._ports[index] = (transport, sock)
            self.runner.add_port(index, self._sender(sock))
            given.append((index, Endpoint.from_sockaddr(sock.getsockname())))
            self.bound += 1
        if self._closed:
            for index, _ in given:
                self._close(index)
            return
        now = self.loop.time()
        try:
            self.agent.birthday_sockets(event.peer, event.attempt, given, now)
        except LocalProtocolError:
            # The attempt ended (or the peer went) while binding: nobody wants them.
            for index, _ in given:
                self._close(index)
        self.runner.transmit(now)

    def _sender(self, sock: socket.socket) -> Any:
        def send(datagram: Datagram) -> None:
            try:
                sock.sendto(datagram.data, datagram.remote.sockaddr())
            except OSError:  # a full buffer or an ICMP error pending: a lost probe
                self.errors += 1

        return send

    def _close(self, index: int) -> None:
        entry = self._ports.pop(index, None)
        self.runner.remove_port(index)
        if entry is not None:
            entry[0].close()

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for index in list(self._ports):
            self._close(index)
