"""``natkit portmap``: ask the gateway to forward a port to this host.

    natkit portmap [--protocol auto|upnp|pmp|pcp] [--port N] [--hold] [--lifetime S]
                   [--gateway IP] [--json] [--once] [--release] [--journal PATH]
                   [--stun HOST:PORT]

Shows what each protocol answered and the mapping obtained, then keeps and
renews the mapping until Ctrl-C/SIGTERM (``--once``: release at once) and
releases it on the way out. ``--port N`` maps port N without binding it, so
the service that owns N (WireGuard, a game server) gets the traffic;
``--hold`` binds it too, and without ``--port`` natkit holds a free port.
``--release`` only deletes the mappings that killed runs left in the lease
journal. Exit status: 0 mapped (or
released), 1 no mapping, 64 bad command line, 130/143 after SIGINT/SIGTERM
once the mapping was released.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import socket
import sys
from typing import Any

from natkit.aio.portmap import LeaseJournal, PortMapper, release_orphans
from natkit.endpoint import Endpoint
from natkit.errors import NatkitError
from natkit.portmap.events import (
    GatewayRestarted,
    MappingGranted,
    MappingLost,
    MappingRenewed,
    PortmapEvent,
)
from natkit.portmap.mapper import PortMapperConfig
from natkit.portmap.mapping import LifetimePolicy, Mapping, MappingProtocol
from natkit.portmap.report import PortMapResult, ProbeStatus, ReleaseOutcome

EXIT_OK, EXIT_NO_MAPPING, EXIT_USAGE = 0, 1, 64
SCHEMA_VERSION = 1

PROTOCOL_CHOICES: dict[str, tuple[MappingProtocol, ...]] = {
    "auto": (MappingProtocol.PCP, MappingProtocol.NAT_PMP, MappingProtocol.UPNP_IGD),
    "pcp": (MappingProtocol.PCP,),
    "pmp": (MappingProtocol.NAT_PMP,),
    "upnp": (MappingProtocol.UPNP_IGD,),
}


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--protocol", choices=list(PROTOCOL_CHOICES), default="auto",
        help="which protocol to use (default auto: PCP, then NAT-PMP, then UPnP)",
    )  # fmt: skip
    parser.add_argument(
        "--port", type=int, default=0, metavar="N",
        help="internal UDP port to map, not bound: whatever listens there gets the traffic"
        " (default: a free port, held open while mapped)",
    )  # fmt: skip
    parser.add_argument(
        "--hold", action="store_true",
        help="also bind the port and hold it open while mapped (fails if it is in use)",
    )  # fmt: skip
    parser.add_argument(
        "--lifetime", type=int, default=7200, metavar="S",
        help="lease to ask for, seconds (default 7200; renewed at half)",
    )  # fmt: skip
    parser.add_argument(
        "--gateway",
        metavar="IP",
        help="the only gateway to ask, for PCP, NAT-PMP and UPnP (default: the default route's)",
    )
    parser.add_argument("--local-address", metavar="IP", help="this host's address to map to")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--once", action="store_true", help="print the mapping, then release it")
    parser.add_argument(
        "--release", action="store_true",
        help="only release mappings killed runs left in the lease journal, then exit",
    )  # fmt: skip
    parser.add_argument(
        "--journal", metavar="PATH",
        help="lease journal file (default $NATKIT_PORTMAP_JOURNAL, /var/lib/natkit/portmap.json "
        "as root, else $XDG_STATE_HOME/natkit/portmap.json)",
    )  # fmt: skip
    parser.add_argument(
        "--stun", metavar="HOST:PORT",
        help="STUN server to compare the gateway's external address with (double-NAT hint)",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=float, default=2.0, help="seconds each protocol gets to answer"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535 or args.lifetime <= 0 or args.timeout <= 0:
        print("natkit portmap: --port 0-65535, --lifetime and --timeout > 0", file=sys.stderr)
        return EXIT_USAGE
    try:
        stun = Endpoint.parse(args.stun, 3478) if args.stun else None
    except ValueError as exc:
        print(f"natkit portmap: --stun: {exc}", file=sys.stderr)
        return EXIT_USAGE
    journal = LeaseJournal(args.journal)
    try:
        if args.release:
            return asyncio.run(_release(journal, args.json))
        return asyncio.run(_map(args, journal, stun))
    except NatkitError as exc:
        print(f"natkit portmap: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        # A socket or the journal file: say which, never a traceback.
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"natkit portmap: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_NO_MAPPING


async def _release(journal: LeaseJournal, as_json: bool) -> int:
    outcomes = await release_orphans(journal)
    corrupt = journal.corrupt
    if as_json:
        document: dict[str, Any] = {
            "released": [_outcome(o) for o in outcomes],
            "corrupt_journal": None,
        }
        if corrupt is not None:
            document["corrupt_journal"] = {
                "path": str(corrupt.path),
                "problem": corrupt.problem,
                "kept_at": None if corrupt.kept_at is None else str(corrupt.kept_at),
            }
        print(json.dumps(document, indent=2))
    else:
        if not outcomes and corrupt is None:
            print(f"natkit portmap: no leases of killed runs in {journal.path}")
        for outcome in outcomes:
            print(f"  {_outcome_line(outcome)}")
    if corrupt is not None:
        # Leases it held may still be at a gateway: not "nothing to release".
        print(f"natkit portmap: {corrupt}", file=sys.stderr)
        return EXIT_NO_MAPPING
    # A stale entry (another network) was dropped: nothing is left to do for it.
    return EXIT_OK if all(o.released or o.stale for o in outcomes) else EXIT_NO_MAPPING


def _hold_port(args: argparse.Namespace) -> socket.socket | None:
    """Bind the port (``--hold``, or a free one without ``--port``); ``None``
    with a message when it cannot be."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        holder.bind((args.local_address or "0.0.0.0", args.port))
    except OSError as exc:
        holder.close()
        if exc.errno == errno.EADDRINUSE:
            print(f"natkit portmap: UDP port {args.port} is in use by another program;"
                  " without --hold natkit maps it without binding it", file=sys.stderr)  # fmt: skip
        else:
            print(f"natkit portmap: cannot hold UDP port {args.port}: {exc.strerror or exc}",
                  file=sys.stderr)  # fmt: skip
        return None
    return holder


