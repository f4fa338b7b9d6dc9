"""A mapped candidate: a port mapping as an ICE-style candidate.

The rest of natkit (candidate gathering, the birthday prober, a tunnel)
wants "an address peers can send to, and the local socket it reaches".
A granted mapping is exactly that, more reliable than a server-reflexive
address because the gateway promises to forward whatever the NAT's
filtering. SDP has no candidate type for it, so it is announced as
``srflx`` with a type preference between host (126) and srflx (100)
(RFC 8445 §5.1.2.1 leaves the values to the agent).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from natkit.endpoint import Endpoint
from natkit.portmap.mapping import Mapping, MappingProtocol, TransportProtocol

#: Type preference of a port-mapped candidate (host 126, srflx 100).
MAPPED_TYPE_PREFERENCE = 110


def candidate_priority(type_preference: int, local_preference: int, component: int) -> int:
    """RFC 8445 §5.1.2.1: (2^24)*type + (2^8)*local + (256 - component)."""
    return (type_preference << 24) + (local_preference << 8) + (256 - component)


@dataclass(frozen=True, slots=True)
class MappedCandidate:
    """The external endpoint of a mapping, with the local socket behind it."""

    #: Where peers send.
    address: Endpoint
    #: The local endpoint the gateway forwards to (ICE's "base").
    base: Endpoint
    transport: TransportProtocol
    protocol: MappingProtocol
    #: Monotonic time after which the gateway no longer promises anything.
    expires_at: float
    component: int = 1
    priority: int = 0
    foundation: str = ""

    def to_sdp(self) -> str:
        """An SDP ``candidate`` attribute value (RFC 8839 §5.1)."""
        return (
            f"candidate:{self.foundation} {self.component} {self.transport.name}"
            f" {self.priority} {self.address.address} {self.address.port} typ srflx"
            f" raddr {self.base.address} rport {self.base.port}"
        )


def candidate_from_mapping(
    mapping: Mapping, component: int = 1, local_preference: int = 65535
) -> MappedCandidate:
    """The candidate a granted ``mapping`` gives."""
    seed = f"mapped|{mapping.protocol.value}|{mapping.internal.address}|{mapping.gateway}"
    return MappedCandidate(
        address=mapping.external,
        base=mapping.internal,
        transport=mapping.transport,
        protocol=mapping.protocol,
        expires_at=mapping.expires_at,
        component=component,
        priority=candidate_priority(MAPPED_TYPE_PREFERENCE, local_preference, component),
        foundation=hashlib.sha256(seed.encode()).hexdigest()[:8],
    )
