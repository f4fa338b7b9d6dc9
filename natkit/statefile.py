"""State files that outlive the process that wrote them.

The lab's records (:mod:`natkit.lab.state`) and the lease journal
(:mod:`natkit.portmap.journal`) both say what a run made, so that a later
run can undo it if this one is killed. Both need the same two things:

1. an owner that survives pid reuse: the pid *and* the process's start
   time, so an entry is stale only when that very process is gone;
2. a file that is never seen half-written: a sibling is written, then
   renamed over the old one (``rename`` is atomic within a file system).
"""

from __future__ import annotations

import os
from pathlib import Path


def process_start_time(pid: int) -> int | None:
    """Clock ticks after boot at which ``pid`` started (``None``: gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; skip past it.
    return int(stat[stat.rfind(")") + 2 :].split()[19])


def process_alive(pid: int, start: int | None) -> bool:
    """Whether ``pid`` still runs the process that started at ``start``."""
    return start is not None and process_start_time(pid) == start


def replace_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a sibling, then a rename)."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


__all__ = ["process_alive", "process_start_time", "replace_file"]
