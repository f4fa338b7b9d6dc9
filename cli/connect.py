"""``natkit connect``: find, keep and report the best direct path to peers.

    natkit connect --rendezvous HOST:PORT --key FILE --peer PUBKEY [--peer PUBKEY ...]
                   [--stun HOST[:PORT] ...] [--port N] [--json-line] [--once]
                   [--timeout S] [--pairs] [--stats] [--keepalive S]
                   [--binding-lifetime S] [--no-portmap] [--local-address IP] ...
                   [--relay URI ... --relay-user U --relay-password P | --relay-secret S]
                   [--tls-ca FILE] [--classify | --no-classify] [--port-range LO-HI]
                   [--no-birthday | --birthday-ports N ...] [--traffic RATE]
    natkit connect --wireguard IFACE --rendezvous HOST:PORT [--peer PUBKEY ...] ...
    natkit connect ... --directory dns:ZONE@SERVER[:PORT] --tsig-key FILE ...
    natkit connect --lab [SCENARIO] [--json-line] ...   (see :func:`natkit.cli.lab.connect_in_lab`)

Runs a :class:`natkit.aio.connect.Connection` and prints one line per path
change (``--json-line``: one JSON object per event, schema
``natkit.connect`` v1, :mod:`natkit.cli.connect_render`; relays, the ladder
and "why relayed?": :mod:`natkit.cli.connect_relay`; ``--traffic``:
:mod:`natkit.cli.connect_traffic`; ``--wireguard`` and ``--directory``:
:mod:`natkit.cli.connect_wireguard`). Exit status:

* 0: ``--once`` and every peer has a confirmed path (printed; the node keeps
  answering for :data:`ONCE_LINGER` s so the peer confirms it too), or
  ``--timeout`` passed without ``--once`` and every peer had a path, or the
  reader of the output went away (``| grep -m1 path_selected``: the node
  stops in order, :mod:`natkit.cli.closed_output`);
* 1: ``--timeout`` passed before every peer had a path (or the sockets
  could not be bound, or the WireGuard interface could not be used);
* 2: signalling never came up within ``--signal-timeout`` (or ``--timeout``
  when shorter), or the DNS directory refused an update; the message says
  why (the rendezvous refused, is unreachable, the TSIG key is wrong ...);
* 64: a bad command line, key file or peer key;
* 130 / 143: SIGINT / SIGTERM, after a clean shutdown.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from natkit.aio.candidates import PortMapProvider
from natkit.aio.connect import Connection, ConnectOptions, NodeEvent
from natkit.aio.rendezvous_client import AttemptPhase, RendezvousChannel
from natkit.cli import connect_wireguard
from natkit.cli.closed_output import OutputGuard
from natkit.cli.connect_relay import WhyRelayed, register_relay_flags, relay_setup
from natkit.cli.connect_render import (
    event_to_dict,
    event_to_text,
    json_line,
    pair_to_dict,
    pairs_table,
    stats_to_dict,
)
from natkit.cli.connect_traffic import Traffic
from natkit.cli.flags import add_host_flags, gateway_address, host_policy
from natkit.endpoint import Endpoint
from natkit.errors import NatkitError
from natkit.ice import ConnectConfig, PathLost, PathSelected
from natkit.identity import PrivateKey, PublicKey, check_recipient
from natkit.identity.keyfile import load_private_key
from natkit.signal.channel import ChannelState, DownReason, SignalChannel, StateChanged
from natkit.stun.uri import parse_server, split_host_port
from natkit.wireguard.events import WireGuardEvent

if TYPE_CHECKING:
    from natkit.aio.wireguard_node import WireGuardAdapter

EXIT_OK, EXIT_NO_PATH, EXIT_NO_SIGNALLING, EXIT_USAGE = 0, 1, 2, 64
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
#: Seconds ``--once`` keeps answering after its last peer's path is confirmed,
#: so the peer's own confirmation (its check on the nominated pair) is answered.
ONCE_LINGER = 2.0
#: How often ``--settle`` looks whether relayed paths became final.
SETTLE_POLL = 0.5
#: ``--lab``'s scenario when none is named: a carrier-grade NAT's site and an
#: easy one (relayed first, then direct).
LAB_SCENARIO = "connect-cgnat"
#: ``--lab``'s ``--timeout`` when none is given.
LAB_TIMEOUT = 30.0
#: Events whose human line is not repeated word for word.
_SAID_ONCE = frozenset({"report", "peer_report", "why_relayed"})
#: Flags ``--lab`` takes from the lab (its node keys, rendezvous, servers).
LAB_PROVIDES = (
    "rendezvous", "key", "peer", "stun", "relay", "relay_user", "relay_password",
    "relay_secret", "tls_ca", "port_range", "wireguard", "directory", "local_address",
)  # fmt: skip
#: Default ``--signal-timeout``.
SIGNAL_TIMEOUT = 30.0


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rendezvous", metavar="HOST:PORT", help="the natkit rendezvous server")
    parser.add_argument("--key", metavar="FILE", help="this node's private key")
    parser.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="PUBKEY",
        help="a peer's public key (natkit pubkey); repeatable",
    )
    parser.add_argument(
        "--stun",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="STUN server for server-reflexive candidates (repeatable; all asked at once)",
    )
    parser.add_argument(
        "--port", type=int, default=0, metavar="N", help="local UDP port (default: any free one)"
    )
    parser.add_argument(
        "--local-address",
        action="append",
        default=[],
        metavar="IP",
        help="bind a socket to this address (repeatable: one socket, and its own pairs, per"
        " address of a multihomed host); default: one wildcard socket per family",
    )
    parser.add_argument("--json-line", action="store_true", help="one JSON object per event")
    parser.add_argument(
        "--once", action="store_true", help="exit 0 once every peer has a confirmed path"
    )
    parser.add_argument(
        "--settle",
        action="store_true",
        help="with --once: wait until every path is final (a relayed path while direct checks"
        " or birthday probing still run may yet be upgraded)",
    )
    parser.add_argument(
        "--lab",
        nargs="?",
        const=LAB_SCENARIO,
        metavar="SCENARIO",
        help=f"build a connect-* lab scenario (default {LAB_SCENARIO}; needs root), connect its"
        " sites with the commands natkit lab up prints (this one in the foreground, with"
        " --once --settle), tear it down",
    )
    parser.add_argument(
        "--timeout", type=float, metavar="S", help="give up after S seconds (exit 1)"
    )
    parser.add_argument(
        "--signal-timeout",
        type=float,
        default=SIGNAL_TIMEOUT,
        metavar="S",
        help=f"exit 2 if signalling is not up after S seconds (default {SIGNAL_TIMEOUT:g})",
    )
    parser.add_argument(
        "--pairs",
        action="store_true",
        help="print the pair table after each path change and at exit",
    )
    parser.add_argument(
        "--stats", action="store_true", help="print every counter at exit (dropped input...)"
    )
    parser.add_argument(
        "--keepalive",
        type=float,
        metavar="S",
        help="keepalive interval on the selected path"
        f" (default {ConnectConfig().keepalive_default:g})",
    )
    parser.add_argument(
        "--binding-lifetime",
        type=float,
        metavar="S",
        help="the NAT's UDP binding lifetime (natkit classify --lifetime): keepalive below half",
    )
    parser.add_argument("--no-portmap", action="store_true", help="ask no gateway for a mapping")
    parser.add_argument(
        "--gateway",
        type=gateway_address,
        metavar="IP",
        help="port-mapping gateway, the only one used (default: the default route's)",
    )
    parser.add_argument(
        "--static",
        action="append",
        default=[],
        metavar="IP:PORT",
        help="an endpoint known to reach this node (a manual port forward; repeatable)",
    )
    parser.add_argument("--no-nat64", action="store_true", help="skip NAT64 discovery")
    add_host_flags(parser)
    parser.add_argument(
        "--traffic",
        type=float,
        metavar="RATE",
        help="send RATE numbered datagrams a second to each peer over its path and count"
        " what arrives (data and traffic lines): loss during a path change",
    )
    register_relay_flags(parser)
    connect_wireguard.register(parser)
    parser.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class Setup:
    """The command line, checked."""

    #: ``None`` with ``--wireguard`` (the interface's key).
    key: PrivateKey | None
    peers: tuple[PublicKey, ...]
    signalling: connect_wireguard.SignallingSetup
    stun: tuple[str, ...]
    options: ConnectOptions
    #: ``--wireguard``'s interface.
    wireguard: str | None = None


def _positive(value: float | None, flag: str) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{flag} must be positive")


def setup(args: argparse.Namespace) -> Setup:
    """Flags to a :class:`Setup`; raises ``NatkitError``/``ValueError`` saying what is wrong."""
    for value, flag in (
        (args.timeout, "--timeout"),
        (args.signal_timeout, "--signal-timeout"),
        (args.keepalive, "--keepalive"),
        (args.binding_lifetime, "--binding-lifetime"),
        (args.traffic, "--traffic"),
    ):
        _positive(value, flag)
    rendezvous = None if args.rendezvous is None else split_host_port(args.rendezvous, None)
    wireguard = connect_wireguard.wireguard_interface(args)
    signalling = connect_wireguard.signalling_setup(args, rendezvous)
    for server in args.stun:
        parse_server(server)
    key = None if args.key is None else load_private_key(args.key)
    # With --wireguard the key is the interface's, read later; a low-order
    # peer key is weak whatever the private key, so any one checks it.
    checker = key if key is not None else PrivateKey.generate()
    peers = []
    for text in args.peer:
        try:
            peer = PublicKey.from_base64(text)
            # A low-order key (e.g. all zeros) parses but no box can be sealed to it.
            check_recipient(checker, peer)
        except NatkitError as exc:
            raise ValueError(f"--peer {text!r}: {exc}") from None
        peers.append(peer)
    if key is not None and key.public_key in peers:
        raise ValueError("--peer names this node's own key")
    config = ConnectConfig()
    if args.keepalive is not None:
        config = ConnectConfig(
            keepalive_default=args.keepalive,
            keepalive_minimum=min(config.keepalive_minimum, args.keepalive),
        )
    if args.binding_lifetime is not None:
        config = ConnectConfig(
            keepalive_default=config.keepalive_default,
            keepalive_minimum=config.keepalive_minimum,
            binding_lifetime=args.binding_lifetime,
        )
    for text in args.local_address:
        Endpoint.parse(text, 0)
    relay, traversal = relay_setup(args)
    options = ConnectOptions(
        port=args.port,
        local_addresses=tuple(args.local_address),
        portmap=not args.no_portmap,
        gateway=args.gateway,
        statics=tuple(Endpoint.parse(text) for text in args.static),
        nat64=not args.no_nat64,
        host=host_policy(args),
        config=config,
        relay=relay,
        traversal=traversal,
    )
    peers_given = tuple(dict.fromkeys(peers))
    return Setup(key, peers_given, signalling, tuple(args.stun), options, wireguard)


def run(args: argparse.Namespace) -> int:
    if args.lab is not None:
        return _run_in_lab(args)
    if args.settle and not args.once:
        print("natkit connect: --settle goes with --once", file=sys.stderr)
        return EXIT_USAGE
    try:
        checked = setup(args)
    except (NatkitError, ValueError) as exc:
        print(f"natkit connect: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(_Run(args, checked).main())


def _run_in_lab(args: argparse.Namespace) -> int:
    """``--lab``: this command's own flags go to the node that runs in the lab."""
    given = [name for name in LAB_PROVIDES if getattr(args, name, None) not in (None, [], False)]
    if given:
        flag = "--" + given[0].replace("_", "-")
        print(f"natkit connect: {flag} does not go with --lab (the lab gives it)", file=sys.stderr)
        return EXIT_USAGE
    flags = ["--once", "--settle", "--timeout", f"{args.timeout or LAB_TIMEOUT:g}"]
    switches = {"json_line": "--json-line", "pairs": "--pairs", "stats": "--stats"}
    flags += [flag for name, flag in switches.items() if getattr(args, name)]
    # Every node sends the measuring stream (a receiver counts what the other
    # sent) and keeps alive alike.
    shared: list[str] = []
    for name, flag in (("keepalive", "--keepalive"), ("traffic", "--traffic")):
        value = getattr(args, name)
        if value is not None:
            shared += [flag, f"{value:g}"]
    from natkit.cli.lab import connect_in_lab  # noqa: PLC0415 (root-only, loaded lazily)

    return connect_in_lab(args.lab, [*flags, *shared], shared)


