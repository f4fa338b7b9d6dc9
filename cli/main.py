"""``natkit`` entry point: one subcommand per module, imported lazily so that
``natkit classify`` does not pay for the lab or port-mapping imports."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from natkit import __version__

#: Exit status for a command line that cannot be used (sysexits' EX_USAGE);
#: distinct from 2, which ``classify`` reserves for "network undetermined".
EXIT_USAGE = 64

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "classify": ("natkit.cli.classify", "classify the NAT between this host and STUN servers"),
    "stun-server": ("natkit.cli.stun_server", "run an RFC 5780-capable STUN server"),
    "lab": ("natkit.cli.lab", "build, list and tear down the network-namespace lab"),
    "birthday": ("natkit.cli.birthday", "birthday-paradox hole punching through hard (APDM) NATs"),
    "portmap": (
        "natkit.cli.portmap",
        "map a port on the gateway (PCP, NAT-PMP, UPnP IGD) and hold it",
    ),
    "candidates": ("natkit.cli.candidates", "gather every address a peer might reach this host at"),
    "keygen": ("natkit.cli.keygen", "print a new private node key (like wg genkey)"),
    "pubkey": (
        "natkit.cli.pubkey",
        "print the public key of the private key on stdin (like wg pubkey)",
    ),
    "rendezvous": ("natkit.cli.rendezvous", "relay sealed signalling messages between nodes"),
    "connect": (
        "natkit.cli.connect",
        "find and keep the best direct path to peers, by public key",
    ),
    "explain": (
        "natkit.cli.explain",
        "predict how two classified networks connect, and why, without connecting",
    ),
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse that exits with EX_USAGE instead of 2 on a bad command line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The loaded command's parser by name (the top-level parser's).
        self.subcommands: dict[str, ArgumentParser] = {}

    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, naming the command (not the whole usage): what a script's
        # log or a user's terminal needs to fix the call.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(argv: Sequence[str]) -> ArgumentParser:
    parser = ArgumentParser(prog="natkit", description="NAT traversal and ICE toolkit")
    parser.add_argument("--version", action="version", version=f"natkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True
    # Import only the module of the command being run; the others get a
    # stub parser, enough for ``natkit --help`` to list them.
    wanted = next((a for a in argv if a in COMMANDS), None)
    for name, (module_name, help_text) in COMMANDS.items():
        if name != wanted:
            sub.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.register(command)
        parser.subcommands[name] = command
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        # Inside the try: a command's imports take a while (the lab's, the
        # connect node's), and Ctrl-C then is as quiet as during the run.
        parser = build_parser(args_list)
        args, unknown = parser.parse_known_args(args_list)
        if unknown:
            # Said by the command's own parser ("natkit connect: error: ..."),
            # not the top-level one.
            command = parser.subcommands.get(getattr(args, "command", None) or "", parser)
            command.error(f"unrecognized arguments: {' '.join(unknown)}")
        result: int = args.run(args)
    except BrokenPipeError:
        # The reader (``| head``) went away; that is not our failure.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130
    return result
