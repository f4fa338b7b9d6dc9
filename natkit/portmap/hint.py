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

from dataclasses import dataclass
from enum import Enum

from natkit.addresses import is_public, is_shared
from natkit.endpoint import IPAddress


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


def mapping_hint(external: IPAddress, stun_mapped: IPAddress | None = None) -> MappingHint | None:
    """The hint for a gateway reporting ``external``, or ``None`` when the
    mapping should make us reachable."""
    if is_shared(external):
        return MappingHint(HintReason.CARRIER_GRADE_NAT, external, stun_mapped)
    if not is_public(external):
        return MappingHint(HintReason.PRIVATE_EXTERNAL, external, stun_mapped)
    if stun_mapped is not None and stun_mapped != external:
        return MappingHint(HintReason.DOUBLE_NAT, external, stun_mapped)
    return None
