"""When a port mapping cannot make us reachable, and why.

A gateway maps its own external address. If that address is not the one
the internet sees (another NAT sits outside the gateway), the mapping ends
at the outer NAT and unsolicited packets never arrive:

* the gateway reports a private (RFC 1918 and other special-purpose)
  external address, or one in RFC 6598's shared space 100.64.0.0/10, which
  carriers use for CGNAT;
* it differs from the address a STUN server saw us come from (double NAT).

Pure: the STUN-mapped address is an input.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum

from natkit.endpoint import IPAddress

#: RFC 6598 shared address space (carrier-grade NAT).
SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
#: RFC 5737 documentation networks: the lab's internet, treated as public.
_DOCUMENTATION = (
    ipaddress.IPv4Network("192.0.2.0/24"),
    ipaddress.IPv4Network("198.51.100.0/24"),
    ipaddress.IPv4Network("203.0.113.0/24"),
)


class HintReason(Enum):
    """Why the mapping will not help."""

    CARRIER_GRADE_NAT = "gateway's external address is in 100.64.0.0/10: a carrier NAT is outside"
    PRIVATE_EXTERNAL = "gateway's external address is private: another NAT is outside"
    DOUBLE_NAT = "gateway's external address differs from the STUN-mapped address: double NAT"


@dataclass(frozen=True, slots=True)
class MappingHint:
    """A warning to show next to a mapping."""

    reason: HintReason
    external_address: IPAddress
    stun_mapped: IPAddress | None = None

    def __str__(self) -> str:
        seen = f" (STUN saw {self.stun_mapped})" if self.stun_mapped is not None else ""
        return f"{self.reason.value}: {self.external_address}{seen}"


def _private(address: IPAddress) -> bool:
    if any(address in net for net in _DOCUMENTATION):
        return False
    return address.is_private or address.is_loopback or address.is_link_local


def mapping_hint(external: IPAddress, stun_mapped: IPAddress | None = None) -> MappingHint | None:
    """The hint for a gateway reporting ``external``, or ``None`` when the
    mapping should make us reachable."""
    if isinstance(external, ipaddress.IPv4Address) and external in SHARED_ADDRESS_SPACE:
        return MappingHint(HintReason.CARRIER_GRADE_NAT, external, stun_mapped)
    if _private(external):
        return MappingHint(HintReason.PRIVATE_EXTERNAL, external, stun_mapped)
    if stun_mapped is not None and stun_mapped != external:
        return MappingHint(HintReason.DOUBLE_NAT, external, stun_mapped)
    return None
