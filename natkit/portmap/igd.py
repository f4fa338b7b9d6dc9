"""UPnP IGD: the device description and SOAP errors, as pure functions.

What miniupnpc does not check, natkit does before handing it a URL:

* The description (UPnP Device Architecture §2.3) is fetched by natkit with
  a size limit (:data:`MAX_DESCRIPTION_LENGTH`) and must be well-formed XML
  without a DOCTYPE (no entity expansion), naming an InternetGatewayDevice
  with a WANIPConnection or WANPPPConnection service. Only then is the URL
  given to miniupnpc, whose own fetch has no size limit.
* miniupnpc reports SOAP errors as text (``strupnperror``), e.g.
  ``"ConflictInMappingEntry"``: :func:`error_from_miniupnpc` turns that
  text back into the UPnP error code, so callers handle errors by name
  (:class:`UpnpErrorCode`), never by parsing strings themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from urllib.parse import urljoin
from xml.etree import ElementTree

from natkit.errors import MalformedInput, RemoteProtocolError
from natkit.portmap.mapping import MappingDetails

#: A real IGD description is 2-10 KiB; this leaves a lot of room.
MAX_DESCRIPTION_LENGTH = 64 * 1024

_DEVICE_PREFIX = "urn:schemas-upnp-org:device:InternetGatewayDevice:"
#: WAN connection services natkit can map with, preferred first.
WAN_SERVICES = (
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
)


class UpnpErrorCode(IntEnum):
    """UPnP and WANIPConnection error codes (UDA §3.2.2, WANIPConnection:2 §2.5)."""

    INVALID_ACTION = 401
    INVALID_ARGS = 402
    ACTION_FAILED = 501
    ARGUMENT_VALUE_INVALID = 600
    ARGUMENT_VALUE_OUT_OF_RANGE = 601
    OPTIONAL_ACTION_NOT_IMPLEMENTED = 602
    STRING_ARGUMENT_TOO_LONG = 605
    ACTION_NOT_AUTHORIZED = 606
    SPECIFIED_ARRAY_INDEX_INVALID = 713
    NO_SUCH_ENTRY_IN_ARRAY = 714
    WILDCARD_NOT_PERMITTED_IN_SRC_IP = 715
    WILDCARD_NOT_PERMITTED_IN_EXT_PORT = 716
    CONFLICT_IN_MAPPING_ENTRY = 718
    SAME_PORT_VALUES_REQUIRED = 724
    ONLY_PERMANENT_LEASES_SUPPORTED = 725
    REMOTE_HOST_ONLY_SUPPORTS_WILDCARD = 726
    EXTERNAL_PORT_ONLY_SUPPORTS_WILDCARD = 727
    NO_PORT_MAPS_AVAILABLE = 728
    CONFLICT_WITH_OTHER_MECHANISMS = 729
    WILDCARD_NOT_PERMITTED_IN_INT_PORT = 732


class MiniupnpcFailure(Enum):
    """Failures miniupnpc reports that are not UPnP error codes."""

    NO_DEVICE = "No UPnP device discovered"
    UNKNOWN = "Miniupnpc Unknown Error"
    INVALID_ARGUMENTS = "Miniupnpc Invalid Arguments"
    INVALID_RESPONSE = "Miniupnpc Invalid response"
    HTTP_ERROR = "Miniupnpc HTTP error"
    SOCKET_ERROR = "Miniupnpc Socket error"
    MEMORY_ERROR = "Miniupnpc Memory allocation error"
    #: A SOAP fault whose code miniupnpc has no name for; the code is lost.
    UNKNOWN_CODE = "UnknownError"


#: miniupnpc's ``strupnperror`` texts (upnperrors.c) back to the codes.
_CODE_FOR_TEXT: dict[str, UpnpErrorCode] = {
    "Invalid Action": UpnpErrorCode.INVALID_ACTION,
    "Invalid Args": UpnpErrorCode.INVALID_ARGS,
    "Action Failed": UpnpErrorCode.ACTION_FAILED,
    "Argument Value Invalid": UpnpErrorCode.ARGUMENT_VALUE_INVALID,
    "Argument Value Out of Range": UpnpErrorCode.ARGUMENT_VALUE_OUT_OF_RANGE,
    "Optional Action Not Implemented": UpnpErrorCode.OPTIONAL_ACTION_NOT_IMPLEMENTED,
    "String Argument Too Long": UpnpErrorCode.STRING_ARGUMENT_TOO_LONG,
    "Action not authorized": UpnpErrorCode.ACTION_NOT_AUTHORIZED,
    "SpecifiedArrayIndexInvalid": UpnpErrorCode.SPECIFIED_ARRAY_INDEX_INVALID,
    "NoSuchEntryInArray": UpnpErrorCode.NO_SUCH_ENTRY_IN_ARRAY,
    "WildCardNotPermittedInSrcIP": UpnpErrorCode.WILDCARD_NOT_PERMITTED_IN_SRC_IP,
    "WildCardNotPermittedInExtPort": UpnpErrorCode.WILDCARD_NOT_PERMITTED_IN_EXT_PORT,
    "ConflictInMappingEntry": UpnpErrorCode.CONFLICT_IN_MAPPING_ENTRY,
    "SamePortValuesRequired": UpnpErrorCode.SAME_PORT_VALUES_REQUIRED,
    "OnlyPermanentLeasesSupported": UpnpErrorCode.ONLY_PERMANENT_LEASES_SUPPORTED,
    "RemoteHostOnlySupportsWildcard": UpnpErrorCode.REMOTE_HOST_ONLY_SUPPORTS_WILDCARD,
    "ExternalPortOnlySupportsWildcard": UpnpErrorCode.EXTERNAL_PORT_ONLY_SUPPORTS_WILDCARD,
    "NoPortMapsAvailable": UpnpErrorCode.NO_PORT_MAPS_AVAILABLE,
    "ConflictWithOtherMechanisms": UpnpErrorCode.CONFLICT_WITH_OTHER_MECHANISMS,
    "WildCardNotPermittedInIntPort": UpnpErrorCode.WILDCARD_NOT_PERMITTED_IN_INT_PORT,
}
_FAILURE_FOR_TEXT = {failure.value: failure for failure in MiniupnpcFailure}


class UpnpError(RemoteProtocolError):
    """The IGD refused an action, or miniupnpc could not talk to it.

    Exactly one of ``code`` (a SOAP fault) and ``failure`` (miniupnpc's own
    trouble) is set; ``text`` is what miniupnpc said.
    """

    def __init__(
        self,
        action: str,
        text: str,
        code: UpnpErrorCode | None = None,
        failure: MiniupnpcFailure | None = None,
    ) -> None:
        self.action = action
        self.text = text
        self.code = code
        self.failure = failure
        what = f"{code.name} ({int(code)})" if code is not None else text
        super().__init__(f"UPnP {action}: {what}")


def error_from_miniupnpc(action: str, exc: BaseException) -> UpnpError:
    """Name the error behind miniupnpc's ``Exception(strupnperror(code))``."""
    text = str(exc)
    code = _CODE_FOR_TEXT.get(text)
    failure = None if code is not None else _FAILURE_FOR_TEXT.get(text, MiniupnpcFailure.UNKNOWN)
    return UpnpError(action, text, code, failure)


