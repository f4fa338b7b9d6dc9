"""How a command prints its report: the readable table, ``--json`` or ``--json-line``.

Every format renders the same report object; the JSON document is the
command's versioned ``report_to_dict`` output, indented or on one line.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any


def utc_now() -> str:
    """The ``time`` of a JSON line: UTC, ISO 8601, milliseconds, ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def add_format_flags(parser: argparse.ArgumentParser) -> None:
    """``--json`` and ``--json-line`` (mutually exclusive; neither: human)."""
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the versioned JSON report")
    output.add_argument(
        "--json-line", action="store_true", help="print the JSON report on one line"
    )


def print_report(
    args: argparse.Namespace, document: dict[str, Any], human: Callable[[], str]
) -> None:
    """Print ``document`` as the flags of :func:`add_format_flags` ask, else ``human()``."""
    if args.json:
        print(json.dumps(document, indent=2))
    elif args.json_line:
        print(json.dumps(document, separators=(",", ":")))
    else:
        print(human())
