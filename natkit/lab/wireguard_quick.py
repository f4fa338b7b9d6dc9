"""The WireGuard quick start in the lab: a wg-quick file per site, three commands each.

For scenarios with ``wireguard=True`` (``wireguard-*``), ``natkit lab up``
writes one wg-quick configuration per site client into the lab's work
directory, as a WireGuard user has one: the site's private key (the node
key the lab made for the rendezvous: natkit uses WireGuard's key pair as
its own, and both are ``wg genkey`` files), a listen port, the site's
tunnel address, and every other site as a peer with its public key and
allowed IPs, **and no endpoint**: finding the endpoints is natkit's job.
``up`` then prints, per site, the three commands of the README's quick
start (:func:`quick_start`)::

    ip netns exec nk-ID-client wg-quick up /run/natkit/labs/ID.d/wgIDa.conf
    ip netns exec nk-ID-client natkit connect --wireguard wgIDa --rendezvous ... --stun ...
    ip netns exec nk-ID-client ping -c 3 10.200.0.2

Interface names carry the run id (``wg`` + id + site letter, ``a`` for
the main site): userspace WireGuard (wireguard-go, which wg-quick starts
when the kernel has no module) keeps its control socket in
``/run/wireguard/NAME.sock``, which all namespaces share, so names must
differ between the sites of a lab and between labs. The lab's teardown
stops whatever runs in its namespaces and removes those sockets
(:func:`remove_sockets`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from natkit.lab import rendezvous as lab_rendezvous
from natkit.lab.classification import MappingBehavior

if TYPE_CHECKING:
    from natkit.lab.lab import Lab

#: Tunnel addresses: outside 192.168.1.0/24, 10.0.0.0/16 and 100.64.0.0/10;
#: site ``i`` (the main site first) gets ``.i+1``.
TUNNEL_NETWORK = ipaddress.IPv4Network("10.200.0.0/24")
#: WireGuard's customary port; every site may use it (each has its own NAT).
LISTEN_PORT = 51820
#: Where userspace WireGuard keeps its control sockets.
UAPI_DIR = Path("/run/wireguard")
#: Letters for the sites' interface names, in site order.
_SITE_LETTERS = "abcdefghi"


@dataclass(frozen=True, slots=True)
class QuickStartSite:
    """One site's WireGuard in the quick start."""

    site: str
    role: str
    namespace: str
    interface: str
    config: Path
    tunnel_address: ipaddress.IPv4Interface
    #: The three commands, each a shell line to run as printed.
    commands: tuple[str, str, str]


def interface_name(run_id: str, index: int) -> str:
    """``wg`` + run id + the site's letter (at most 15 characters)."""
    return f"wg{run_id}{_SITE_LETTERS[index]}"


def tunnel_address(index: int) -> ipaddress.IPv4Interface:
    address = TUNNEL_NETWORK.network_address + index + 1
    return ipaddress.IPv4Interface(f"{address}/{TUNNEL_NETWORK.prefixlen}")


def render_config(private_key: str, index: int, peers: list[tuple[str, int]]) -> str:
    """A wg-quick file: ``peers`` are (public key, site index); no endpoints."""
    lines = [
        "[Interface]",
        f"PrivateKey = {private_key}",
        f"ListenPort = {LISTEN_PORT}",
        f"Address = {tunnel_address(index)}",
    ]
    for public_key, other in peers:
        lines += [
            "",
            "[Peer]",
            f"PublicKey = {public_key}",
            f"AllowedIPs = {tunnel_address(other).ip}/32",
        ]
    return "\n".join(lines) + "\n"


def write_configs(lab: Lab) -> list[QuickStartSite]:
    """Write every site's wg-quick file (mode 0600; the node keys must exist)."""
    sites = quick_start(lab)
    keys = {k.role: k for k in lab_rendezvous.node_keys(lab)}
    for index, site in enumerate(sites):
        private = keys[site.role].path.read_text(encoding="ascii").strip()
        peers = [(str(keys[o.role].public_key), i) for i, o in enumerate(sites) if i != index]
        text = render_config(private, index, peers)
        fd = os.open(site.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)
    return sites


def quick_start(lab: Lab) -> list[QuickStartSite]:
    """Each site's interface, file and three commands (see the module doc)."""
    workdir = lab.record.workdir
    stun = [str(s.primary) for s in lab.stun_servers.values()]
    sites = []
    for index, plan in enumerate(lab.sites):
        name = interface_name(lab.run_id, index)
        config = workdir / f"{name}.conf"
        namespace = lab.namespace(plan.client_role)
        exec_in = ["ip", "netns", "exec", namespace]
        other = 1 if index == 0 else 0
        connect = ["natkit", "connect", "--wireguard", name,
                   "--rendezvous", str(lab_rendezvous.RENDEZVOUS)]  # fmt: skip
        for server in stun[:1]:
            connect += ["--stun", server]
        if needs_relay(lab):
            connect += lab_rendezvous.traversal_argv(lab, plan.client_role)
        ping = ["ping", "-c", "3", str(tunnel_address(other).ip)]
        commands = (
            shlex.join([*exec_in, "wg-quick", "up", str(config)]),
            shlex.join([*exec_in, *connect]),
            shlex.join([*exec_in, *ping]),
        )
        address = tunnel_address(index)
        site = QuickStartSite(
            plan.name, plan.client_role, namespace, name, config, address, commands
        )
        sites.append(site)
    return sites


def needs_relay(lab: Lab) -> bool:
    """Whether the lab's sites may not meet directly by checks alone (a NAT
    that blocks UDP or moves ports per destination): then the quick start
    also names the lab's relay and port ranges
    (:func:`natkit.lab.rendezvous.traversal_argv`), so every ``wireguard-*``
    scenario connects as printed; the others keep three short commands."""
    return any(
        nat.block_udp or nat.mapping is not MappingBehavior.EIM for nat in lab.scenario.all_nats
    )


def remove_sockets(run_id: str) -> None:
    """Remove control sockets a killed wireguard-go of this lab left behind."""
    for index in range(len(_SITE_LETTERS)):
        with contextlib.suppress(OSError):
            (UAPI_DIR / f"{interface_name(run_id, index)}.sock").unlink()
