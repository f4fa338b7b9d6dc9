"""One UDP worker of ``natkit stun-server --workers N`` (run as
``python -m natkit.aio.stun_worker SPEC``; :mod:`natkit.aio.stun_workers`
starts it).

The worker owns one socket per server endpoint, each a member of that
endpoint's ``SO_REUSEPORT`` group, so the kernel spreads clients over the
workers by their address and port. It serves them in a plain loop, no
asyncio: ``epoll`` says which socket has data, a :mod:`batch
<natkit.aio.mmsg>` reads up to 64 datagrams, each is answered by the fast
path (:meth:`StunServer.answer_plain`) or else by the full rules
(:meth:`StunServer.handle`), and the replies leave in one ``sendmmsg``. A
reply from another socket (CHANGE-REQUEST) or to another port
(RESPONSE-PORT) is sent on its own from the worker's socket for that
endpoint.

Talking to the parent, over the worker's standard streams:

* it prints ``ready`` once serving;
* it stops when its standard input reaches end of file: the parent closes
  it, or the parent died (the kernel closes it then, so a worker never
  outlives its server, whatever killed the server) or on SIGTERM. SIGINT is
  ignored: a Ctrl-C on the terminal reaches the whole process group, and the
  parent turns it into an orderly stop;
* on stopping it prints its counters (``ServerCounters.as_dict``) as one
  JSON line and exits 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket as socket_module
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from natkit.aio.mmsg import BATCH, DatagramBatch, open_batch
from natkit.endpoint import Endpoint
from natkit.errors import NatkitError
from natkit.stun.fastpath import unpack_peer
from natkit.stun.server import ServerConfig, StunServer, Transport

#: Datagrams read from one socket before looking at the others again.
TURN_LIMIT = 4 * BATCH


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker serves: the server's endpoints (resolved ports), its
    SOFTWARE, and the inherited socket descriptors in endpoint order."""

    sockets: tuple[Endpoint, ...]
    software: str | None
    fds: tuple[int, ...]
    #: False: one datagram per system call (for tests and comparisons).
    batched: bool = True

    def to_json(self) -> str:
        return json.dumps(
            {
                "sockets": [str(e) for e in self.sockets],
                "software": self.software,
                "fds": list(self.fds),
                "batched": self.batched,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        document = json.loads(text)
        software = document["software"]
        fds = document["fds"]
        if software is not None and not isinstance(software, str):
            raise ValueError("software is a string")
        if not all(isinstance(fd, int) and fd > 2 for fd in fds):
            raise ValueError("fds are inherited descriptors above 2")
        sockets = tuple(Endpoint.parse(text) for text in document["sockets"])
        if len(sockets) != len(fds):
            raise ValueError("one descriptor per endpoint")
        return cls(sockets, software, tuple(fds), bool(document.get("batched", True)))

    @property
    def config(self) -> ServerConfig:
        return ServerConfig(self.sockets, self.software)


def serve(
    core: StunServer,
    sockets: Sequence[socket_module.socket],
    stop_fds: Sequence[int],
    *,
    batched: bool = True,
) -> None:
    """Answer on ``sockets`` (index = the core's socket index) until one of
    ``stop_fds`` becomes readable or hangs up."""
    batches = [open_batch(sock, batched=batched) for sock in sockets]
    by_fd = {sock.fileno(): index for index, sock in enumerate(sockets)}
    with select.epoll() as poller:
        for fd in (*by_fd, *stop_fds):
            poller.register(fd, select.EPOLLIN)
        while True:
            for fd, _ in poller.poll():
                index = by_fd.get(fd)
                if index is None:
                    return
                _serve_socket(core, sockets, batches[index], index)


def _serve_socket(
    core: StunServer,
    sockets: Sequence[socket_module.socket],
    batch: DatagramBatch,
    index: int,
) -> None:
    answer_plain = core.answer_plain
    served = 0
    while served < TURN_LIMIT:
        count = batch.receive()
        for slot in range(count):
            data = batch.datagram(slot)
            peer = batch.peer(slot)
            reply = answer_plain(data, peer, index)
            if reply is None:
                remote = unpack_peer(peer)
                full = core.handle(data, remote, index, Transport.UDP)
                if full is None:
                    continue
                if full.socket != index or full.remote != remote:
                    with contextlib.suppress(OSError):  # UDP: a lost reply
                        sockets[full.socket].sendto(full.data, full.remote.sockaddr())
                    continue
                reply = full.data
            batch.reply(slot, reply)
        batch.send()
        if count < batch.capacity:
            return
        served += count


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m natkit.aio.stun_worker SPEC", file=sys.stderr)
        return 64
    try:
        spec = WorkerSpec.from_json(argv[0])
        config = spec.config
    except (ValueError, KeyError, TypeError, NatkitError) as exc:
        print(f"natkit stun worker: bad spec: {exc}", file=sys.stderr)
        return 64
    try:
        sockets = [socket_module.socket(fileno=fd) for fd in spec.fds]
    except OSError as exc:
        print(f"natkit stun worker: not a socket: {exc}", file=sys.stderr)
        return 64
    for sock in sockets:
        sock.setblocking(False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    # A Python-level handler (doing nothing) replaces "terminate": the
    # wakeup byte ends epoll_wait and the loop returns in order.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    core = StunServer(config)
    print("ready", flush=True)
    serve(core, sockets, (sys.stdin.fileno(), wake_read), batched=spec.batched)
    for sock in sockets:
        sock.close()
    try:
        print(json.dumps(core.counters.as_dict()), flush=True)
    except BrokenPipeError:
        # The parent is gone: nobody to tell, and nothing to flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