@dataclass
class _Run:
    """One run of the command: prints events, decides when and how to exit."""

    args: argparse.Namespace
    setup: Setup
    connection: Connection | None = None
    #: With ``--wireguard``: the adapter that runs ``connection``.
    adapter: WireGuardAdapter | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    status: int | None = None
    why: str = ""
    ever_up: bool = False
    last_down: StateChanged | None = None
    #: Lines held back until the ``started`` line is out (events during start).
    held: list[tuple[dict[str, object] | None, tuple[str, bool] | None]] | None = field(
        default_factory=list
    )
    whys: WhyRelayed | None = None
    traffic: Traffic | None = None
    #: The signalling channel, once the node made it (a rendezvous or a DNS directory).
    channel: SignalChannel | None = None
    #: ``--once`` decided to finish (after :data:`ONCE_LINGER`).
    finishing: bool = False
    #: The last human line of each report kind and peer (:meth:`said_before`).
    last_said: dict[tuple[object, object], str] = field(default_factory=dict)
    output: OutputGuard = field(init=False)

    def __post_init__(self) -> None:
        self.output = OutputGuard(self.output_closed)

    def out(self, document: dict[str, object] | None, text: tuple[str, bool] | None) -> None:
        if self.held is not None:
            self.held.append((document, text))
            return
        if self.args.json_line:
            if document is not None:
                self.output.write(json_line(document), sys.stdout)
        elif text is not None and not self.said_before(document, text[0]):
            self.output.write(text[0], sys.stdout if text[1] else sys.stderr)

    def said_before(self, document: dict[str, object] | None, text: str) -> bool:
        """Whether a report or why-relayed line says again, word for word, what
        the last one of its kind said (the JSON lines differ in fields the
        text leaves out; people need it once)."""
        if document is None:
            return False
        if document.get("event") == "path_selected":  # a new path is explained anew
            self.last_said.pop(("why_relayed", document.get("peer")), None)
        if document.get("event") not in _SAID_ONCE:
            return False
        kind = (document.get("event"), document.get("peer"))
        if self.last_said.get(kind) == text:
            return True
        self.last_said[kind] = text
        return False

    def output_closed(self) -> None:
        # The reader has what it wanted (| head, | grep -m1): stop in order, and
        # exit as natkit does for a closed pipe (natkit.cli.main).
        self.finish(EXIT_OK, "the output was closed")

    def finish(self, status: int, why: str = "") -> None:
        if self.status is None:
            self.status, self.why = status, why
            self.done.set()

    def print_pairs(self) -> None:
        connection = self.connection
        if connection is None or not self.args.pairs:
            return
        for peer in connection.peers:
            rows = connection.pairs(peer)
            self.out(
                {"event": "pairs", "peer": str(peer), "pairs": [pair_to_dict(r) for r in rows]},
                (pairs_table(peer, rows), True),
            )

    def on_event(self, event: NodeEvent | WireGuardEvent) -> None:
        wireguard = connect_wireguard.event_to_dict(event)
        if wireguard is not None:
            self.out(wireguard, connect_wireguard.event_to_text(event))
            return
        assert not isinstance(event, WireGuardEvent)
        connection = self.connection
        sockets = (
            connection.local_endpoints if connection is not None and connection.started else ()
        )
        self.out(event_to_dict(event, sockets), event_to_text(event))
        if self.whys is not None:
            self.whys.on_event(connection, event)
        if self.traffic is not None:
            self.traffic.on_event(event)
        if isinstance(event, StateChanged):
            if event.state is ChannelState.UP:
                self.ever_up = True
            else:
                self.last_down = event
            if event.reason is DownReason.REFUSED and self.setup.signalling.directory is not None:
                # A refused update is permanent until the key or the server changes.
                self.finish(EXIT_NO_SIGNALLING, f"signalling refused: {event.detail}")
        if isinstance(event, PathSelected | PathLost):
            self.print_pairs()
        if self.args.once and isinstance(event, PathSelected):
            self.once_done()

    def once_done(self) -> None:
        """``--once``: finish when every peer has a path (with ``--settle``, a
        final one), after answering briefly so the peer confirms it too."""
        if self.finishing or self.missing() or (self.args.settle and self.pending()):
            return
        self.finishing = True
        loop = asyncio.get_running_loop()
        loop.call_later(ONCE_LINGER, self.finish, EXIT_OK, "every peer has a path")

    def pending(self) -> list[str]:
        """Peers on a relayed path that may yet be upgraded (``Explanation.pending``)."""
        connection = self.connection
        if connection is None:
            return []
        waiting = []
        for peer in connection.peers:
            try:
                if connection.explain(peer).pending:
                    waiting.append(str(peer))
            except NatkitError:  # removed meanwhile
                continue
        return waiting

    def settle_tick(self) -> None:
        # Direct checks failing or birthday probing ending raise no event of
        # their own: look again until the paths are final.
        if self.status is None:
            self.once_done()
            asyncio.get_running_loop().call_later(SETTLE_POLL, self.settle_tick)

    def signalling_problem(self) -> str:
        label = self.setup.signalling.label
        down = self.last_down
        if down is None or down.reason is None:
            # No attempt has ended yet (a name still resolving, a server that
            # accepted and never spoke): say where the one under way stands.
            return f"signalling never came up: {label} {self.attempt_text()}"
        detail = f" ({down.detail})" if down.detail else ""
        return f"signalling never came up: {label} {down.reason.value}{detail}"

    def attempt_text(self) -> str:
        channel = self.channel
        if channel is None:
            return "not tried"
        if not isinstance(channel, RendezvousChannel):
            return channel.state.value
        age = f"{channel.phase_age():.1f} s"
        phase = channel.phase
        if phase is AttemptPhase.HELLO:
            return f"connected, but has not said hello in {age} (is it a natkit rendezvous?)"
        if phase is AttemptPhase.AUTHENTICATING:
            return f"connected, but has not welcomed this node in {age}"
        if phase is AttemptPhase.CONNECTING:
            return f"not connected in {age} (resolving its name, opening TCP)"
        return str(phase.value)

    def signalling_document(self) -> dict[str, object]:
        """The ``stopped`` line's ``signalling``: where it stood when the run ended."""
        channel, down = self.channel, self.last_down
        attempt = channel if isinstance(channel, RendezvousChannel) else None
        return {
            "state": None if channel is None else channel.state.value,
            "phase": None if attempt is None else attempt.phase.value,
            "phase_s": None if attempt is None else round(attempt.phase_age(), 3),
            "reason": None if down is None or down.reason is None else down.reason.value,
            "detail": None if down is None else down.detail or None,
        }

    def check_signalling(self) -> None:
        if not self.ever_up:
            self.finish(EXIT_NO_SIGNALLING, self.signalling_problem())

    def timed_out(self) -> None:
        if not self.ever_up:
            self.finish(EXIT_NO_SIGNALLING, self.signalling_problem())
            return
        missing = self.missing()
        if missing:
            who = ", ".join(missing)
            self.finish(EXIT_NO_PATH, f"no path to {who} within {self.args.timeout:g} s")
        elif self.args.once:  # paths confirmed; the linger had not ended yet
            self.finish(EXIT_OK, "every peer has a path")
        else:
            self.finish(EXIT_OK, f"{self.args.timeout:g} s passed; every peer has a path")

    def missing(self) -> list[str]:
        """Peers without a path now."""
        connection = self.connection
        if connection is None:
            return [str(p) for p in self.setup.peers]
        return [str(p) for p in connection.peers if connection.selected(p) is None]

    async def start_node(self) -> Connection:
        """Start the node (a :class:`Connection`, or with ``--wireguard`` the
        adapter's); raises what starting raises, leaving nothing open."""
        setup = self.setup
        factory = setup.signalling.channel_factory()

        def make_channel(key: PrivateKey) -> SignalChannel:
            self.channel = factory(key)
            return self.channel

        if setup.wireguard is not None:
            from natkit.aio.wireguard_node import open_wireguard  # noqa: PLC0415

            adapter = open_wireguard(
                setup.wireguard,
                make_channel,
                peers=setup.peers or None,
                stun=setup.stun,
                options=setup.options,
                on_event=self.on_event,
                port_mapper=self._port_mapper(),
            )
            self.adapter = adapter
            await adapter.start()
            self.connection = adapter.connection
            return adapter.connection
        assert setup.key is not None
        connection = Connection(
            setup.key,
            make_channel(setup.key),
            stun=setup.stun,
            options=setup.options,
            on_event=self.on_event,
            port_mapper=self._port_mapper(),
            on_data=self.on_data,
        )
        self.connection = connection
        if self.args.traffic is not None:
            self.traffic = Traffic(connection, self.args.traffic, self.out)
        await connection.start(setup.peers)
        return connection

    async def main(self) -> int:
        setup = self.setup
        loop = asyncio.get_running_loop()
        for signum, status in EXIT_SIGNAL.items():
            loop.add_signal_handler(signum, self.finish, status, signum.name)
        self.whys = WhyRelayed(self.out)
        try:
            connection = await self.start_node()
        except NatkitError as exc:  # the WireGuard interface or its port cannot be used
            self.held = None
            print(f"natkit connect: {exc}", file=sys.stderr)
            return EXIT_NO_PATH
        except OSError as exc:
            self.held = None
            where = ", ".join(setup.options.local_addresses) or "the wildcard address"
            print(
                f"natkit connect: cannot bind UDP port {setup.options.port} on {where}:"
                f" {exc.strerror or exc}",
                file=sys.stderr,
            )
            return EXIT_NO_PATH
        config = setup.options.config
        held, self.held = self.held or [], None
        started: dict[str, object] = {
            "event": "started",
            "key": str(connection.public_key),
            "sockets": [str(e) for e in connection.local_endpoints],
            "peers": [str(p) for p in connection.peers],
            "keepalive_s": config.keepalive_interval,
            "loss_bound_s": config.loss_bound,
            "downgrade_bound_s": config.downgrade_bound,
        }
        where = ", ".join(str(e) for e in connection.local_endpoints)
        if self.adapter is not None:
            started["wireguard"] = setup.wireguard
            started["listen_port"] = self.adapter.listen_port
            where = f"WireGuard {setup.wireguard}'s port {self.adapter.listen_port} ({where})"
        self.out(started, (f"natkit connect: {connection.public_key} on {where}", False))
        for document, text in held:
            self.out(document, text)
        if self.traffic is not None:
            self.traffic.start()
        self.output.watch()
        timers = [loop.call_later(self.args.signal_timeout, self.check_signalling)]
        if self.args.once and self.args.settle:
            timers.append(loop.call_later(SETTLE_POLL, self.settle_tick))
        if self.args.timeout is not None:
            timers.append(loop.call_later(self.args.timeout, self.timed_out))
        signalling: dict[str, object] = {}
        try:
            await self.done.wait()
        finally:
            signalling = self.signalling_document()  # before closing closes the channel
            self.output.close()
            for timer in timers:
                timer.cancel()
            self.print_pairs()
            if self.traffic is not None:
                await self.traffic.close()
            if self.args.stats:
                self.out(stats_to_dict(connection), (_stats_text(connection), False))
            await (connection if self.adapter is None else self.adapter).close()
        status = EXIT_OK if self.status is None else self.status
        self.out(
            {
                "event": "stopped",
                "status": status,
                "reason": self.why,
                "signalling": signalling,
            },
            (f"natkit connect: {self.why}", False),
        )
        if self.args.json_line and status in (EXIT_NO_PATH, EXIT_NO_SIGNALLING):
            self.output.write(f"natkit connect: {self.why}", sys.stderr)
        return status

    def on_data(self, peer: object, data: bytes, relayed: bool) -> None:
        if self.traffic is not None:
            self.traffic.on_data(peer, data, relayed)

    def _port_mapper(self) -> PortMapProvider | None:
        if self.args.no_portmap:
            return None
        from natkit.aio.candidates import PortMapperProvider  # noqa: PLC0415
        from natkit.aio.portmap import LeaseJournal  # noqa: PLC0415

        # The command keeps the machine's lease journal, as natkit portmap does.
        return PortMapperProvider(gateway=self.args.gateway, journal=LeaseJournal())


def _stats_text(connection: Connection) -> str:
    document = stats_to_dict(connection)
    parts: list[str] = []
    for group in ("checks", "signal", "node"):
        values = document[group]
        assert isinstance(values, dict)
        parts.extend(f"{k}={v}" for k, v in values.items() if v)
    return "stats: " + (" ".join(parts) or "nothing dropped")


def main(argv: list[str] | None = None) -> int:
    """``python -m natkit.cli.connect``: ``natkit connect`` by another name."""
    from natkit.cli.main import main as natkit  # noqa: PLC0415 (it imports this module)

    return natkit(["connect", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
