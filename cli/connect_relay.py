"""``natkit connect``'s relay, ladder and "why relayed?" flags and output (issue 12).

Flags (see the README)::

    --relay turn:HOST[:PORT][?transport=udp|tcp] --relay turns:HOST[:PORT] ...
    --relay-user U --relay-password P | --relay-secret S   [--tls-ca FILE]
    --classify | --no-classify        [--port-range LO-HI]
    --no-birthday | --birthday-ports N --birthday-probes N --birthday-rate R

:class:`WhyRelayed` prints "why relayed?" (a ``why_relayed`` line) for every
relayed path selected, and again whenever the explanation changes while the
peer stays relayed (the peer's report arrived, a ladder step was decided
again, a birthday attempt ended): the first sentence is written when
only one side's report may be known, and the test of the contract is that
the one in force names the cause.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from natkit.aio.connect import Connection, LocalReportChanged, NodeEvent
from natkit.aio.connect_relay import RelayOptions
from natkit.aio.connect_report import DEFAULT_BIRTHDAY, TraversalOptions
from natkit.birthday.ports import PortRange
from natkit.cli.connect_render_relay import why_to_dict, why_to_text
from natkit.cli.flags import tls_ca_context
from natkit.errors import LocalProtocolError
from natkit.ice.events import (
    BirthdayFinished,
    EscalationDecided,
    PathLost,
    PathSelected,
    PeerReportReceived,
)
from natkit.ice.explain import Explanation
from natkit.ice.report import BirthdayCapability

__all__ = ["WhyRelayed", "register_relay_flags", "relay_setup"]


def register_relay_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("relay and escalation (issue 12)")
    group.add_argument(
        "--relay",
        action="append",
        default=[],
        metavar="URI",
        help="TURN server: turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT] (TLS);"
        " repeatable: the nearest by RTT is used",
    )
    group.add_argument("--relay-user", metavar="U", help="TURN username (long-term credentials)")
    group.add_argument("--relay-password", metavar="P", help="TURN password")
    group.add_argument(
        "--relay-secret",
        metavar="S",
        help="TURN REST API shared secret (coturn's static-auth-secret): credentials are"
        " minted from it, valid for a day",
    )
    group.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="CA certificates for turns: servers (default: the system's)",
    )
    classify = group.add_mutually_exclusive_group()
    classify.add_argument(
        "--classify",
        dest="classify",
        action="store_true",
        default=None,
        help="classify the NAT at start against the --stun servers (the default when there"
        " are any): the report peers' ladders and 'why relayed?' use",
    )
    classify.add_argument("--no-classify", dest="classify", action="store_false")
    group.add_argument(
        "--port-range",
        metavar="LO-HI",
        help="the external ports this site's NAT allocates from (classify cannot measure it;"
        " a small range makes birthday probing between two hard NATs worth it)",
    )
    group.add_argument(
        "--no-birthday", action="store_true", help="take no part in birthday probing"
    )
    group.add_argument(
        "--birthday-ports",
        type=int,
        default=DEFAULT_BIRTHDAY.ports,
        metavar="N",
        help=f"sockets this node opens as a hard side (default {DEFAULT_BIRTHDAY.ports})",
    )
    group.add_argument(
        "--birthday-probes",
        type=int,
        default=DEFAULT_BIRTHDAY.probes,
        metavar="N",
        help=f"probes it sends at most (default {DEFAULT_BIRTHDAY.probes})",
    )
    group.add_argument(
        "--birthday-rate",
        type=int,
        default=DEFAULT_BIRTHDAY.rate,
        metavar="R",
        help=f"its cap on probes per second (default {DEFAULT_BIRTHDAY.rate})",
    )


def relay_setup(args: argparse.Namespace) -> tuple[RelayOptions, TraversalOptions]:
    """The flags, checked; raises ``LocalProtocolError`` saying what is wrong."""
    relay = RelayOptions(
        servers=tuple(dict.fromkeys(args.relay)),
        user=args.relay_user,
        password=args.relay_password,
        secret=args.relay_secret,
        tls_ca=args.tls_ca,
        # Loaded now, once: a file that holds no certificate is a usage error.
        tls=None if args.tls_ca is None else tls_ca_context(args.tls_ca),
    )
    birthday: BirthdayCapability | None = None
    if not args.no_birthday:
        birthday = BirthdayCapability(args.birthday_ports, args.birthday_probes, args.birthday_rate)
    port_range = None if args.port_range is None else PortRange.parse(args.port_range)
    return relay, TraversalOptions(classify=args.classify, port_range=port_range, birthday=birthday)


#: ``out(document, (text, to_stdout))``, as ``natkit connect`` prints.
Printer = Callable[[dict[str, Any] | None, tuple[str, bool] | None], None]

#: Explanation fields that change with time alone (not a new cause)...
_CLOCK_KEYS = ("reason", "next_recheck_s", "last_recheck_s")
#: ...and the clause of the sentence that says them ("; 2 direct pairs re-checked 12 s ago,
#: next in 30 s", :mod:`natkit.ice.explain`).
_CLOCK_CLAUSE = re.compile(r"; \d+ direct pairs? re-checked.*$")


def _gist(explanation: Explanation) -> dict[str, Any]:
    gist = {k: v for k, v in explanation.to_dict().items() if k not in _CLOCK_KEYS}
    gist["reason"] = _CLOCK_CLAUSE.sub("", explanation.sentence)
    return gist


class WhyRelayed:
    """Prints "why relayed?" for relayed peers (module doc)."""

    def __init__(self, out: Printer) -> None:
        self._out = out
        self._relayed: set[Any] = set()
        self._said: dict[Any, dict[str, Any]] = {}

    def on_event(self, connection: Connection | None, event: NodeEvent) -> None:
        if connection is None or not connection.started:
            return
        if isinstance(event, PathSelected):
            if event.relay is not None or event.kind.value == "relay":
                self._relayed.add(event.peer)
                self._say(connection, event.peer, always=True)
            else:
                self._relayed.discard(event.peer)
        elif isinstance(event, PathLost):
            self._relayed.discard(event.peer)
        elif isinstance(event, EscalationDecided | PeerReportReceived | BirthdayFinished):
            if event.peer in self._relayed:
                self._say(connection, event.peer, always=False)
        elif isinstance(event, LocalReportChanged):
            for peer in list(self._relayed):
                self._say(connection, peer, always=False)

    def _say(self, connection: Connection, peer: Any, *, always: bool) -> None:
        try:
            explanation = connection.explain(peer)
        except LocalProtocolError:  # the peer was removed meanwhile
            return
        gist = _gist(explanation)
        if not always and self._said.get(peer) == gist:
            return
        self._said[peer] = gist
        self._out(why_to_dict(peer, explanation), why_to_text(peer, explanation))
