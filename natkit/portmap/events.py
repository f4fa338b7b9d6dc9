"""Events the port-mapping cores hand to their driver (past tense: they happened).

The same events come from every protocol, so a port mapper racing PCP,
NAT-PMP and UPnP can react to them without knowing which one spoke. Two
questions, two families of events:

* "Is my mapping there?": :class:`MappingGranted`, :class:`MappingRenewed`,
  :class:`MappingLost`, :class:`MappingDeleted`.
* "Is the core still trying?": :class:`MappingFailed` (``terminal`` says
  whether it gave up), and :class:`GatewayRestarted` (it is re-creating).

A probe (``probe()`` of the NAT-PMP and UPnP clients) ends in
:class:`ExternalAddressFound`: the gateway speaks the protocol; nothing was
mapped.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from natkit.endpoint import Endpoint, IPAddress
from natkit.portmap.mapping import Mapping, MappingProtocol


class LossReason(Enum):
    """Why a held mapping stopped being ours."""

    #: Not renewed before ``expires_at`` (the gateway went silent).
    EXPIRED = "expired"
    #: A renewal got a permanent error, e.g. PCP NOT_AUTHORIZED after another
    #: client's nonce took the internal port over (LAB.md, miniupnpd).
    REFUSED = "refused"
    #: The gateway said, unasked, that the mapping now has lifetime 0.
    REVOKED = "revoked"


class FailureReason(Enum):
    """Why a request did not get a mapping. Protocol result codes map onto
    these; the exact code stays in the event's ``result_code``."""

    TIMED_OUT = "no answer"
    UNSUPPORTED_VERSION = "gateway speaks another version"
    NOT_AUTHORIZED = "not authorized"
    MALFORMED_REQUEST = "gateway could not parse the request"
    UNSUPPORTED_OPCODE = "opcode not supported"
    UNSUPPORTED_OPTION = "option not supported"
    MALFORMED_OPTION = "option malformed"
    NETWORK_FAILURE = "gateway has no external connectivity"
    NO_RESOURCES = "gateway is out of mappings"
    UNSUPPORTED_PROTOCOL = "transport protocol not supported"
    USER_EX_QUOTA = "per-host mapping quota exceeded"
    CANNOT_PROVIDE_EXTERNAL = "suggested external address or port unavailable"
    ADDRESS_MISMATCH = "another NAT between us and the gateway"
    EXCESSIVE_REMOTE_PEERS = "too many remote peers"
    #: UPnP: the device description was refused before miniupnpc saw it.
    INVALID_DESCRIPTION = "device description refused"
    UNKNOWN_RESULT = "result code this client does not know"


@dataclass(frozen=True, slots=True)
class MappingGranted:
    """The gateway created a mapping we did not hold a moment ago: the first
    grant, or a re-creation after a loss or a gateway restart."""

    #: The new mapping.
    mapping: Mapping
    #: True when it replaces one that was lost, expired or presumed lost.
    recreated: bool = False


@dataclass(frozen=True, slots=True)
class MappingRenewed:
    """The gateway extended a mapping we held (or changed it, unasked)."""

    #: The mapping as it stands now.
    mapping: Mapping
    #: The mapping it replaces.
    previous: Mapping

    @property
    def external_changed(self) -> bool:
        """Peers must be told: the external endpoint moved."""
        return self.mapping.external != self.previous.external


@dataclass(frozen=True, slots=True)
class MappingLost:
    """A mapping we held is gone; the core re-creates it unless a
    :class:`MappingFailed` with ``terminal`` follows."""

    #: The mapping as last granted.
    mapping: Mapping
    reason: LossReason
    #: The protocol's result code when a gateway answer caused the loss.
    result_code: int | None = None


@dataclass(frozen=True, slots=True)
class MappingDeleted:
    """The deletion the caller asked for is over; the core is finished."""

    #: The mapping deleted, or ``None`` when none had been granted yet.
    mapping: Mapping | None
    #: The gateway acknowledged it. ``False``: it refused or never answered,
    #: and the lease may linger until ``mapping.expires_at``.
    confirmed: bool
    #: The result code of a refusal.
    result_code: int | None = None
    #: The gateway answered at least one of this client's requests. When it
    #: never did and the deletion is unconfirmed, the requests most likely
    #: never arrived: the caller may forget the lease (a journal need not
    #: keep it for a later run).
    gateway_answered: bool = True

    @property
    def may_linger(self) -> bool:
        """The gateway may still hold a mapping until it expires."""
        return not self.confirmed and self.gateway_answered


@dataclass(frozen=True, slots=True)
class MappingFailed:
    """A request was refused or unanswered."""

    reason: FailureReason
    #: The protocol that failed.
    protocol: MappingProtocol
    #: True: the core gave up and is finished. False: it retries at ``retry_at``,
    #: and a mapping granted earlier stays valid until it expires.
    terminal: bool
    #: The protocol's result code, ``None`` for timeouts.
    result_code: int | None = None
    #: For UNSUPPORTED_VERSION: the version the gateway speaks.
    server_version: int | None = None
    #: When the core tries again (non-terminal failures).
    retry_at: float | None = None
    #: What the gateway said, in words, where it said more than a code (UPnP).
    detail: str = ""

    @property
    def fall_back_to_nat_pmp(self) -> bool:
        """A PCP request reached a NAT-PMP-only gateway: retry with NAT-PMP
        (RFC 6886 §1.1)."""
        return self.reason is FailureReason.UNSUPPORTED_VERSION and self.server_version == 0


@dataclass(frozen=True, slots=True)
class GatewayRestarted:
    """The gateway's epoch showed it lost its mapping state (RFC 6887 §8.5,
    RFC 6886 §3.6); the core re-creates its mapping."""

    gateway: Endpoint
    #: The epoch the previous message carried...
    previous_epoch: int
    #: ...and the one that does not fit with it.
    epoch: int
    #: The mapping presumed lost and being re-created, if one was held.
    mapping: Mapping | None
    #: Learned from an unsolicited announcement rather than at a scheduled
    #: renewal: from the announcement's own epoch, or (NAT-PMP) from the
    #: answer to the renewal a PCP ANNOUNCE of the same gateway prompted.
    announced: bool


@dataclass(frozen=True, slots=True)
class ExternalAddressFound:
    """The answer to a probe: the gateway speaks the protocol and reports
    this external address. Nothing was mapped; ``start()`` maps."""

    protocol: MappingProtocol
    #: ``None`` when the gateway reported something that is not an address.
    external_address: IPAddress | None
    #: The epoch of the answer (NAT-PMP).
    epoch: int | None = None


PortmapEvent = (
    MappingGranted
    | MappingRenewed
    | MappingLost
    | MappingDeleted
    | MappingFailed
    | GatewayRestarted
    | ExternalAddressFound
)
