"""``natkit keygen``: a new node key, as ``wg genkey`` prints one.

``natkit keygen > node.key`` writes one line of base64 (a private X25519
key). When standard output is a regular file that others could read (the
shell created it with the umask, usually 0644), the file is made 0600
before the key is written, and if that fails nothing is written. ``-o
FILE`` creates FILE with mode 0600 and never overwrites one.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys

from natkit.identity import PrivateKey
from natkit.identity.keyfile import KeyFileError, save_private_key


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE (mode 0600, never overwritten)"
    )
    parser.set_defaults(run=run)


def _make_stdout_private() -> str | None:
    """Make a regular-file stdout mode 0600; the error text if it cannot be."""
    try:
        info = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):
        return None
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISREG(info.st_mode) or not mode & 0o077:
        return None
    try:
        os.fchmod(sys.stdout.fileno(), mode & 0o700)
    except OSError as exc:
        return f"cannot make the output file private (mode {mode:04o}): {exc.strerror}"
    return None


def run(args: argparse.Namespace) -> int:
    key = PrivateKey.generate()
    if args.output:
        try:
            save_private_key(args.output, key)
        except KeyFileError as exc:
            print(f"natkit keygen: {exc}", file=sys.stderr)
            return 1
        return 0
    problem = _make_stdout_private()
    if problem is not None:
        print(f"natkit keygen: {problem}; no key written", file=sys.stderr)
        return 1
    try:
        print(key.to_base64(), flush=True)
    except BrokenPipeError:
        raise  # the reader went away (| head): main() says nothing, as for every command
    except OSError as exc:  # a full disk (> /dev/full), a closed descriptor
        print(f"natkit keygen: cannot write the key: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
