"""``natkit classify``: what NAT is between this host and a STUN server?

Exit status: 0 when the run worked (and every ``--expect`` held), 1 when an
expectation did not hold, 2 when the network could not be determined (no
server answered over UDP or TCP, or an expected value came out unknown),
64 for a bad command line.

``--every S`` repeats the run on a fixed cadence (``--count N`` runs, or
until Ctrl-C), prints every report, and says on stderr when a verdict
changed from one run to the next: a NAT whose behaviour wavers (a router
under load, a carrier NAT changing pools) shows itself that way. The exit
status is the worst of the runs (2 over 1 over 0).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import resource
import sys
import time
from typing import Any

from natkit.aio.classify import classify
from natkit.cli.output import add_format_flags, print_report
from natkit.errors import NatkitError
from natkit.probe.classifier import ClassifierConfig
from natkit.probe.expect import Expectation, check_expectations, parse_expectations
from natkit.probe.hops import Hop, HopReply
from natkit.probe.lifetime import LifetimeConfig
from natkit.probe.report import ClassificationReport, RunStatus, Verdict, report_to_dict

SCALAR_KEYS = (
    "status",
    "udp_blocked",
    "behind_nat",
    "mapping",
    "filtering",
    "hairpin",
    "port_allocation",
    "port_allocation_delta",
    "mapped_address",
    "local_address",
    "nat_type",
    "alg_detected",
    "binding_lifetime",
    "cgnat",
    "double_nat",
)

#: Keys whose values are new on every run by design (fresh sockets, fresh
#: ports; a lifetime measured to the second): ``--every`` does not call them
#: changes. The rest of :data:`SCALAR_KEYS` are the verdicts it compares.
PER_RUN_KEYS = frozenset(
    {"mapped_address", "local_address", "port_allocation_delta", "binding_lifetime"}
)
VERDICT_KEYS = tuple(key for key in SCALAR_KEYS if key not in PER_RUN_KEYS)

EXIT_OK, EXIT_EXPECTATION, EXIT_UNDETERMINED, EXIT_USAGE = 0, 1, 2, 64
#: Shortest ``--every``: each run sends a few dozen probes to every server,
#: and a run that outlasts the period is followed at once, so a period near
#: zero would send them back to back (a flood of someone's STUN server).
MIN_EVERY = 1.0
#: Most ``--allocation-sockets``: each is one more probe to the server in a
#: burst, and beyond a few dozen the pattern is no clearer.
MAX_ALLOCATION_SOCKETS = 256
#: Descriptors left for everything else (stdio, DNS, the TCP check, the loop).
RESERVED_FILES = 32


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-s",
        "--server",
        action="append",
        default=[],
        metavar="[stun:]HOST[:PORT]",
        help="STUN server (repeatable; the first RFC 5780 one runs the behaviour tests)",
    )
    parser.add_argument(
        "--lab",
        nargs="?",
        const="eim-apdf",
        metavar="SCENARIO",
        help="build the built-in namespace lab (default scenario eim-apdf; needs root), "
        "classify inside it, tear it down",
    )
    add_format_flags(parser)
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="give up after this many seconds (default 5)"
    )
    parser.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="KEY=VALUE,...",
        help="exit 1 unless the report has these values (e.g. mapping=EIM,filtering=APDF)",
    )
    parser.add_argument(
        "--local-address",
        metavar="IP",
        help="source address to test from (an address of this host)",
    )
    parser.add_argument(
        "--dns",
        metavar="SERVER",
        help="DNS server (IP[:PORT]) to discover a NAT64 prefix with (default: the system"
        " resolver; only asked when this host has IPv6)",
    )
    parser.add_argument("--no-nat64", action="store_true", help="skip NAT64 discovery")
    parser.add_argument("--no-hairpin", action="store_true", help="skip the hairpinning test")
    parser.add_argument(
        "--no-path",
        action="store_true",
        help="skip the hop-limited probe that finds the routers (and a carrier-grade NAT)"
        " on the way to the first server",
    )
    parser.add_argument(
        "--lifetime",
        action="store_true",
        help="also measure the binding lifetime (RFC 5780 section 4.6; takes about as long "
        "as the lifetime, up to --lifetime-max)",
    )
    parser.add_argument(
        "--lifetime-max",
        type=float,
        default=180.0,
        metavar="SECONDS",
        help="longest binding lifetime to wait for (default 180)",
    )
    parser.add_argument(
        "--every",
        type=float,
        metavar="SECONDS",
        help=f"repeat the classification every SECONDS, at least {MIN_EVERY:g}"
        " (until Ctrl-C, or --count runs)",
    )
    parser.add_argument(
        "--count",
        type=int,
        metavar="N",
        help="with --every: stop after N runs",
    )
    parser.add_argument(
        "--allocation-sockets",
        type=int,
        default=4,
        metavar="N",
        help="extra sockets for the port allocation test (default 4, at most"
        f" {MAX_ALLOCATION_SOCKETS})",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        expectations = parse_expectations(args.expect, SCALAR_KEYS)
    except NatkitError as exc:
        print(f"natkit classify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    problem = _bad_numbers(args)
    if problem is not None:
        print(f"natkit classify: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.lab is not None:
        from natkit.cli.lab import classify_in_lab  # noqa: PLC0415 (the lab is root-only, load it lazily)

        return classify_in_lab(args.lab, _passthrough(args))
    if not args.server:
        print(
            "natkit classify: give --server HOST[:PORT] (or --lab to use the built-in lab)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.dns is not None:
        try:
            _check_dns_server(args.dns)
        except NatkitError as exc:
            print(f"natkit classify: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.every is None:
        return _run_once(args, expectations)[0]
    return _repeat(args, expectations)


def max_allocation_sockets() -> int:
    """The largest ``--allocation-sockets``: :data:`MAX_ALLOCATION_SOCKETS`, or
    less when the open-file limit (``ulimit -n``) would run out first."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_ALLOCATION_SOCKETS
    room = soft - RESERVED_FILES - ClassifierConfig(allocation_sockets=0).sockets_needed
    return max(0, min(MAX_ALLOCATION_SOCKETS, room))


