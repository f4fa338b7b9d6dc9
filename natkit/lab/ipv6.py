"""IPv6 in the lab: a dual-stack internet, and a router with NAT64 and DNS64.

Theory of operation. A scenario with an :class:`Ipv6Spec` (one NAT router,
no extra sites) gets, on top of its IPv4 plan:

1. *Addresses* from the documentation space 2001:db8::/32 (RFC 3849): the
   internet bridge carries 2001:db8:1::/64, each internet host holding the
   addresses of :data:`INTERNET_HOSTS_V6`; the router's WAN is
   2001:db8:1::1 and its LAN 2001:db8:2::/64 (router ::1, client ::2).
   IPv6 is routed, not translated: the internet hosts route the client's
   /64 via the router, and the client's address is its public one.
2. *Dual-stack* (no prefix): the client keeps its IPv4 behind the NAT and
   has IPv6 beside it. The router runs unbound as the client's resolver,
   without DNS64, so NAT64 discovery there meets a real "no DNS64".
3. *IPv6-only with NAT64* (a prefix): the client has no IPv4 at all. The
   router runs tayga, which translates between the prefix and the private
   pool 192.168.255.0/24 (RFC 7915, stateless); the router's own nftables
   masquerade (the scenario's :class:`~natkit.lab.nat.NatSpec`) maps the
   pool to its public address, which together is the stateful NAPT64 of
   RFC 6146. unbound synthesises AAAA records with the prefix (DNS64, RFC
   6147) and serves ``ipv4only.arpa`` (A 192.0.0.170 and .171) as an
   auth-zone, because LAB.md found that records served with ``local-data``
   are not synthesised. tayga drops the well-known prefix with RFC 5737
   addresses (RFC 6052 §3.1), so the lab uses network-specific prefixes.
4. tayga's TUN device is made persistent first (``tayga --mktun``), so its
   address and routes are set like any other link's before the daemon
   attaches to it. Configs, tayga's data dir, the zone file and the logs
   live in the lab's work directory; nothing runs in the root namespace,
   and teardown kills whatever runs in the lab's namespaces.
5. Ready means: unbound answers ``AAAA ipv4only.arpa`` asked from the
   client's namespace (with the synthesis when there is a prefix), and,
   when a lab STUN server runs, a Binding request sent from the client to
   that server's address under the prefix is answered through tayga. The
   DNS and STUN bytes are built here by hand, so the lab does not depend on
   the code it tests.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from natkit.endpoint import Endpoint
from natkit.lab.errors import ServerStartError
from natkit.lab.netns import exec_argv, socket_in

IPv4 = ipaddress.IPv4Address
IPv6 = ipaddress.IPv6Address
Net6 = ipaddress.IPv6Network

#: The internet bridge's IPv6 network.
INTERNET_V6 = Net6("2001:db8:1::/64")
#: Internet hosts' IPv6 addresses, by role (primary first).
INTERNET_HOSTS_V6: dict[str, tuple[IPv6, ...]] = {
    "stun": (IPv6("2001:db8:1::10"), IPv6("2001:db8:1::11")),
    "coturn": (IPv6("2001:db8:1::20"), IPv6("2001:db8:1::21")),
    "peer": (IPv6("2001:db8:1::30"), IPv6("2001:db8:1::31")),
}
ROUTER_WAN_V6 = IPv6("2001:db8:1::1")
#: The client's LAN, routed through the router.
CLIENT_LAN_V6 = Net6("2001:db8:2::/64")
ROUTER_LAN_V6 = IPv6("2001:db8:2::1")
CLIENT_V6 = IPv6("2001:db8:2::2")

#: tayga's TUN device, its IPv4 address and the pool it maps IPv6 hosts to.
TAYGA_IF = "nk-nat64"
TAYGA_POOL = ipaddress.IPv4Network("192.168.255.0/24")
TAYGA_ADDRESS = IPv4("192.168.255.1")
DNS_PORT = 53
#: RFC 6052 §2.2 prefix lengths tayga and unbound accept.
PREFIX_LENGTHS = (32, 40, 48, 56, 64, 96)
#: tayga drops these with non-global IPv4 (RFC 6052 §3.1): useless in the lab.
WELL_KNOWN_PREFIX = Net6("64:ff9b::/96")
#: Names the lab's resolver serves for its servers (RFC 6761 reserves .test).
LAB_ZONE = "natkit.test"
#: RFC 7050 / RFC 8880: the name DNS64 discovery asks for.
IPV4ONLY_ARPA = "ipv4only.arpa"
IPV4ONLY_ADDRESSES = (IPv4("192.0.0.170"), IPv4("192.0.0.171"))
#: Seconds tayga and unbound get to become ready.
READY_TIMEOUT_S = 10.0
_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class Ipv6Spec:
    """IPv6 for a scenario's client (see the module docstring)."""

    nat64_prefix: Net6 | None = None
    """``None``: dual-stack; a prefix: IPv6-only behind NAT64/DNS64 on it."""

    def __post_init__(self) -> None:
        prefix = self.nat64_prefix
        if prefix is None:
            return
        if prefix.prefixlen not in PREFIX_LENGTHS:
            raise ValueError(f"NAT64 prefix length /{prefix.prefixlen} is not one of RFC 6052's")
        if prefix == WELL_KNOWN_PREFIX:
            raise ValueError("tayga drops 64:ff9b::/96 with the lab's RFC 5737 addresses")
        if prefix.network_address.packed[8]:
            raise ValueError("bits 64-71 of a NAT64 prefix must be zero (RFC 6052 §2.2)")
        if prefix.overlaps(INTERNET_V6) or prefix.overlaps(CLIENT_LAN_V6):
            raise ValueError(f"NAT64 prefix {prefix} overlaps the lab's IPv6 networks")

    @property
    def ipv6_only(self) -> bool:
        """The client has no IPv4 (it reaches IPv4 through the NAT64)."""
        return self.nat64_prefix is not None


