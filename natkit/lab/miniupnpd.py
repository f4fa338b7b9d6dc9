"""A port-mapping gateway for lab routers: Debian's ``miniupnpd-nftables``.

Theory of operation. A router whose :class:`~natkit.lab.nat.NatSpec` has a
:class:`PortMappingSpec` also runs miniupnpd 2.3.1 in its namespace,
serving UPnP IGD, NAT-PMP and PCP on its LAN. What LAB.md established, and
how this module answers it:

1. miniupnpd writes its rules into nftables chains it does not create:
   :func:`render_chains` declares table ``inet nk_upnp`` with the three
   chains (forward filter, prerouting DNAT, postrouting SNAT) and base
   chains jumping into them. It is loaded with the router's ruleset and
   reloaded (emptied) only while miniupnpd is stopped, because miniupnpd
   caches what it believes its chains hold.
2. It refuses to forward while its WAN address is reserved, and RFC 5737
   addresses are: it learns its public address by STUN from the lab's RFC
   5780 server instead (``ext_perform_stun``).
3. Config, lease file, pid file and log live in the lab's work directory;
   ``-d`` keeps it in the foreground with its log on stderr (there is no
   ``/dev/log`` to write to), which goes to the log file.
4. Ready means answering a NAT-PMP public address request with success from
   the client side of the LAN (result 3, NETWORK_FAILURE, means it has not
   learnt its address yet). The request bytes are built here by hand, so
   the lab does not depend on the codec it is used to test.

Nothing here decides anything about natkit's clients; the functions that
touch the system are at the bottom.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from natkit.endpoint import Endpoint
from natkit.lab.errors import ServerStartError
from natkit.lab.netns import exec_argv, socket_in

#: The nftables table (family ``inet``) miniupnpd writes into.
UPNP_TABLE = "nk_upnp"
#: Chains miniupnpd fills: filter accepts, DNAT, and SNAT for port preservation.
FORWARD_CHAIN = "miniupnpd"
PREROUTING_CHAIN = "prerouting_miniupnpd"
POSTROUTING_CHAIN = "postrouting_miniupnpd"
MAPPING_CHAINS = (FORWARD_CHAIN, PREROUTING_CHAIN, POSTROUTING_CHAIN)

#: Where miniupnpd answers NAT-PMP and PCP (RFC 6886 §3.1, RFC 6887 §19.1).
PMP_PORT = 5351
#: Its HTTP port for the IGD description and SOAP control (any free port).
HTTP_PORT = 5000
#: Seconds miniupnpd gets to learn its address by STUN and start answering.
READY_TIMEOUT_S = 10.0
_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class PortMappingSpec:
    """A miniupnpd on the router's LAN: what it serves and how it behaves."""

    igd_v1: bool = False
    """Describe the device as IGD:1 (``force_igd_desc_v1``); IGD:2 otherwise."""
    secure_mode: bool = True
    """Clients may only map to their own address (UPnP error 718 otherwise)."""
    min_lifetime: int = 120
    """PCP/NAT-PMP lifetimes are clamped to ``[min_lifetime, max_lifetime]``."""
    max_lifetime: int = 86400

    def __post_init__(self) -> None:
        if not 0 < self.min_lifetime <= self.max_lifetime:
            raise ValueError(f"impossible lifetime clamp {self.min_lifetime}-{self.max_lifetime}")


@dataclass(frozen=True, slots=True)
class MiniupnpdPlacement:
    """Where one miniupnpd runs: its router's interfaces and LAN."""

    wan_interface: str
    lan_interface: str
    lan: ipaddress.IPv4Network
    lan_address: ipaddress.IPv4Address


@dataclass(frozen=True, slots=True)
class GatewayPlan:
    """One router's miniupnpd: what it serves and where."""

    spec: PortMappingSpec
    placement: MiniupnpdPlacement


@dataclass(frozen=True, slots=True)
class Redirect:
    """One port mapping as miniupnpd wrote it into the prerouting chain."""

    transport: str
    """``udp`` or ``tcp``."""
    external_port: int
    internal: Endpoint


def render_chains() -> str:
    """``nft -f`` text declaring, emptying and redeclaring miniupnpd's table.

    The base chains accept by default (the router's own ``nk_nat`` table
    does the NAT and its filtering); they only jump into the chains
    miniupnpd fills. The SNAT chain runs before ``nk_nat``'s masquerade so
    miniupnpd's port-preserving SNAT wins for mapped flows.
    """
    return "\n".join(
        [
            f"table inet {UPNP_TABLE}",
            f"delete table inet {UPNP_TABLE}",
            f"table inet {UPNP_TABLE} {{",
            f"\tchain {FORWARD_CHAIN} {{ }}",
            f"\tchain {PREROUTING_CHAIN} {{ }}",
            f"\tchain {POSTROUTING_CHAIN} {{ }}",
            "\tchain forward {",
            "\t\ttype filter hook forward priority filter; policy accept;",
            f"\t\tjump {FORWARD_CHAIN}",
            "\t}",
            "\tchain prerouting {",
            "\t\ttype nat hook prerouting priority dstnat - 1; policy accept;",
            f"\t\tjump {PREROUTING_CHAIN}",
            "\t}",
            "\tchain postrouting {",
            "\t\ttype nat hook postrouting priority srcnat - 1; policy accept;",
            f"\t\tjump {POSTROUTING_CHAIN}",
            "\t}",
            "}",
            "",
        ]
    )


