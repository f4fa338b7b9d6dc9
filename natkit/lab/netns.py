"""Running things inside network namespaces.

Two ways in, chosen per job:

* external programs run under ``ip netns exec NS`` (or ``ip -n NS`` for ``ip``
  itself), in batches (``ip -batch -``, ``nft -f -``) and in parallel where
  the order does not matter;
* in-process work (sysctls, sockets) runs on a short-lived thread that has
  called ``setns(2)`` into the namespace. ``setns`` changes only the calling
  thread, and a socket keeps the namespace it was created in, so a test can
  hold client and server sockets of different namespaces in one process.
  ``/proc/sys/net`` resolves against the reading thread's namespace.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from natkit.lab.errors import CommandError, LabPermissionError, MissingToolError

T = TypeVar("T")

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
#: Seconds any one lab command may take before it counts as hung.
COMMAND_TIMEOUT_S = 30.0

#: Programs the lab needs -> the Debian package providing them.
TOOLS: dict[str, str] = {
    "ip": "iproute2",
    "nft": "nftables",
    "conntrack": "conntrack",
}

_libc = ctypes.CDLL(None, use_errno=True)
_setns = _libc.setns
_setns.argtypes = [ctypes.c_int, ctypes.c_int]
_setns.restype = ctypes.c_int


def require_root() -> None:
    """Raise :class:`LabPermissionError` unless running as root."""
    if os.geteuid() != 0:
        raise LabPermissionError(
            "the natkit lab creates network namespaces and needs root"
            " (CAP_NET_ADMIN and CAP_SYS_ADMIN); run it with sudo"
        )


#: Every program the lab (or a scenario of it) drives, with its Debian package.
TOOL_PACKAGES: dict[str, str] = {
    **TOOLS,
    "turnserver": "coturn",
    "turnutils_natdiscovery": "coturn",
    "miniupnpd": "miniupnpd-nftables",
    "upnpc": "miniupnpc",
    "tayga": "tayga",
    "unbound": "unbound",
    "openssl": "openssl",
    "wireguard-go": "wireguard-go",
    "wg": "wireguard-tools",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "iperf3": "iperf3",
}


def require_tools(tools: Iterable[str] = TOOLS) -> None:
    """Raise :class:`MissingToolError` for the first program not on PATH."""
    for tool in tools:
        if shutil.which(tool) is None:
            raise MissingToolError(tool, TOOL_PACKAGES.get(tool, tool))


def exec_argv(namespace: str, argv: Sequence[str]) -> list[str]:
    """``argv`` wrapped to run inside ``namespace``."""
    return ["ip", "netns", "exec", namespace, *argv]


@dataclass(frozen=True, slots=True)
class Command:
    """One program run; ``namespace`` wraps it in ``ip netns exec``."""

    argv: tuple[str, ...]
    namespace: str | None = None
    input: str | None = None

    @property
    def full_argv(self) -> list[str]:
        if self.namespace is None:
            return list(self.argv)
        return exec_argv(self.namespace, self.argv)


def ip_batch(lines: Sequence[str], namespace: str | None = None, *, force: bool = False) -> Command:
    """An ``ip -batch -`` run; ``ip -n NS`` switches namespace without a fork.

    ``force`` keeps going past failing lines (``ip -force``).
    """
    options = (*(("-n", namespace) if namespace else ()), *(("-force",) if force else ()))
    return Command(("ip", *options, "-batch", "-"), input="\n".join(lines) + "\n")


def nft_load(namespace: str, ruleset: str) -> Command:
    """Load an nftables ruleset (one atomic transaction) inside ``namespace``."""
    return Command(("nft", "-f", "-"), namespace=namespace, input=ruleset)


def run(command: Command, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one command to completion; :class:`CommandError` on failure."""
    return run_all([command], check=check)[0]


def run_all(
    commands: Sequence[Command], *, check: bool = True
) -> list[subprocess.CompletedProcess[str]]:
    """Run independent commands concurrently and wait for all of them.

    All are waited for even when one fails, so nothing is left running; the
    first failure (in list order) is then raised.
    """
    procs = [
        subprocess.Popen(
            c.full_argv,
            stdin=subprocess.PIPE if c.input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in commands
    ]
    results: list[subprocess.CompletedProcess[str]] = []
    for command, proc in zip(commands, procs, strict=True):
        try:
            out, err = proc.communicate(command.input, timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err += f"\n(killed after {COMMAND_TIMEOUT_S:.0f} s)"
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    if check:
        for command, result in zip(commands, results, strict=True):
            if result.returncode != 0:
                raise CommandError(
                    command.argv, result.returncode, result.stderr, command.namespace
                )
    return results


def in_netns(namespace: str, fn: Callable[[], T]) -> T:
    """Call ``fn`` on a fresh thread that has entered ``namespace``.

    The thread ends afterwards, so no pooled thread is ever left in the
    wrong namespace. Exceptions from ``fn`` propagate to the caller.
    """
    box: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            fd = os.open(os.path.join(NETNS_DIR, namespace), os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _setns(fd, CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns({namespace}): {os.strerror(errno)}")
            finally:
                os.close(fd)
            box.append(fn())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=body, name=f"netns:{namespace}")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return box[0]


def socket_in(
    namespace: str,
    family: socket.AddressFamily = socket.AF_INET,
    kind: socket.SocketKind = socket.SOCK_DGRAM,
    proto: int = 0,
) -> socket.socket:
    """A new socket that lives in ``namespace`` (and stays there)."""
    return in_netns(namespace, lambda: socket.socket(family, kind, proto))


def sysctl_path(key: str) -> str:
    """``net.ipv4.ip_forward`` → ``/proc/sys/net/ipv4/ip_forward``."""
    return "/proc/sys/" + key.replace(".", "/")


def write_sysctls(namespace: str, items: Sequence[tuple[str, str]]) -> None:
    """Set sysctls inside ``namespace`` (no ``sysctl`` fork per key)."""

    def body() -> None:
        for key, value in items:
            with open(sysctl_path(key), "w", encoding="ascii") as f:
                f.write(value)

    if items:
        in_netns(namespace, body)


def read_sysctl(namespace: str, key: str) -> str:
    def body() -> str:
        with open(sysctl_path(key), encoding="ascii") as f:
            return f.read().strip()

    return in_netns(namespace, body)


def list_namespaces() -> list[str]:
    """Names of all named network namespaces (what ``ip netns list`` shows)."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def namespace_pids(*namespaces: str) -> list[int]:
    """Processes whose network namespace is one of ``namespaces`` (``ip netns pids``)."""
    targets: set[tuple[int, int]] = set()
    for namespace in namespaces:
        try:
            st = os.stat(os.path.join(NETNS_DIR, namespace))
        except FileNotFoundError:
            continue
        targets.add((st.st_dev, st.st_ino))
    if not targets:
        return []
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in targets:
            pids.append(int(entry))
    return pids


def add_namespaces(names: Sequence[str]) -> None:
    """Create named network namespaces in one ``ip -batch``."""
    run(ip_batch([f"netns add {name}" for name in names]))


def delete_namespaces(names: Sequence[str]) -> None:
    """Delete those of ``names`` that exist; their links go with them."""
    present = set(list_namespaces())
    doomed = [n for n in names if n in present]
    if doomed:
        # force: keep going past a namespace deleted meanwhile.
        run(ip_batch([f"netns del {name}" for name in doomed], force=True), check=False)
    left = set(list_namespaces()) & set(doomed)
    if left:
        raise CommandError(["ip", "netns", "del", *sorted(left)], 1, "namespaces still present")
