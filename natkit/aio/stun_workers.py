"""UDP worker processes for the STUN server (``natkit stun-server --workers N``).

The parent binds every UDP socket itself, so "cannot listen" is reported
before anything starts, then hands each worker its own set
(:mod:`natkit.aio.stun_worker`). Per endpoint, N sockets form one
``SO_REUSEPORT`` group and the kernel spreads clients over them by a hash of
their address and port: one client keeps talking to one worker.

A second server on the same port must still fail with "address in use"
rather than silently share the clients. ``SO_REUSEPORT`` alone would let any
process of the same user join the group, so the first socket of each
endpoint is bound *without* the option (which fails if anything holds the
port, grouped or not) and only then gets it, for its siblings to join.

Lifecycle: :meth:`WorkerPool.start` waits until every worker printed
``ready``; :meth:`WorkerPool.close` closes their standard input (their stop
signal), collects each one's counters line and reaps it, killing one that
does not stop in time. A worker also stops when the parent dies (its
standard input reaches end of file). :meth:`WorkerPool.wait_ended` returns
when a worker ends on its own: after SIGTERM (status 0, e.g. a service
manager signalling every process of the server at once) the server stops
in order; any other end is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket as socket_module
import sys
from collections.abc import Sequence

from natkit.aio.stun_worker import WorkerSpec
from natkit.endpoint import Endpoint
from natkit.errors import NatkitError
from natkit.stun.server import ServerConfig, ServerCounters

#: Seconds a worker gets to start (a Python start-up on a busy machine).
START_TIMEOUT = 30.0
#: Seconds a worker gets to report and exit once asked to stop.
STOP_TIMEOUT = 5.0
#: Whether the kernel can spread one port over several sockets.
REUSEPORT_SUPPORTED = hasattr(socket_module, "SO_REUSEPORT") and sys.platform == "linux"


class WorkerError(NatkitError):
    """A worker could not start, or ended while the server was running."""

    def __init__(self, worker: int, reason: str) -> None:
        self.worker = worker
        self.reason = reason
        super().__init__(f"worker {worker}: {reason}")


def default_workers() -> int:
    """One worker per CPU this process may run on (0 without SO_REUSEPORT)."""
    if not REUSEPORT_SUPPORTED:
        return 0
    return len(os.sched_getaffinity(0))


def bind_groups(
    endpoints: Sequence[Endpoint], size: int
) -> tuple[list[list[socket_module.socket]], tuple[Endpoint, ...]]:
    """``size`` UDP sockets per endpoint in one ``SO_REUSEPORT`` group each
    (port 0 = any, the group then shares the port the first one got).

    Returns the groups (``groups[endpoint][worker]``) and the endpoints with
    their bound ports. All or nothing: an ``OSError`` closes what was bound.
    """
    groups: list[list[socket_module.socket]] = []
    bound: list[Endpoint] = []
    try:
        for endpoint in endpoints:
            family = (
                socket_module.AF_INET if endpoint.address.version == 4 else socket_module.AF_INET6
            )
            group: list[socket_module.socket] = []
            groups.append(group)
            first = socket_module.socket(family, socket_module.SOCK_DGRAM)
            group.append(first)
            first.bind(endpoint.sockaddr())  # without SO_REUSEPORT: fails if the port is taken
            first.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_REUSEPORT, 1)
            actual = Endpoint.from_sockaddr(first.getsockname())
            bound.append(actual)
            for _ in range(size - 1):
                sibling = socket_module.socket(family, socket_module.SOCK_DGRAM)
                group.append(sibling)
                sibling.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_REUSEPORT, 1)
                sibling.bind(actual.sockaddr())
    except OSError:
        for group in groups:
            for sock in group:
                sock.close()
        raise
    return groups, tuple(bound)


class WorkerPool:
    """N worker processes serving a :class:`ServerConfig` over UDP."""

    def __init__(self, config: ServerConfig, workers: int, *, batched: bool = True) -> None:
        if workers < 1:
            raise ValueError("a pool has at least one worker")
        self.config = config
        self.workers = workers
        self.batched = batched
        self.processes: list[asyncio.subprocess.Process] = []
        self._watchers: list[asyncio.Task[int]] = []
        self._ended: asyncio.Future[WorkerError | None] | None = None
        self._closing = False

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    async def start(self) -> ServerConfig:
        """Bind, start every worker, wait for each one's ``ready``.

        Returns the configuration with bound ports (port 0 resolved).
        Raises ``OSError`` when a socket cannot be bound, :class:`WorkerError`
        when a worker does not start; nothing is left running either way.
        """
        groups, bound = bind_groups(self.config.sockets, self.workers)
        try:
            self.config = ServerConfig(bound, self.config.software)
            loop = asyncio.get_running_loop()
            self._ended = loop.create_future()
            for worker in range(self.workers):
                await self._spawn(worker, [group[worker] for group in groups])
                for group in groups:
                    group[worker].close()  # the worker holds it now
            for worker, process in enumerate(self.processes):
                await self._wait_ready(worker, process)
        except BaseException:
            for group in groups:
                for sock in group:
                    sock.close()
            await self.close()
            raise
        return self.config

    async def _spawn(self, worker: int, sockets: list[socket_module.socket]) -> None:
        fds = tuple(sock.fileno() for sock in sockets)
        spec = WorkerSpec(self.config.sockets, self.config.software, fds, self.batched)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "natkit.aio.stun_worker", spec.to_json(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            pass_fds=fds,
        )  # fmt: skip
        self.processes.append(process)
        self._watchers.append(asyncio.ensure_future(self._watch(worker, process)))

    async def _wait_ready(self, worker: int, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            raise WorkerError(worker, "did not start in time") from None
        if line.strip() != b"ready":
            await process.wait()
            raise WorkerError(worker, f"did not start (exit status {process.returncode})")

    async def _watch(self, worker: int, process: asyncio.subprocess.Process) -> int:
        status = await process.wait()
        if not self._closing and self._ended is not None and not self._ended.done():
            failure = None if status == 0 else WorkerError(worker, f"ended with status {status}")
            self._ended.set_result(failure)
        return status

    async def wait_ended(self) -> WorkerError | None:
        """Return when a worker ended while the pool was running: ``None``
        when it stopped in order (SIGTERM), else what went wrong."""
        if self._ended is None:
            raise RuntimeError("the pool is not started")
        return await self._ended

    async def close(self) -> tuple[ServerCounters, list[int]]:
        """Stop every worker. Returns the sum of the counters they reported
        and the indices of workers that reported none (killed, crashed)."""
        self._closing = True
        for process in self.processes:
            if process.stdin is not None:
                process.stdin.close()
        results = await asyncio.gather(
            *(self._collect(process) for process in self.processes), return_exceptions=True
        )
        for watcher in self._watchers:
            watcher.cancel()
        total, missing = ServerCounters(), []
        for worker, result in enumerate(results):
            if isinstance(result, ServerCounters):
                total.add(result)
            else:
                missing.append(worker)
        self.processes.clear()
        self._watchers.clear()
        return total, missing

    async def _collect(self, process: asyncio.subprocess.Process) -> ServerCounters | None:
        assert process.stdout is not None
        output = b""
        try:
            output = await asyncio.wait_for(process.stdout.read(), STOP_TIMEOUT)
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            return None
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        lines = output.decode(errors="replace").strip().splitlines()
        try:
            return ServerCounters.from_dict(json.loads(lines[-1])) if lines else None
        except ValueError:
            return None
