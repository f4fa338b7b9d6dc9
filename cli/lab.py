"""``natkit lab``: build, list and tear down the network-namespace NAT lab.

    natkit lab up SCENARIO [--loss PCT] [--no-coturn] [--no-natkit-server] [--no-turn] [--json]
    natkit lab down [ID ...] [--all] [--stale]
    natkit lab list [--json]
    natkit classify --lab SCENARIO ...   (see :func:`classify_in_lab`)
    natkit connect --lab SCENARIO ...    (see :func:`connect_in_lab`)

``up`` leaves the lab running (its state is in /run/natkit/labs) and prints
what a user needs to work in it (:func:`lab_summary`): its id and
namespaces, the STUN servers (with coturn's TLS port and certificate), the
TURN servers (address, ports, user, password, realm, REST secret, CA file), the
client's addresses, the other sites of two-site scenarios, the resolver and
NAT64 prefix of IPv6 scenarios, the port-mapping gateway, and a command to
try in the client's namespace; for ``connect-*`` scenarios the rendezvous,
the node keys and the ``natkit connect`` command each side runs. ``down``
removes labs by id, including labs left behind by killed processes. Thin by design: flags go to
``natkit.lab``, and each output format has one renderer fed from the same
summary dict.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from natkit.endpoint import Endpoint
from natkit.lab import (
    SCENARIOS,
    Lab,
    LabError,
    LabRecord,
    ServerKind,
    UnknownScenarioError,
    orphan_namespaces,
    remove_orphans,
    teardown_id,
)
from natkit.lab import rendezvous as lab_rendezvous
from natkit.lab import state as lab_state
from natkit.lab import wireguard_quick as lab_wireguard_quick
from natkit.lab.ipv6 import DNS_PORT
from natkit.lab.miniupnpd import HTTP_PORT, PMP_PORT
from natkit.lab.netns import require_root
from natkit.lab.plan import CLIENT_ROLE, MAIN_SITE
from natkit.lab.servers import natkit_server_available

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 64, 130

Summary = dict[str, Any]

#: Where miniupnpd serves its UPnP root device description.
UPNP_DESCRIPTION_PATH = "/rootDesc.xml"


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``up``/``down``/``list`` actions to the ``lab`` subcommand parser."""
    actions = parser.add_subparsers(dest="lab_action", metavar="ACTION", parser_class=type(parser))
    actions.required = True

    up = actions.add_parser("up", help="build a scenario and leave it running")
    up.add_argument(
        "scenario", choices=list(SCENARIOS), metavar="SCENARIO", help=", ".join(SCENARIOS)
    )
    up.add_argument(
        "--loss",
        type=_percent,
        default=0.0,
        metavar="PCT",
        help="random packet loss on the client's link, each way (default 0)",
    )
    up.add_argument("--no-coturn", action="store_true", help="do not start coturn (STUN nor TURN)")
    up.add_argument("--no-turn", action="store_true", help="do not start the TURN servers")
    up.add_argument(
        "--no-natkit-server", action="store_true", help="do not start natkit's own STUN server"
    )
    up.add_argument(
        "--directory",
        action="store_true",
        help="also run a DNS directory on the lab's internet (knot primary and secondary, a"
        " TSIG update key) and print connect commands that signal through it (connect-* and"
        " wireguard-* scenarios)",
    )
    up.add_argument("--json", action="store_true", help="print the lab as JSON")

    down = actions.add_parser("down", help="tear labs down (also ones left by killed runs)")
    down.add_argument("ids", nargs="*", metavar="ID", help="lab ids to remove")
    down.add_argument("--all", action="store_true", help="remove every lab on this host")
    down.add_argument(
        "--stale",
        action="store_true",
        help="remove labs whose owning process is gone, and orphaned namespaces",
    )

    listing = actions.add_parser("list", help="list scenarios and running labs")
    listing.add_argument("--json", action="store_true", help="print JSON")

    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen action; exit status 0, 1 (lab error) or 64 (usage)."""
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "up": _up,
        "down": _down,
        "list": _list,
    }
    try:
        return handlers[args.lab_action](args)
    except LabError as exc:
        print(f"natkit lab: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("natkit lab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError(f"loss must be within 0-100, got {value}")
    return value


# ------------------------------------------------------------ classify --lab


def classify_in_lab(scenario: str, classify_argv: Sequence[str]) -> int:
    """``natkit classify --lab SCENARIO``: build the lab, classify inside it, tear down.

    ``classify_argv`` are classify's own flags (no ``--server``); the lab's
    STUN servers are added, natkit's first. The classifier's output goes
    straight through; the lab's id and expectation go to stderr so that
    ``--json`` output stays clean. Returns classify's exit status, or 1 when
    the lab cannot be built (64 for an unknown scenario).
    """
    try:
        require_root()
        with Lab.up(scenario, servers=_available_servers(natkit=True, coturn=True)) as lab:
            expected = " ".join(
                f"{k}={_json_word(v)}" for k, v in lab.scenario.expected.as_json().items()
            )
            print(f"natkit lab: {lab.run_id} {scenario}; expected {expected}", file=sys.stderr)
            servers = [f"--server={s.primary}" for s in lab.stun_servers.values()]
            argv = [sys.executable, "-m", "natkit.cli", "classify", *servers, *classify_argv]
            return int(lab.popen(CLIENT_ROLE, argv).wait())
    except UnknownScenarioError as exc:
        print(f"natkit classify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LabError as exc:
        print(f"natkit classify: lab: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


#: How long ``natkit connect --lab`` waits for the peers' nodes to stop.
PEER_STOP_TIMEOUT = 5.0


def connect_in_lab(scenario: str, node_flags: Sequence[str], peer_flags: Sequence[str] = ()) -> int:
    """``natkit connect --lab SCENARIO``: build a ``connect-*`` lab, run every
    other site's node in the background, this site's in the foreground (its
    output goes straight through), then stop them and tear the lab down.

    The nodes run exactly the commands ``natkit lab up`` prints
    (:func:`natkit.lab.rendezvous.connect_argv`), this one with
    ``node_flags`` added, the others with ``peer_flags`` (``--traffic``: a
    receiver counts what the other node sends). The peers' output goes to a log in the lab's work
    directory, named on stderr if this node fails. Returns this node's exit
    status, 64 for a scenario without a rendezvous, 1 when the lab cannot be
    built.
    """
    try:
        require_root()
        if scenario in SCENARIOS and not SCENARIOS[scenario].rendezvous:
            print(
                f"natkit connect: scenario {scenario} has no rendezvous; pick one of "
                + ", ".join(n for n, s in SCENARIOS.items() if s.rendezvous),
                file=sys.stderr,
            )
            return EXIT_USAGE
        servers = _available_servers(natkit=True, coturn=True)
        with Lab.up(scenario, servers=servers, turn=True) as lab:
            return _connect_sites(lab, node_flags, peer_flags)
    except UnknownScenarioError as exc:
        print(f"natkit connect: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LabError as exc:
        print(f"natkit connect: lab: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _connect_sites(lab: Lab, node_flags: Sequence[str], peer_flags: Sequence[str]) -> int:
    keys = lab_rendezvous.node_keys(lab)
    me, others = keys[0], keys[1:]
    print(
        f"natkit lab: {lab.run_id} {lab.scenario.name}: {lab.scenario.description}", file=sys.stderr
    )
    log = lab.record.workdir / "peers.log"
    peers = []
    with log.open("ab") as sink:
        for key in others:
            others_of = [k for k in keys if k is not key]
            argv = [*_python_argv(lab_rendezvous.connect_argv(lab, key, others_of)), *peer_flags]
            print(f"natkit lab: {key.role} runs {shlex.join(argv[3:])}", file=sys.stderr)
            peers.append(
                lab.popen(key.role, argv, stdout=sink, stderr=sink, stdin=subprocess.DEVNULL)
            )
    try:
        argv = [*_python_argv(lab_rendezvous.connect_argv(lab, me, others)), *node_flags]
        print(f"natkit lab: {me.role} runs {shlex.join(argv[3:])}", file=sys.stderr)
        status = int(lab.popen(me.role, argv).wait())
    finally:
        for peer in peers:
            _stop(peer)
    if status != EXIT_OK:
        print(f"natkit lab: the other nodes' output: {log} (removed with the lab)", file=sys.stderr)
    return status


def _python_argv(command: Sequence[str]) -> list[str]:
    """A printed ``natkit ...`` command as this interpreter runs it."""
    return [sys.executable, "-m", "natkit.cli", *command[1:]]


def _stop(process: subprocess.Popen[Any]) -> None:
    """SIGINT (the node deallocates and releases what it holds), then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(PEER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _available_servers(*, natkit: bool, coturn: bool) -> list[ServerKind]:
    servers: list[ServerKind] = []
    if natkit:
        if natkit_server_available():
            servers.append(ServerKind.NATKIT)
        else:
            print(
                "natkit lab: note: natkit's stun-server is not available; not starting it",
                file=sys.stderr,
            )
    if coturn:
        servers.append(ServerKind.COTURN)
    return servers


# ------------------------------------------------------------------- up


def _up(args: argparse.Namespace) -> int:
    require_root()
    servers = _available_servers(natkit=not args.no_natkit_server, coturn=not args.no_coturn)
    started = time.monotonic()
    turn = not (args.no_turn or args.no_coturn)
    if args.directory and args.scenario in SCENARIOS and not SCENARIOS[args.scenario].rendezvous:
        print(
            f"natkit lab: --directory goes with a scenario that has node keys (connect-*,"
            f" wireguard-*), not {args.scenario}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    lab = Lab.up(args.scenario, servers=servers, loss_percent=args.loss, turn=turn)
    try:
        directory = _start_directory(lab) if args.directory else None
    except BaseException:
        lab.down()
        raise
    lab.detach()
    summary = lab_summary(lab, build_seconds=time.monotonic() - started)
    summary["directory"] = directory
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(render_up(summary))
        note = _path_note()
        if note is not None and (summary["connect_commands"] or summary["wireguard"]):
            print(note)
    return EXIT_OK


def _start_directory(lab: Lab) -> Summary:
    """knot on the lab's internet (stopped with the lab) and the ``natkit
    connect`` commands that signal through it instead of the rendezvous."""
    from natkit.lab.knot import KnotDirectory  # noqa: PLC0415

    knot = KnotDirectory.start(lab)
    signalling = [
        "--directory", knot.directory, "--tsig-key", str(knot.update_key_file),
        "--read-server", str(knot.secondary),
    ]  # fmt: skip
    keys = lab_rendezvous.node_keys(lab)
    commands = []
    for key in keys:
        argv = lab_rendezvous.connect_argv(lab, key, [k for k in keys if k is not key])
        at = argv.index("--rendezvous")
        argv[at : at + 2] = signalling
        commands.append(shlex.join(["ip", "netns", "exec", lab.namespace(key.role), *argv]))
    return {
        "zone": knot.zone,
        "primary": str(knot.primary),
        "secondary": str(knot.secondary),
        "tsig_key_file": str(knot.update_key_file),
        "connect_commands": commands,
    }


def _path_note() -> str | None:
    """When ``natkit`` is not on the ``PATH`` the printed commands cannot run
    as they are: say which one to use (the one running now)."""
    if shutil.which("natkit") is not None:
        return None
    here = shutil.which("natkit", path=str(Path(sys.executable).parent))
    if here is None:
        return None
    return f"note: natkit is not on the PATH here: use {here} in these commands"


def lab_summary(lab: Lab, build_seconds: float | None = None) -> Summary:
    """Everything ``up`` reports, as JSON-ready data.

    Keys are only ever added. Those a scenario lacks are still there, empty
    or ``null`` (``dns_server`` in an IPv4 lab, ``gateways`` without
    miniupnpd), so scripts need not test for them.
    """
    client_ns = lab.client_namespace
    summary: Summary = {
        "id": lab.run_id,
        "scenario": lab.scenario.name,
        "description": lab.scenario.description,
        "expected": lab.scenario.expected.as_json(),
        "namespaces": lab.namespaces,
        "client_namespace": client_ns,
        "client_addresses": [str(a) for a in lab.client_addresses],
        "public_address": str(lab.public_address),
        "stun_servers": {
            name: {
                "primary": str(s.primary),
                "alternate": str(s.alternate),
                "tls": None if s.tls is None else str(s.tls),
                "ipv6": None if s.ipv6 is None else str(s.ipv6),
            }
            for name, s in lab.stun_servers.items()
        },
        "turn_servers": {name: s.as_json() for name, s in lab.turn_servers.items()},
        "loss_percent": lab.loss_percent,
        "client_addresses_v6": [str(a) for a in lab.client_addresses_v6],
        "dns_server": None if lab.dns_server is None else str(lab.dns_server),
        "nat64_prefix": None if lab.nat64_prefix is None else str(lab.nat64_prefix),
        "tls_certificate": str(lab.tls_certificate) if _has_tls(lab) else None,
        "sites": [_site_summary(lab, site.name) for site in lab.sites],
        "gateways": [_gateway_summary(lab, role) for role in lab.gateways],
        "client_exec": shlex.join(["ip", "netns", "exec", client_ns]),
        **_connect_summary(lab),
    }
    summary["example_command"] = shlex.join(
        ["ip", "netns", "exec", client_ns, *example_argv(summary)]
    )
    if build_seconds is not None:
        summary["build_seconds"] = round(build_seconds, 3)
    return summary


def _connect_summary(lab: Lab) -> Summary:
    """The rendezvous, the node keys, and one ``natkit connect`` command per
    client host, to run in its namespace (empty without a rendezvous)."""
    keys = lab_rendezvous.node_keys(lab)
    commands = []
    for key in keys:
        others = [k for k in keys if k is not key]
        argv = lab_rendezvous.connect_argv(lab, key, others)
        commands.append(shlex.join(["ip", "netns", "exec", lab.namespace(key.role), *argv]))
    wireguard = []
    if lab.scenario.wireguard:
        for site in lab_wireguard_quick.quick_start(lab):
            wireguard.append(
                {
                    "role": site.role,
                    "interface": site.interface,
                    "config": str(site.config),
                    "tunnel_address": str(site.tunnel_address),
                    "commands": list(site.commands),
                }
            )
    return {
        "rendezvous": None if lab.rendezvous is None else str(lab.rendezvous),
        "node_keys": {
            k.role: {"key_file": str(k.path), "public_key": str(k.public_key)} for k in keys
        },
        "connect_commands": commands,
        "wireguard": wireguard,
    }


def _has_tls(lab: Lab) -> bool:
    return any(s.tls is not None for s in lab.stun_servers.values())


def _site_summary(lab: Lab, name: str) -> Summary:
    site = lab.site(name)
    return {
        "name": site.name,
        "client_role": site.client_role,
        "client_namespace": lab.namespace(site.client_role),
        "router_roles": list(site.router_roles),
        "router_namespaces": [lab.namespace(role) for role in site.router_roles],
        "client_addresses": [str(a) for a in site.client_addresses],
        "public_address": str(site.public_address),
        "lan_peers": [
            {"role": role, "namespace": lab.namespace(role), "address": str(address)}
            for role, address in site.lan_peers
        ],
    }


def _gateway_summary(lab: Lab, role: str) -> Summary:
    address = lab.gateway_address(role)
    plan = lab.plan.host(role).gateway
    igd_version = 1 if plan is not None and plan.spec.igd_v1 else 2
    return {
        "role": role,
        "namespace": lab.namespace(role),
        "address": str(address),
        "pcp_nat_pmp": f"{address}:{PMP_PORT}",
        "upnp_description": f"http://{address}:{HTTP_PORT}{UPNP_DESCRIPTION_PATH}",
        "upnp_igd_version": igd_version,
    }


def example_argv(summary: Summary) -> list[str]:
    """A natkit command worth trying first in the client's namespace: what
    the scenario is for (port mapping, NAT64 paths), else a classification."""
    servers = [s["primary"] for s in summary["stun_servers"].values()]
    if summary["dns_server"] is not None and servers:
        dns = Endpoint.parse(summary["dns_server"], DNS_PORT)
        # The bare address when the port is the default: no brackets to quote.
        where = str(dns.address) if dns.port == DNS_PORT else str(dns)
        return ["natkit", "candidates", "-s", servers[0], "--dns", where]
    if summary["gateways"]:
        return ["natkit", "portmap", "--once"]
    if servers:
        return ["natkit", "classify", "-s", servers[0]]
    return ["ip", "-brief", "address"]


def render_up(summary: Summary) -> str:
    expected = " ".join(f"{k}={_json_word(v)}" for k, v in summary["expected"].items())
    lines = [
        f"lab {summary['id']} is up: {summary['scenario']} ({summary['description']})",
        f"expected: {expected}",
        "namespaces:",
        *(f"  {role:<8} {name}" for role, name in summary["namespaces"].items()),
        "stun servers:",
        *(_server_line(name, s) for name, s in summary["stun_servers"].items()),
    ]
    if not summary["stun_servers"]:
        lines.append("  (none)")
    if summary["tls_certificate"] is not None:
        lines.append(f"  tls certificate (CA file): {summary['tls_certificate']}")
    if summary["turn_servers"]:
        lines.append("turn servers:")
        lines += [_turn_line(name, s) for name, s in summary["turn_servers"].items()]
    clients = ", ".join(summary["client_addresses"])
    public = summary["public_address"]
    seen = f"seen as {public}"
    if not clients:
        clients, seen = "IPv6-only", f"reaches IPv4 through the NAT64 as {public}"
    lines.append(f"client: {clients} {seen}; loss {summary['loss_percent']:g} %")
    if summary["client_addresses_v6"]:
        lines.append(f"client IPv6: {', '.join(summary['client_addresses_v6'])}")
    if summary["dns_server"] is not None:
        dns64 = "DNS64" if summary["nat64_prefix"] is not None else "no DNS64"
        lines.append(f"resolver: {summary['dns_server']} ({dns64})")
    if summary["nat64_prefix"] is not None:
        lines.append(f"nat64 prefix: {summary['nat64_prefix']}")
    for site in summary["sites"]:
        if site["name"] != MAIN_SITE:
            lines.append(_site_line(site))
    for gateway in summary["gateways"]:
        lines.append(
            f"port mapping: {gateway['role']} {gateway['address']}:"
            f" PCP and NAT-PMP {gateway['pcp_nat_pmp']},"
            f" UPnP IGD:{gateway['upnp_igd_version']} {gateway['upnp_description']}"
        )
    for site in summary["sites"]:
        for peer in site["lan_peers"]:
            lines.append(
                f"lan peer: {peer['role']} {peer['address']} beside the client;"
                f" run there: ip netns exec {peer['namespace']} COMMAND"
            )
    if summary["rendezvous"] is not None:
        lines.append(f"rendezvous: {summary['rendezvous']}")
        for role, key in summary["node_keys"].items():
            lines.append(f"  {role:<9} key {key['key_file']}  public {key['public_key']}")
        lines.append("connect them, one command each (e.g. two terminals):")
        lines += [f"  {command}" for command in summary["connect_commands"]]
    directory = summary.get("directory")
    if directory:
        lines.append(
            f"DNS directory: zone {directory['zone']} on {directory['primary']} (primary,"
            f" updates) and {directory['secondary']} (secondary), TSIG key"
            f" {directory['tsig_key_file']}"
        )
        lines.append("connect them through it instead of the rendezvous:")
        lines += [f"  {command}" for command in directory["connect_commands"]]
    if summary["wireguard"]:
        lines.append("or WireGuard through natkit, three commands per site (2 keeps running):")
        for site in summary["wireguard"]:
            lines.append(f"  {site['role']} ({site['interface']}, {site['tunnel_address']}):")
            lines += [f"    {command}" for command in site["commands"]]
    if "build_seconds" in summary:
        lines.append(f"built in {summary['build_seconds']:.2f} s")
    lines += [
        f"run in the client:  {summary['client_exec']} COMMAND",
        f"  for example:      {summary['example_command']}",
        f"tear down:          natkit lab down {summary['id']}",
    ]
    return "\n".join(lines)


def _server_line(name: str, server: Summary) -> str:
    line = f"  {name:<8} {server['primary']}  alternate {server['alternate']}"
    if server["tls"] is not None:
        line += f"  tls {server['tls']}"
    if server["ipv6"] is not None:
        line += f"  ipv6 {server['ipv6']}"
    return line


def _turn_line(name: str, server: Summary) -> str:
    if server["secret"] is not None:
        auth = f"REST API secret {server['secret']}"
    else:
        auth = f"user {server['user']} password {server['password']}"
    return (
        f"  {name:<11} {server['address']} udp/tcp {server['port']} tls {server['tls_port']}"
        f"  realm {server['realm']}, {auth}; CA file {server['ca_file']}"
    )


def _site_line(site: Summary) -> str:
    clients = ", ".join(site["client_addresses"])
    routers = ", ".join(site["router_roles"]) or "none"
    return (
        f"site {site['name']}: {site['client_role']} {clients} seen as {site['public_address']};"
        f" routers {routers}; run there: ip netns exec {site['client_namespace']} COMMAND"
    )


def _json_word(value: object) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


# ----------------------------------------------------------------- down


def _down(args: argparse.Namespace) -> int:
    if not (args.ids or args.all or args.stale):
        print("natkit lab down: error: give lab ids, --all or --stale", file=sys.stderr)
        return EXIT_USAGE
    require_root()
    records = lab_state.load_all()
    wanted: list[str] = list(dict.fromkeys(args.ids))
    if args.all:
        wanted += [r.run_id for r in records if r.run_id not in wanted]
    elif args.stale:
        wanted += [r.run_id for r in records if r.stale and r.run_id not in wanted]
    status = EXIT_OK
    for run_id in wanted:
        try:
            teardown_id(run_id)
        except LabError as exc:
            print(f"natkit lab down: error: {exc}", file=sys.stderr)
            status = EXIT_FAILURE
        else:
            print(f"lab {run_id} is down")
    if args.all or args.stale:
        for name in remove_orphans():
            print(f"removed orphaned namespace {name}")
    return status


# ----------------------------------------------------------------- list


def _list(args: argparse.Namespace) -> int:
    records = lab_state.load_all()
    data = {
        "scenarios": [
            {"name": s.name, "description": s.description, "expected": s.expected.as_json()}
            for s in SCENARIOS.values()
        ],
        "labs": [_record_summary(r) for r in records],
        "orphaned_namespaces": orphan_namespaces(),
    }
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(render_list(data))
    return EXIT_OK


def _record_summary(record: LabRecord) -> Summary:
    if record.detached:
        status = "detached"
    elif record.owner_alive:
        status = f"owned by pid {record.owner_pid}"
    else:
        status = "stale"
    return {
        "id": record.run_id,
        "scenario": record.scenario,
        "status": status,
        "age_seconds": round(max(0.0, time.time() - record.created)),
        "servers": list(record.servers),
        "namespaces": list(record.namespaces),
        "loss_percent": record.loss_percent,
    }


def render_list(data: Summary) -> str:
    width = max(len(s["name"]) for s in data["scenarios"])
    lines = ["scenarios:"]
    for s in data["scenarios"]:
        lines.append(f"  {s['name']:<{width}}  {s['description']}")
    lines.append("running labs:")
    if not data["labs"]:
        lines.append("  (none)")
    for lab in data["labs"]:
        servers = ",".join(lab["servers"]) or "no servers"
        lines.append(
            f"  {lab['id']}  {lab['scenario']:<{width}}  {lab['status']}, up"
            f" {lab['age_seconds']} s, {servers}, loss {lab['loss_percent']:g} %"
        )
    if data["orphaned_namespaces"]:
        lines.append("orphaned namespaces (natkit lab down --stale removes them):")
        lines += [f"  {name}" for name in data["orphaned_namespaces"]]
    return "\n".join(lines)
