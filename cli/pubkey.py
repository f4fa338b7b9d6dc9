"""``natkit pubkey``: the public key of the private key on standard input,
as ``wg pubkey`` prints it (``natkit pubkey < node.key``)."""

from __future__ import annotations

import argparse
import sys

from natkit.identity.keyfile import MAX_KEY_FILE, KeyFileError, parse_private_key


def register(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if sys.stdin is None or sys.stdin.isatty():
        print("natkit pubkey: give the private key on standard input", file=sys.stderr)
        return 64
    data = sys.stdin.buffer.read(MAX_KEY_FILE + 1)
    try:
        key = parse_private_key(data, "standard input")
    except KeyFileError as exc:
        print(f"natkit pubkey: {exc}", file=sys.stderr)
        return 1
    print(key.public_key)
    return 0
