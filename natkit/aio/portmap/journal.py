"""The lease journal file (the model and rules: :mod:`natkit.portmap.journal`).

Small JSON, replaced atomically and guarded by ``flock`` so concurrent
writers do not lose entries. A library's ``PortMapper`` writes none unless
given one; the ``natkit`` command uses :func:`default_journal_path`:
``$NATKIT_PORTMAP_JOURNAL`` if set, else ``/var/lib/natkit/portmap.json``
for root and ``$XDG_STATE_HOME/natkit/portmap.json`` (``~/.local/state``)
for others.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from natkit.portmap.journal import JOURNAL_ENV, JournalEntry, decode_journal, encode_journal
from natkit.statefile import process_alive, process_start_time, replace_file


def default_journal_path() -> Path:
    """Where the command's journal lives unless told otherwise (module docstring)."""
    override = os.environ.get(JOURNAL_ENV)
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return Path("/var/lib/natkit/portmap.json")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "natkit" / "portmap.json"


def owner_alive(entry: JournalEntry) -> bool:
    """Whether the process that wrote ``entry`` still runs (journal rule 3)."""
    return process_alive(entry.owner_pid, entry.owner_start)


class LeaseJournal:
    """One journal file; ``path=None``: :func:`default_journal_path`."""

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
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return []  # missing, or unreadable: start over rather than crash
        return decode_journal(text)

    def _write(self, entries: list[JournalEntry]) -> None:
        text = encode_journal(entries)
        if text is None:
            self.path.unlink(missing_ok=True)
        else:
            replace_file(self.path, text)

    def entries(self) -> list[JournalEntry]:
        """Every entry, oldest first."""
        with self._locked() as entries:
            return list(entries)

    def add(self, entry: JournalEntry) -> JournalEntry:
        """Record ``entry`` (rule 1: before the request goes out), as this
        process's unless it names an owner."""
        if not entry.owner_pid:
            pid = os.getpid()
            entry = replace(entry, owner_pid=pid, owner_start=process_start_time(pid),
                            created=time.time())  # fmt: skip
        with self._locked() as entries:
            entries.append(entry)
        return entry

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
        return [e for e in self.entries() if not owner_alive(e)]
