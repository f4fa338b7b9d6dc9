"""``natkit stun-server``: an RFC 5780-capable STUN server.

With two ``--bind`` addresses it listens on both addresses x both ports
(UDP and TCP) and supports CHANGE-REQUEST, OTHER-ADDRESS, RESPONSE-ORIGIN,
RESPONSE-PORT and PADDING; with one it is a plain RFC 5389/8489 server.
UDP is served by ``--workers`` processes (default: one per CPU), TCP by this
one. It prints ``ready`` on stdout once listening; on SIGINT/SIGTERM it
stops and, with ``--stats``, prints its counters (all workers' together) as
JSON on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from natkit.aio.stun_server import AsyncStunServer
from natkit.aio.stun_workers import REUSEPORT_SUPPORTED, WorkerError, default_workers
from natkit.errors import NatkitError
from natkit.stun.server import ServerConfig

#: More workers than this is a typo, not a plan (each one is a process).
MAX_WORKERS = 256


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bind",
        action="append",
        required=True,
        metavar="IP",
        help="address to serve on; give it twice (two addresses) for RFC 5780",
    )
    parser.add_argument("--port", type=int, default=3478, help="primary port (default 3478)")
    parser.add_argument(
        "--alt-port", type=int, default=3479, help="alternate port for RFC 5780 (default 3479)"
    )
    parser.add_argument("--software", help="send a SOFTWARE attribute with this text")
    parser.add_argument("--no-tcp", action="store_true", help="serve UDP only")
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="UDP worker processes sharing each port with SO_REUSEPORT "
        "(default: one per CPU; 0 serves UDP in the main process)",
    )
    parser.add_argument(
        "--stats", action="store_true", help="print counters as JSON on stderr when stopping"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    binds: list[str] = args.bind
    workers: int = default_workers() if args.workers is None else args.workers
    if not 0 <= workers <= MAX_WORKERS:
        print(f"natkit stun-server: --workers is 0 to {MAX_WORKERS}", file=sys.stderr)
        return 64
    if workers and not REUSEPORT_SUPPORTED:
        print("natkit stun-server: --workers needs SO_REUSEPORT (Linux)", file=sys.stderr)
        return 64
    try:
        if len(binds) == 1:
            config = ServerConfig.basic(binds[0], args.port, args.software)
        elif len(binds) == 2:
            config = ServerConfig.rfc5780(
                binds[0], binds[1], args.port, args.alt_port, args.software
            )
        else:
            print("natkit stun-server: give --bind once or twice", file=sys.stderr)
            return 64
    except (ValueError, NatkitError) as exc:
        print(f"natkit stun-server: {exc}", file=sys.stderr)
        return 64
    return asyncio.run(_serve(config, tcp=not args.no_tcp, stats=args.stats, workers=workers))


async def _serve(config: ServerConfig, *, tcp: bool, stats: bool, workers: int) -> int:
    server = AsyncStunServer(config, tcp=tcp, workers=workers)
    try:
        await server.start()
    except OSError as exc:
        await server.close()
        print(f"natkit stun-server: cannot listen: {exc}", file=sys.stderr)
        return 1
    except WorkerError as exc:
        await server.close()
        print(f"natkit stun-server: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print("ready", flush=True)
    stopped = asyncio.ensure_future(stop.wait())
    workers_ended = asyncio.ensure_future(server.wait_workers())
    try:
        await asyncio.wait((stopped, workers_ended), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        workers_ended.cancel()
        await server.close()
        if stats:
            print(json.dumps(server.counters), file=sys.stderr, flush=True)
    if server.missing_workers:
        missing = ", ".join(map(str, server.missing_workers))
        print(f"natkit stun-server: no counters from worker {missing}", file=sys.stderr)
    ended = workers_ended.done() and not workers_ended.cancelled()
    failure = workers_ended.result() if ended else None
    if failure is not None:
        print(f"natkit stun-server: {failure}; stopped", file=sys.stderr)
        return 1
    return 0
