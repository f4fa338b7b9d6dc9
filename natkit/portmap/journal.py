"""The lease journal: what a run asked gateways for, so the next run can
take it back if this one is killed.

Rules:

1. An entry is written *before* the request that may create a mapping
   goes out, with everything the protocol needs to delete it: the PCP
   nonce; the NAT-PMP internal port (and source address); the UPnP
   description naming the mapping (the external port too, once granted).
2. It is removed once the mapping is released (deleted, or known gone).
3. Entries carry their owner (pid and process start time). A run cleans
   only entries whose owner is gone, so two live processes sharing a
   journal never delete each other's mappings.

The file is small JSON, replaced atomically and guarded by ``flock`` so
concurrent writers do not lose entries. Default location:
``$NATKIT_PORTMAP_JOURNAL`` if set, else ``/var/lib/natkit/portmap.json``
for root and ``$XDG_STATE_HOME/natkit/portmap.json`` (``~/.local/state``)
for others.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from natkit.endpoint import Endpoint
from natkit.portmap.mapping import MappingProtocol, TransportProtocol
from natkit.statefile import process_alive, process_start_time, replace_file

JOURNAL_ENV = "NATKIT_PORTMAP_JOURNAL"
FORMAT_VERSION = 1


def default_journal_path() -> Path:
    """Where the journal lives unless told otherwise (module docstring)."""
    override = os.environ.get(JOURNAL_ENV)
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return Path("/var/lib/natkit/portmap.json")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "natkit" / "portmap.json"


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
    owner_pid: int = 0
    owner_start: int | None = None
    created: float = 0.0

    @property
    def owner_alive(self) -> bool:
        return process_alive(self.owner_pid, self.owner_start)

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


def new_entry(
    protocol: MappingProtocol,
    transport: TransportProtocol,
    gateway: Endpoint,
    internal: Endpoint,
    **fields: Any,
) -> JournalEntry:
    """An entry owned by this process."""
    pid = os.getpid()
    return JournalEntry(
        id=secrets.token_hex(6),
        protocol=protocol,
        transport=transport,
        gateway=gateway,
        internal=internal,
        owner_pid=pid,
        owner_start=process_start_time(pid),
        created=time.time(),
        **fields,
    )


class LeaseJournal:
    """The journal file (see the module docstring)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_journal_path()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[JournalEntry]]:
        """Hold the lock, hand out the entries, write back what the caller left."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = self._read()
            before = list(entries)
            yield entries
            if entries != before:
                self._write(entries)

    def _read(self) -> list[JournalEntry]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            return []  # a torn or foreign file: start over rather than crash
        entries: list[JournalEntry] = []
        for item in data.get("leases", []) if isinstance(data, dict) else []:
            try:
                entries.append(JournalEntry.from_dict(item))
            except (KeyError, ValueError, TypeError):
                continue
        return entries

    def _write(self, entries: list[JournalEntry]) -> None:
        if not entries:
            self.path.unlink(missing_ok=True)
            return
        document = {"version": FORMAT_VERSION, "leases": [e.to_dict() for e in entries]}
        replace_file(self.path, json.dumps(document, indent=2) + "\n")

    def entries(self) -> list[JournalEntry]:
        """Every entry, oldest first."""
        with self._locked() as entries:
            return list(entries)

    def add(self, entry: JournalEntry) -> None:
        """Record ``entry`` (rule 1: before the request goes out)."""
        with self._locked() as entries:
            entries.append(entry)

    def update(self, entry_id: str, **fields: Any) -> None:
        """Fill in what the grant told (e.g. ``external``)."""
        with self._locked() as entries:
            for index, entry in enumerate(entries):
                if entry.id == entry_id:
                    entries[index] = replace(entry, **fields)

    def remove(self, entry_id: str) -> None:
        """Forget an entry (rule 2)."""
        with self._locked() as entries:
            entries[:] = [e for e in entries if e.id != entry_id]

    def orphans(self) -> list[JournalEntry]:
        """Entries whose owner process is gone (rule 3)."""
        return [e for e in self.entries() if not e.owner_alive]
