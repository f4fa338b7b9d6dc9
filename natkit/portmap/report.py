"""What a port mapper reports: per protocol, the mapping, the hint, the cleanup."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from natkit.endpoint import IPAddress
from natkit.portmap.hint import MappingHint, mapping_hint
from natkit.portmap.journal import JournalEntry
from natkit.portmap.mapping import Mapping, MappingProtocol

#: Every protocol, in the order reports list them.
ALL_PROTOCOLS = (MappingProtocol.PCP, MappingProtocol.NAT_PMP, MappingProtocol.UPNP_IGD)


class ProbeStatus(Enum):
    """What one protocol came to."""

    MAPPED = "mapped"
    #: It answered and could have mapped; another protocol was preferred.
    AVAILABLE = "available"
    UNSUPPORTED = "unsupported"
    REFUSED = "refused"
    NO_ANSWER = "no answer"
    NOT_TRIED = "not tried"


@dataclass(frozen=True, slots=True)
class ProtocolResult:
    """One protocol's answer, for reports."""

    protocol: MappingProtocol
    status: ProbeStatus
    #: The external address it reported, if any.
    external_address: IPAddress | None = None
    #: Seconds from the start to its first answer.
    answered_after: float | None = None
    #: A protocol result code (PCP/NAT-PMP) or UPnP error code.
    result_code: int | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ReleaseOutcome:
    """What happened to one journaled lease of an earlier run."""

    entry: JournalEntry
    #: The gateway confirmed the deletion (or that nothing was there).
    released: bool
    detail: str = ""
    #: The entry belongs to another network (its internal address is not on
    #: this host): it was reported once and dropped, not retried.
    stale: bool = False


@dataclass(frozen=True, slots=True)
class PortMapResult:
    """What a port mapper found."""

    mapping: Mapping | None
    protocols: tuple[ProtocolResult, ...]
    hint: MappingHint | None = None
    #: Leases of killed runs released (or not) first.
    released: tuple[ReleaseOutcome, ...] = ()
    #: The STUN-mapped address used for the hint, if known.
    stun_mapped: IPAddress | None = None
    #: Seconds from the start of the probes to the grant.
    mapped_after: float | None = None

    def result_for(self, protocol: MappingProtocol) -> ProtocolResult:
        for result in self.protocols:
            if result.protocol is protocol:
                return result
        return ProtocolResult(protocol, ProbeStatus.NOT_TRIED)

    def with_stun(self, stun_mapped: IPAddress | None) -> PortMapResult:
        """The result with the hint judged against what a STUN server saw:
        the mapping's external address, or without one, what NAT-PMP said."""
        external = None if self.mapping is None else self.mapping.external.address
        if external is None:
            external = self.result_for(MappingProtocol.NAT_PMP).external_address
        hint = None if external is None else mapping_hint(external, stun_mapped)
        return replace(self, hint=hint, stun_mapped=stun_mapped)
