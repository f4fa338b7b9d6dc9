"""The one mapping type every port-mapping protocol hands out.

PCP, NAT-PMP and (later) UPnP IGD all end in the same thing: an internal
endpoint reachable from outside at an external endpoint until a deadline.
:class:`Mapping` is that thing, with the protocol's own details (PCP nonce,
epoch...) as a :class:`MappingDetails` subclass, so a port mapper can race
the protocols and treat whichever answers the same way.

Times are the monotonic ``now`` the core was driven with, in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError


class MappingProtocol(Enum):
    """Which protocol made a mapping."""

    PCP = "pcp"
    NAT_PMP = "nat-pmp"
    UPNP_IGD = "upnp-igd"


class TransportProtocol(IntEnum):
    """What is mapped, numbered as PCP's Protocol field carries it: the IANA
    protocol number (RFC 6887 §11.1). NAT-PMP encodes it in the opcode."""

    TCP = 6
    UDP = 17


class LifetimeNote(Enum):
    """A granted lifetime natkit did not take at face value."""

    #: A success with lifetime 0 would mean "already deleted"; assumed short instead.
    ZERO_ON_SUCCESS = "gateway granted 0 s on success; assumed the policy minimum"
    #: More than the policy maximum (a day unless configured), e.g. 0xFFFFFFFF.
    CAPPED = "gateway granted more than the policy maximum; capped"
    #: Legal but odd: RFC 6886 §3.3 says a gateway SHOULD NOT do this.
    LONGER_THAN_REQUESTED = "gateway granted more than was requested"


@dataclass(frozen=True, slots=True)
class LifetimePolicy:
    """How long to ask for, and which granted lifetimes to believe (seconds)."""

    #: Asked for in every create or renew request (RFC 6886 §3.3 recommends 2 h).
    requested: int = 7200
    #: Assumed when a gateway grants 0 on success. miniupnpd never grants less
    #: than 120 s (LAB.md), so a renewal at half of that is safe.
    assumed_when_zero: int = 120
    #: Granted lifetimes above this are capped (a day: "> 1 day" is a hint of a bug).
    maximum: int = 86400

    def __post_init__(self) -> None:
        if not 0 < self.requested <= 0xFFFFFFFF:
            raise LocalProtocolError(f"requested lifetime out of range: {self.requested}")
        if not 0 < self.assumed_when_zero <= self.maximum:
            raise LocalProtocolError(f"impossible lifetime policy {self!r}")


def clamp_lifetime(
    granted: int, requested: int, policy: LifetimePolicy
) -> tuple[int, tuple[LifetimeNote, ...]]:
    """The lifetime to plan with for a *successful* grant, and why it differs.

    Short non-zero lifetimes are honoured (the gateway will really drop the
    mapping then); only the impossible (0) and the absurd (over the policy
    maximum) are replaced.
    """
    notes: list[LifetimeNote] = []
    if granted > requested > 0:
        notes.append(LifetimeNote.LONGER_THAN_REQUESTED)
    if granted == 0:
        notes.append(LifetimeNote.ZERO_ON_SUCCESS)
        return policy.assumed_when_zero, tuple(notes)
    if granted > policy.maximum:
        notes.append(LifetimeNote.CAPPED)
        return policy.maximum, tuple(notes)
    return granted, tuple(notes)


@dataclass(frozen=True, slots=True)
class MappingDetails:
    """Base of the per-protocol extras a :class:`Mapping` carries."""


@dataclass(frozen=True, slots=True)
class PcpDetails(MappingDetails):
    """What identifies a PCP mapping to its server."""

    #: The 96-bit mapping nonce; every renewal and the deletion repeat it
    #: (RFC 6887 §11.2), or the server refuses them.
    nonce: bytes
    #: The server's Epoch Time in the response that granted this (RFC 6887 §8.5).
    epoch: int


@dataclass(frozen=True, slots=True)
class PmpDetails(MappingDetails):
    """What a NAT-PMP grant said beyond the mapping itself."""

    #: Seconds Since Start of Epoch in the response (RFC 6886 §3.6).
    epoch: int


@dataclass(frozen=True, slots=True)
class Mapping:
    """An inbound port mapping a gateway granted."""

    #: The protocol that made it.
    protocol: MappingProtocol
    #: TCP or UDP.
    transport: TransportProtocol
    #: This host's address and the port that receives the traffic.
    internal: Endpoint
    #: Where peers outside reach ``internal``.
    external: Endpoint
    #: The gateway (PCP/NAT-PMP server) that granted it.
    gateway: Endpoint
    #: Seconds the mapping lives from ``granted_at``, after :func:`clamp_lifetime`.
    lifetime: int
    #: The lifetime field exactly as the gateway sent it.
    granted_lifetime: int
    #: When the grant arrived.
    granted_at: float
    #: When the client will first try to renew.
    renew_at: float
    #: When the gateway drops it unless renewed.
    expires_at: float
    #: Why ``lifetime`` differs from ``granted_lifetime``, if it does.
    notes: tuple[LifetimeNote, ...] = ()
    #: Protocol extras (:class:`PcpDetails`, :class:`PmpDetails`, ...).
    details: MappingDetails | None = None

    def remaining(self, now: float) -> float:
        """Seconds until expiry (negative once expired)."""
        return self.expires_at - now

    def is_valid(self, now: float) -> bool:
        """True until ``expires_at``."""
        return now < self.expires_at
