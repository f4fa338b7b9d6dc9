"""A stateful UDP firewall without address translation.

It models a public host behind a firewall (RFC 5780 §4.3's "open internet,
but filtered" case): inside hosts hold public addresses that the firewall
never rewrites, and inbound datagrams pass only if the inside endpoint has
recently sent to a matching remote. Matching uses the same RFC 4787 filter
scopes as the NAT (``nat.FILTER_SCOPE``), so an APDF firewall admits exactly
the remote endpoints the inside endpoint has sent to.
"""

from __future__ import annotations

from dataclasses import dataclass

from natkit.endpoint import Endpoint
from natkit.simulations.errors import SimulationError
from natkit.simulations.nat import FILTER_SCOPE, FilteringBehavior, Scope
from natkit.simulations.packet import PacketDropReason


@dataclass(frozen=True, slots=True)
class FirewallConfig:
    """How a firewall filters."""

    filtering: FilteringBehavior = FilteringBehavior.APDF
    #: Seconds a permission lives after the outbound datagram that made it.
    timeout: float = 120.0
    #: Whether admitted inbound datagrams refresh their permission.
    inbound_refresh: bool = False
    #: Drop every UDP datagram both ways.
    udp_blocked: bool = False

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise SimulationError(f"timeout must be > 0, not {self.timeout}")

    @property
    def label(self) -> str:
        """A short name such as ``"firewall/APDF"``."""
        return "firewall/udp-blocked" if self.udp_blocked else f"firewall/{self.filtering.name}"


class Firewall:
    """Per inside endpoint, the remotes it may hear from, with expiry times."""

    def __init__(self, config: FirewallConfig) -> None:
        self.config = config
        self._scope = FILTER_SCOPE[config.filtering]
        self._permits: dict[Endpoint, dict[Scope, float]] = {}

    def outbound(self, src: Endpoint, dst: Endpoint, now: float) -> PacketDropReason | None:
        """Record that ``src`` sent to ``dst``; ``None`` means forward it."""
        if self.config.udp_blocked:
            return PacketDropReason.UDP_BLOCKED
        permits = self._permits.get(src)
        if permits is None:
            permits = self._permits[src] = {}
        permits[self._scope(dst)] = now + self.config.timeout
        return None

    def inbound(self, src: Endpoint, dst: Endpoint, now: float) -> PacketDropReason | None:
        """Whether a datagram from ``src`` may reach inside endpoint ``dst``."""
        if self.config.udp_blocked:
            return PacketDropReason.UDP_BLOCKED
        permits = self._permits.get(dst)
        if permits is None:
            return PacketDropReason.FILTERED
        scope = self._scope(src)
        until = permits.get(scope)
        if until is None or until <= now:
            return PacketDropReason.FILTERED
        if self.config.inbound_refresh:
            permits[scope] = now + self.config.timeout
        return None
