"""natkit: NAT traversal and ICE connectivity toolkit.

The protocol logic lives in sans-IO cores (bytes and ``now`` in; datagrams,
timers and events out). ``natkit.aio`` runs them on asyncio sockets, and
``simulations`` runs the very same cores on a virtual clock.

``natkit.connect(key, peers, rendezvous=..., stun=...)``: an async context
manager giving a connection to peers by public key
(:func:`natkit.aio.connect.connect`). Imported on first use, so ``import
natkit`` stays light.
"""

import importlib
from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # PEP 562: ``natkit.connect`` without importing asyncio at ``import natkit``.
    if name == "connect":
        return importlib.import_module("natkit.connect")
    raise AttributeError(f"module 'natkit' has no attribute {name!r}")