def _bad_numbers(args: argparse.Namespace) -> str | None:
    # "not x > 0" rather than "x <= 0": NaN is refused too.
    if not args.timeout > 0:
        return "--timeout must be positive"
    if not args.lifetime_max > 0:
        return "--lifetime-max must be positive"
    most = max_allocation_sockets()
    if not 0 <= args.allocation_sockets <= most:
        return (
            f"--allocation-sockets is 0 to {most} (at most {MAX_ALLOCATION_SOCKETS},"
            " and the open-file limit, ulimit -n, must leave room for the others)"
        )
    if args.every is not None and not args.every >= MIN_EVERY:  # NaN too
        return f"--every must be at least {MIN_EVERY:g} s (a shorter period floods the servers)"
    if args.count is not None and (args.count < 1 or args.every is None):
        return "--count takes a positive number and goes with --every"
    return None


def _run_once(
    args: argparse.Namespace, expectations: list[Expectation]
) -> tuple[int, dict[str, Any] | None]:
    """One classification, printed; its exit status and JSON document."""
    try:
        report = asyncio.run(_classify(args))
    except NatkitError as exc:
        print(f"natkit classify: {exc}", file=sys.stderr)
        return EXIT_USAGE, None
    except OSError as exc:
        print(f"natkit classify: {exc}", file=sys.stderr)
        return EXIT_UNDETERMINED, None
    document = report_to_dict(report)
    print_report(args, document, lambda: render_human(report))
    outcome, results = check_expectations(document, expectations)
    for result in results:
        if result.outcome:
            print(
                f"expectation failed: {result.expectation.key}={result.expectation.value}"
                f" (got {result.actual})",
                file=sys.stderr,
            )
    if not report.determined:
        return EXIT_UNDETERMINED, document
    return int(outcome), document