async def _map(args: argparse.Namespace, journal: LeaseJournal, stun: Endpoint | None) -> int:
    # Mapping needs no socket: the gateway forwards to whatever listens on
    # the port. Holding it is for when nothing else does (--hold, no --port).
    holder = None
    if args.hold or args.port == 0:
        holder = _hold_port(args)
        if holder is None:
            return EXIT_NO_MAPPING
    port = args.port if holder is None else holder.getsockname()[1]
    try:
        config = PortMapperConfig(
            protocols=PROTOCOL_CHOICES[args.protocol],
            lifetime=LifetimePolicy(requested=args.lifetime),
            probe_timeout=args.timeout,
        )
        mapper = PortMapper(
            port,
            gateway=args.gateway,
            local_address=args.local_address,
            config=config,
            journal=journal,
            stun_server=stun,
        )
        return await _hold(mapper, args)
    finally:
        if holder is not None:
            holder.close()


async def _hold(mapper: PortMapper, args: argparse.Namespace) -> int:
    try:
        with mapper.release_on_signals():
            result = await mapper.start(wait_for_all=True)
            if mapper.journal is not None and mapper.journal.corrupt is not None:
                print(f"natkit portmap: warning: {mapper.journal.corrupt}", file=sys.stderr)
            _print_result(result, args.json, args.gateway)
            if result.mapping is None:
                return EXIT_NO_MAPPING
            if args.once:
                return EXIT_OK
            while True:
                event = await mapper.next_event()
                _print_event(event, args.json)
    except asyncio.CancelledError:
        sig = mapper.received_signal
        if sig is None:
            raise
        return 128 + int(sig)
    finally:
        deleted = await asyncio.shield(mapper.close())
        if deleted is not None and not args.json:
            state = "released" if deleted.confirmed else "release not confirmed"
            print(f"natkit portmap: {state}", file=sys.stderr)


# --- rendering --------------------------------------------------------------------


def _mapping_dict(mapping: Mapping | None) -> dict[str, Any]:
    if mapping is None:
        return {
            "protocol": None, "internal_address": None, "internal_port": None,
            "external_address": None, "external_port": None, "lifetime": None,
            "gateway": None,
        }  # fmt: skip
    return {
        "protocol": mapping.protocol.value,
        "transport": mapping.transport.name.lower(),
        "internal_address": str(mapping.internal.address),
        "internal_port": mapping.internal.port,
        "external_address": str(mapping.external.address),
        "external_port": mapping.external.port,
        "lifetime": mapping.lifetime,
        "granted_lifetime": mapping.granted_lifetime,
        "renew_in": round(mapping.renew_at - mapping.granted_at, 3),
        "gateway": str(mapping.gateway),
    }


