"""``wg`` command lines, and what a failed run means (pure).

natkit drives WireGuard through wireguard-tools' ``wg``, which reaches the
kernel module over netlink or a userspace implementation (wireguard-go)
over its UAPI socket, ``/var/run/wireguard/IFACE.sock``; either way the
same argv works. Every argument is validated before it becomes part of an
argv: an interface name is never an option (``-h``) or a path, a key is
canonical base64, an endpoint a literal ``IP:PORT`` (``wg`` would resolve a
name, and retry for a minute when resolution fails).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from natkit.endpoint import Endpoint
from natkit.wireguard.dump import IPNetwork
from natkit.wireguard.errors import (
    InterfaceNameError,
    NoSuchInterfaceError,
    WgArgumentError,
    WgCommandError,
    WgPermissionError,
    WireGuardError,
)
from natkit.wireguard.keys import WireGuardKey

WG = "wg"
#: Linux IFNAMSIZ is 16 with the NUL: 15 characters. Letters, digits and a
#: few marks, never a leading "-" (an option) or "." (".", "..").
_INTERFACE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=+-]{0,14}")
#: The most stderr text an error keeps (``wg`` prints one line).
_DETAIL_LIMIT = 200


def check_interface(name: str) -> str:
    """``name`` if it is a valid interface name, else :class:`InterfaceNameError`."""
    if not _INTERFACE.fullmatch(name):
        raise InterfaceNameError(
            f"bad interface name {name[:32]!r}: 1-15 of A-Z a-z 0-9 _ . = + -,"
            " not starting with - or ."
        )
    return name


def endpoint_text(endpoint: Endpoint) -> str:
    """``IP:PORT`` or ``[IPv6]:PORT``, as ``wg`` takes it (no zone: wg takes none)."""
    if endpoint.port == 0:
        raise WgArgumentError(f"endpoint {endpoint} has port 0")
    return str(endpoint)


def show_dump_argv(interface: str) -> list[str]:
    """``wg show IFACE dump``: the interface and every peer, one line each."""
    return [WG, "show", check_interface(interface), "dump"]


def private_key_argv(interface: str) -> list[str]:
    """``wg show IFACE private-key``: the interface's private key (base64, one line)."""
    return [WG, "show", check_interface(interface), "private-key"]


def latest_handshakes_argv(interface: str) -> list[str]:
    """``wg show IFACE latest-handshakes``: no key material in the output."""
    return [WG, "show", check_interface(interface), "latest-handshakes"]


def set_endpoint_argv(interface: str, peer: WireGuardKey, endpoint: Endpoint) -> list[str]:
    """``wg set IFACE peer KEY endpoint IP:PORT``: where WireGuard sends to ``peer``."""
    return [WG, "set", check_interface(interface), "peer", str(peer), "endpoint",
            endpoint_text(endpoint)]  # fmt: skip


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """What ``wg set IFACE peer KEY ...`` sets (a ``None`` field is left as it is)."""

    public_key: WireGuardKey
    allowed_ips: tuple[IPNetwork, ...] | None = None
    endpoint: Endpoint | None = None
    persistent_keepalive: int | None = None
    """Seconds (1-65535); 0 turns keepalives off."""

    def __post_init__(self) -> None:
        keepalive = self.persistent_keepalive
        if keepalive is not None and not 0 <= keepalive <= 0xFFFF:
            raise WgArgumentError(f"persistent keepalive {keepalive} is not 0-65535")


def set_peer_argv(interface: str, peer: PeerConfig) -> list[str]:
    """``wg set IFACE peer KEY [allowed-ips ...] [endpoint ...] [persistent-keepalive N]``."""
    argv = [WG, "set", check_interface(interface), "peer", str(peer.public_key)]
    if peer.allowed_ips is not None:
        argv += ["allowed-ips", ",".join(str(n) for n in peer.allowed_ips)]
    if peer.endpoint is not None:
        argv += ["endpoint", endpoint_text(peer.endpoint)]
    if peer.persistent_keepalive is not None:
        keepalive = peer.persistent_keepalive
        argv += ["persistent-keepalive", str(keepalive) if keepalive else "off"]
    return argv


def set_interface_argv(
    interface: str, *, private_key_file: str | None = None, listen_port: int | None = None
) -> list[str]:
    """``wg set IFACE [private-key FILE] [listen-port PORT]``."""
    argv = [WG, "set", check_interface(interface)]
    if private_key_file is not None:
        if not private_key_file.startswith("/"):
            raise WgArgumentError("the private key file must be an absolute path")
        argv += ["private-key", private_key_file]
    if listen_port is not None:
        if not 0 <= listen_port <= 0xFFFF:
            raise WgArgumentError(f"listen port {listen_port} is not 0-65535")
        argv += ["listen-port", str(listen_port)]
    return argv


# "Unable to access interface: No such device" (kernel module, netlink);
# "...: Protocol not supported" (no module: netlink has no wireguard family
# and no UAPI socket answered); "...: No such file or directory".
_ACCESS = re.compile(r"Unable to (?:access|modify) interface: (.*)")
_PERMISSION = ("Operation not permitted", "Permission denied")
_MISSING = ("No such device", "Protocol not supported", "No such file or directory")


def classify_failure(
    argv: Sequence[str], interface: str, returncode: int | None, stderr: str, *, root: bool
) -> WireGuardError:
    """The typed error for a failed ``wg`` run.

    ``root``: whether the caller runs as root. Without the kernel module,
    ``wg`` reports a UAPI socket it may not open (mode 0700, root's) as
    "Protocol not supported", the same as a missing interface, so for a
    non-root caller that reads as a permission problem.
    """
    detail = " ".join(stderr.split())[:_DETAIL_LIMIT] or "no message"
    match = _ACCESS.search(stderr) if returncode is not None else None
    if match is not None:
        reason = match.group(1).strip()
        if reason.startswith(_PERMISSION) or (not root and reason.startswith(_MISSING)):
            return WgPermissionError(interface, reason)
        if reason.startswith(_MISSING):
            return NoSuchInterfaceError(interface, reason)
    return WgCommandError(argv, returncode, detail)
