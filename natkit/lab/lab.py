"""``Lab``: one running instance of a scenario.

:meth:`Lab.up` reserves a run id and builds the network
(:mod:`natkit.lab.build`), then starts the servers (natkit's STUN server,
coturn), the IPv6 gateways (unbound, tayga) and the port-mapping gateways
(miniupnpd), keeping their processes. Any failure, ``KeyboardInterrupt``
included, tears down what was built; :meth:`Lab.down` and every other
teardown go through :mod:`natkit.lab.teardown`, which needs only the
lab's record.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from natkit.endpoint import Endpoint
from natkit.lab import ipv6, miniupnpd, state
from natkit.lab import rendezvous as lab_rendezvous
from natkit.lab import turn as lab_turn
from natkit.lab import wireguard_quick as lab_wireguard_quick
from natkit.lab.build import build_network, reserve
from natkit.lab.errors import LabError
from natkit.lab.loss import render_loss
from natkit.lab.netns import (
    TOOLS,
    Command,
    exec_argv,
    in_netns,
    ip_batch,
    nft_load,
    require_root,
    require_tools,
    run,
    run_all,
    socket_in,
)
from natkit.lab.plan import (
    CLIENT_ROLE,
    MAIN_SITE,
    HostPlan,
    IPv4,
    LabPlan,
    SitePlan,
    plan_lab,
)
from natkit.lab.scenarios import Scenario, get_scenario
from natkit.lab.servers import (
    DEFAULT_SERVERS,
    READY_TIMEOUT_S,
    SERVER_HOSTS,
    ServerAddresses,
    ServerKind,
    certificate_path,
    log_path,
    natkit_server_available,
    server_addresses,
    start_server,
    wait_ready,
)
from natkit.lab.state import LabRecord
from natkit.lab.teardown import teardown, terminate

T = TypeVar("T")


class Lab:
    """A scenario built out of network namespaces, with its servers running.

    Get one with :meth:`up` (which builds it) or :meth:`attach` (an existing
    one, e.g. from ``natkit lab up``). Use it as a context manager, or call
    :meth:`down`, which is idempotent.
    """

    def __init__(
        self,
        plan: LabPlan,
        record: LabRecord,
        processes: dict[str, subprocess.Popen[bytes]] | None = None,
    ) -> None:
        self._plan = plan
        self._record = record
        self._processes = dict(processes or {})
        self._down = False

    # ----------------------------------------------------------- lifecycle

    @classmethod
    def up(
        cls,
        scenario: str | Scenario,
        *,
        servers: Iterable[str] = DEFAULT_SERVERS,
        run_id: str | None = None,
        loss_percent: float = 0.0,
        turn: bool = False,
    ) -> Lab:
        """Build ``scenario`` and start ``servers``; a failure leaves nothing behind.

        ``servers`` holds :class:`ServerKind` values (``"natkit"``, ``"coturn"``);
        pass ``()`` for a bare network. ``turn`` also starts the TURN servers
        (:mod:`natkit.lab.turn`). A ``connect-*`` scenario also gets its
        rendezvous and node keys (:mod:`natkit.lab.rendezvous`). ``run_id``
        (5 hex digits) is drawn at random when not given.
        """
        require_root()
        chosen = scenario if isinstance(scenario, Scenario) else get_scenario(scenario)
        kinds = tuple(dict.fromkeys(ServerKind(s) for s in servers))
        gateways = any(n.port_mapping is not None for n in chosen.all_nats)
        nat64 = chosen.ipv6 is not None and chosen.ipv6.ipv6_only
        require_tools(
            [
                *TOOLS,
                *(["turnserver", "openssl"] if ServerKind.COTURN in kinds or turn else []),
                *(["miniupnpd"] if gateways else []),
                *(["unbound"] if chosen.ipv6 is not None else []),
                *(["tayga"] if nat64 else []),
            ]
        )
        if gateways and not kinds:
            raise LabError(
                f"scenario {chosen.name!r} runs miniupnpd, which learns its public"
                " address by STUN: start the lab with a STUN server"
            )
        if ServerKind.NATKIT in kinds and not natkit_server_available():
            raise LabError(
                "natkit's STUN server (cli/stun_server.py) is not available;"
                " start the lab without it, e.g. servers=('coturn',)"
            )
        plan, record = reserve(chosen, kinds, run_id)
        lab = cls(plan, record)
        try:
            lab._build(kinds, loss_percent)
            if turn:
                lab_turn.start(lab)
            if chosen.rendezvous:
                lab_rendezvous.make_keys(lab)
                lab_rendezvous.start(lab)
            if chosen.wireguard:
                lab_wireguard_quick.write_configs(lab)
        except BaseException:
            lab.down()
            raise
        return lab

    @classmethod
    def attach(cls, run_id: str) -> Lab:
        """A handle on a lab recorded by another process (it keeps running)."""
        record = state.load(run_id)
        return cls(plan_lab(get_scenario(record.scenario), run_id), record)

    def down(self) -> None:
        """Stop the servers and delete every namespace of this lab. Idempotent."""
        if self._down:
            return
        teardown(self._record, self._processes.values())
        self._processes.clear()
        self._down = True

    def detach(self) -> None:
        """Leave the lab running after this process exits (``natkit lab up``)."""
        self._save(dataclasses.replace(self._record, detached=True))
        self._processes.clear()

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    def __repr__(self) -> str:
        status = "down" if self._down else "up"
        return f"<Lab {self.run_id} {self.scenario.name} {status}>"

    # ---------------------------------------------------------- properties

    @property
    def run_id(self) -> str:
        return self._plan.run_id

    @property
    def scenario(self) -> Scenario:
        return self._plan.scenario

    @property
    def plan(self) -> LabPlan:
        return self._plan

    @property
    def record(self) -> LabRecord:
        return self._record

    @property
    def is_up(self) -> bool:
        return not self._down

    @property
    def namespaces(self) -> dict[str, str]:
        """Role -> namespace: ``inet``, ``stun``, ``coturn``, ``peer``, routers, ``client``."""
        return self._plan.namespaces

    @property
    def client_namespace(self) -> str:
        return self.namespace(CLIENT_ROLE)

    @property
    def client_addresses(self) -> tuple[IPv4, ...]:
        """The client's addresses, primary first (192.168.1.2, .3 behind a NAT)."""
        return self._plan.host(CLIENT_ROLE).addresses

    @property
    def public_address(self) -> IPv4:
        """The address the lab's internet sees the client's traffic come from."""
        return self._plan.public_address

    @property
    def routers(self) -> tuple[str, ...]:
        """Roles of the NAT routers of every site, each site's from the internet inwards."""
        return tuple(h.role for h in self._plan.routers)

    @property
    def sites(self) -> tuple[SitePlan, ...]:
        """Every site, the main one (the client's, name ``""``) first."""
        return self._plan.sites

    def site(self, name: str = MAIN_SITE) -> SitePlan:
        """One site by name (``"b"``: roles ``client-b``, ``nat-b``); ``KeyError`` if unknown.

        Its ``client_role`` is what :meth:`exec`, :meth:`socket` and
        :meth:`call_in` take; its ``public_address`` is where the lab's
        internet sees its client's traffic come from.
        """
        return self._plan.site(name)

    @property
    def stun_servers(self) -> dict[str, ServerAddresses]:
        """Server name -> addresses, for the servers this lab runs."""
        v6 = self.scenario.ipv6 is not None
        return {kind: server_addresses(ServerKind(kind), ipv6=v6) for kind in self._record.servers}

    @property
    def tls_certificate(self) -> Path:
        """coturn's per-lab self-signed certificate (the CA file for its TLS port)."""
        return certificate_path(self._record.workdir)

    @property
    def client_addresses_v6(self) -> tuple[ipaddress.IPv6Address, ...]:
        """The client's IPv6 addresses (IPv6 scenarios; empty otherwise)."""
        return self._plan.host(CLIENT_ROLE).addresses_v6

    @property
    def dns_server(self) -> Endpoint | None:
        """The client's resolver in IPv6 scenarios (unbound on its router), else ``None``."""
        gateways = self._plan.ipv6_gateways
        return None if not gateways or gateways[0].ipv6 is None else gateways[0].ipv6.dns_server

    @property
    def nat64_prefix(self) -> ipaddress.IPv6Network | None:
        """The prefix the client's NAT64 and DNS64 use (``None``: no NAT64)."""
        return None if self.scenario.ipv6 is None else self.scenario.ipv6.nat64_prefix

    @property
    def loss_percent(self) -> float:
        return self._record.loss_percent

    def namespace(self, role: str) -> str:
        """The namespace of ``role``; ``KeyError`` naming the roles if unknown."""
        try:
            return self._plan.namespaces[role]
        except KeyError:
            known = ", ".join(self._plan.namespaces)
            raise KeyError(f"lab {self.run_id} has no role {role!r} (roles: {known})") from None

    @property
    def turn_servers(self) -> dict[str, lab_turn.LabTurnServer]:
        """Name -> TURN server, when the lab was started with ``turn``."""
        return {server.name: server for server in lab_turn.running(self)}

    @property
    def rendezvous(self) -> Endpoint | None:
        """The lab's ``natkit rendezvous`` while it runs (``connect-*`` scenarios)."""
        return lab_rendezvous.RENDEZVOUS if lab_rendezvous.running(self) else None

    def start_rendezvous(self) -> None:
        """(Re)start the rendezvous on 192.0.2.10:7000 (:mod:`natkit.lab.rendezvous`)."""
        lab_rendezvous.start(self)

    def stop_rendezvous(self) -> None:
        """Stop it: what a rendezvous that disappears looks like."""
        lab_rendezvous.stop(self)

    def start_turn(self, options: lab_turn.TurnOptions | None = None) -> None:
        """(Re)start the TURN servers, with coturn knobs (quotas, ports, nonce life)."""
        lab_turn.start(self, options or lab_turn.TurnOptions())

    def stop_turn(self, name: str | None = None) -> None:
        """Stop one TURN server by name, or all (a server that died)."""
        lab_turn.stop(self, name)

    def server_log(self, kind: str) -> Path:
        """The stdout/stderr log of a server of this lab."""
        return log_path(ServerKind(kind), self._record.workdir)

    # ------------------------------------------------------ running things

    def exec(
        self,
        role: str,
        argv: Sequence[str],
        *,
        check: bool = False,
        timeout: float | None = None,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``role``'s namespace and capture its output (text)."""
        return subprocess.run(
            exec_argv(self.namespace(role), argv),
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
            input=input,
            env=env,
        )

    def client_exec(
        self,
        argv: Sequence[str],
        *,
        check: bool = False,
        timeout: float | None = None,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """:meth:`exec` in the client namespace."""
        return self.exec(CLIENT_ROLE, argv, check=check, timeout=timeout, input=input, env=env)

    def popen(self, role: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in ``role``'s namespace; ``kwargs`` go to ``subprocess.Popen``.

        Anything still running in the lab is killed by :meth:`down`.
        """
        return subprocess.Popen(exec_argv(self.namespace(role), argv), **kwargs)

    def socket(
        self,
        role: str = CLIENT_ROLE,
        family: socket.AddressFamily = socket.AF_INET,
        kind: socket.SocketKind = socket.SOCK_DGRAM,
    ) -> socket.socket:
        """A socket living in ``role``'s namespace, usable from this process.

        Hand it to asyncio (``create_datagram_endpoint(sock=...)``) to run
        natkit's drivers inside the lab without a subprocess.
        """
        return socket_in(self.namespace(role), family, kind)

    def call_in(self, role: str, fn: Callable[[], T]) -> T:
        """Call ``fn`` on a thread inside ``role``'s namespace."""
        return in_netns(self.namespace(role), fn)

    # -------------------------------------------------------------- knobs

    def set_loss(self, percent: float) -> None:
        """Drop ``percent`` % of packets each way on the client's access link (0 removes)."""
        commands = [
            nft_load(end.namespace, render_loss(end.interface, percent))
            for end in self._plan.client_link
        ]
        run_all(commands)
        self._save(dataclasses.replace(self._record, loss_percent=float(percent)))

    def reset_state(self) -> None:
        """Forget every NAT mapping of every site: reload rulesets, then flush conntrack.

        Reloading empties the dynamic maps/sets and restarts ``numgen``
        counters (sequential allocation starts over at its base port). The
        loss setting is kept.
        """
        routers = self._plan.routers
        run_all([nft_load(r.namespace, r.ruleset or "") for r in routers])
        run_all([Command(("conntrack", "-F"), namespace=r.namespace) for r in routers])
        for router in self._plan.gateways:
            if self.port_mapping_rule_count(router.role) or self._has_leases(router.role):
                # Leftover port mappings: miniupnpd caches its chains, so
                # they are emptied while it is stopped.
                self.restart_gateway(router.role, clean=True)

    # ----------------------------------------------------- port mapping

    @property
    def gateways(self) -> tuple[str, ...]:
        """Roles of the routers running miniupnpd, from the internet inwards."""
        return tuple(h.role for h in self._plan.gateways)

    def gateway_address(self, role: str | None = None) -> IPv4:
        """The LAN address where ``role``'s miniupnpd serves (innermost by default)."""
        return self._gateway_plan(role).addresses[1]

    def port_mapping_ruleset(self, role: str | None = None) -> str:
        """``nft list table inet nk_upnp`` in the router running miniupnpd."""
        host = self._gateway_plan(role)
        argv = ("nft", "list", "table", "inet", miniupnpd.UPNP_TABLE)
        return run(Command(argv, namespace=host.namespace)).stdout

    def port_mappings(self, role: str | None = None) -> tuple[miniupnpd.Redirect, ...]:
        """The port mappings miniupnpd holds now, read from its nftables chains."""
        return miniupnpd.parse_redirects(self.port_mapping_ruleset(role))

    def port_mapping_rule_count(self, role: str | None = None) -> int:
        """Rules in miniupnpd's chains (0: no mapping left behind)."""
        return miniupnpd.chain_rule_count(self.port_mapping_ruleset(role))

    def restart_gateway(self, role: str | None = None, *, clean: bool = False) -> None:
        """Stop ``role``'s miniupnpd and start it again (its epoch starts over).

        ``clean`` also empties its chains and lease file while it is down;
        without it, rules and leases persist across the restart as they do
        on a real router (LAB.md).
        """
        host = self._gateway_plan(role)
        self._stop_gateway(host)
        if clean:
            run(nft_load(host.namespace, miniupnpd.render_chains()))
            self._lease_file(host.role).write_text("", encoding="utf-8")
        self._start_gateways((host,))

    def _gateway_plan(self, role: str | None) -> HostPlan:
        gateways = self._plan.gateways
        if not gateways:
            raise LabError(f"scenario {self.scenario.name!r} runs no port-mapping gateway")
        if role is None:
            # The innermost one of the client's own site.
            main = self._plan.site(MAIN_SITE).router_roles
            own = [h for h in gateways if h.role in main]
            if not own:
                raise LabError("no router of the client's site runs a port-mapping gateway")
            return own[-1]
        for host in gateways:
            if host.role == role:
                return host
        raise LabError(f"router {role!r} of lab {self.run_id} runs no port-mapping gateway")

    def _lease_file(self, role: str) -> Path:
        return miniupnpd.lease_path(self._record.workdir, role)

    def _has_leases(self, role: str) -> bool:
        try:
            return bool(self._lease_file(role).read_text(encoding="utf-8").strip())
        except FileNotFoundError:
            return False

    def _stop_gateway(self, host: HostPlan) -> None:
        key = _gateway_key(host.role)
        proc = self._processes.pop(key, None)
        pid = self._record.pids.get(key)
        pids = {pid} if pid is not None else set()
        terminate(pids, [proc] if proc is not None else [])

    def _start_gateways(self, hosts: Sequence[HostPlan]) -> None:
        workdir = self._record.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        stun = self._gateway_stun_server()
        started: list[tuple[HostPlan, subprocess.Popen[bytes]]] = []
        for host in hosts:
            plan = host.gateway
            if plan is None:
                raise LabError(f"router {host.role!r} has no port-mapping gateway to start")
            config = miniupnpd.render_config(plan.spec, plan.placement, stun, workdir, host.role)
            proc = miniupnpd.start(host.namespace, workdir, host.role, config)
            self._processes[_gateway_key(host.role)] = proc
            pids = {**self._record.pids, _gateway_key(host.role): proc.pid}
            self._save(dataclasses.replace(self._record, pids=pids))
            started.append((host, proc))
        deadline = time.monotonic() + miniupnpd.READY_TIMEOUT_S
        for host, proc in started:
            # Ask from the namespace inside this router's LAN.
            inner = self._namespace_inside(host)
            log = miniupnpd.log_path(workdir, host.role)
            miniupnpd.wait_ready(proc, inner, host.addresses[1], log, deadline)

    def _namespace_inside(self, router: HostPlan) -> str:
        return self.namespace(router.inside_role or CLIENT_ROLE)

    def _gateway_stun_server(self) -> Endpoint:
        """The lab STUN server miniupnpd learns its address from (natkit's first)."""
        for kind in (ServerKind.NATKIT, ServerKind.COTURN):
            if kind.value in self._record.servers:
                return server_addresses(kind).primary
        raise LabError("miniupnpd needs a STUN server in the lab; none runs")

    # ------------------------------------------------------------ building

    def _save(self, record: LabRecord) -> None:
        state.save(record)
        self._record = record

    def _build(self, kinds: tuple[ServerKind, ...], loss_percent: float) -> None:
        plan = self._plan
        build_network(plan)
        if loss_percent:
            self.set_loss(loss_percent)
        if plan.ipv6_gateways:
            self._start_ipv6_gateways(plan.ipv6_gateways)
        if kinds:
            self._start_servers(kinds)
            self._check_nat64_paths(plan.ipv6_gateways, kinds)
        if plan.gateways:
            self._start_gateways(plan.gateways)

    def _start_servers(self, kinds: tuple[ServerKind, ...]) -> None:
        workdir = self._record.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        ipv6 = self.scenario.ipv6 is not None
        for kind in kinds:
            namespace = self.namespace(SERVER_HOSTS[kind])
            self._processes[kind] = start_server(kind, namespace, workdir, ipv6=ipv6)
            pids = {**self._record.pids, kind.value: self._processes[kind].pid}
            self._save(dataclasses.replace(self._record, pids=pids))
        deadline = time.monotonic() + READY_TIMEOUT_S
        for kind in kinds:
            namespace = self.namespace(SERVER_HOSTS[kind])
            wait_ready(kind, self._processes[kind], namespace, workdir, deadline)

    def _start_process(self, key: str, proc: subprocess.Popen[bytes]) -> None:
        self._processes[key] = proc
        self._save(dataclasses.replace(self._record, pids={**self._record.pids, key: proc.pid}))

    def add_process(self, key: str, proc: subprocess.Popen[bytes]) -> None:
        """Record a process started in the lab under ``key`` (stopped at teardown)."""
        self._start_process(key, proc)

    def stop_process(self, key: str) -> None:
        """Stop the process recorded under ``key`` (none: nothing to do)."""
        proc = self._processes.pop(key, None)
        pids = dict(self._record.pids)
        pid = pids.pop(key, None)
        terminate({pid} if pid is not None else set(), [proc] if proc is not None else [])
        self._save(dataclasses.replace(self._record, pids=pids))

    def _start_ipv6_gateways(self, hosts: Sequence[HostPlan]) -> None:
        """unbound (and tayga) on each IPv6 router; wait for DNS answers."""
        workdir = self._record.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        started: list[tuple[HostPlan, subprocess.Popen[bytes]]] = []
        plans = []
        for host in hosts:
            plan = host.ipv6
            if plan is None:
                raise LabError(f"router {host.role!r} has no IPv6 gateway to start")
            prefix = plan.spec.nat64_prefix
            if prefix is not None:
                # A persistent TUN device first, so its routes are set before
                # the daemon attaches (natkit.lab.ipv6, rule 4).
                ipv6.write_tayga_config(prefix, workdir, host.role)
                run(Command(tuple(ipv6.make_tun_argv(workdir, host.role)), host.namespace))
                run(ip_batch(ipv6.tayga_lines(prefix), host.namespace))
                tayga = ipv6.start_tayga(host.namespace, workdir, host.role)
                self._start_process(f"tayga:{host.role}", tayga)
            unbound = ipv6.start_unbound(plan, host.namespace, workdir, host.role, self._names())
            self._start_process(f"unbound:{host.role}", unbound)
            started.append((host, unbound))
            plans.append(plan)
        deadline = time.monotonic() + ipv6.READY_TIMEOUT_S
        for (host, proc), plan in zip(started, plans, strict=True):
            log = ipv6.log_path(workdir, "unbound", host.role)
            inside = self.namespace(host.inside_role or CLIENT_ROLE)
            ipv6.wait_dns_ready(proc, plan, inside, log, deadline)

    def _names(self) -> dict[str, tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]]:
        """The lab resolver's names: each server's host, IPv4 and (coturn) IPv6."""
        names: dict[str, tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]] = {}
        for kind in ServerKind:
            where = server_addresses(kind, ipv6=True)
            names[SERVER_HOSTS[kind]] = (
                where.primary.address,
                *(() if where.ipv6 is None else (where.ipv6.address,)),
            )
        return names

    def server_name(self, kind: str) -> str:
        """The name the lab's resolver (IPv6 scenarios) gives server ``kind``."""
        return f"{SERVER_HOSTS[ServerKind(kind)]}.{ipv6.LAB_ZONE}"

    def _check_nat64_paths(self, hosts: Sequence[HostPlan], kinds: tuple[ServerKind, ...]) -> None:
        """A STUN answer through each NAT64 from the client: the whole data path."""
        deadline = time.monotonic() + ipv6.READY_TIMEOUT_S
        for host in hosts:
            plan = host.ipv6
            if plan is None or plan.spec.nat64_prefix is None:
                continue
            server = server_addresses(kinds[0]).primary
            if not isinstance(server.address, ipaddress.IPv4Address):
                raise LabError(f"a NAT64 path needs an IPv4 server, not {server}")
            target = Endpoint(ipv6.synthesize(plan.spec.nat64_prefix, server.address), server.port)
            proc = self._processes[f"tayga:{host.role}"]
            log = ipv6.log_path(self._record.workdir, "tayga", host.role)
            inside = self.namespace(host.inside_role or CLIENT_ROLE)
            ipv6.wait_nat64_ready(proc, inside, [target], log, deadline)


# ---------------------------------------------------------------- helpers


def _gateway_key(role: str) -> str:
    return f"miniupnpd:{role}"