def _outcome(outcome: ReleaseOutcome) -> dict[str, Any]:
    entry = outcome.entry
    return {
        "protocol": entry.protocol.value,
        "internal": str(entry.internal),
        "external": None if entry.external is None else str(entry.external),
        "released": outcome.released,
        "detail": outcome.detail,
        "stale": outcome.stale,
    }


def _outcome_line(outcome: ReleaseOutcome) -> str:
    entry = outcome.entry
    external = entry.external or "?"
    state = "released" if outcome.released else "stale" if outcome.stale else "NOT released"
    return f"{entry.protocol.value} {external} -> {entry.internal}: {state} ({outcome.detail})"


def result_to_dict(result: PortMapResult) -> dict[str, Any]:
    """The JSON document (schema ``natkit.portmap`` v1)."""
    return {
        "schema": "natkit.portmap",
        "schema_version": SCHEMA_VERSION,
        **_mapping_dict(result.mapping),
        "mapped_after_ms": None
        if result.mapped_after is None
        else round(result.mapped_after * 1000, 1),
        "protocols": {
            r.protocol.value: {
                "status": r.status.value,
                "external_address": None if r.external_address is None else str(r.external_address),
                "answered_after_ms": None
                if r.answered_after is None
                else round(r.answered_after * 1000, 1),
                "result_code": r.result_code,
                "detail": r.detail,
            }
            for r in result.protocols
        },
        "hint": None if result.hint is None else str(result.hint),
        "stun_mapped_address": None if result.stun_mapped is None else str(result.stun_mapped),
        "released": [_outcome(o) for o in result.released],
    }


def _print_result(result: PortMapResult, as_json: bool, gateway: str | None = None) -> None:
    if as_json:
        print(json.dumps(result_to_dict(result), indent=2), flush=True)
        return
    lines = ["natkit portmap:"]
    for outcome in result.released:
        lines.append(f"  journal   {_outcome_line(outcome)}")
    for r in result.protocols:
        extra = f" {r.external_address}" if r.external_address is not None else ""
        after = f" after {r.answered_after * 1000:.1f} ms" if r.answered_after is not None else ""
        detail = f" ({r.detail})" if r.detail else ""
        lines.append(f"  {r.protocol.value:<9} {r.status.value}{extra}{after}{detail}")
    mapping = result.mapping
    silent = all(
        r.status in (ProbeStatus.NO_ANSWER, ProbeStatus.NOT_TRIED) for r in result.protocols
    )
    if mapping is None and gateway is not None and silent:
        # Named, it is the only one asked: say that it is the one silent.
        lines.append(f"  no mapping: gateway {gateway} did not answer")
    elif mapping is None:
        lines.append("  no mapping")
    else:
        lines.append(
            f"  mapped    {mapping.external} -> {mapping.internal} via {mapping.protocol.value},"
            f" lifetime {mapping.lifetime} s"
        )
    if result.hint is not None:
        lines.append(f"  warning   {result.hint}")
    print("\n".join(lines), flush=True)


def _print_event(event: PortmapEvent, as_json: bool) -> None:
    if isinstance(event, MappingRenewed):
        text, kind = f"renewed {event.mapping.external}", "renewed"
    elif isinstance(event, MappingGranted):
        text, kind = f"re-created {event.mapping.external}", "recreated"
    elif isinstance(event, MappingLost):
        text, kind = f"lost ({event.reason.value})", "lost"
    elif isinstance(event, GatewayRestarted):
        how = "announced" if event.announced else "seen in an answer"
        epochs = f"epoch {event.previous_epoch} -> {event.epoch}"
        text, kind = f"gateway restarted ({how}, {epochs})", "restart"
    else:
        text, kind = type(event).__name__, type(event).__name__
    if as_json:
        print(json.dumps({"event": kind, "detail": text}), flush=True)
    else:
        print(f"  {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m natkit.cli.portmap``: ``natkit portmap`` by another name."""
    from natkit.cli.main import main as natkit  # noqa: PLC0415 (it imports this module)

    return natkit(["portmap", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