def _repeat(args: argparse.Namespace, expectations: list[Expectation]) -> int:
    """``--every``: runs on a fixed cadence; the worst exit status of them.

    A run that takes longer than the period is followed at once by the next.
    Ctrl-C ends the series (130 when no run finished).
    """
    worst: int | None = None
    previous: dict[str, Any] | None = None
    start = time.monotonic()
    run_number = 0
    try:
        while args.count is None or run_number < args.count:
            if run_number:
                time.sleep(max(0.0, start + run_number * args.every - time.monotonic()))
            run_number += 1
            if not (args.json or args.json_line):
                if run_number > 1:
                    print()
                print(f"run {run_number} at {time.strftime('%Y-%m-%d %H:%M:%S')}")
            status, document = _run_once(args, expectations)
            sys.stdout.flush()
            if status == EXIT_USAGE:
                return status
            worst = status if worst is None else max(worst, status)
            if document is not None:
                if previous is not None:
                    changes = verdict_changes(previous, document)
                    if changes:
                        print(f"run {run_number}: changed: {changes}", file=sys.stderr)
                previous = document
    except KeyboardInterrupt:
        return 130 if worst is None else worst
    return EXIT_OK if worst is None else worst


def verdict_changes(before: dict[str, Any], after: dict[str, Any]) -> str:
    """``mapping EIM -> APDM, hairpin false -> true``; empty when nothing changed."""
    return ", ".join(
        f"{key} {_word(before.get(key))} -> {_word(after.get(key))}"
        for key in VERDICT_KEYS
        if before.get(key) != after.get(key)
    )


def _word(value: object) -> str:
    """A value as ``--expect`` spells it (``true``, ``null``, ``EIM``)."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


async def _classify(args: argparse.Namespace) -> ClassificationReport:
    """The library's :func:`natkit.aio.classify.classify` with the flags' settings."""
    config = ClassifierConfig(
        allocation_sockets=args.allocation_sockets,
        test_hairpin=not args.no_hairpin,
        timeout=args.timeout,
    )
    if args.no_path:
        config = dataclasses.replace(config, hop_limit=0)
    lifetime = LifetimeConfig(max_lifetime=args.lifetime_max) if args.lifetime else None
    return await classify(
        args.server,
        config=config,
        local_address=args.local_address,
        nat64=not args.no_nat64,
        dns_server=args.dns,
        lifetime=lifetime,
    )


def _check_dns_server(text: str) -> None:
    # dnspython is slow to import (~0.1 s): only runs that need DNS load it.
    from natkit.aio.dns import parse_dns_server  # noqa: PLC0415

    parse_dns_server(text)


def _passthrough(args: argparse.Namespace) -> list[str]:
    """The classify flags to repeat inside the lab's client namespace."""
    argv: list[str] = []
    if args.json:
        argv.append("--json")
    if args.json_line:
        argv.append("--json-line")
    argv += ["--timeout", str(args.timeout), "--allocation-sockets", str(args.allocation_sockets)]
    if args.no_hairpin:
        argv.append("--no-hairpin")
    if args.no_path:
        argv.append("--no-path")
    if args.lifetime:
        argv += ["--lifetime", "--lifetime-max", str(args.lifetime_max)]
    for expect in args.expect:
        argv += ["--expect", expect]
    if args.dns is not None:
        argv += ["--dns", args.dns]
    if args.no_nat64:
        argv.append("--no-nat64")
    if args.every is not None:
        argv += ["--every", str(args.every)]
    if args.count is not None:
        argv += ["--count", str(args.count)]
    return argv


def _verdict(value: bool | None) -> str:
    return {True: "yes", False: "no", None: "unknown"}[value]