@dataclass(frozen=True, slots=True)
class Ipv6GatewayPlan:
    """What a router of an IPv6 scenario runs besides routing: unbound, tayga."""

    spec: Ipv6Spec
    #: Where unbound listens (the router's LAN address).
    resolver: IPv6

    @property
    def dns_server(self) -> Endpoint:
        return Endpoint(self.resolver, DNS_PORT)


# -- plans and configs (pure) ------------------------------------------------------


def internet_host_lines(role: str, ifname: str) -> list[str]:
    """``ip -batch`` lines giving an internet host its IPv6 addresses and a
    route to the client's LAN through the router."""
    lines = [
        f"address add {a}/{INTERNET_V6.prefixlen} dev {ifname}" for a in INTERNET_HOSTS_V6[role]
    ]
    lines.append(f"route add {CLIENT_LAN_V6} via {ROUTER_WAN_V6} dev {ifname}")
    return lines


def router_lines(wan_if: str, lan_if: str) -> list[str]:
    return [
        f"address add {ROUTER_WAN_V6}/{INTERNET_V6.prefixlen} dev {wan_if}",
        f"address add {ROUTER_LAN_V6}/{CLIENT_LAN_V6.prefixlen} dev {lan_if}",
    ]


def client_lines(ifname: str) -> list[str]:
    return [
        f"address add {CLIENT_V6}/{CLIENT_LAN_V6.prefixlen} dev {ifname}",
        f"route add ::/0 via {ROUTER_LAN_V6} dev {ifname}",
    ]


#: The router forwards IPv6 (set before its links exist).
ROUTER_SYSCTLS: tuple[tuple[str, str], ...] = (
    ("net.ipv6.conf.all.forwarding", "1"),
    ("net.ipv6.conf.default.forwarding", "1"),
)


def tayga_lines(prefix: Net6) -> list[str]:
    """``ip -batch`` lines for tayga's persistent TUN device (after ``--mktun``)."""
    return [
        f"link set {TAYGA_IF} up",
        f"route add {TAYGA_POOL} dev {TAYGA_IF}",
        f"route add {prefix} dev {TAYGA_IF}",
    ]


def render_tayga_config(prefix: Net6, workdir: Path, role: str) -> str:
    return "\n".join(
        [
            f"tun-device {TAYGA_IF}",
            f"ipv4-addr {TAYGA_ADDRESS}",
            f"prefix {prefix}",
            f"dynamic-pool {TAYGA_POOL}",
            f"data-dir {tayga_dir(workdir, role)}",
            "",
        ]
    )


def render_ipv4only_zone() -> str:
    """The ``ipv4only.arpa`` zone of RFC 8880 §2 (A records only)."""
    records = "\n".join(f"@ 3600 IN A {a}" for a in IPV4ONLY_ADDRESSES)
    return (
        "$ORIGIN ipv4only.arpa.\n"
        "@ 3600 IN SOA ns.ipv4only.arpa. hostmaster.ipv4only.arpa. 1 3600 600 86400 3600\n"
        "@ 3600 IN NS ns.ipv4only.arpa.\n"
        f"{records}\n"
    )


def render_names_zone(records: Mapping[str, Sequence[IPv4 | IPv6]]) -> str:
    """The :data:`LAB_ZONE` zone: ``{host: addresses}`` as A/AAAA records. A
    name with only A records gets its AAAA synthesised by DNS64, as a real
    IPv4-only server's name would."""
    lines = [
        f"$ORIGIN {LAB_ZONE}.",
        f"@ 3600 IN SOA ns.{LAB_ZONE}. hostmaster.{LAB_ZONE}. 1 3600 600 86400 3600",
        f"@ 3600 IN NS ns.{LAB_ZONE}.",
    ]
    for host, addresses in records.items():
        for address in addresses:
            kind = "A" if address.version == 4 else "AAAA"
            lines.append(f"{host} 3600 IN {kind} {address}")
    return "\n".join(lines) + "\n"


