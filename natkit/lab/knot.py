"""knot on the lab's internet: the DNS directory's primary and a secondary.

Two hosts join a running lab's internet bridge, each in its own namespace
(roles ``dns`` and ``dns2``)::

    inet (bridge nk-br) ─┬─ dns   203.0.113.53  knotd, primary of dir.natkit.test.
                         └─ dns2  203.0.113.54  knotd, secondary (NOTIFY + IXFR)

The primary takes RFC 2136 updates signed with the update key (an ACL
with ``action: update``, limited to the record types natkit writes) and
sends NOTIFY to the secondary, which transfers the changes (IXFR from the
primary's journal) signed with a second, transfer-only key. Both keys are
made by ``keymgr -t`` (knot's own tool), and the update key is kept in
the lab's work directory exactly as keymgr printed it, which is the file
``--tsig-key`` reads. Nodes may also get keys of their own, each named
after the node's instance name and confined to it by knot's
``update-owner`` ACL (``KnotDirectory.start(lab, nodes=...)``): with one
shared key any holder can overwrite anyone's records; with these, only
its own. Everything (configuration, zone, journal, logs,
keys) lives under ``<lab work directory>/knot`` and goes with the lab;
:meth:`KnotDirectory.stop` removes the two hosts, and the lab's own
teardown would remove them too (they carry its run id).

knotd runs in the foreground (``-c CONF``), its log to a file. Verified
with knot 3.2.6 (Debian bookworm), see LAB.md.
"""

from __future__ import annotations

import base64
import ipaddress
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rdatatype

from natkit.directory.names import instance_name, key_label
from natkit.directory.tsig import TsigKey, parse_tsig_key
from natkit.endpoint import Endpoint
from natkit.lab.errors import LabError, MissingToolError, ServerStartError
from natkit.lab.lab import Lab
from natkit.lab.netns import (
    Command,
    add_namespaces,
    delete_namespaces,
    exec_argv,
    in_netns,
    ip_batch,
    namespace_pids,
    require_root,
    run,
)
from natkit.lab.plan import (
    BRIDGE_IF,
    HOST_IF,
    INET_ROLE,
    INTERNET_PREFIXES,
    PREFIX,
    VethPair,
    namespace_name,
)
from natkit.lab.servers import _tail as tail  # miniupnpd.py and ipv6.py have copies of it
from natkit.lab.teardown import terminate

IPv4 = ipaddress.IPv4Address

PRIMARY_ROLE, SECONDARY_ROLE = "dns", "dns2"
PRIMARY_ADDRESS = IPv4("203.0.113.53")
SECONDARY_ADDRESS = IPv4("203.0.113.54")
DNS_PORT = 53
#: The directory's zone in the lab (``natkit.test`` itself holds the
#: resolver's server names in IPv6 labs; this is a zone of its own).
LAB_DIRECTORY_ZONE = "dir.natkit.test."
#: TTL of the zone's own records and SOA minimum (negative caching): short,
#: like the records natkit publishes.
ZONE_TTL = 5
UPDATE_KEY_NAME, TRANSFER_KEY_NAME = "natkit-update", "natkit-transfer"
#: The record types natkit writes; the update ACL allows no others.
UPDATE_TYPES = ("TXT", "SRV", "PTR", "A", "AAAA")
READY_TIMEOUT_S = 10.0
_POLL_S = 0.05

#: Programs this module runs -> their Debian package.
TOOLS = {"knotd": "knot", "keymgr": "knot"}


@dataclass(frozen=True, slots=True)
class KnotPlan:
    """What the two servers are configured with (pure data)."""

    zone: str
    primary: Endpoint
    secondary: Endpoint
    update_key: TsigKey
    transfer_key: TsigKey
    #: Per-node keys, each named after its node's instance name and allowed
    #: to update only that subtree (and to add a PTR to the service).
    node_keys: tuple[TsigKey, ...] = ()


def _key_section(keys: tuple[TsigKey, ...]) -> str:
    lines = ["key:"]
    for key in keys:
        lines += [
            f"  - id: {key.name.rstrip('.')}",
            f"    algorithm: {key.algorithm.value}",
            f"    secret: {base64.b64encode(key.secret).decode()}",
        ]
    return "\n".join(lines)


