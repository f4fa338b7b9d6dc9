"""coturn as the lab's TURN servers (RFC 8656), beside its STUN-only coturn.

Two ``turnserver`` processes run in the coturn host's namespace on addresses
of their own, so the STUN-only instance (RFC 5780, no auth) stays as it is:

* ``coturn`` (203.0.113.30): long-term credentials, a fixed user and realm;
* ``coturn-rest`` (203.0.113.31): the TURN REST API (``use-auth-secret``),
  credentials minted from a shared secret. coturn refuses fixed users once
  the secret is on (checked here), hence two servers.

Each listens on UDP and TCP 3478 and TLS 5349 (a per-lab self-signed
certificate, also the CA file clients trust) and relays from its own
address. The settings are lab fixtures, not secrets: the lab lives in its own
namespaces. What runs is written to ``turn-servers.json`` in the lab's work
directory, so a lab attached later (``natkit lab up`` then tests) finds it.

Logs go to a file per server (``--log-file``; through a pipe coturn loses
its session lines), verbose enough to show every ALLOCATE and REFRESH.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from natkit.endpoint import Endpoint
from natkit.lab.errors import ServerStartError
from natkit.lab.netns import exec_argv, ip_batch, run
from natkit.lab.plan import COTURN_ROLE, HOST_IF, IPv4
from natkit.lab.servers import POLL_INTERVAL_S, make_certificate, stun_answers

if TYPE_CHECKING:
    from natkit.lab.lab import Lab

#: The internet host the TURN servers run on (beside the STUN-only coturn).
TURN_ROLE = COTURN_ROLE
TURN_PORT = 3478
TURN_TLS_PORT = 5349
REALM = "natkit.lab"
USER, PASSWORD = "natkit", "natkit-lab-password"
SECRET = "natkit-lab-secret"
#: Seconds a TURN server gets to answer on its port.
READY_TIMEOUT_S = 10.0
_INFO_FILE = "turn-servers.json"


@dataclass(frozen=True, slots=True)
class TurnOptions:
    """coturn knobs tests turn to provoke its refusals (``None``: coturn's default)."""

    #: ``--user-quota``: allocations per user at once (486 beyond).
    user_quota: int | None = None
    #: ``--min-port``/``--max-port``: the relay ports (508 once all are used).
    relay_ports: tuple[int, int] | None = None
    #: ``--stale-nonce``: seconds a nonce lives (438 after).
    stale_nonce: int | None = None

    def argv(self) -> list[str]:
        args: list[str] = []
        if self.user_quota is not None:
            args += ["--user-quota", str(self.user_quota)]
        if self.relay_ports is not None:
            args += ["--min-port", str(self.relay_ports[0]), "--max-port", str(self.relay_ports[1])]
        if self.stale_nonce is not None:
            args.append(f"--stale-nonce={self.stale_nonce}")
        return args


@dataclass(frozen=True, slots=True)
class LabTurnServer:
    """One TURN server of the lab and what a client needs to use it."""

    name: str
    address: IPv4
    port: int
    tls_port: int
    realm: str
    #: Long-term credentials (``None`` on the REST API server).
    user: str | None
    password: str | None
    #: The REST API's shared secret (``None`` on the long-term server).
    secret: str | None
    #: The certificate of its TLS port: the CA file clients pass.
    ca_file: Path
    options: TurnOptions = field(default_factory=TurnOptions)

    @property
    def udp(self) -> Endpoint:
        return Endpoint(self.address, self.port)

    @property
    def tcp(self) -> Endpoint:
        return Endpoint(self.address, self.port)

    @property
    def tls(self) -> Endpoint:
        return Endpoint(self.address, self.tls_port)

    def uri(self, transport: str = "udp") -> str:
        """``turn:`` / ``turns:`` URI (RFC 7065) for ``udp``, ``tcp`` or ``tls``."""
        if transport == "tls":
            return f"turns:{self.address}:{self.tls_port}"
        return f"turn:{self.address}:{self.port}?transport={transport}"

    def as_json(self) -> dict[str, Any]:
        return {
            "address": str(self.address),
            "port": self.port,
            "ports": {"udp": self.port, "tcp": self.port, "tls": self.tls_port},
            "tls_port": self.tls_port,
            "uris": [self.uri("udp"), self.uri("tcp"), self.uri("tls")],
            "realm": self.realm,
            "user": self.user,
            "password": self.password,
            "secret": self.secret,
            "ca_file": str(self.ca_file),
        }


def planned_servers(workdir: Path, options: TurnOptions = TurnOptions()) -> list[LabTurnServer]:
    """The lab's TURN servers (before they run)."""
    ca_file = certificate(workdir)
    return [
        LabTurnServer(
            "coturn", IPv4("203.0.113.30"), TURN_PORT, TURN_TLS_PORT, REALM, USER, PASSWORD,
            None, ca_file, options,
        ),
        LabTurnServer(
            "coturn-rest", IPv4("203.0.113.31"), TURN_PORT, TURN_TLS_PORT, REALM, None, None,
            SECRET, ca_file, options,
        ),
    ]  # fmt: skip


def certificate(workdir: Path) -> Path:
    return workdir / "turn-cert.pem"


def _key(workdir: Path) -> Path:
    return workdir / "turn-key.pem"


def log_path(workdir: Path, name: str) -> Path:
    return workdir / f"turn-{name}.log"


def pid_key(name: str) -> str:
    """The server's key in the lab record's pids."""
    return f"turn:{name}"


def turnserver_argv(server: LabTurnServer, workdir: Path) -> list[str]:
    """coturn's command line for ``server`` (the flags LAB.md found to work)."""
    address = str(server.address)
    auth = (
        ["--use-auth-secret", "--static-auth-secret", server.secret]
        if server.secret is not None
        else ["--lt-cred-mech", "--user", f"{server.user}:{server.password}"]
    )
    return [
        "turnserver", "-n", "--no-cli", "--no-dtls",
        "-L", address, "--relay-ip", address,
        "--listening-port", str(server.port), "--tls-listening-port", str(server.tls_port),
        "--realm", server.realm, *auth,
        "--cert", str(certificate(workdir)), "--pkey", str(_key(workdir)),
        "--pidfile", str(workdir / f"turn-{server.name}.pid"),
        "--userdb", str(workdir / f"turn-{server.name}.db"),
        "--log-file", str(log_path(workdir, server.name)), "--simple-log", "-v",
        *server.options.argv(),
    ]  # fmt: skip


def address_lines(servers: list[LabTurnServer]) -> list[str]:
    """``ip -batch`` lines giving the coturn host the TURN servers' addresses."""
    return [f"address replace {s.address}/32 dev {HOST_IF}" for s in servers]


def start(lab: Lab, options: TurnOptions = TurnOptions()) -> list[LabTurnServer]:
    """Start both TURN servers in ``lab`` and wait until they answer."""
    workdir = lab.record.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    namespace = lab.namespace(TURN_ROLE)
    servers = planned_servers(workdir, options)
    run(ip_batch(address_lines(servers), namespace))
    if not certificate(workdir).exists():
        make_certificate(workdir, [s.address for s in servers], certificate(workdir), _key(workdir))
    started = []
    for server in servers:
        stop(lab, server.name)
        proc = _spawn(server, namespace, workdir)
        lab.add_process(pid_key(server.name), proc)
        started.append((server, proc))
    deadline = time.monotonic() + READY_TIMEOUT_S
    for server, proc in started:
        _wait_ready(server, proc, namespace, workdir, deadline)
    _write_info(workdir, servers)
    return servers


def stop(lab: Lab, name: str | None = None) -> None:
    """Stop one TURN server (``name``) or both: what a dead server looks like."""
    names = [name] if name is not None else [s.name for s in running(lab)]
    for each in names:
        lab.stop_process(pid_key(each))


def running(lab: Lab) -> list[LabTurnServer]:
    """The TURN servers this lab was started with (see ``turn-servers.json``)."""
    path = lab.record.workdir / _INFO_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return []
    options = TurnOptions(**{k: _tuple(v) for k, v in data["options"].items()})
    return planned_servers(lab.record.workdir, options)


def log_lines(lab: Lab, name: str, pattern: str) -> list[str]:
    """Lines of ``name``'s log matching the regular expression ``pattern``."""
    try:
        text = log_path(lab.record.workdir, name).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    regex = re.compile(pattern)
    return [line for line in text.splitlines() if regex.search(line)]


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _write_info(workdir: Path, servers: list[LabTurnServer]) -> None:
    options = asdict(servers[0].options)
    payload = {"servers": [s.name for s in servers], "options": options}
    (workdir / _INFO_FILE).write_text(json.dumps(payload) + "\n", encoding="utf-8")


def _spawn(server: LabTurnServer, namespace: str, workdir: Path) -> subprocess.Popen[bytes]:
    with open(workdir / f"turn-{server.name}.out", "wb") as out:
        return subprocess.Popen(
            exec_argv(namespace, turnserver_argv(server, workdir)),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(os.environ),
            cwd=workdir,
        )


def _wait_ready(
    server: LabTurnServer,
    proc: subprocess.Popen[bytes],
    namespace: str,
    workdir: Path,
    deadline: float,
) -> None:
    """A Binding answered on the TURN port (coturn answers STUN there too)."""
    while True:
        if proc.poll() is not None:
            tail = _tail(log_path(workdir, server.name))
            raise ServerStartError(server.name, f"exited with status {proc.returncode}", tail)
        if stun_answers(namespace, (server.udp,), timeout=POLL_INTERVAL_S):
            return
        if time.monotonic() >= deadline:
            tail = _tail(log_path(workdir, server.name))
            raise ServerStartError(server.name, "not ready in time", tail)
        time.sleep(POLL_INTERVAL_S)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


__all__ = [
    "PASSWORD",
    "REALM",
    "SECRET",
    "TURN_PORT",
    "TURN_TLS_PORT",
    "USER",
    "LabTurnServer",
    "TurnOptions",
    "log_lines",
    "planned_servers",
    "running",
    "start",
    "stop",
]