def render_unbound_config(plan: Ipv6GatewayPlan, workdir: Path, role: str) -> str:
    """unbound as the client's resolver: DNS64 on the prefix, if any."""
    prefix = plan.spec.nat64_prefix
    modules = "dns64 iterator" if prefix is not None else "iterator"
    lines = [
        "server:",
        f"  interface: {plan.resolver}",
        f"  port: {DNS_PORT}",
        "  do-daemonize: no",
        '  chroot: ""',
        '  username: ""',
        f'  directory: "{workdir}"',
        f'  pidfile: "{unbound_pid_path(workdir, role)}"',
        "  use-syslog: no",
        '  logfile: ""',
        "  verbosity: 1",
        "  do-ip4: no",
        "  access-control: ::/0 allow",
        f'  module-config: "{modules}"',
        # unbound answers .test (RFC 6761) itself with NXDOMAIN unless told not to.
        f'  local-zone: "{LAB_ZONE.rsplit(".", 1)[-1]}." nodefault',
    ]
    if prefix is not None:
        lines.append(f"  dns64-prefix: {prefix}")
    # Auth-zones answered through the iterator, so DNS64 sees (and
    # synthesises from) their A records; local-data would not be (LAB.md).
    for zone, path in ((IPV4ONLY_ARPA, zone_path(workdir, role)), (LAB_ZONE, names_path(workdir))):
        lines += [
            "auth-zone:",
            f'  name: "{zone}"',
            f'  zonefile: "{path}"',
            "  for-downstream: no",
            "  for-upstream: yes",
        ]
    lines += [
        "remote-control:",
        "  control-enable: no",
        "",
    ]
    return "\n".join(lines)


def tayga_dir(workdir: Path, role: str) -> Path:
    return workdir / f"tayga-{role}"


def tayga_config_path(workdir: Path, role: str) -> Path:
    return workdir / f"tayga-{role}.conf"


def unbound_config_path(workdir: Path, role: str) -> Path:
    return workdir / f"unbound-{role}.conf"


def unbound_pid_path(workdir: Path, role: str) -> Path:
    return workdir / f"unbound-{role}.pid"


def zone_path(workdir: Path, role: str) -> Path:
    return workdir / "ipv4only.arpa.zone"


def names_path(workdir: Path) -> Path:
    return workdir / f"{LAB_ZONE}.zone"


def log_path(workdir: Path, program: str, role: str) -> Path:
    return workdir / f"{program}-{role}.log"


def synthesize(prefix: Net6, ipv4: IPv4) -> IPv6:
    """RFC 6052 §2.2 by hand (the lab does not use natkit's own helper)."""
    positions = {32: (4, 5, 6, 7), 40: (5, 6, 7, 9), 48: (6, 7, 9, 10), 56: (7, 9, 10, 11),
                 64: (9, 10, 11, 12), 96: (12, 13, 14, 15)}[prefix.prefixlen]  # fmt: skip
    address = bytearray(prefix.network_address.packed)
    for offset, value in zip(positions, ipv4.packed, strict=True):
        address[offset] = value
    return IPv6(bytes(address))


# -- DNS by hand ----------------------------------------------------------------------


def aaaa_query(name: str, transaction_id: int) -> bytes:
    """A recursive AAAA query for ``name`` (RFC 1035 §4.1)."""
    header = transaction_id.to_bytes(2, "big") + b"\x01\x00" + b"\x00\x01" + b"\x00" * 6
    labels = b"".join(len(p).to_bytes(1, "big") + p.encode() for p in name.split(".") if p)
    return header + labels + b"\x00" + b"\x00\x1c\x00\x01"


def aaaa_answers(data: bytes, transaction_id: int) -> list[IPv6] | None:
    """The AAAA addresses in a response to :func:`aaaa_query` (``None``: not one)."""
    if len(data) < 12 or int.from_bytes(data[:2], "big") != transaction_id:
        return None
    if not data[2] & 0x80 or data[3] & 0x0F:  # not a response, or an error rcode
        return None
    questions, answers = int.from_bytes(data[4:6], "big"), int.from_bytes(data[6:8], "big")
    offset = 12
    try:
        for _ in range(questions):
            offset = _skip_name(data, offset) + 4
        found: list[IPv6] = []
        for _ in range(answers):
            offset = _skip_name(data, offset)
            rtype = int.from_bytes(data[offset : offset + 2], "big")
            length = int.from_bytes(data[offset + 8 : offset + 10], "big")
            offset += 10
            if rtype == 28 and length == 16:
                found.append(IPv6(data[offset : offset + 16]))
            offset += length
    except (IndexError, ValueError):
        return None
    return found


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:  # a compression pointer ends the name
            return offset + 2
        offset += 1 + length


