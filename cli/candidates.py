"""``natkit candidates``: every address at which a peer might reach this host.

    natkit candidates [--server [stun:|stuns:]HOST[:PORT] ...] [--dns SERVER]
                      [--json | --json-line] [--port N] [--static IP:PORT ...]
                      [--no-nat64] [--no-tcp] [--no-portmap] [--gateway IP]

Host addresses, server-reflexive addresses from every ``--server`` (asked
in parallel from one socket per family), a port mapping (PCP, NAT-PMP or
UPnP IGD, released again on exit), the NAT64 path (RFC 7050 discovery
through the system resolver, or ``--dns``) and the static endpoints given.
An IPv4 server is reached through the discovered NAT64 prefix when IPv4 is
not routed here. Exit status: 0 the gathering ran (and a server answered,
if any was given); 2 servers were given and none answered over UDP, TCP or
TLS; 64 bad command line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from natkit.aio.candidates import GatherOptions, PortMapperProvider, gather_candidates
from natkit.aio.dns import parse_dns_server
from natkit.cli.flags import add_host_flags, gateway_address, host_policy, tls_ca_context
from natkit.cli.output import add_format_flags, print_report
from natkit.endpoint import Endpoint
from natkit.errors import NatkitError
from natkit.gather.candidates import (
    CandidateReport,
    CandidateTransport,
    PortMapStatus,
    report_to_dict,
)
from natkit.gather.reflexive import GathererConfig
from natkit.stun.uri import parse_server

EXIT_OK, EXIT_UNDETERMINED, EXIT_USAGE = 0, 2, 64


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-s",
        "--server",
        action="append",
        default=[],
        metavar="[stun:|stuns:]HOST[:PORT]",
        help="STUN server (repeatable; all are asked at once); stuns: asks over TLS only",
    )
    parser.add_argument(
        "--dns",
        metavar="SERVER",
        help="DNS server (IP[:PORT]) for NAT64 discovery and server names"
        " (default: the system resolver)",
    )
    add_format_flags(parser)
    parser.add_argument(
        "--port", type=int, default=0, metavar="N", help="local UDP port (default: any free one)"
    )
    parser.add_argument(
        "--static",
        action="append",
        default=[],
        metavar="IP:PORT",
        help="an endpoint known to reach this host (a manual port forward; repeatable)",
    )
    parser.add_argument("--no-nat64", action="store_true", help="skip NAT64 discovery")
    parser.add_argument("--no-tcp", action="store_true", help="skip STUN over TCP")
    parser.add_argument("--no-portmap", action="store_true", help="skip port mapping")
    parser.add_argument(
        "--gateway",
        type=gateway_address,
        metavar="IP",
        help="port-mapping gateway, the only one used (default: the default route's)",
    )
    parser.add_argument(
        "--portmap-timeout",
        type=float,
        default=2.0,
        metavar="S",
        help="how long a silent gateway is waited for (default 2)",
    )
    parser.add_argument("--tls-ca", metavar="FILE", help="CA certificates for stuns: servers")
    parser.add_argument(
        "--tls-no-verify", action="store_true", help="accept any certificate from stuns: servers"
    )
    add_host_flags(parser, link_local=True)
    parser.add_argument(
        "--timeout", type=float, default=3.0, metavar="S", help="give up after S seconds (3)"
    )
    parser.set_defaults(run=run)


def _options(args: argparse.Namespace) -> GatherOptions:
    """Flags to options; raises ``NatkitError``/``ValueError`` on bad values."""
    if args.timeout <= 0 or args.portmap_timeout <= 0 or not 0 <= args.port <= 0xFFFF:
        raise ValueError("--timeout and --portmap-timeout must be positive, --port 0-65535")
    for text in args.server:
        parse_server(text)
    if args.dns is not None:
        parse_dns_server(args.dns)
    return GatherOptions(
        port=args.port,
        host=host_policy(args),
        nat64=not args.no_nat64,
        dns_server=args.dns,
        tcp=not args.no_tcp,
        tls_ca=args.tls_ca,
        tls_verify=not args.tls_no_verify,
        # Loaded now, once: a file that holds no certificate is a usage error.
        tls=None
        if args.tls_ca is None
        else tls_ca_context(args.tls_ca, verify=not args.tls_no_verify),
        statics=tuple(Endpoint.parse(text) for text in args.static),
        gatherer=GathererConfig(timeout=args.timeout),
    )


def run(args: argparse.Namespace) -> int:
    try:
        options = _options(args)
    except (NatkitError, ValueError) as exc:
        print(f"natkit candidates: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = asyncio.run(_gather(args, options))
    except NatkitError as exc:
        print(f"natkit candidates: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"natkit candidates: {exc}", file=sys.stderr)
        return EXIT_UNDETERMINED
    print_report(args, report_to_dict(report), lambda: render_human(report))
    if args.server and not any(s.answered for s in report.servers):
        return EXIT_UNDETERMINED
    return EXIT_OK


async def _gather(args: argparse.Namespace, options: GatherOptions) -> CandidateReport:
    provider = None
    if not args.no_portmap:
        from natkit.aio.portmap import LeaseJournal  # noqa: PLC0415
        from natkit.portmap.mapper import PortMapperConfig  # noqa: PLC0415
        from natkit.portmap.upnp_calls import UpnpConfig  # noqa: PLC0415

        timeout = args.portmap_timeout
        provider = PortMapperProvider(
            gateway=args.gateway,
            config=PortMapperConfig(
                probe_timeout=timeout, upnp=UpnpConfig(discovery_timeout=timeout)
            ),
            journal=LeaseJournal(),  # the command keeps the machine's journal
        )
    try:
        return await gather_candidates(args.server, options, port_mapper=provider)
    finally:
        # A one-shot command holds nothing: ``natkit portmap`` keeps a mapping.
        if provider is not None:
            await asyncio.shield(provider.release())


def _ms(value: float | None) -> str:
    return "" if value is None else f"rtt {value * 1000:.1f} ms"


def _verdict(value: bool | None) -> str:
    return {True: "yes", False: "no", None: "unknown"}[value]


def render_human(report: CandidateReport) -> str:
    """The readable listing: candidates first, then what decided them."""
    lines = [
        f"natkit candidates: {len(report.candidates)} found in {report.duration * 1000:.0f} ms"
    ]
    rows: list[tuple[str, ...]] = []
    for c in report.candidates:
        source = ", ".join(c.sources or (c.source,))
        if c.prefix is not None:
            source += f" via {c.prefix}"
        rows.append((c.kind.value, c.transport.value, str(c.address), source, _ms(c.rtt)))
    if rows:
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
            lines.append(("  " + "  ".join([*cells, row[4]])).rstrip())
    nat64 = report.nat64
    found = ", ".join(str(p) for p in nat64.prefixes) or nat64.status.value
    lines.append(f"NAT64       {found}: {nat64.reason}")
    if report.clat.present:
        lines.append(f"CLAT        {report.clat.reason}")
    layering = report.layering
    lines.append(f"CGNAT       {_verdict(layering.cgnat)}: {layering.cgnat_reason}")
    lines.append(f"Double NAT  {_verdict(layering.double_nat)}: {layering.double_nat_reason}")
    udp = {True: "BLOCKED", False: "ok", None: "unknown"}[report.udp_blocked]
    lines.append(f"UDP         {udp}: {report.reasons.get('udp_blocked', '')}")
    mapping = report.port_mapping
    if mapping.status is not PortMapStatus.NOT_TESTED:
        lines.append(f"Port map    {mapping.status.value}: {mapping.detail}")
    if report.reasons.get("notes"):
        lines.append(f"Notes       {report.reasons['notes']}")
    for disagreement in report.disagreements:
        lines.append(f"Disagree    {disagreement.reason}")
    # UDP and TLS: a stuns: server is asked over TLS only, so its failure
    # (a refused certificate, say) is the only word on it.
    asked = (CandidateTransport.UDP, CandidateTransport.TLS)
    silent = [s for s in report.servers if not s.answered and s.transport in asked]
    for server in silent:
        lines.append(
            f"No answer   {server.server} ({server.destination}): {server.outcome.value}"
            + (f", {server.detail}" if server.detail else "")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m natkit.cli.candidates``: ``natkit candidates`` by another name."""
    from natkit.cli.main import main as natkit  # noqa: PLC0415 (it imports this module)

    return natkit(["candidates", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