def render_config(
    spec: PortMappingSpec,
    placement: MiniupnpdPlacement,
    stun: Endpoint,
    workdir: Path,
    role: str,
) -> str:
    """The ``miniupnpd.conf`` of the router ``role``."""
    lan = placement.lan
    lines = [
        f"ext_ifname={placement.wan_interface}",
        f"listening_ip={placement.lan_interface}",
        f"http_port={HTTP_PORT}",
        "enable_upnp=yes",
        "enable_natpmp=yes",  # NAT-PMP and PCP alike
        f"secure_mode={'yes' if spec.secure_mode else 'no'}",
        "system_uptime=no",  # the epoch counts from miniupnpd's own start
        "ipv6_disable=yes",
        "notify_interval=60",
        f"min_lifetime={spec.min_lifetime}",
        f"max_lifetime={spec.max_lifetime}",
        f"lease_file={lease_path(workdir, role)}",
        # LAB.md: its WAN address is reserved (RFC 5737); STUN tells it the
        # address is public and unfiltered, so it forwards.
        "ext_perform_stun=yes",
        f"ext_stun_host={stun.address}",
        f"ext_stun_port={stun.port}",
        f"upnp_table_name={UPNP_TABLE}",
        f"upnp_nat_table_name={UPNP_TABLE}",
        f"upnp_forward_chain={FORWARD_CHAIN}",
        f"upnp_nat_chain={PREROUTING_CHAIN}",
        f"upnp_nat_postrouting_chain={POSTROUTING_CHAIN}",
        f"uuid={uuid.uuid5(uuid.NAMESPACE_URL, f'natkit-lab:{role}:{workdir}')}",
        "friendly_name=natkit lab router",
        f"allow 1024-65535 {lan} 1024-65535",
        "deny 0-65535 0.0.0.0/0 0-65535",
    ]
    if spec.igd_v1:
        lines.append("force_igd_desc_v1=yes")
    return "\n".join(lines) + "\n"


def config_path(workdir: Path, role: str) -> Path:
    return workdir / f"miniupnpd-{role}.conf"


def lease_path(workdir: Path, role: str) -> Path:
    return workdir / f"miniupnpd-{role}.leases"


def log_path(workdir: Path, role: str) -> Path:
    return workdir / f"miniupnpd-{role}.log"


def pid_path(workdir: Path, role: str) -> Path:
    return workdir / f"miniupnpd-{role}.pid"


def miniupnpd_argv(workdir: Path, role: str) -> list[str]:
    """Foreground (``-d``), its own pid file, our config only."""
    return [
        "miniupnpd",
        "-d",
        "-f",
        str(config_path(workdir, role)),
        "-P",
        str(pid_path(workdir, role)),
    ]


# miniupnpd writes raw payload matches: ``@nh,72,8 0x11`` is the IPv4
# protocol byte (17, UDP; 0x6 TCP), ``th dport`` the transport header's port.
_REDIRECT = re.compile(
    r"@nh,72,8 (?P<proto>0x11|0x6) th dport (?P<ext>\d+) dnat (?:ip )?to"
    r" (?P<ip>[\d.]+):(?P<port>\d+)"
)
_TRANSPORTS = {"0x11": "udp", "0x6": "tcp"}


def parse_redirects(ruleset: str) -> tuple[Redirect, ...]:
    """The DNAT rules in ``nft list table inet nk_upnp`` output."""
    return tuple(
        Redirect(
            _TRANSPORTS[m.group("proto")],
            int(m.group("ext")),
            Endpoint(ipaddress.IPv4Address(m.group("ip")), int(m.group("port"))),
        )
        for m in _REDIRECT.finditer(ruleset)
    )


def chain_rule_count(ruleset: str) -> int:
    """Rules inside miniupnpd's own chains (not the base chains' jumps)."""
    count = 0
    inside = False
    for line in ruleset.splitlines():
        text = line.strip()
        if text.startswith("chain "):
            inside = text.split()[1] in MAPPING_CHAINS
        elif text == "}":
            inside = False
        elif inside and text:
            count += 1
    return count


# --- touching the system ----------------------------------------------------------


def start(namespace: str, workdir: Path, role: str, config: str) -> subprocess.Popen[bytes]:
    """Write the config and start miniupnpd in ``namespace``, logging to the workdir."""
    config_path(workdir, role).write_text(config, encoding="utf-8")
    lease_path(workdir, role).touch()
    with open(log_path(workdir, role), "ab") as log:
        return subprocess.Popen(
            exec_argv(namespace, miniupnpd_argv(workdir, role)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=workdir,
        )


def public_address_request() -> bytes:
    """NAT-PMP version 0, opcode 0 (RFC 6886 §3.2), by hand."""
    return b"\x00\x00"


def answers_public_address(data: bytes) -> bool:
    """A successful NAT-PMP public address response (12 bytes, result 0)."""
    return len(data) == 12 and data[0] == 0 and data[1] == 0x80 and data[2:4] == b"\x00\x00"


def wait_ready(
    proc: subprocess.Popen[bytes],
    client_namespace: str,
    gateway: ipaddress.IPv4Address,
    log: Path,
    deadline: float,
) -> None:
    """Block until miniupnpd grants NAT-PMP address requests from the LAN."""
    sock = socket_in(client_namespace)
    try:
        sock.settimeout(_POLL_S)
        while True:
            if proc.poll() is not None:
                raise ServerStartError(
                    "miniupnpd", f"exited with status {proc.returncode}", _tail(log)
                )
            try:
                sock.sendto(public_address_request(), (str(gateway), PMP_PORT))
                while True:
                    data, source = sock.recvfrom(64)
                    if source[0] == str(gateway) and answers_public_address(data):
                        return
            except OSError:  # timeout, or port unreachable while it starts
                pass
            if time.monotonic() >= deadline:
                raise ServerStartError("miniupnpd", "no NAT-PMP answer in time", _tail(log))
    finally:
        sock.close()


def _tail(log: Path, lines: int = 15) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
