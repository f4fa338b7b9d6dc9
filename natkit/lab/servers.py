"""The STUN servers a lab runs on its internet, and how to know they are up.

Two servers, each an RFC 5780 pair (two addresses, two ports) on its own
host, so a classifier can be checked against natkit's own server and against
an independent one:

* ``natkit``: ``python -m natkit.cli stun-server``, which prints ``ready`` on stdout
  once it listens;
* ``coturn``: ``turnserver`` in STUN-only mode, which turns on RFC 5780 by
  itself when given two listening addresses; readiness is a STUN Binding
  answered from inside its namespace.

Servers write stdout/stderr to a log in the lab's work directory, never a
pipe: a lab started by ``natkit lab up`` outlives the command that built it.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv6Address
from pathlib import Path

from natkit.endpoint import Endpoint
from natkit.lab.errors import ServerStartError
from natkit.lab.ipv6 import INTERNET_HOSTS_V6
from natkit.lab.netns import exec_argv, socket_in
from natkit.lab.plan import COTURN_ADDRESSES, COTURN_ROLE, STUN_ADDRESSES, STUN_ROLE, IPv4

#: Seconds a server gets to become ready.
READY_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.02
PRIMARY_PORT, ALTERNATE_PORT = 3478, 3479
#: coturn's STUN-over-TLS port (RFC 8489 §6.2.3 / RFC 7064 default).
TLS_PORT = 5349
#: coturn's IPv6 address in labs with IPv6 (:mod:`natkit.lab.ipv6`).
COTURN_V6 = INTERNET_HOSTS_V6["coturn"][0]

_MAGIC_COOKIE = 0x2112A442
_BINDING_REQUEST, _BINDING_SUCCESS = 0x0001, 0x0101


class ServerKind(StrEnum):
    """A STUN server implementation the lab can run."""

    NATKIT = "natkit"
    COTURN = "coturn"


#: What ``Lab.up`` runs unless told otherwise.
DEFAULT_SERVERS: tuple[ServerKind, ...] = (ServerKind.NATKIT, ServerKind.COTURN)

#: Server -> the internet host role it runs on.
SERVER_HOSTS: dict[ServerKind, str] = {
    ServerKind.NATKIT: STUN_ROLE,
    ServerKind.COTURN: COTURN_ROLE,
}
_SERVER_ADDRESSES: dict[ServerKind, tuple[IPv4, IPv4]] = {
    ServerKind.NATKIT: (STUN_ADDRESSES[0], STUN_ADDRESSES[1]),
    ServerKind.COTURN: (COTURN_ADDRESSES[0], COTURN_ADDRESSES[1]),
}


@dataclass(frozen=True, slots=True)
class ServerAddresses:
    """Where an RFC 5780 server listens: primary and alternate (other IP, other port)."""

    primary: Endpoint
    alternate: Endpoint
    #: Its IPv6 address (plain RFC 5389 there), in labs with IPv6.
    ipv6: Endpoint | None = None
    #: STUN over TLS (RFC 8489 §6.2.3), with :func:`certificate_path` as its certificate.
    tls: Endpoint | None = None

    def all(self) -> tuple[Endpoint, ...]:
        """All four address/port combinations the server answers on."""
        p, a = self.primary, self.alternate
        return (
            p,
            Endpoint(p.address, a.port),
            Endpoint(a.address, p.port),
            a,
        )


def server_addresses(kind: ServerKind, *, ipv6: bool = False) -> ServerAddresses:
    """Where ``kind`` listens; ``ipv6``: in a lab whose internet has IPv6.

    coturn also serves IPv6 there, and TLS always (on its primary address);
    natkit's server is IPv4 and UDP/TCP only.
    """
    first, second = _SERVER_ADDRESSES[kind]
    v6 = tls = None
    if kind is ServerKind.COTURN:
        tls = Endpoint(first, TLS_PORT)
        if ipv6:
            v6 = Endpoint(COTURN_V6, PRIMARY_PORT)
    return ServerAddresses(Endpoint(first, PRIMARY_PORT), Endpoint(second, ALTERNATE_PORT), v6, tls)


def natkit_server_available() -> bool:
    """Whether ``python -m natkit.cli stun-server`` exists in this checkout."""
    try:
        return importlib.util.find_spec("natkit.cli.stun_server") is not None
    except ModuleNotFoundError:
        return False


def _project_root() -> str | None:
    """The folder holding the ``natkit`` package this process imported."""
    spec = importlib.util.find_spec("natkit")
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(next(iter(spec.submodule_search_locations))).parent)


def natkit_cli_env() -> dict[str, str]:
    """The environment for ``python -m natkit.cli ...`` in a lab namespace:
    this checkout's ``natkit`` package found even when it is not installed,
    and unbuffered output (logs and ready lines appear as they are written)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    root = _project_root()
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH", "")) if p
        )
    return env


