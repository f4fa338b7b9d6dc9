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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from natkit.portmap.journal import (
    JOURNAL_ENV,
    DecodedJournal,
    JournalEntry,
    encode_journal,
    parse_journal,
)
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


@dataclass(frozen=True, slots=True)
class CorruptJournal:
    """A journal file natkit did not write (torn, foreign, entries that do
    not parse), found at ``path`` and renamed to ``kept_at`` (``None``: it
    could not be) so that nothing in it is lost; ``problem`` says what is wrong."""

    path: Path
    problem: str
    kept_at: Path | None

    def __str__(self) -> str:
        kept = f"kept as {self.kept_at}" if self.kept_at else "could not be moved aside"
        return f"lease journal {self.path} is corrupt ({self.problem}); {kept}"


#: Copies of corrupt journals kept beside it (``portmap.json.corrupt``,
#: ``.corrupt.1``, ...) at most; the oldest are never overwritten.
MAX_CORRUPT_COPIES = 100


class LeaseJournal:
    """One journal file; ``path=None``: :func:`default_journal_path`.

    A file that does not read as a journal is renamed aside (``.corrupt``),
    the entries that did parse carry on in a new file, and :attr:`corrupt`
    says so: the command reports it (``--release`` exits 1), rather than
    silently forgetting mappings that may still be at a gateway.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_journal_path()
        #: The last corrupt file found (and kept aside), if any.
        self.corrupt: CorruptJournal | None = None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[JournalEntry]]:
        """Hold the lock, hand out the entries, write back what the caller left."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries, set_aside = self._read()
            before = list(entries)
            yield entries
            if entries != before or (set_aside and entries):
                self._write(entries)  # a corrupt file's good entries carry on

    def _read(self) -> tuple[list[JournalEntry], bool]:
        """The entries, and whether the file was corrupt (and set aside)."""
        try:
            raw = self.path.read_bytes()
        except OSError:
            return [], False  # missing, or unreadable: start over rather than crash
        try:
            decoded = parse_journal(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            decoded = DecodedJournal((), f"not UTF-8 text: {exc.reason} at byte {exc.start}")
        if not decoded.problem:
            return list(decoded.entries), False
        self.corrupt = CorruptJournal(self.path, decoded.problem, self._set_aside())
        return list(decoded.entries), True

    def _set_aside(self) -> Path | None:
        """Rename the file to the first free ``.corrupt`` name (under the lock)."""
        for n in range(MAX_CORRUPT_COPIES):
            suffix = ".corrupt" if n == 0 else f".corrupt.{n}"
            target = self.path.with_name(self.path.name + suffix)
            if target.exists():
                continue
            try:
                os.rename(self.path, target)
            except OSError:
                return None
            return target
        return None

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
