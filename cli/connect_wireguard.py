"""``natkit connect``'s WireGuard and DNS-directory flags (issue 13).

    natkit connect --wireguard IFACE (--rendezvous HOST:PORT | --directory dns:ZONE@SERVER[:PORT]
                   [--tsig-key FILE] [--read-server IP[:PORT] ...] [--poll-interval S])
                   [--peer PUBKEY ...] [--stun HOST[:PORT] ...] ...

* ``--wireguard IFACE``: connect the interface's peers (all of them, or the
  ``--peer`` keys, which must be its peers) with WireGuard's own key pair
  and listen port (:mod:`natkit.aio.wireguard_node`); ``--key``, ``--port``
  and ``--local-address`` do not apply.
* ``--directory dns:ZONE@SERVER[:PORT]`` with ``--tsig-key FILE``: signal
  through DNS-SD records in a zone (:mod:`natkit.aio.dns_directory`)
  instead of a rendezvous; ``--read-server`` reads from secondaries. A
  refused update (a wrong key) ends the command with status 2 and the
  server's reason; nothing is published.

The JSON lines these add (schema ``natkit.connect`` v1): ``endpoint_set``,
``endpoint_verified``, ``endpoint_reverted``, ``wireguard_peers``,
``wireguard_failed``, and ``started`` gains ``wireguard`` and ``listen_port``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from natkit.endpoint import Endpoint
from natkit.identity import PrivateKey
from natkit.signal.channel import SignalChannel
from natkit.wireguard.commands import check_interface
from natkit.wireguard.events import (
    EndpointReverted,
    EndpointSet,
    EndpointVerified,
    WireGuardFailed,
    WireGuardPeersChanged,
)

#: Default ``--poll-interval``: how often each peer's records are read.
POLL_INTERVAL = 2.0


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wireguard",
        metavar="IFACE",
        help="set the endpoints of this WireGuard interface's peers, with its key and port",
    )
    parser.add_argument(
        "--directory",
        metavar="dns:ZONE@SERVER[:PORT]",
        help="signal through DNS-SD records in ZONE (RFC 2136 updates to SERVER), not a rendezvous",
    )
    parser.add_argument(
        "--tsig-key", metavar="FILE", help="the TSIG key signing the directory's updates"
    )
    parser.add_argument(
        "--read-server",
        action="append",
        default=[],
        metavar="IP[:PORT]",
        help="read the directory from this server (a secondary; repeatable, tried in order)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=POLL_INTERVAL,
        metavar="S",
        help=f"read each peer's directory records every S s (default {POLL_INTERVAL:g}, min 1)",
    )


@dataclass(frozen=True, slots=True)
class SignallingSetup:
    """Where the node signals, checked: a rendezvous or a DNS directory."""

    rendezvous: tuple[str, int] | None
    directory: str | None
    tsig_key: str | None
    read_servers: tuple[str, ...]
    poll_interval: float

    @property
    def label(self) -> str:
        """How messages name the backend."""
        if self.rendezvous is not None:
            return f"rendezvous {self.rendezvous[0]}:{self.rendezvous[1]}"
        return f"directory {self.directory}"

    def channel_factory(self) -> Callable[[PrivateKey], SignalChannel]:
        """Makes the channel for the node's key (checked already: no I/O)."""
        from natkit.aio.dns_directory import DirectoryConfig, open_directory  # noqa: PLC0415
        from natkit.aio.rendezvous_client import RendezvousChannel  # noqa: PLC0415
        from natkit.directory.poll import PollConfig  # noqa: PLC0415
        from natkit.directory.window import WindowConfig  # noqa: PLC0415

        rendezvous = self.rendezvous
        if rendezvous is not None:
            host, port = rendezvous
            return lambda key: RendezvousChannel(host, port, key)
        directory = self.directory
        assert directory is not None
        config = DirectoryConfig(
            poll=PollConfig(interval=self.poll_interval),
            # A message stays readable for two polls and a secondary's lag.
            window=WindowConfig(retain=max(2 * self.poll_interval, 3.0)),
        )
        return lambda key: open_directory(
            directory,
            key.public_key,
            tsig_key_file=self.tsig_key,
            read_servers=self.read_servers,
            config=config,
        )