def server_argv(kind: ServerKind, workdir: Path, *, ipv6: bool = False) -> list[str]:
    """The command line of ``kind`` (run inside its host's namespace)."""
    addresses = server_addresses(kind, ipv6=ipv6)
    first, second = str(addresses.primary.address), str(addresses.alternate.address)
    if kind is ServerKind.NATKIT:
        return [
            sys.executable, "-m", "natkit.cli", "stun-server",
            "--bind", first, "--bind", second,
            "--port", str(PRIMARY_PORT), "--alt-port", str(ALTERNATE_PORT),
        ]  # fmt: skip
    extra = ["-L", str(addresses.ipv6.address)] if addresses.ipv6 is not None else []
    return [
        "turnserver", "-n", "--no-cli", "--no-dtls", "--stun-only", "--no-auth",
        "-L", first, "-L", second, *extra,
        "--listening-port", str(PRIMARY_PORT), "--alt-listening-port", str(ALTERNATE_PORT),
        "--tls-listening-port", str(TLS_PORT),
        "--cert", str(certificate_path(workdir)), "--pkey", str(key_path(workdir)),
        "--pidfile", str(workdir / "coturn.pid"), "--userdb", str(workdir / "coturn.db"),
        "--log-file", "stdout",
    ]  # fmt: skip


def certificate_path(workdir: Path) -> Path:
    """coturn's self-signed certificate: also the CA file TLS clients trust."""
    return workdir / "coturn-cert.pem"


def key_path(workdir: Path) -> Path:
    return workdir / "coturn-key.pem"


def make_certificate(
    workdir: Path,
    addresses: Sequence[IPv4 | IPv6Address] | None = None,
    cert: Path | None = None,
    key: Path | None = None,
) -> None:
    """A self-signed P-256 certificate for ``addresses`` (default: coturn's),
    made per lab in its work directory (removed with the lab; never committed)."""
    default = [*_SERVER_ADDRESSES[ServerKind.COTURN], COTURN_V6]
    names = addresses if addresses is not None else default
    cert = cert or certificate_path(workdir)
    key = key or key_path(workdir)
    san = ",".join(f"IP:{a}" for a in names)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "7", "-subj", "/CN=natkit lab coturn", "-addext",
         f"subjectAltName={san}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    key.chmod(0o600)


def log_path(kind: ServerKind, workdir: Path) -> Path:
    return workdir / f"{kind.value}.log"


def start_server(
    kind: ServerKind, namespace: str, workdir: Path, *, ipv6: bool = False
) -> subprocess.Popen[bytes]:
    """Start ``kind`` in ``namespace``, detached into its own session."""
    env = natkit_cli_env() if kind is ServerKind.NATKIT else dict(os.environ, PYTHONUNBUFFERED="1")
    if kind is ServerKind.COTURN:
        make_certificate(workdir)
    with open(log_path(kind, workdir), "wb") as log:
        return subprocess.Popen(
            exec_argv(namespace, server_argv(kind, workdir, ipv6=ipv6)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=workdir,
        )


def wait_ready(
    kind: ServerKind,
    proc: subprocess.Popen[bytes],
    namespace: str,
    workdir: Path,
    deadline: float,
) -> None:
    """Block until ``kind`` serves, or raise :class:`ServerStartError`.

    ``deadline`` is a ``time.monotonic()`` value shared by all servers of a
    lab, so waiting for several costs the slowest one, not the sum.
    """
    log = log_path(kind, workdir)
    probe = server_addresses(kind)
    while True:
        if proc.poll() is not None:
            raise ServerStartError(kind.value, f"exited with status {proc.returncode}", _tail(log))
        if kind is ServerKind.NATKIT:
            if _has_ready_line(log):
                return
        elif stun_answers(namespace, (probe.primary, probe.alternate), timeout=POLL_INTERVAL_S):
            return
        if time.monotonic() >= deadline:
            raise ServerStartError(kind.value, "not ready in time", _tail(log))
        time.sleep(POLL_INTERVAL_S)


def _has_ready_line(log: Path) -> bool:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return False
    return any(line.strip() == "ready" for line in text.splitlines())


def _tail(log: Path, lines: int = 15) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def binding_request(transaction_id: bytes) -> bytes:
    """A bare RFC 8489 Binding request (20-byte header, no attributes).

    Hand-built on purpose: the lab checks servers without depending on the
    codec those servers are being tested with.
    """
    if len(transaction_id) != 12:
        raise ValueError("a STUN transaction ID is 12 bytes")
    header = _BINDING_REQUEST.to_bytes(2, "big") + (0).to_bytes(2, "big")
    return header + _MAGIC_COOKIE.to_bytes(4, "big") + transaction_id


def is_binding_success(data: bytes, transaction_id: bytes) -> bool:
    return (
        len(data) >= 20
        and int.from_bytes(data[:2], "big") == _BINDING_SUCCESS
        and data[8:20] == transaction_id
    )


def stun_answers(namespace: str, targets: Sequence[Endpoint], timeout: float) -> bool:
    """Whether every target answers a Binding request sent from ``namespace``."""
    sock = socket_in(namespace)
    try:
        sock.settimeout(timeout)
        for target in targets:
            tid = secrets.token_bytes(12)
            try:
                sock.sendto(binding_request(tid), target.sockaddr())
                while True:
                    data = sock.recv(2048)
                    if is_binding_success(data, tid):
                        break
            except OSError:  # timeout, or ICMP port unreachable surfacing as ECONNREFUSED
                return False
        return True
    finally:
        sock.close()
