"""An IGD in miniature for virtual-clock tests: it answers the UPnP calls a
core asks for (:mod:`natkit.portmap.upnp_calls`) as miniupnpd does, with
scripted faults and per-action counters (after tailscale's ``igd_test.go``).
The real miniupnpc is exercised against ``fake_igd`` over loopback and
against miniupnpd in the lab; this one lets hours pass in microseconds.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, deque
from dataclasses import dataclass, field

from fake_igd import description

from natkit.endpoint import Endpoint
from natkit.portmap.igd import MiniupnpcFailure, UpnpError, UpnpErrorCode
from natkit.portmap.upnp_calls import PortMappingEntry, UpnpAction, UpnpAnswer, UpnpCall

LOCATION = "http://192.168.1.1:5000/rootDesc.xml"


@dataclass(slots=True)
class Held:
    internal: Endpoint
    description: str
    lease: int


@dataclass
class FakeUpnp:
    """Script: ``faults[action]`` is a queue of error codes (0 = success),
    ``always[action]`` a code every call gets, ``silent`` actions are never
    answered (the driver's timeout then says so)."""

    version: int = 2
    external_ip: str = "203.0.113.7"
    reserved_port: int = 40123
    description_body: bytes | None = None
    faults: dict[UpnpAction, deque[int]] = field(default_factory=dict)
    always: dict[UpnpAction, int] = field(default_factory=dict)
    silent: set[UpnpAction] = field(default_factory=set)
    counts: Counter[UpnpAction] = field(default_factory=Counter)
    #: (time, call) of every call made.
    calls: list[tuple[float, UpnpCall]] = field(default_factory=list)
    #: (external port, transport) -> what is mapped there.
    held: dict[tuple[int, str], Held] = field(default_factory=dict)

    def answer(self, call: UpnpCall, now: float) -> UpnpAnswer | None:
        """The answer to ``call`` (``None``: it goes unanswered)."""
        self.counts[call.action] += 1
        self.calls.append((now, call))
        if call.action in self.silent:
            return None
        code = self.always.get(call.action)
        queue = self.faults.get(call.action)
        if code is None and queue:
            code = queue.popleft()
        if code:
            return UpnpAnswer(call.id, error=_error(call.action, code))
        return self._ok(call)

    def _ok(self, call: UpnpCall) -> UpnpAnswer:
        action, key = call.action, (call.external_port, call.transport.name)
        if action is UpnpAction.FETCH_DESCRIPTION:
            body = self.description_body or description(self.version)
            return UpnpAnswer(call.id, body=body)
        if action is UpnpAction.GET_EXTERNAL_ADDRESS:
            return UpnpAnswer(call.id, text=self.external_ip)
        if action is UpnpAction.ADD_ANY_PORT_MAPPING:
            if self.version < 2:
                return UpnpAnswer(call.id, error=_error(action, 401))
            assert call.internal is not None
            self.held[(self.reserved_port, call.transport.name)] = Held(
                call.internal, call.description, 0
            )
            return UpnpAnswer(call.id, port=self.reserved_port)
        if action is UpnpAction.ADD_PORT_MAPPING:
            assert call.internal is not None
            taken = self.held.get(key)
            if taken is not None and taken.internal != call.internal:
                return UpnpAnswer(call.id, error=_error(action, 718))
            self.held[key] = Held(call.internal, call.description, call.lease)
            return UpnpAnswer(call.id)
        if action is UpnpAction.DELETE_PORT_MAPPING:
            if self.held.pop(key, None) is None:
                return UpnpAnswer(call.id, error=_error(action, 714))
            return UpnpAnswer(call.id)
        if action is UpnpAction.GET_SPECIFIC_ENTRY:
            held = self.held.get(key)
            if held is None:
                return UpnpAnswer(call.id, error=_error(action, 714))
            entry = PortMappingEntry(call.external_port, call.transport.name, held.internal,
                                     held.description)  # fmt: skip
            return UpnpAnswer(call.id, entry=entry)
        if action is UpnpAction.GET_GENERIC_ENTRY:
            items = sorted(self.held.items())
            if call.index >= len(items):
                return UpnpAnswer(call.id, error=_error(action, 713))
            (port, proto), held = items[call.index]
            entry = PortMappingEntry(port, proto, held.internal, held.description)
            return UpnpAnswer(call.id, entry=entry)
        return UpnpAnswer(call.id)  # SELECT_IGD

    def count(self, action: UpnpAction) -> int:
        return self.counts[action]


def _error(action: UpnpAction, code: int) -> UpnpError:
    if code in UpnpErrorCode.__members__.values():
        named = UpnpErrorCode(code)
        return UpnpError(action.value, named.name, named)
    return UpnpError(action.value, "UnknownError", None, MiniupnpcFailure.UNKNOWN_CODE)


def ssdp_answer(location: str = LOCATION, version: int = 2) -> bytes:
    """What miniupnpd answers an M-SEARCH with."""
    st = f"urn:schemas-upnp-org:device:InternetGatewayDevice:{version}"
    return (
        "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\n"
        f"ST: {st}\r\nUSN: uuid:1::{st}\r\nLOCATION: {location}\r\n"
        "SERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\n\r\n"
    ).encode()


GATEWAY_ADDRESS = ipaddress.IPv4Address("192.168.1.1")