def _yes_no(value: bool | None) -> str:
    return {True: "yes", False: "no", None: "not tested"}[value]


def _path(hops: tuple[Hop, ...] | None) -> str:
    """``192.168.1.1 > 100.64.0.1 > server``: the routers by TTL (``*``: no answer)."""
    if hops is None:
        return "not probed"
    return " > ".join(_hop(hop) for hop in hops) or "none"


def _hop(hop: Hop) -> str:
    if hop.reply is HopReply.DESTINATION:
        return "server"
    if hop.reply is HopReply.NONE:
        return "*"
    if hop.reply is HopReply.UNREACHABLE:
        return f"{hop.address} (unreachable)"
    return str(hop.address)


def render_human(report: ClassificationReport) -> str:
    """The readable table."""
    reasons = report.reasons
    rows: list[tuple[str, str, str]] = []
    servers = ", ".join(
        f"{s.address}"
        + (f" (RFC 5780, other {s.other_address})" if s.rfc5780 else "")
        + ("" if s.answered else " (no answer)")
        for s in report.servers
    )
    udp = {
        RunStatus.OK: "ok",
        RunStatus.UDP_BLOCKED: "BLOCKED",
        RunStatus.UNREACHABLE: "no answer (UDP nor TCP)",
    }[report.status]
    if report.rtt is not None:
        udp += f", rtt {report.rtt * 1000:.1f} ms"
    if report.loss_estimate is not None:
        udp += f", loss ~{report.loss_estimate * 100:.0f}%"
    mapped = ""
    if report.local_address is not None and report.mapped_address is not None:
        mapped = f"{report.local_address} -> {report.mapped_address}"
    rows.append(("NAT type", report.nat_type, ""))
    rows.append(("UDP", udp, reasons.get(Verdict.UDP_BLOCKED, "")))
    rows.append(("Behind NAT", _yes_no(report.behind_nat), mapped))
    rows.append(("Mapping", report.mapping.value, reasons.get(Verdict.MAPPING, "")))
    rows.append(("Filtering", report.filtering.value, reasons.get(Verdict.FILTERING, "")))
    rows.append(("Hairpinning", _yes_no(report.hairpin), reasons.get(Verdict.HAIRPIN, "")))
    allocation = report.port_allocation.value
    if report.port_allocation_delta is not None:
        allocation += f" (+{report.port_allocation_delta})"
    rows.append(("Port allocation", allocation, reasons.get(Verdict.PORT_ALLOCATION, "")))
    if report.alg_detected:
        rows.append(("ALG", "detected", "MAPPED-ADDRESS differs from XOR-MAPPED-ADDRESS"))
    if Verdict.BINDING_LIFETIME in reasons:
        lifetime = "unknown"
        if report.binding_lifetime is not None:
            lifetime = f">= {report.binding_lifetime:g} s"
            if report.binding_lifetime_expired_after is not None:
                lifetime += f", < {report.binding_lifetime_expired_after:g} s"
        rows.append(("Binding lifetime", lifetime, reasons[Verdict.BINDING_LIFETIME]))
    rows.append(("CGNAT", _verdict(report.cgnat), reasons.get(Verdict.CGNAT, "")))
    rows.append(("Double NAT", _verdict(report.double_nat), reasons.get(Verdict.DOUBLE_NAT, "")))
    rows.append(("Path", _path(report.path), ""))
    if report.nat64 is not None:
        prefixes = ", ".join(str(p) for p in report.nat64.prefixes)
        rows.append(("NAT64", prefixes or report.nat64.status.value, report.nat64.reason))
    rows.append(("Took", f"{report.duration * 1000:.0f} ms", ""))
    width = max(len(label) for label, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    lines = [f"natkit classify: {servers}"]
    for label, value, reason in rows:
        line = f"  {label:<{width}}  {value:<{value_width}}"
        lines.append(f"{line}  {reason}".rstrip() if reason else line.rstrip())
    return "\n".join(lines)
