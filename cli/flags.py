"""Flags and flag checks more than one command shares; each check raises
:class:`~natkit.errors.LocalProtocolError` naming the flag, which the
commands print as one line and exit 64 (EX_USAGE)."""

from __future__ import annotations

import argparse
import ssl

from natkit.aio.stun_stream import tls_context
from natkit.endpoint import Endpoint
from natkit.errors import InvalidEndpoint, LocalProtocolError
from natkit.gather.host import HostPolicy
from natkit.portmap.wire import SERVER_PORT

__all__ = ["add_host_flags", "gateway_address", "host_policy", "tls_ca_context"]


def add_host_flags(parser: argparse.ArgumentParser, *, link_local: bool = False) -> None:
    """Which addresses beyond the reachable ones become host candidates."""
    parser.add_argument(
        "--include-loopback", action="store_true", help="offer loopback addresses too"
    )
    parser.add_argument(
        "--include-tunnels",
        action="store_true",
        help="offer the addresses of tunnel interfaces (WireGuard, tun) too",
    )
    if link_local:
        parser.add_argument(
            "--include-link-local", action="store_true", help="offer link-local addresses too"
        )


def host_policy(args: argparse.Namespace) -> HostPolicy:
    """The :class:`HostPolicy` the flags of :func:`add_host_flags` ask for."""
    return HostPolicy(
        include_loopback=args.include_loopback,
        include_link_local=getattr(args, "include_link_local", False),
        include_tunnels=args.include_tunnels,
    )


def gateway_address(text: str) -> str:
    """``--gateway IP`` (or ``IP:PORT``) as an argparse ``type``: an address,
    or argparse's usage error naming the flag (exit 64), rather than a
    port mapping silently skipped for a gateway that cannot be."""
    try:
        Endpoint.parse(text, SERVER_PORT)
    except InvalidEndpoint:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None
    return text


def tls_ca_context(cafile: str, *, verify: bool = True) -> ssl.SSLContext:
    """``--tls-ca FILE``, loaded once while the flags are checked: a file that
    cannot be read or holds no certificate is refused before anything starts."""
    try:
        return tls_context(cafile, verify=verify)
    except LocalProtocolError as exc:
        raise LocalProtocolError(f"--tls-ca {exc}") from None
