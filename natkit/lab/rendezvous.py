"""``natkit rendezvous`` on the lab's internet, and a node key per client.

For the ``connect-*`` scenarios (``Scenario.rendezvous``) the lab runs the
built-in rendezvous in the ``peer`` host's namespace on 192.0.2.10:7000 and
writes a private key for every client host (``client``, ``client-b``,
``client2``, ...) into its work directory, mode 0600, so the two ends of a
connection need nothing but the commands ``natkit lab up`` prints
(:func:`connect_argv`). The keys are lab fixtures, removed with the lab.

:func:`stop` and :func:`start` again are what a rendezvous that disappears
and comes back looks like (the clients reconnect with backoff).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from natkit.endpoint import Endpoint
from natkit.identity import PrivateKey, PublicKey
from natkit.lab.errors import ServerStartError
from natkit.lab.netns import exec_argv
from natkit.lab.plan import PEER_ADDRESSES, PEER_ROLE
from natkit.lab.servers import POLL_INTERVAL_S, natkit_cli_env

if TYPE_CHECKING:
    from natkit.lab.lab import Lab
    from natkit.lab.nat import NatSpec

#: Where the lab's rendezvous listens (the ``peer`` internet host).
RENDEZVOUS = Endpoint(PEER_ADDRESSES[0], 7000)
RENDEZVOUS_ROLE = PEER_ROLE
#: The key the lab records the process under.
PROCESS_KEY = "rendezvous"
READY_TIMEOUT_S = 10.0
_LOG = "rendezvous.log"


@dataclass(frozen=True, slots=True)
class NodeKey:
    """One client host's node key."""

    role: str
    path: Path
    public_key: PublicKey


def log_path(workdir: Path) -> Path:
    return workdir / _LOG


def argv(listen: Endpoint = RENDEZVOUS) -> list[str]:
    return [
        sys.executable,
        "-m",
        "natkit.cli",
        "rendezvous",
        "--listen",
        str(listen),
        "--json-line",
    ]


def start(lab: Lab) -> Endpoint:
    """Start the rendezvous (stopping a running one) and wait until it listens."""
    stop(lab)
    workdir = lab.record.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    log = log_path(workdir)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            exec_argv(lab.namespace(RENDEZVOUS_ROLE), argv()),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=natkit_cli_env(),
            cwd=workdir,
        )
    lab.add_process(PROCESS_KEY, proc)
    deadline = time.monotonic() + READY_TIMEOUT_S
    seen = _listening_lines(log)
    while _listening_lines(log) <= seen:
        if proc.poll() is not None:
            raise ServerStartError(
                "rendezvous", f"exited with status {proc.returncode}", _tail(log)
            )
        if time.monotonic() >= deadline:
            raise ServerStartError("rendezvous", "not listening in time", _tail(log))
        time.sleep(POLL_INTERVAL_S)
    return RENDEZVOUS


def stop(lab: Lab) -> None:
    """Stop the rendezvous (nothing running: nothing to do)."""
    lab.stop_process(PROCESS_KEY)


def running(lab: Lab) -> bool:
    return PROCESS_KEY in lab.record.pids


def client_roles(lab: Lab) -> list[str]:
    """Every client host of the lab: each site's client, then the LAN peers."""
    roles = [site.client_role for site in lab.sites]
    roles += [role for site in lab.sites for role, _ in site.lan_peers]
    return roles


def key_path(workdir: Path, role: str) -> Path:
    return workdir / f"{role}.key"


def make_keys(lab: Lab) -> list[NodeKey]:
    """A private key file per client host (kept when it exists)."""
    from natkit.identity.keyfile import load_private_key, save_private_key  # noqa: PLC0415

    workdir = lab.record.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    keys = []
    for role in client_roles(lab):
        path = key_path(workdir, role)
        if not path.exists():
            save_private_key(path, PrivateKey.generate())
        keys.append(NodeKey(role, path, load_private_key(path).public_key))
    return keys


def node_keys(lab: Lab) -> list[NodeKey]:
    """The keys :func:`make_keys` wrote (none for a lab without a rendezvous)."""
    from natkit.identity.keyfile import load_private_key  # noqa: PLC0415

    workdir = lab.record.workdir
    found = []
    for role in client_roles(lab):
        path = key_path(workdir, role)
        if path.exists():
            found.append(NodeKey(role, path, load_private_key(path).public_key))
    return found


def connect_argv(lab: Lab, me: NodeKey, peers: list[NodeKey]) -> list[str]:
    """The ``natkit connect`` command ``me`` runs (in its namespace) to reach ``peers``.

    With the lab's TURN servers running, it relays through ``coturn`` (over
    TLS from a site whose UDP is blocked, else UDP), and a site whose NAT
    allocates from a known port range says so (``--port-range``: birthday
    probing between two hard NATs needs it), so every ``connect-*`` scenario
    connects with the commands as printed."""
    servers = lab.stun_servers
    stun = [str(s.primary) for s in servers.values()][:1]
    command = ["natkit", "connect", "--rendezvous", str(RENDEZVOUS), "--key", str(me.path)]
    for peer in peers:
        command += ["--peer", str(peer.public_key)]
    for server in stun:
        command += ["--stun", server]
    return command + traversal_argv(lab, me.role)


def traversal_argv(lab: Lab, role: str) -> list[str]:
    """The relay and port-range flags of client host ``role``'s ``natkit
    connect`` (see :func:`connect_argv`): ``coturn`` when the lab runs it
    (TLS from a site whose UDP is blocked), the site NAT's port range."""
    nats = _site_nats(lab, role)
    command: list[str] = []
    turn = lab.turn_servers.get("coturn")
    if turn is not None and turn.user is not None and turn.password is not None:
        transport = "tls" if any(n.block_udp for n in nats) else "udp"
        command += [
            "--relay", turn.uri(transport), "--relay-user", turn.user,
            "--relay-password", turn.password, "--tls-ca", str(turn.ca_file),
        ]  # fmt: skip
    ranges = [n.ports for n in nats if n.ports is not None]
    if ranges:
        command += ["--port-range", str(ranges[-1])]
    return command


def _site_nats(lab: Lab, role: str) -> tuple[NatSpec, ...]:
    """The NATs in front of client host ``role`` (its site's)."""
    scenario = lab.scenario
    for plan, site in zip(lab.sites, (None, *scenario.sites), strict=False):
        roles = {plan.client_role, *(peer for peer, _ in plan.lan_peers)}
        if role in roles:
            return scenario.nats if site is None else site.nats
    return ()


def _listening_lines(log: Path) -> int:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return 0
    return text.count('"event":"listening"')


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


__all__ = [
    "RENDEZVOUS",
    "NodeKey",
    "client_roles",
    "connect_argv",
    "make_keys",
    "node_keys",
    "running",
    "start",
    "stop",
]