# -- touching the system ---------------------------------------------------------------


def _start(namespace: str, argv: list[str], log: Path, workdir: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            exec_argv(namespace, argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=workdir,
        )


def make_tun_argv(workdir: Path, role: str) -> list[str]:
    """``tayga --mktun``: create the persistent TUN device and exit."""
    return ["tayga", "--mktun", "-c", str(tayga_config_path(workdir, role))]


def write_tayga_config(prefix: Net6, workdir: Path, role: str) -> None:
    tayga_dir(workdir, role).mkdir(parents=True, exist_ok=True)
    tayga_config_path(workdir, role).write_text(
        render_tayga_config(prefix, workdir, role), encoding="utf-8"
    )


def start_tayga(namespace: str, workdir: Path, role: str) -> subprocess.Popen[bytes]:
    """tayga in the foreground (``-d``), on the device ``--mktun`` made."""
    argv = ["tayga", "-d", "-c", str(tayga_config_path(workdir, role))]
    return _start(namespace, argv, log_path(workdir, "tayga", role), workdir)


def start_unbound(
    plan: Ipv6GatewayPlan,
    namespace: str,
    workdir: Path,
    role: str,
    names: Mapping[str, Sequence[IPv4 | IPv6]],
) -> subprocess.Popen[bytes]:
    """unbound in the foreground with only this config (``-c``), serving
    ``ipv4only.arpa`` and ``names`` in :data:`LAB_ZONE`."""
    zone_path(workdir, role).write_text(render_ipv4only_zone(), encoding="utf-8")
    names_path(workdir).write_text(render_names_zone(names), encoding="utf-8")
    config = unbound_config_path(workdir, role)
    config.write_text(render_unbound_config(plan, workdir, role), encoding="utf-8")
    argv = ["unbound", "-d", "-c", str(config)]
    return _start(namespace, argv, log_path(workdir, "unbound", role), workdir)


def wait_dns_ready(
    proc: subprocess.Popen[bytes],
    plan: Ipv6GatewayPlan,
    client_namespace: str,
    log: Path,
    deadline: float,
) -> list[IPv6]:
    """Until unbound answers ``AAAA ipv4only.arpa`` from the client side;
    returns the answer (the synthesis under the prefix, or nothing)."""
    expected = (
        []
        if plan.spec.nat64_prefix is None
        else sorted(synthesize(plan.spec.nat64_prefix, a) for a in IPV4ONLY_ADDRESSES)
    )
    sock = socket_in(client_namespace, socket.AF_INET6)
    try:
        sock.settimeout(_POLL_S)
        while True:
            if proc.poll() is not None:
                raise ServerStartError(
                    "unbound", f"exited with status {proc.returncode}", _tail(log)
                )
            txid = secrets.randbelow(0x10000)
            try:
                sock.sendto(aaaa_query(IPV4ONLY_ARPA, txid), plan.dns_server.sockaddr())
                while True:
                    answers = aaaa_answers(sock.recv(4096), txid)
                    if answers is not None and sorted(answers) == expected:
                        return answers
            except OSError:  # timeout, or refused while it starts
                pass
            if time.monotonic() >= deadline:
                raise ServerStartError("unbound", "no DNS answer in time", _tail(log))
    finally:
        sock.close()


def wait_nat64_ready(
    proc: subprocess.Popen[bytes],
    client_namespace: str,
    targets: Sequence[Endpoint],
    log: Path,
    deadline: float,
) -> None:
    """Until a STUN Binding from the client to each synthesised ``targets``
    is answered through tayga (the whole data path works)."""
    from natkit.lab.servers import binding_request, is_binding_success  # noqa: PLC0415

    sock = socket_in(client_namespace, socket.AF_INET6)
    try:
        sock.settimeout(_POLL_S)
        pending = list(targets)
        while pending:
            if proc.poll() is not None:
                raise ServerStartError("tayga", f"exited with status {proc.returncode}", _tail(log))
            tid = secrets.token_bytes(12)
            try:
                sock.sendto(binding_request(tid), pending[0].sockaddr())
                while True:
                    if is_binding_success(sock.recv(2048), tid):
                        pending.pop(0)
                        break
            except OSError:
                pass
            if pending and time.monotonic() >= deadline:
                raise ServerStartError("tayga", f"no STUN answer through {pending[0]}", _tail(log))
    finally:
        sock.close()


def _tail(log: Path, lines: int = 15) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
