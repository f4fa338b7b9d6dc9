"""What natkit's WireGuard adapter reports, beside the connect node's events.

One frozen dataclass per event, past tense (:mod:`natkit.aio.wireguard_node`
emits them; ``natkit connect --wireguard`` prints them as ``endpoint_set``,
``endpoint_verified``, ``endpoint_reverted``, ``wireguard_peers`` and
``wireguard_failed``). Peers are the WireGuard public keys, which are the
natkit node keys (the adapter uses WireGuard's key pair as its own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from natkit.endpoint import Endpoint
from natkit.ice.candidates import CandidateKind
from natkit.wireguard.verify import Evidence


@dataclass(frozen=True, slots=True)
class EndpointSet:
    """natkit pointed WireGuard at ``endpoint`` for ``peer`` (``wg set``)."""

    peer: Any
    endpoint: Endpoint
    #: What WireGuard used before (``None``: no endpoint yet).
    previous: Endpoint | None
    #: How the selected path reaches the peer.
    kind: CandidateKind
    #: The path's far end, where natkit's checks go (the endpoint itself
    #: unless ``bridged``).
    remote: Endpoint
    #: ``endpoint`` is natkit's loopback bridge (a relayed path, or one whose
    #: socket is not WireGuard's): WireGuard's packets pass through natkit.
    bridged: bool


@dataclass(frozen=True, slots=True)
class EndpointVerified:
    """WireGuard works over ``endpoint``: ``evidence`` came ``after`` seconds
    after the change."""

    peer: Any
    endpoint: Endpoint
    evidence: Evidence
    after: float


@dataclass(frozen=True, slots=True)
class EndpointReverted:
    """No evidence within ``waited`` seconds that WireGuard works over
    ``endpoint``: natkit put ``restored`` back (the last verified endpoint,
    ``None`` if there was none) and rejected the path (the connect core
    fails over and keeps the path out of selection for a while)."""

    peer: Any
    endpoint: Endpoint
    restored: Endpoint | None
    waited: float
    #: One sentence for people.
    reason: str


@dataclass(frozen=True, slots=True)
class WireGuardPeersChanged:
    """The interface's peers were read again and changed: natkit connects to
    ``added`` from now on and stopped connecting to ``removed``."""

    added: tuple[Any, ...]
    removed: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class WireGuardFailed:
    """A ``wg`` command failed (``peer``: ``None`` for the interface); natkit
    goes on and tries again at the next change."""

    peer: Any
    detail: str


WireGuardEvent = (
    EndpointSet | EndpointVerified | EndpointReverted | WireGuardPeersChanged | WireGuardFailed
)