def _common(directory: Path, listen: Endpoint) -> str:
    return f"""server:
    rundir: "{directory}"
    pidfile: "{directory}/knot.pid"
    listen: {listen.address}@{listen.port}

log:
  - target: stdout
    any: info

database:
    storage: "{directory}"

template:
  - id: default
    storage: "{directory}"
    file: "%s.zone"
    # The journal keeps the zone and its changes (what IXFR serves); no
    # zone file rewrite after every update.
    zonefile-sync: -1
    journal-content: changes
"""


def _node_acls(keys: tuple[TsigKey, ...]) -> tuple[str, list[str]]:
    """ACL rules confining per-node keys (knot's ``update-owner``): each key
    may write at and below the name it is called by (the node's instance
    name) and add PTRs at the service name. knot wants one rule to allow a
    whole update, so natkit sends the PTR alone."""
    if not keys:
        return "", []
    names = ", ".join(k.name.rstrip(".") for k in keys)
    other_types = ", ".join(t for t in UPDATE_TYPES if t != "PTR")
    rules = f"""
  - id: node-own
    key: [{names}]
    action: update
    update-type: [{other_types}]
    update-owner: key
    update-owner-match: sub-or-equal
  - id: node-ptr
    key: [{names}]
    action: update
    update-type: PTR
    update-owner: name
    update-owner-name: _wireguard._udp
    update-owner-match: equal"""
    return rules, ["node-own", "node-ptr"]


def render_primary_config(plan: KnotPlan, directory: Path) -> str:
    """knot.conf of the primary: updates with the update key (or a node's
    own key, within its names), transfers to the secondary with the
    transfer key, NOTIFY on every change."""
    secondary = plan.secondary
    node_rules, node_acls = _node_acls(plan.node_keys)
    acls = ", ".join(["update", "transfer", *node_acls])
    return f"""{_common(directory, plan.primary)}
{_key_section((plan.update_key, plan.transfer_key, *plan.node_keys))}

remote:
  - id: secondary
    address: {secondary.address}@{secondary.port}
    key: {plan.transfer_key.name.rstrip(".")}

acl:
  - id: update
    key: {plan.update_key.name.rstrip(".")}
    action: update
    update-type: [{", ".join(UPDATE_TYPES)}]
  - id: transfer
    address: {secondary.address}
    key: {plan.transfer_key.name.rstrip(".")}
    action: transfer{node_rules}

zone:
  - domain: {plan.zone}
    notify: secondary
    acl: [{acls}]
"""


def render_secondary_config(plan: KnotPlan, directory: Path) -> str:
    """knot.conf of the secondary: the zone from the primary, NOTIFY accepted
    from it, both signed with the transfer key."""
    primary = plan.primary
    return f"""{_common(directory, plan.secondary)}
{_key_section((plan.transfer_key,))}

remote:
  - id: primary
    address: {primary.address}@{primary.port}
    key: {plan.transfer_key.name.rstrip(".")}

acl:
  - id: notify
    address: {primary.address}
    key: {plan.transfer_key.name.rstrip(".")}
    action: notify

zone:
  - domain: {plan.zone}
    master: primary
    acl: notify
"""


def render_zone(plan: KnotPlan, serial: int = 1) -> str:
    """The zone the primary starts from: SOA, two NS and their addresses."""
    return f"""$ORIGIN {plan.zone}
$TTL {ZONE_TTL}
@    SOA ns1 hostmaster {serial} 60 10 3600 {ZONE_TTL}
@    NS  ns1
@    NS  ns2
ns1  A   {plan.primary.address}
ns2  A   {plan.secondary.address}
"""


def host_lines(address: IPv4) -> list[str]:
    """``ip -batch`` lines of a DNS host: its /24 on the bridge, on-link
    routes to the other internet prefixes (as every lab internet host has)."""
    own = next(p for p in INTERNET_PREFIXES if address in p)
    return [
        "link set lo up",
        f"address add {address}/{own.prefixlen} dev {HOST_IF}",
        f"link set {HOST_IF} up",
        *(f"route add {p} dev {HOST_IF}" for p in INTERNET_PREFIXES if p != own),
    ]