def signalling_setup(
    args: argparse.Namespace, rendezvous: tuple[str, int] | None
) -> SignallingSetup:
    """Check ``--rendezvous`` / ``--directory`` and their companions;
    ``ValueError`` (or a natkit error) saying what is wrong."""
    if (rendezvous is None) == (args.directory is None):
        raise ValueError("give exactly one of --rendezvous and --directory")
    if args.directory is None and (args.tsig_key or args.read_server):
        raise ValueError("--tsig-key and --read-server go with --directory")
    if not args.poll_interval >= 1:
        raise ValueError("--poll-interval must be at least 1 s")
    setup = SignallingSetup(
        rendezvous,
        args.directory,
        args.tsig_key,
        tuple(args.read_server),
        args.poll_interval,
    )
    if setup.directory is not None:
        # Parse the spec and read the key file now: bad ones exit 64 before anything is sent.
        from natkit.aio.dns_directory import read_tsig_key_file  # noqa: PLC0415
        from natkit.directory.spec import parse_directory, parse_read_server  # noqa: PLC0415

        parse_directory(setup.directory)
        for server in setup.read_servers:
            parse_read_server(server)
        if setup.tsig_key is not None:
            read_tsig_key_file(setup.tsig_key)
    return setup


def wireguard_interface(args: argparse.Namespace) -> str | None:
    """``--wireguard``'s interface, checked against the flags it replaces."""
    if args.wireguard is None:
        if args.key is None:
            raise ValueError("--key is required (or --wireguard IFACE: its key)")
        if not args.peer:
            raise ValueError("--peer is required (or --wireguard IFACE: its peers)")
        return None
    if args.key is not None:
        raise ValueError("--key does not go with --wireguard (the node uses the interface's key)")
    if getattr(args, "traffic", None) is not None:
        raise ValueError("--traffic does not go with --wireguard (WireGuard carries the traffic)")
    if args.port or args.local_address:
        raise ValueError(
            "--port and --local-address do not go with --wireguard (WireGuard's port is used)"
        )
    return check_interface(args.wireguard)


# -- output ------------------------------------------------------------------------------


def _text(endpoint: Endpoint | None) -> str | None:
    return None if endpoint is None else str(endpoint)


def event_to_dict(event: object) -> dict[str, Any] | None:
    """The JSON object of one WireGuard event; ``None`` for other events."""
    match event:
        case EndpointSet():
            return {
                "event": "endpoint_set",
                "peer": str(event.peer),
                "endpoint": str(event.endpoint),
                "previous": _text(event.previous),
                "kind": event.kind.value,
                "remote": str(event.remote),
                "bridged": event.bridged,
            }
        case EndpointVerified():
            return {
                "event": "endpoint_verified",
                "peer": str(event.peer),
                "endpoint": str(event.endpoint),
                "evidence": event.evidence.value,
                "after_s": round(event.after, 3),
            }
        case EndpointReverted():
            return {
                "event": "endpoint_reverted",
                "peer": str(event.peer),
                "endpoint": str(event.endpoint),
                "restored": _text(event.restored),
                "waited_s": round(event.waited, 3),
                "reason": event.reason,
            }
        case WireGuardPeersChanged():
            return {
                "event": "wireguard_peers",
                "added": [str(p) for p in event.added],
                "removed": [str(p) for p in event.removed],
            }
        case WireGuardFailed():
            return {
                "event": "wireguard_failed",
                "peer": None if event.peer is None else str(event.peer),
                "detail": event.detail,
            }
        case _:
            return None


def event_to_text(event: object) -> tuple[str, bool] | None:
    """One readable line (and whether it goes to stdout) for a WireGuard event."""
    match event:
        case EndpointSet():
            via = " (loopback bridge)" if event.bridged else ""
            return (
                f"wireguard endpoint of {event.peer}: {event.endpoint}{via}"
                f" ({event.kind.value} path to {event.remote})",
                True,
            )
        case EndpointVerified():
            return (
                f"wireguard works with {event.peer} over {event.endpoint}"
                f" ({event.evidence.value} after {event.after:.2f} s)",
                True,
            )
        case EndpointReverted():
            back = "restored " + str(event.restored) if event.restored else "nothing to restore"
            return (
                f"wireguard endpoint of {event.peer} reverted from {event.endpoint}:"
                f" {event.reason}; {back}",
                True,
            )
        case WireGuardPeersChanged():
            parts = [f"+{p}" for p in event.added] + [f"-{p}" for p in event.removed]
            return "wireguard peers: " + ", ".join(parts), False
        case WireGuardFailed():
            who = event.peer if event.peer is not None else "the interface"
            return f"wireguard: {who}: {event.detail}", False
        case _:
            return None
