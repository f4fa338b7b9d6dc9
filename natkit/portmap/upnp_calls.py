"""UPnP IGD calls as requests a core hands its driver, and their answers.

miniupnpc stays natkit's SOAP and description engine, but it is blocking C
code, so no core calls it. A core asks instead: it emits
:class:`UpnpCallRequested` with one :class:`UpnpCall`, and the driver
(``natkit.aio.portmap.upnp``; a fake in unit tests) makes the call off the
event loop and feeds back one :class:`UpnpAnswer` with the same ``id``,
within the call's ``timeout`` or as ``timed_out``. The description fetch is
such a call too (:attr:`UpnpAction.FETCH_DESCRIPTION`, read by the driver
with the size limit given here and checked by the core with
:func:`~natkit.portmap.igd.parse_description` before miniupnpc ever sees
the URL in :attr:`UpnpAction.SELECT_IGD`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from natkit.endpoint import Endpoint
from natkit.portmap.igd import MAX_DESCRIPTION_LENGTH, DescriptionError, UpnpError
from natkit.portmap.mapping import LifetimePolicy, TransportProtocol
from natkit.portmap.timing import PcpRetransmission


class UpnpAction(Enum):
    """What a call does (the SOAP action name where it is one)."""

    #: HTTP GET of the device description, at most ``UpnpCall.limit`` bytes.
    FETCH_DESCRIPTION = "fetch description"
    #: miniupnpc ``selectigd(location)``: bind the session to that device.
    SELECT_IGD = "selectigd"
    GET_EXTERNAL_ADDRESS = "GetExternalIPAddress"
    ADD_PORT_MAPPING = "AddPortMapping"
    ADD_ANY_PORT_MAPPING = "AddAnyPortMapping"
    DELETE_PORT_MAPPING = "DeletePortMapping"
    GET_SPECIFIC_ENTRY = "GetSpecificPortMappingEntry"
    GET_GENERIC_ENTRY = "GetGenericPortMappingEntry"


@dataclass(frozen=True, slots=True)
class UpnpCall:
    """One call to the device at ``location`` (fields unused by an action
    keep their defaults)."""

    #: Unique per core; the answer carries it back.
    id: int
    action: UpnpAction
    #: The description URL naming the device (and its miniupnpc session).
    location: str
    #: Seconds the driver may take before answering ``timed_out``.
    timeout: float
    external_port: int = 0
    transport: TransportProtocol = TransportProtocol.UDP
    #: The internal endpoint of AddPortMapping and AddAnyPortMapping.
    internal: Endpoint | None = None
    #: ``NewPortMappingDescription``.
    description: str = ""
    #: ``NewLeaseDuration`` in seconds (0: permanent).
    lease: int = 0
    #: GetGenericPortMappingEntry's index.
    index: int = 0
    #: FETCH_DESCRIPTION: read no more than this many body bytes.
    limit: int = MAX_DESCRIPTION_LENGTH


@dataclass(frozen=True, slots=True)
class UpnpCallRequested:
    """A core asks its driver to make ``call`` and answer with
    ``upnp_call_completed(UpnpAnswer(call.id, ...), now)``."""

    call: UpnpCall


@dataclass(frozen=True, slots=True)
class PortMappingEntry:
    """One mapping as the device lists it."""

    external_port: int
    #: ``"UDP"`` or ``"TCP"`` as the device spelled it.
    transport: str
    internal: Endpoint
    description: str


@dataclass(frozen=True, slots=True)
class UpnpAnswer:
    """What the driver reports for one call: at most one of the value
    fields, ``error`` or ``timed_out``."""

    call_id: int
    #: FETCH_DESCRIPTION: the body read (the driver enforced the limit).
    body: bytes = b""
    #: GET_EXTERNAL_ADDRESS: the text the device sent.
    text: str = ""
    #: ADD_ANY_PORT_MAPPING: the port the device reserved.
    port: int | None = None
    #: GET_SPECIFIC_ENTRY / GET_GENERIC_ENTRY: the entry; ``None``: there is none.
    entry: PortMappingEntry | None = None
    #: The device refused, or the call could not be made (miniupnpc's
    #: failures, an HTTP error, a description natkit refuses to read on).
    error: UpnpError | DescriptionError | None = None
    #: No answer within the call's timeout.
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class UpnpConfig:
    """Knobs of UPnP discovery and mapping (seconds)."""

    lifetime: LifetimePolicy = field(default_factory=LifetimePolicy)
    #: Give up discovery after this long without a usable answer.
    discovery_timeout: float = 2.0
    #: After the first usable answer, wait this long for a preferred one.
    settle: float = 0.05
    #: Repeat the M-SEARCH at these offsets (UDP may drop it).
    resend_at: tuple[float, ...] = (0.0, 0.25, 0.75)
    #: Multicast the search (off: only unicast to the named gateway).
    multicast: bool = True
    #: The SSDP destinations to unicast to besides the gateway (tests).
    extra_targets: tuple[Endpoint, ...] = ()
    #: Deadline of each call, the description fetch included.
    call_timeout: float = 5.0
    max_description: int = MAX_DESCRIPTION_LENGTH
    #: Ports tried after a 718 conflict when AddAnyPortMapping is missing.
    conflict_attempts: int = 8
    #: Re-creating a lost mapping, and transient errors, back off per
    #: RFC 6887 §8.1.1 (IRT, doubling, MRT): UPnP has no rule of its own.
    retransmission: PcpRetransmission = field(default_factory=PcpRetransmission)
    #: Renewals never go out closer together than this.
    min_renewal_interval: float = 4.0
    #: Cleaning up without a known port reads at most this many entries.
    max_entries: int = 256
