"""``natkit birthday``: plan and run birthday-paradox hole punching.

``natkit birthday plan`` evaluates the model (no network). ``natkit
birthday probe`` runs one side against a peer running the other; both need
the same ``--key``, ``--session``, ``--ports``, ``--rate``, ``--budget``
and mode, agreed out of band. Through a real NAT the hard side aims at the
easy side's *mapped* endpoint: ``--stun SERVER`` on the easy side learns it
on the socket it then sprays from and prints it to stderr
(``mapped endpoint IP:PORT``) before it starts, for the hard side's ``--peer``.

Exit status: ``plan`` 0; ``probe`` 0 on a hit, 1 when the budget or
schedule ran out, 2 when the sockets could not be used or the ``--stun``
server did not answer; 64 for a bad command line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from typing import Any

from natkit.aio.birthday import StunUnansweredError, probe_birthday
from natkit.birthday.events import BirthdayEvent, PairFound
from natkit.birthday.planner import BirthdayScenario, Estimate, Mode, Sampling, estimate
from natkit.birthday.ports import PortRange
from natkit.birthday.report import estimate_to_dict, event_to_dict
from natkit.birthday.schedule import DEFAULT_RATE
from natkit.birthday.wire import BirthdayRole
from natkit.endpoint import Endpoint
from natkit.errors import NatkitError

EXIT_USAGE = 64


def register(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    plan = actions.add_parser(
        "plan",
        help="success probability and expected time of a search (no network)",
        description="Evaluate the exact birthday model for a scenario and budget.",
    )
    plan.add_argument("--ports", "-k", type=int, required=True, help="sockets the hard side opens")
    budget = plan.add_mutually_exclusive_group(required=True)
    budget.add_argument("--probes", "-n", type=int, help="probe budget (per side)")
    budget.add_argument("--seconds", type=float, help="time budget at --rate (per side)")
    _common(plan)
    plan.add_argument(
        "--with-replacement",
        action="store_true",
        help="model independent random probes instead of never repeating a port",
    )
    output = plan.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the versioned JSON document")
    output.add_argument("--json-line", action="store_true", help="the same, on one line")
    plan.set_defaults(run=run_plan)

    probe = actions.add_parser(
        "probe",
        help="run one side of a birthday search against a peer",
        description="Run one side of a birthday search. Start the peer with the other --role.",
    )
    probe.add_argument(
        "--role",
        choices=("hard", "easy"),
        required=True,
        help="hard: open --ports mappings toward the peer; easy: spray the peer's ports "
        "(with --both-hard both sides spray, and the two peers still need different roles)",
    )
    probe.add_argument(
        "--peer",
        required=True,
        metavar="IP[:PORT]",
        help="hard role: the easy side's mapped IP:PORT; easy role: the hard side's IP",
    )
    probe.add_argument("--key", required=True, metavar="HEX", help="shared key, >= 16 bytes")
    probe.add_argument(
        "--session", default="00" * 8, metavar="HEX", help="8-byte session id (default zeros)"
    )
    probe.add_argument("--ports", "-k", type=int, default=256, help="sockets to open (default 256)")
    probe.add_argument(
        "--budget", type=int, default=2048, help="probes to spray (per side, default 2048)"
    )
    _common(probe)
    probe.add_argument("--local-address", metavar="IP", help="address to bind (default any)")
    probe.add_argument(
        "--local-port", type=int, default=0, help="easy role: the port to bind (default any)"
    )
    probe.add_argument(
        "--stun",
        metavar="IP:PORT",
        help="easy role: first learn this socket's mapped endpoint from a STUN server and "
        "print it to stderr (the hard side's --peer)",
    )
    probe.add_argument(
        "--start-delay",
        type=float,
        metavar="SECONDS",
        help="easy role: wait this long (after --stun) before spraying (default ports/rate, "
        "the time the hard side takes to open its mappings)",
    )
    probe.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="hard role: keep mappings open this long (default: the easy side's spray + 10 s)",
    )
    probe.add_argument(
        "--keepalive", type=float, default=15.0, help="hard role: re-open every (default 15 s)"
    )
    probe.add_argument(
        "--answer-timeout", type=float, default=2.0, help="wait for late answers (default 2 s)"
    )
    probe.add_argument("--seed", type=int, help="seed the port order (default: random)")
    probe.add_argument("--json", action="store_true", help="print the versioned JSON document")
    probe.set_defaults(run=run_probe)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--both-hard", action="store_true", help="both sides are hard")
    parser.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help=f"probes per second, per side (default {DEFAULT_RATE:g})",
    )
    parser.add_argument(
        "--range",
        dest="port_range",
        default="1-65535",
        metavar="LO-HI",
        help="the hard NAT's port range (default 1-65535)",
    )


def _fail(action: str, message: object) -> int:
    print(f"natkit birthday {action}: {message}", file=sys.stderr)
    return EXIT_USAGE


# -- plan ---------------------------------------------------------------------------


def run_plan(args: argparse.Namespace) -> int:
    try:
        scenario = BirthdayScenario(
            ports=args.ports,
            port_range=PortRange.parse(args.port_range),
            mode=Mode.BOTH_HARD if args.both_hard else Mode.ONE_HARD,
            rate=args.rate,
            sampling=Sampling.WITH_REPLACEMENT
            if args.with_replacement
            else Sampling.WITHOUT_REPLACEMENT,
        )
        result = estimate(scenario, probes=args.probes, seconds=args.seconds)
    except NatkitError as exc:
        return _fail("plan", exc)
    document = estimate_to_dict(result)
    if args.json:
        print(json.dumps(document, indent=2))
    elif args.json_line:
        print(json.dumps(document, separators=(",", ":")))
    else:
        print(render_estimate(result))
    return 0


def _percent(value: float) -> str:
    text = f"{value * 100:.4f}".rstrip("0").rstrip(".")
    return f"{text} %"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds:.0f} s ({seconds / 60:.1f} min)"


def _probes_and_seconds(result: Estimate, probes: int | None) -> str:
    if probes is None:
        return "out of reach"
    return f"{probes} probes, {_duration(result.scenario.seconds(probes))}"


def render_estimate(result: Estimate) -> str:
    """The readable summary."""
    scenario = result.scenario
    both = scenario.mode is Mode.BOTH_HARD
    if both:
        who = f"both sides hard, {scenario.ports} sockets each, NAT ports {scenario.port_range}"
    else:
        who = f"one hard side with {scenario.ports} mappings in ports {scenario.port_range}"
    expected = "no hit possible"
    if result.expected_seconds is not None and result.expected_probes is not None:
        expected = (
            f"{_duration(result.expected_seconds)} ({result.expected_probes:.1f} probes), "
            "given a hit within the budget"
        )
    rows = [
        ("success probability", _percent(result.success_probability)),
        ("expected time to hit", expected),
        ("expected run time", f"{_duration(result.expected_run_seconds)}, hit or not"),
        ("no budget at all", f"{_duration(result.unbounded_expected_seconds)} to the hit"),
        ("for 50 %", _probes_and_seconds(result, result.probes_for_50)),
        ("for 99 %", _probes_and_seconds(result, result.probes_for_99)),
        ("for 99.9 %", _probes_and_seconds(result, result.probes_for_999)),
    ]
    width = max(len(label) for label, _ in rows)
    budget = (
        f"{result.probes} probes{' per side' if both else ''} at {scenario.rate:g}/s = "
        f"{_duration(scenario.seconds(result.probes))}, "
        f"{_percent(result.search_space_fraction)} of the {'port pairs' if both else 'ports'}, "
        f"{scenario.sampling.value}"
    )
    lines = [f"natkit birthday plan: {who}", f"  {'budget':<{width}}  {budget}"]
    lines += [f"  {label:<{width}}  {value}" for label, value in rows]
    return "\n".join(lines)


# -- probe --------------------------------------------------------------------------


def run_probe(args: argparse.Namespace) -> int:
    try:
        key = bytes.fromhex(args.key)
        session = bytes.fromhex(args.session)
    except ValueError:
        return _fail("probe", "--key and --session must be hexadecimal")
    if args.ports < 1 or args.budget < 0 or args.keepalive <= 0:
        return _fail("probe", "--ports, --budget and --keepalive must be positive")
    if args.stun is not None and (args.role != "easy" or args.both_hard):
        return _fail("probe", "--stun is for the easy role of one-hard mode")
    try:
        port_range = PortRange.parse(args.port_range)
        stun = None if args.stun is None else Endpoint.parse(args.stun, default_port=3478)
        started, event, mapped = asyncio.run(_probe(args, key, session, port_range, stun))
    except StunUnansweredError as exc:
        print(f"natkit birthday probe: {exc}", file=sys.stderr)
        return 2
    except (NatkitError, ValueError) as exc:
        return _fail("probe", exc)
    except OSError as exc:
        print(f"natkit birthday probe: {exc}", file=sys.stderr)
        return 2
    document = event_to_dict(event, started)
    if mapped is not None:
        document["mapped"] = str(mapped)
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(render_event(document))
    return 0 if isinstance(event, PairFound) else 1


async def _probe(
    args: argparse.Namespace,
    key: bytes,
    session: bytes,
    port_range: PortRange,
    stun: Endpoint | None,
) -> tuple[float, BirthdayEvent, Endpoint | None]:
    """The library's :func:`natkit.aio.birthday.probe_birthday` with the flags."""
    started = asyncio.get_running_loop().time()
    learnt: list[Endpoint] = []

    def announce(mapped: Endpoint) -> None:
        # The hard side needs this before it can start: say it now.
        learnt.append(mapped)
        print(f"natkit birthday probe: mapped endpoint {mapped}", file=sys.stderr, flush=True)

    event = await probe_birthday(
        BirthdayRole(args.role),
        args.peer,
        key=key,
        session=session,
        both_hard=args.both_hard,
        ports=args.ports,
        budget=args.budget,
        rate=args.rate,
        port_range=port_range,
        local_address=args.local_address,
        local_port=args.local_port,
        stun=stun,
        on_mapped=announce,
        start_delay=args.start_delay,
        duration=args.duration,
        keepalive=args.keepalive,
        answer_timeout=args.answer_timeout,
        rng=random.Random(args.seed),
    )
    return started, event, learnt[0] if learnt else None


def render_event(document: dict[str, Any]) -> str:
    """One line for a human."""
    stats = document["stats"]
    sent = (
        f"{stats['probes_sent']} probes, {stats['opens_sent']} openers, "
        f"{stats['acks_sent']} acks sent"
    )
    dropped = ", ".join(f"{reason} {count}" for reason, count in stats["dropped"].items())
    tail = f"{sent}; dropped {sum(stats['dropped'].values())}" + (
        f" ({dropped})" if dropped else ""
    )
    elapsed = document["elapsed_seconds"]
    if document["outcome"] == "hit":
        pair = document["pair"]
        return (
            f"hit: {pair['local']} (socket {pair['socket']}) <-> {pair['remote']} "
            f"via {document['via']} after {elapsed:.2f} s ({tail})"
        )
    return f"no hit: {document['reason']} after {elapsed:.2f} s ({tail})"
