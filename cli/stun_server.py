"""``natkit stun-server``: an RFC 5780-capable STUN server.

With two ``--bind`` addresses it listens on both addresses x both ports
(UDP and TCP) and supports CHANGE-REQUEST, OTHER-ADDRESS, RESPONSE-ORIGIN,
RESPONSE-PORT and PADDING; with one it is a plain RFC 5389/8489 server.
It prints ``ready`` on stdout once listening; on SIGINT/SIGTERM it stops
and, with ``--stats``, prints its counters as JSON on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from natkit.aio.stun_server import AsyncStunServer
from natkit.errors import NatkitError
from natkit.stun.server import ServerConfig


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
        "--stats", action="store_true", help="print counters as JSON on stderr when stopping"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    binds: list[str] = args.bind
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
    return asyncio.run(_serve(config, tcp=not args.no_tcp, stats=args.stats))


async def _serve(config: ServerConfig, *, tcp: bool, stats: bool) -> int:
    server = AsyncStunServer(config, tcp=tcp)
    try:
        await server.start()
    except OSError as exc:
        await server.close()
        print(f"natkit stun-server: cannot listen: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        await server.close()
        if stats:
            print(json.dumps(server.counters), file=sys.stderr, flush=True)
    return 0
