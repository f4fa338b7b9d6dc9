"""The lease journal's model: what a run asked gateways for, so the next
run can take it back if this one is killed.

Rules (the driver that owns the file, ``natkit.aio.portmap.journal``,
keeps them; a port mapper core says when, with its lease events):

1. An entry is written *before* the request that may create a mapping
   goes out, with everything the protocol needs to delete it: the PCP
   nonce; the NAT-PMP internal port (and source address); the UPnP
   description naming the mapping (the external port too, once granted).
2. It is removed once the mapping is released (deleted, or known gone),
   and when the gateway never answered any request of it: the request most
   likely never arrived, and an entry that cannot be released would be
   retried by every later run.
3. Entries carry their owner (pid and process start time). A run cleans
   only entries whose owner is gone, so two live processes sharing a
   journal never delete each other's mappings.
4. An entry whose internal address is not on this host belongs to another
   network (a laptop that moved): it is reported once as stale and
   dropped, since no request could be sent from its address.

This module is the pure part: the entry and the file's JSON document.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from natkit.endpoint import Endpoint
from natkit.portmap.mapping import MappingProtocol, TransportProtocol

JOURNAL_ENV = "NATKIT_PORTMAP_JOURNAL"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One mapping that may exist at a gateway."""

    #: Random id naming the entry.
    id: str
    protocol: MappingProtocol
    transport: TransportProtocol
    #: The PCP/NAT-PMP server endpoint, or the UPnP control endpoint.
    gateway: Endpoint
    internal: Endpoint
    #: Granted external endpoint (``None`` until the grant is known).
    external: Endpoint | None = None
    #: PCP: the mapping nonce, hex.
    nonce: str | None = None
    #: UPnP: the description URL and the mapping's description string.
    location: str | None = None
    description: str | None = None
    #: Filled in by the driver that writes the entry (rule 3).
    owner_pid: int = 0
    owner_start: int | None = None
    #: Wall-clock time of writing (for people; nothing computes with it).
    created: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["protocol"] = self.protocol.value
        data["transport"] = self.transport.name
        data["gateway"] = str(self.gateway)
        data["internal"] = str(self.internal)
        data["external"] = None if self.external is None else str(self.external)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JournalEntry:
        external = data.get("external")
        start = data.get("owner_start")
        return cls(
            id=str(data["id"]),
            protocol=MappingProtocol(data["protocol"]),
            transport=TransportProtocol[str(data["transport"])],
            gateway=Endpoint.parse(str(data["gateway"])),
            internal=Endpoint.parse(str(data["internal"])),
            external=None if external is None else Endpoint.parse(str(external)),
            nonce=None if data.get("nonce") is None else str(data["nonce"]),
            location=None if data.get("location") is None else str(data["location"]),
            description=None if data.get("description") is None else str(data["description"]),
            owner_pid=int(data.get("owner_pid", 0)),
            owner_start=None if start is None else int(start),
            created=float(data.get("created", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class DecodedJournal:
    """A journal file's text, read: the entries that parse, and why the
    text is not a journal natkit wrote (``""``: it is one)."""

    entries: tuple[JournalEntry, ...]
    problem: str = ""


def parse_journal(text: str) -> DecodedJournal:
    """The entries of a journal file, and what is wrong with it: a torn or
    foreign file, or entries that do not parse, are a ``problem`` (the
    driver keeps such a file aside and says so) and never an exception."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        return DecodedJournal((), f"not JSON: {exc}")
    leases = data.get("leases") if isinstance(data, dict) else None
    if not isinstance(leases, list):
        return DecodedJournal((), "not a lease journal: no list of leases")
    entries: list[JournalEntry] = []
    bad: list[str] = []
    for index, item in enumerate(leases):
        try:
            entries.append(JournalEntry.from_dict(item))
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            bad.append(f"lease {index + 1}: {type(exc).__name__} {exc}")
    problem = ""
    if bad:
        problem = f"{len(bad)} of {len(leases)} leases do not parse ({'; '.join(bad[:3])})"
    return DecodedJournal(tuple(entries), problem)


def decode_journal(text: str) -> list[JournalEntry]:
    """The entries of a journal file that parse (:func:`parse_journal`
    says what else was in it)."""
    return list(parse_journal(text).entries)


def encode_journal(entries: list[JournalEntry]) -> str | None:
    """The file's text, or ``None`` when there is nothing to keep (no file)."""
    if not entries:
        return None
    document = {"version": FORMAT_VERSION, "leases": [e.to_dict() for e in entries]}
    return json.dumps(document, indent=2) + "\n"
