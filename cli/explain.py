"""``natkit explain``: how two networks would connect, and why, without connecting.

    natkit explain A.json B.json [--relay URI ...] [--birthday]
                   [--port-range-a LO-HI] [--port-range-b LO-HI] [--json]

Each file is what ``natkit classify --json`` printed at one site, or a
traversal report (a ``report`` line of ``natkit connect --json-line``, or
its ``report`` object). The prediction is :func:`natkit.explain`'s: the
escalation ladder for the two reports and one sentence ("both sides APDM
with random ports, no port mapping on either gateway, ...; relayed over
UDP"). Reports from ``classify`` know nothing of relays or birthday
probing: ``--relay`` gives both sides a relay (when their report names
none), ``--birthday`` has both take part in birthday probing with
``natkit connect``'s defaults, ``--port-range-a``/``-b`` say which ports
each NAT allocates from.

Exit status: 0 a path is predicted (direct, mapped, birthday or relay), 1
none, 64 a file or flag that cannot be used. ``--json``: schema
``natkit.explain`` v1 (:meth:`~natkit.ice.explain.Explanation.to_dict`
plus ``predicted``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from natkit.errors import NatkitError
from natkit.ice.report import RelayInUse, TraversalReport

SCHEMA = "natkit.explain"
SCHEMA_VERSION = 1
EXIT_PATH, EXIT_NO_PATH, EXIT_USAGE = 0, 1, 64
#: Largest report file read (a classify document with its observations).
MAX_FILE = 1 << 20


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "report_a", metavar="A.json", help="site A: natkit classify --json, or a report"
    )
    parser.add_argument("report_b", metavar="B.json", help="site B: the same")
    parser.add_argument(
        "--relay",
        action="append",
        default=[],
        metavar="URI",
        help="a TURN server both sides have (turn:/turns: URI), when a report names none",
    )
    parser.add_argument(
        "--birthday",
        action="store_true",
        help="both sides take part in birthday probing (natkit connect's defaults)",
    )
    parser.add_argument("--port-range-a", metavar="LO-HI", help="the ports site A's NAT allocates")
    parser.add_argument("--port-range-b", metavar="LO-HI", help="the ports site B's NAT allocates")
    parser.add_argument("--json", action="store_true", help="print the versioned JSON document")
    parser.set_defaults(run=run)


def load(path: str) -> TraversalReport:
    """A report file (classify JSON or a traversal report); raises ``ValueError``."""
    from natkit.ice.report_json import report_from_document  # noqa: PLC0415

    try:
        with Path(path).open("rb") as file:
            raw = file.read(MAX_FILE + 1)
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE:
        raise ValueError(f"{path}: larger than {MAX_FILE} bytes")
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    try:
        return report_from_document(document)
    except NatkitError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _with_options(
    report: TraversalReport, args: argparse.Namespace, port_range: str | None
) -> TraversalReport:
    from natkit.aio.connect_report import DEFAULT_BIRTHDAY  # noqa: PLC0415
    from natkit.birthday.ports import PortRange  # noqa: PLC0415
    from natkit.stun.uri import Transport, parse_turn_server  # noqa: PLC0415
    from natkit.turn.config import TurnTransport  # noqa: PLC0415

    values: dict[str, Any] = {}
    if args.relay and not report.relays:
        relays = []
        for text in args.relay:
            parsed = parse_turn_server(text)
            transport = TurnTransport((parsed.transport or Transport.UDP).value)
            relays.append(RelayInUse(text, transport))
        values["relays"] = tuple(relays)
    if args.birthday and report.birthday is None:
        values["birthday"] = DEFAULT_BIRTHDAY
    if port_range is not None:
        values["port_range"] = PortRange.parse(port_range)
    return replace(report, **values) if values else report


def run(args: argparse.Namespace) -> int:
    from natkit.ice.explain import explain  # noqa: PLC0415

    try:
        report_a = _with_options(load(args.report_a), args, args.port_range_a)
        report_b = _with_options(load(args.report_b), args, args.port_range_b)
    except (NatkitError, ValueError) as exc:
        print(f"natkit explain: {exc}", file=sys.stderr)
        return EXIT_USAGE
    explanation = explain(report_a, report_b)
    predicted = explanation.ladder.predicted
    if args.json:
        document = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            **explanation.to_dict(),
            "predicted": None if predicted is None else predicted.value,
        }
        print(json.dumps(document, indent=2))
    else:
        outcome, sentence = explanation.outcome.value, explanation.sentence
        print(sentence if sentence.startswith(f"{outcome}:") else f"{outcome}: {sentence}")
        for decision in explanation.ladder.decisions:
            print(
                f"  {decision.step.value:<13} {decision.action.value:<5}"
                f" {decision.expect.value:<8} {decision.reason}"
            )
    return EXIT_NO_PATH if explanation.outcome.value == "none" else EXIT_PATH


def main(argv: list[str] | None = None) -> int:
    """``python -m natkit.cli.explain``: ``natkit explain`` by another name."""
    from natkit.cli.main import main as natkit  # noqa: PLC0415

    return natkit(["explain", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
