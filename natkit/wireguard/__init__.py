"""WireGuard as natkit's reference consumer (pure parts).

natkit finds a path; WireGuard carries the traffic. This package holds what
needs no I/O:

* :mod:`natkit.wireguard.rawudp`: sharing WireGuard's UDP port. A raw UDP
  socket sends natkit's STUN checks with WireGuard's source port, and a
  classic BPF socket filter passes only STUN addressed to that port to
  natkit, so the NAT mapping the checks open is WireGuard's own. Header
  building and parsing, checksums and the filter program live here; the
  sockets are :mod:`natkit.aio.sharedsock`.
* :mod:`natkit.wireguard.dump`, :mod:`~natkit.wireguard.commands`,
  :mod:`~natkit.wireguard.keys`: reading an interface's peers from
  ``wg show IFACE dump`` and building ``wg set`` command lines; running them
  is :mod:`natkit.aio.wireguard`.
"""

from natkit.wireguard.commands import PeerConfig
from natkit.wireguard.dump import InterfaceStatus, PeerStatus
from natkit.wireguard.errors import (
    InterfaceNameError,
    KeyFormatError,
    NoSuchInterfaceError,
    WgArgumentError,
    WgCommandError,
    WgNotInstalledError,
    WgOutputError,
    WgPermissionError,
    WireGuardError,
)
from natkit.wireguard.keys import WireGuardKey

__all__ = [
    "InterfaceNameError",
    "InterfaceStatus",
    "KeyFormatError",
    "NoSuchInterfaceError",
    "PeerConfig",
    "PeerStatus",
    "WgArgumentError",
    "WgCommandError",
    "WgNotInstalledError",
    "WgOutputError",
    "WgPermissionError",
    "WireGuardError",
    "WireGuardKey",
]
