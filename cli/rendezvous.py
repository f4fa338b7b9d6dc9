"""``natkit rendezvous``: the built-in signalling server.

One process, no database: it relays sealed messages between connected
nodes by public key (:mod:`natkit.signal.server` has the rules). It prints
one line per event, human-readable or, with ``--json-line``, one JSON
object (schema ``natkit.rendezvous`` v1): ``listening`` once bound (with
the actual port when ``--listen`` gave port 0), then ``connected``,
``disconnected`` and ``dropped`` as they happen, ``stopped`` on SIGINT or
SIGTERM. Events carry keys, addresses, reasons and counters, never message
contents.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

from natkit.aio.rendezvous_server import AsyncRendezvousServer
from natkit.cli.output import utc_now
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.signal.server import (
    ClientConnected,
    ClientDisconnected,
    MessagesDropped,
    ServerConfig,
    ServerEvent,
)

SCHEMA = "natkit.rendezvous"
SCHEMA_VERSION = 1
_DEFAULTS = ServerConfig()


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen", required=True, metavar="IP:PORT", help="TCP address to serve on"
    )
    parser.add_argument(
        "--json-line", action="store_true", help="print each event as one JSON object per line"
    )
    parser.add_argument(
        "--max-clients",
        type=int,
        default=_DEFAULTS.max_clients,
        metavar="N",
        help=f"authenticated clients at most (default {_DEFAULTS.max_clients})",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=_DEFAULTS.rate,
        metavar="R",
        help=f"messages per second one client may send (default {_DEFAULTS.rate:g})",
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=_DEFAULTS.burst,
        metavar="N",
        help=f"messages one client may send at once (default {_DEFAULTS.burst})",
    )
    parser.add_argument(
        "--queue-bytes",
        type=int,
        default=_DEFAULTS.queue_bytes,
        metavar="N",
        help=f"bytes queued for one client before its messages are dropped "
        f"(default {_DEFAULTS.queue_bytes})",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        listen = Endpoint.parse(args.listen)
        config = ServerConfig(
            max_clients=args.max_clients,
            rate=args.rate,
            burst=args.burst,
            queue_bytes=args.queue_bytes,
        )
    except (ValueError, LocalProtocolError) as exc:
        print(f"natkit rendezvous: {exc}", file=sys.stderr)
        return 64
    return asyncio.run(_serve(listen, config, json_line=args.json_line))


def _emit(document: dict[str, Any], human: str, json_line: bool) -> None:
    if json_line:
        line = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "time": utc_now(), **document}
        print(json.dumps(line, separators=(",", ":")), flush=True)
    else:
        print(human, flush=True)


def event_to_dict(event: ServerEvent, server: AsyncRendezvousServer) -> dict[str, Any]:
    """The JSON object of one server event (without schema and time)."""
    counters = server.core.counters.as_dict()
    match event:
        case ClientConnected(conn, key, remote):
            return {
                "event": "connected",
                "key": str(key),
                "remote": remote,
                "conn": conn,
                "clients": server.core.clients,
                "counters": counters,
            }
        case ClientDisconnected():
            return {
                "event": "disconnected",
                "key": None if event.key is None else str(event.key),
                "remote": event.remote,
                "conn": event.conn,
                "reason": event.reason.value,
                "relayed": event.relayed,
                "delivered": event.delivered,
                "dropped": event.dropped,
                "duration_s": round(event.duration, 3),
                "clients": server.core.clients,
                "counters": counters,
            }
        case MessagesDropped(sender, reason, count):
            return {
                "event": "dropped",
                "key": str(sender),
                "reason": reason.value,
                "count": count,
                "counters": counters,
            }


def event_to_text(event: ServerEvent, server: AsyncRendezvousServer) -> str:
    match event:
        case ClientConnected(_, key, remote):
            return f"connected {key} from {remote} ({server.core.clients} clients)"
        case ClientDisconnected():
            who = "unauthenticated" if event.key is None else str(event.key)
            return (
                f"disconnected {who} {event.remote}: {event.reason.value} "
                f"(relayed {event.relayed}, delivered {event.delivered}, "
                f"dropped {event.dropped}, {event.duration:.1f} s)"
            )
        case MessagesDropped(sender, reason, count):
            return f"dropped {count} message(s) from {sender}: {reason.value}"


async def _serve(listen: Endpoint, config: ServerConfig, *, json_line: bool) -> int:
    server: AsyncRendezvousServer

    def on_event(event: ServerEvent) -> None:
        _emit(event_to_dict(event, server), event_to_text(event, server), json_line)

    server = AsyncRendezvousServer(listen, config, on_event)
    try:
        await server.start()
    except OSError as exc:
        print(f"natkit rendezvous: cannot listen on {listen}: {exc.strerror}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    received: list[str] = []
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum.name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    _emit(
        {
            "event": "listening",
            "listen": str(server.local_endpoint),
            "limits": {
                "max_sealed": config.max_sealed,
                "queue_bytes": config.queue_bytes,
                "rate": config.rate,
                "burst": config.burst,
                "max_clients": config.max_clients,
                "ping_interval_s": config.ping_interval,
                "idle_timeout_s": config.idle_timeout,
            },
        },
        f"listening on {server.local_endpoint}",
        json_line,
    )
    try:
        await stop.wait()
    finally:
        await server.close()
    counters = server.core.counters.as_dict()
    _emit(
        {"event": "stopped", "signal": received[0] if received else None, "counters": counters},
        f"stopped: relayed {counters['relayed']} message(s)",
        json_line,
    )
    return 0
