"""WireGuard (wireguard-go) on lab sites: one interface per site client.

Theory of operation:

1. wireguard-go puts its UAPI socket at ``/var/run/wireguard/IFACE.sock``, a
   directory every network namespace shares, so two ``wg0`` in two lab
   namespaces (or two parallel labs) would collide ("UAPI listen error:
   unix socket in use"). Each node therefore runs under ``unshare --mount``
   with a private tmpfs on ``/run/wireguard`` (``/var/run`` links to
   ``/run`` on Debian): every site can call its interface ``wg0``, nothing
   is ever left in the host's ``/run/wireguard``, and the tmpfs goes with
   the process. ``wg`` reaches it through ``nsenter -t PID -m -n``
   (:attr:`WireGuardNode.command_prefix`), which is also how natkit itself
   is pointed at it (:attr:`WireGuardNode.control`).
2. The TUN device lives in the site client's network namespace and dies
   with the process. Keys are made by ``wg genkey`` into the lab's work
   directory, mode 0600 (``wg`` warns about anything wider), with absolute
   paths (``nsenter`` keeps the working directory, not the caller's view).
3. Tunnel addresses come from :data:`TUNNEL_NETWORK`, one per site in the
   lab's site order (the main site ``.1``, ``b`` ``.2``, ...), outside every
   range the lab's sites use.
4. Teardown: :meth:`WireGuardMesh.close` stops every node (SIGTERM, then
   SIGKILL) and removes its key; a failed start stops what had started. The
   lab's own teardown kills whatever still runs in its namespaces, so
   nothing outlives ``Lab.down`` either.

Usage (``tests/lab/test_wireguard_lab.py``, ``benchmarks/wireguard.py``)::

    with Lab.up(WIREGUARD_PAIR, servers=("coturn",)) as lab:
        with WireGuardMesh.start(lab) as mesh:
            mesh.add_peers(keepalive=1)             # allowed-ips, no endpoints
            a, b = mesh.node(""), mesh.node("b")
            asyncio.run(a.control.set_endpoint(b.public_key, mesh.public_endpoint("b")))
            asyncio.run(b.control.set_endpoint(a.public_key, mesh.public_endpoint("")))
            mesh.ping("", "b")

Needs root, ``wireguard-go``, ``wireguard-tools``, ``util-linux``
(``unshare``, ``nsenter``): ``scripts/install`` installs them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from natkit.aio.wireguard import WireGuardControl
from natkit.endpoint import Endpoint
from natkit.lab import Lab
from natkit.lab.errors import CommandError, ServerStartError
from natkit.lab.netns import exec_argv, ip_batch, require_tools, run
from natkit.lab.scenarios import get_scenario
from natkit.lab.wireguard_quick import LISTEN_PORT, TUNNEL_NETWORK
from natkit.wireguard.commands import (
    PeerConfig,
    check_interface,
    set_interface_argv,
    set_peer_argv,
)
from natkit.wireguard.keys import WireGuardKey

DEFAULT_INTERFACE = "wg0"
DEFAULT_LISTEN_PORT = LISTEN_PORT
#: Seconds wireguard-go gets to create its UAPI socket.
READY_TIMEOUT_S = 5.0
#: Seconds between SIGTERM and SIGKILL when a node stops.
STOP_GRACE_S = 2.0
UAPI_DIR = "/run/wireguard"
TOOLS = ("wireguard-go", "wg", "unshare", "nsenter")

# wireguard-go in the foreground, its UAPI directory a private tmpfs. "$1"
# is the interface name, passed as an argument, never pasted into the script.
_START_SCRIPT = (
    f"mount -t tmpfs -o mode=0700,size=64k nk-wireguard {UAPI_DIR}"
    ' && exec wireguard-go --foreground "$1"'
)

#: Two sites behind home routers (port-preserving masquerade, EIM/APDF, with
#: an input firewall): the baseline tunnel with endpoints set by hand.
WIREGUARD_PAIR = get_scenario("wireguard-pair")
#: Three such sites: a full mesh, one interface and one listen port per node.
WIREGUARD_MESH = get_scenario("wireguard-mesh")


@dataclass(frozen=True, slots=True)
class WireGuardNode:
    """wireguard-go running in one site client's namespace."""

    site: str
    role: str
    namespace: str
    interface: str
    listen_port: int
    tunnel_address: ipaddress.IPv4Interface
    public_key: WireGuardKey
    key_file: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def command_prefix(self) -> tuple[str, ...]:
        """Runs a program in the node's network *and* mount namespace, where
        ``wg`` finds the interface: ``[*prefix, "wg", "show"]``."""
        return ("nsenter", "-t", str(self.pid), "-m", "-n")

    @property
    def control(self) -> WireGuardControl:
        """natkit's ``wg`` wrapper for this interface."""
        return WireGuardControl(self.interface, command_prefix=self.command_prefix)

    def run(self, argv: Sequence[str], *, timeout: float = 30.0) -> str:
        """Run ``argv`` next to the interface; its stdout, or :class:`CommandError`."""
        result = subprocess.run(
            [*self.command_prefix, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise CommandError(argv, result.returncode, result.stderr, self.namespace)
        return result.stdout

    def set_peer(self, config: PeerConfig) -> None:
        """``wg set IFACE peer ...`` (lab set-up; natkit's own calls go through :attr:`control`)."""
        self.run(set_peer_argv(self.interface, config))

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop wireguard-go (its interface and tmpfs go with it) and remove the key."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.key_file.unlink(missing_ok=True)


class WireGuardMesh:
    """One :class:`WireGuardNode` per chosen site of a lab; a context manager."""

    def __init__(self, lab: Lab, nodes: dict[str, WireGuardNode]) -> None:
        self.lab = lab
        self.nodes = nodes
        self._closed = False

    @classmethod
    def start(
        cls,
        lab: Lab,
        sites: Iterable[str] | None = None,
        *,
        interface: str = DEFAULT_INTERFACE,
        listen_port: int = DEFAULT_LISTEN_PORT,
        log_level: str = "error",
    ) -> WireGuardMesh:
        """Start wireguard-go on each site's client (all sites by default),
        with a fresh key, ``listen_port`` and its tunnel address, and no peers.

        ``log_level`` is wireguard-go's ``LOG_LEVEL`` (``verbose``, ``error``,
        ``silent``); its log is in the lab's work directory.
        """
        require_tools(TOOLS)
        every = [s.name for s in lab.sites]
        chosen = every if sites is None else list(sites)
        mesh = cls(lab, {})
        try:
            for name in chosen:
                address = TUNNEL_NETWORK.network_address + every.index(name) + 1
                tunnel = ipaddress.IPv4Interface(f"{address}/{TUNNEL_NETWORK.prefixlen}")
                mesh.nodes[name] = start_node(
                    lab,
                    name,
                    interface=interface,
                    listen_port=listen_port,
                    tunnel_address=tunnel,
                    log_level=log_level,
                )
        except BaseException:
            mesh.close()
            raise
        return mesh

    def node(self, site: str = "") -> WireGuardNode:
        try:
            return self.nodes[site]
        except KeyError:
            raise KeyError(f"no WireGuard node on site {site!r} ({list(self.nodes)})") from None

    def public_endpoint(self, site: str) -> Endpoint:
        """Where the lab's internet reaches ``site``'s WireGuard: its public
        address and the listen port, which a port-preserving NAT keeps."""
        return Endpoint(self.lab.site(site).public_address, self.node(site).listen_port)

    def add_peers(
        self,
        *,
        endpoints: bool = False,
        keepalive: int | None = None,
        pairs: Iterable[tuple[str, str]] | None = None,
    ) -> None:
        """Make nodes peers of each other (every pair by default, both ways):
        allowed-ips the other's tunnel address; ``endpoints``: also its
        :meth:`public_endpoint`; ``keepalive``: persistent keepalive seconds."""
        names = list(self.nodes)
        chosen = (
            [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
            if pairs is None
            else list(pairs)
        )
        for first, second in chosen:
            for here, there in ((first, second), (second, first)):
                other = self.node(there)
                self.node(here).set_peer(
                    PeerConfig(
                        other.public_key,
                        allowed_ips=(ipaddress.ip_network(f"{other.tunnel_address.ip}/32"),),
                        endpoint=self.public_endpoint(there) if endpoints else None,
                        persistent_keepalive=keepalive,
                    )
                )

    def set_keepalive(self, seconds: int) -> None:
        """Persistent keepalive on every peer of every node (0: off).

        Turned on once endpoints are known, every node sends at once (a
        handshake initiation): behind NATs that filter, the first side's
        packet opens its own NAT and is dropped by the other's, the second
        side's then passes both, and the handshake completes in one round
        trip. Keepalive set before the endpoint instead fails its first
        initiation ("no known endpoint"), and WireGuard waits REKEY_TIMEOUT
        (5 s) before the next one.
        """
        for node in self.nodes.values():
            for other in self.nodes.values():
                if other is not node:
                    node.set_peer(PeerConfig(other.public_key, persistent_keepalive=seconds))

    def ping(
        self, source: str, destination: str, *, count: int = 1, wait: float = 1.0
    ) -> subprocess.CompletedProcess[str]:
        """``ping`` from ``source``'s client to ``destination``'s tunnel address."""
        target = str(self.node(destination).tunnel_address.ip)
        argv = ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", str(wait), target]
        return self.lab.exec(self.node(source).role, argv, timeout=count * 0.2 + wait + 10)

    def close(self) -> None:
        """Stop every node; idempotent."""
        if self._closed:
            return
        self._closed = True
        for node in self.nodes.values():
            node.stop()

    def __enter__(self) -> WireGuardMesh:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start_node(
    lab: Lab,
    site: str,
    *,
    interface: str = DEFAULT_INTERFACE,
    listen_port: int = DEFAULT_LISTEN_PORT,
    tunnel_address: ipaddress.IPv4Interface,
    log_level: str = "error",
) -> WireGuardNode:
    """Start wireguard-go on ``site``'s client, configured and up, without peers."""
    check_interface(interface)
    role = lab.site(site).client_role
    namespace = lab.namespace(role)
    workdir = lab.record.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    label = f"wireguard-{site or 'main'}-{interface}"
    key_file = workdir / f"{label}.key"
    log = workdir / f"{label}.log"
    public_key = _make_key(key_file)
    # The mount point must exist; the tmpfs over it stays private.
    os.makedirs(UAPI_DIR, mode=0o755, exist_ok=True)
    argv = ["unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", _START_SCRIPT, "sh", interface]  # fmt: skip
    env = {**os.environ, "WG_PROCESS_FOREGROUND": "1", "LOG_LEVEL": log_level}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            exec_argv(namespace, argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    node = WireGuardNode(
        site, role, namespace, interface, listen_port, tunnel_address, public_key, key_file,
        process, log,
    )  # fmt: skip
    try:
        _wait_ready(node)
        node.run(set_interface_argv(interface, private_key_file=str(key_file),
                                    listen_port=listen_port))  # fmt: skip
        run(
            ip_batch(
                [f"address add {tunnel_address} dev {interface}", f"link set {interface} up"],
                namespace,
            )
        )
    except BaseException:
        node.stop()
        raise
    return node


def _make_key(path: Path) -> WireGuardKey:
    """A fresh private key in ``path`` (0600); returns the public key."""
    private = subprocess.run(
        ["wg", "genkey"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(private)
    public = subprocess.run(
        ["wg", "pubkey"], input=private, capture_output=True, text=True, check=True, timeout=10
    ).stdout
    return WireGuardKey.parse(public.strip())


def _wait_ready(node: WireGuardNode) -> None:
    """Until the UAPI socket exists in the node's mount namespace (seen
    through ``/proc/PID/root``), or :class:`ServerStartError`."""
    socket_path = Path(f"/proc/{node.pid}/root{UAPI_DIR}/{node.interface}.sock")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if node.process.poll() is not None:
            raise ServerStartError(
                "wireguard-go", f"exited with status {node.process.returncode}", node.log_tail()
            )
        with contextlib.suppress(OSError):
            if socket_path.is_socket():
                return
        if time.monotonic() >= deadline:
            raise ServerStartError("wireguard-go", "no UAPI socket in time", node.log_tail())
        time.sleep(0.01)