class DescriptionFailure(Enum):
    """Why a device description was refused before miniupnpc saw it."""

    TOO_LARGE = "description is larger than natkit accepts"
    HTTP_ERROR = "description fetch did not return 200 OK"
    DTD_FORBIDDEN = "description declares a DOCTYPE (entity expansion is refused)"
    MALFORMED = "description is not well-formed XML"
    NOT_AN_IGD = "description names no InternetGatewayDevice with a WAN connection service"


class DescriptionError(MalformedInput[DescriptionFailure]):
    """A device description natkit will not hand to miniupnpc."""


@dataclass(frozen=True, slots=True)
class IgdDescription:
    """What natkit reads from a description before trusting it."""

    #: 1 or 2: the InternetGatewayDevice version.
    igd_version: int
    #: The WAN connection service mappings go through.
    service_type: str
    #: Its control URL, absolute.
    control_url: str
    friendly_name: str = ""

    @property
    def has_add_any_port_mapping(self) -> bool:
        """AddAnyPortMapping exists from WANIPConnection:2 on."""
        return self.service_type.endswith("WANIPConnection:2")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(element: ElementTree.Element, name: str) -> str:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return ""


def parse_description(data: bytes, url: str) -> IgdDescription:
    """Check and read a description fetched from ``url`` (see module docstring)."""
    if len(data) > MAX_DESCRIPTION_LENGTH:
        raise DescriptionError(DescriptionFailure.TOO_LARGE, f"{len(data)} bytes")
    if b"<!DOCTYPE" in data.upper() or b"<!ENTITY" in data.upper():
        raise DescriptionError(DescriptionFailure.DTD_FORBIDDEN)
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise DescriptionError(DescriptionFailure.MALFORMED, str(exc)) from None
    base = url
    for element in root.iter():
        if _local(element.tag) == "URLBase" and (element.text or "").strip():
            base = (element.text or "").strip()
    igd_version = 0
    friendly = ""
    services: dict[str, str] = {}
    for element in root.iter():
        name = _local(element.tag)
        if name == "device":
            device_type = _child_text(element, "deviceType")
            if device_type.startswith(_DEVICE_PREFIX) and not igd_version:
                suffix = device_type[len(_DEVICE_PREFIX) :]
                igd_version = int(suffix) if suffix.isdigit() else 0
                friendly = _child_text(element, "friendlyName")
        elif name == "service":
            service_type = _child_text(element, "serviceType")
            control = _child_text(element, "controlURL")
            if service_type in WAN_SERVICES and control:
                services.setdefault(service_type, control)
    if igd_version not in (1, 2) or not services:
        raise DescriptionError(DescriptionFailure.NOT_AN_IGD)
    service_type = next(s for s in WAN_SERVICES if s in services)
    return IgdDescription(
        igd_version=igd_version,
        service_type=service_type,
        control_url=urljoin(base, services[service_type]),
        friendly_name=friendly[:200],
    )


@dataclass(frozen=True, slots=True)
class UpnpDetails(MappingDetails):
    """What identifies a UPnP IGD mapping to its device."""

    #: The description URL the device was reached through.
    location: str
    #: 1 or 2.
    igd_version: int
    #: The WAN connection service the mapping lives in.
    service_type: str
    #: The ``NewPortMappingDescription`` natkit set: names this run's mappings.
    description: str
