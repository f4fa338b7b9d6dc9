"""Traversal reports as JSON: what ``natkit connect`` prints and ``natkit explain`` reads.

:func:`report_to_dict` gives the ``report`` object of ``natkit connect``'s
``report`` and ``peer_report`` lines (every field of
:class:`~natkit.ice.report.TraversalReport`, ``null`` when not known);
:func:`report_from_document` reads one back, and also the document
``natkit classify --json`` prints (schema ``natkit.classify``), so
``natkit explain`` can predict from two classifications. Both are strict:
a value of the wrong type or an unknown enum member raises
:class:`~natkit.errors.LocalProtocolError` naming the key (the files are
the user's input).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, TypeVar

from natkit.birthday.ports import PortRange
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.ice.report import BirthdayCapability, RelayInUse, TraversalReport
from natkit.portmap.mapping import MappingProtocol
from natkit.probe.report import FilteringBehavior, MappingBehavior, PortAllocation
from natkit.turn.config import TurnTransport

__all__ = ["report_from_document", "report_to_dict"]

E = TypeVar("E", bound=Enum)
T = TypeVar("T")


def report_to_dict(report: TraversalReport) -> dict[str, Any]:
    """Every field as a JSON value (``null``: not known)."""
    birthday = report.birthday
    return {
        "mapping": report.mapping.value,
        "filtering": report.filtering.value,
        "port_allocation": report.port_allocation.value,
        "port_delta": report.port_delta,
        "port_range": None if report.port_range is None else str(report.port_range),
        "udp_blocked": report.udp_blocked,
        "behind_nat": report.behind_nat,
        "cgnat": report.cgnat,
        "double_nat": report.double_nat,
        "public_address": None if report.public_address is None else str(report.public_address),
        "port_mapping": None if report.port_mapping is None else report.port_mapping.value,
        "mapped": None if report.mapped is None else str(report.mapped),
        "relays": [{"name": r.name, "transport": r.transport.value} for r in report.relays],
        "birthday": None
        if birthday is None
        else {"ports": birthday.ports, "probes": birthday.probes, "rate": birthday.rate},
        "binding_lifetime": report.binding_lifetime,
    }


def _get(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """``doc[key]`` when it has type ``kind`` (``None`` when absent or null)."""
    value = doc.get(key)
    if value is None:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # JSON true/false are Python bools, which are ints too: only bool takes them.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise LocalProtocolError(f"report key {key!r}: {value!r} is not a {_name(kind)}")
    return value


def _name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return kind.__name__


def _enum(doc: Mapping[str, Any], key: str, enum: type[E], default: E | None) -> E | None:
    value = _get(doc, key, str)
    if value is None:
        return default
    for member in enum:
        if member.value == value:
            return member
    raise LocalProtocolError(f"report key {key!r}: unknown value {value!r}")


def _parsed(doc: Mapping[str, Any], key: str, parse: Callable[[str], T]) -> T | None:
    value = _get(doc, key, str)
    if value is None:
        return None
    try:
        return parse(value)
    except (ValueError, LocalProtocolError) as exc:
        raise LocalProtocolError(f"report key {key!r}: {exc}") from None


def _relays(doc: Mapping[str, Any]) -> tuple[RelayInUse, ...]:
    items = _get(doc, "relays", list) or []
    relays = []
    for item in items:
        if not isinstance(item, dict):
            raise LocalProtocolError("report key 'relays': items are objects")
        transport = _enum(item, "transport", TurnTransport, None)
        name = _get(item, "name", str)
        if transport is None or name is None:
            raise LocalProtocolError("report key 'relays': each needs a name and a transport")
        relays.append(RelayInUse(name, transport))
    return tuple(relays)


def _birthday(doc: Mapping[str, Any]) -> BirthdayCapability | None:
    item = _get(doc, "birthday", dict)
    if item is None:
        return None
    values = [_get(item, key, int) for key in ("ports", "probes", "rate")]
    if None in values:
        raise LocalProtocolError("report key 'birthday': needs ports, probes and rate")
    return BirthdayCapability(*values)


#: Keys of which a report (or a classify document) has at least one.
_KNOWN_KEYS = frozenset(
    {
        "schema", "mapping", "filtering", "port_allocation", "port_delta",
        "port_allocation_delta", "port_range", "udp_blocked", "behind_nat", "cgnat",
        "double_nat", "public_address", "mapped_address", "port_mapping", "mapped", "relays",
        "birthday", "binding_lifetime",
    }
)  # fmt: skip


def report_from_document(doc: Mapping[str, Any]) -> TraversalReport:
    """A :class:`TraversalReport` from a ``report`` object (above), a whole
    ``natkit connect`` ``report`` line, or a ``natkit classify --json`` document."""
    if not isinstance(doc, Mapping):
        raise LocalProtocolError("a report is a JSON object")
    if isinstance(doc.get("report"), Mapping):
        doc = doc["report"]
    if not doc.keys() & _KNOWN_KEYS:
        raise LocalProtocolError(
            "not a report: none of mapping, filtering, udp_blocked, behind_nat ... is in it"
        )
    classify = doc.get("schema") == "natkit.classify"
    public = _parsed(doc, "public_address", ipaddress.ip_address)
    if classify:
        mapped_address = _parsed(doc, "mapped_address", Endpoint.parse)
        public = None if mapped_address is None else mapped_address.address
    lifetime = _get(doc, "binding_lifetime", (int, float))
    delta_key = "port_allocation_delta" if classify else "port_delta"
    return TraversalReport(
        mapping=_enum(doc, "mapping", MappingBehavior, MappingBehavior.UNKNOWN)
        or MappingBehavior.UNKNOWN,
        filtering=_enum(doc, "filtering", FilteringBehavior, FilteringBehavior.UNKNOWN)
        or FilteringBehavior.UNKNOWN,
        port_allocation=_enum(doc, "port_allocation", PortAllocation, PortAllocation.UNKNOWN)
        or PortAllocation.UNKNOWN,
        port_delta=_get(doc, delta_key, int),
        port_range=None if classify else _parsed(doc, "port_range", PortRange.parse),
        # A classify run that reached no server knows nothing of UDP.
        udp_blocked=None
        if classify and doc.get("status") == "unreachable"
        else _get(doc, "udp_blocked", bool),
        behind_nat=_get(doc, "behind_nat", bool),
        cgnat=_get(doc, "cgnat", bool),
        double_nat=_get(doc, "double_nat", bool),
        public_address=public,
        port_mapping=None if classify else _enum(doc, "port_mapping", MappingProtocol, None),
        mapped=None if classify else _parsed(doc, "mapped", Endpoint.parse),
        relays=() if classify else _relays(doc),
        birthday=None if classify else _birthday(doc),
        binding_lifetime=None if lifetime is None else float(lifetime),
    )