def soa_serial(namespace: str, server: Endpoint, zone: str, timeout: float = 0.5) -> int | None:
    """The zone's SOA serial at ``server``, asked from ``namespace`` (``None``:
    no answer, or no zone there yet)."""

    def ask() -> int | None:
        query = dns.message.make_query(zone, dns.rdatatype.SOA)
        try:
            response = dns.query.udp(query, str(server.address), timeout=timeout, port=server.port)
        except (dns.exception.DNSException, OSError):
            return None
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.SOA and rrset.name == dns.name.from_text(zone):
                return int(rrset[0].serial)
        return None

    return in_netns(namespace, ask)


class KnotDirectory:
    """A knot primary and secondary on a lab's internet (see the module docs)."""

    def __init__(
        self,
        lab: Lab,
        plan: KnotPlan,
        workdir: Path,
        processes: dict[str, subprocess.Popen[bytes]],
    ) -> None:
        self.lab = lab
        self.plan = plan
        self.workdir = workdir
        self._processes = processes
        self._stopped = False

    @classmethod
    def start(
        cls, lab: Lab, *, zone: str = LAB_DIRECTORY_ZONE, nodes: Sequence[bytes] = ()
    ) -> KnotDirectory:
        """Join the two hosts to ``lab``'s internet and start both servers;
        a failure leaves nothing behind.

        ``nodes`` (raw node keys) get a TSIG key each, confined to their own
        names (:meth:`node_key_file`), beside the shared update key.
        """
        require_root()
        for tool, package in TOOLS.items():
            if shutil.which(tool) is None:
                raise MissingToolError(tool, package)
        workdir = lab.record.workdir / "knot"
        if workdir.exists():
            raise LabError(f"lab {lab.run_id} already runs knot ({workdir})")
        workdir.mkdir(parents=True)
        update_text = _keymgr(UPDATE_KEY_NAME)
        origin = dns.name.from_text(zone)
        node_texts = {raw: _keymgr(instance_name(origin, raw).to_text()) for raw in nodes}
        for raw, text in node_texts.items():
            _write_secret(workdir / f"node-{key_label(raw)}.key", text)
        plan = KnotPlan(
            zone=origin.to_text(),
            primary=Endpoint(PRIMARY_ADDRESS, DNS_PORT),
            secondary=Endpoint(SECONDARY_ADDRESS, DNS_PORT),
            update_key=parse_tsig_key(update_text, "keymgr"),
            transfer_key=parse_tsig_key(_keymgr(TRANSFER_KEY_NAME), "keymgr"),
            node_keys=tuple(parse_tsig_key(t, "keymgr") for t in node_texts.values()),
        )
        _write_secret(workdir / "update.key", update_text)
        knot = cls(lab, plan, workdir, {})
        try:
            knot._build()
        except BaseException:
            knot.stop()
            raise
        return knot

    def _build(self) -> None:
        lab, plan = self.lab, self.plan
        inet = namespace_name(lab.run_id, INET_ROLE)
        hosts = ((PRIMARY_ROLE, plan.primary), (SECONDARY_ROLE, plan.secondary))
        add_namespaces([self.namespace(role) for role, _ in hosts])
        veths = [VethPair(self.namespace(r), HOST_IF, inet, _port(r)) for r, _ in hosts]
        run(ip_batch([veth.ip_command() for veth in veths]))
        for role, endpoint in hosts:
            assert isinstance(endpoint.address, IPv4)
            run(ip_batch(host_lines(endpoint.address), self.namespace(role)))
        ports = [_port(role) for role, _ in hosts]
        run(
            ip_batch(
                [f"link set {p} master {BRIDGE_IF}" for p in ports]
                + [f"link set {p} up" for p in ports],
                inet,
            )
        )
        primary_dir, secondary_dir = self.workdir / "primary", self.workdir / "secondary"
        primary_dir.mkdir()
        secondary_dir.mkdir()
        (primary_dir / f"{plan.zone}zone").write_text(render_zone(plan), encoding="utf-8")
        deadline = time.monotonic() + READY_TIMEOUT_S
        self._start_knotd(PRIMARY_ROLE, render_primary_config(plan, primary_dir))
        self._wait(PRIMARY_ROLE, plan.primary, deadline)
        self._start_knotd(SECONDARY_ROLE, render_secondary_config(plan, secondary_dir))
        # Ready once it has the zone from the primary (its first AXFR).
        self._wait(SECONDARY_ROLE, plan.secondary, deadline)

    def _start_knotd(self, role: str, config: str) -> None:
        conf = self.workdir / f"{role}.conf"
        conf.write_text(config, encoding="utf-8")
        with open(self.log_path(role), "wb") as log:
            self._processes[role] = subprocess.Popen(
                exec_argv(self.namespace(role), ["knotd", "-c", str(conf)]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait(self, role: str, server: Endpoint, deadline: float) -> None:
        """Until ``role`` serves the zone (the secondary: once transferred)."""
        proc = self._processes[role]
        while True:
            if proc.poll() is not None:
                raise ServerStartError(
                    f"knotd ({role})", f"exited with status {proc.returncode}", self.log_tail(role)
                )
            if soa_serial(self.namespace(role), server, self.plan.zone, _POLL_S * 4) is not None:
                return
            if time.monotonic() >= deadline:
                raise ServerStartError(f"knotd ({role})", "not ready in time", self.log_tail(role))
            time.sleep(_POLL_S)

    # -- use

    @property
    def zone(self) -> str:
        return self.plan.zone

    @property
    def primary(self) -> Endpoint:
        return self.plan.primary

    @property
    def secondary(self) -> Endpoint:
        return self.plan.secondary

    @property
    def update_key(self) -> TsigKey:
        return self.plan.update_key

    @property
    def update_key_file(self) -> Path:
        """The update key as ``keymgr -t`` printed it (mode 0600): ``--tsig-key``."""
        return self.workdir / "update.key"

    def node_key_file(self, raw: bytes) -> Path:
        """The key file of node ``raw`` (one of ``nodes`` given to :meth:`start`)."""
        return self.workdir / f"node-{key_label(raw)}.key"

    @property
    def directory(self) -> str:
        """``dns:ZONE@PRIMARY``, as ``--directory`` takes it."""
        return f"dns:{self.zone}@{self.primary}"

    def namespace(self, role: str) -> str:
        return namespace_name(self.lab.run_id, role)

    def serial(self, role: str = PRIMARY_ROLE) -> int | None:
        """The zone's SOA serial at the primary (or ``dns2``: the secondary)."""
        server = self.primary if role == PRIMARY_ROLE else self.secondary
        return soa_serial(self.namespace(role), server, self.zone)

    def wait_transferred(self, timeout: float = READY_TIMEOUT_S) -> int:
        """Block until the secondary has the primary's current serial; returns it.

        A bound for tests to fail on, not a speed claim (LAB.md: ~1 s).
        """
        target = self.serial(PRIMARY_ROLE)
        if target is None:
            raise LabError("the knot primary does not answer")
        deadline = time.monotonic() + timeout
        while (serial := self.serial(SECONDARY_ROLE)) is None or serial < target:
            if time.monotonic() >= deadline:
                raise LabError(
                    f"the secondary has serial {serial}, not {target}, after {timeout} s"
                )
            time.sleep(_POLL_S)
        return target

    def log_path(self, role: str) -> Path:
        return self.workdir / f"{role}.log"

    def log_tail(self, role: str) -> str:
        """The last lines of ``role``'s knotd log."""
        return tail(self.log_path(role))

    # -- teardown

    def stop(self) -> None:
        """Stop both servers, remove their hosts and files. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        namespaces = [self.namespace(PRIMARY_ROLE), self.namespace(SECONDARY_ROLE)]
        terminate(set(namespace_pids(*namespaces)), self._processes.values())
        self._processes.clear()
        delete_namespaces(namespaces)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> KnotDirectory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _port(role: str) -> str:
    """The host's bridge port in the internet namespace: ``nk-dns``."""
    return f"{PREFIX}{role}"


def _write_secret(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.write_text(text, encoding="utf-8")


def _keymgr(name: str) -> str:
    """A new HMAC-SHA256 TSIG key, as ``keymgr -t`` prints it."""
    result = run(Command(("keymgr", "-t", name, "hmac-sha256")))
    return result.stdout
