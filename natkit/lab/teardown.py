"""Taking labs down, from their records alone, and clearing what killed runs left.

A lab is recorded (:mod:`natkit.lab.state`) before anything is built, so
everything here works without the :class:`~natkit.lab.Lab` that built it:
``natkit lab down ID``, ``natkit lab down --stale`` and a test session's
clean-up after a crash all come through :func:`teardown`. Order matters, so
an interrupted teardown can simply be run again: kill whatever runs in the
lab's namespaces, delete the namespaces (their links go with them), then
remove the work directory and the state file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable

from natkit.lab import state
from natkit.lab.errors import UnknownLabError
from natkit.lab.netns import delete_namespaces, list_namespaces, namespace_pids
from natkit.lab.plan import NAMESPACE_RE, PREFIX
from natkit.lab.state import LabRecord
from natkit.lab.wireguard_quick import remove_sockets

#: Seconds processes get between SIGTERM and SIGKILL at teardown.
TERMINATE_GRACE_S = 2.0


def teardown(record: LabRecord, children: Iterable[subprocess.Popen[bytes]] = ()) -> None:
    """Remove a lab given only its record: processes, namespaces, files.

    Every process running in one of the lab's namespaces is terminated (the
    lab's servers, and anything a user started there), then the namespaces
    are deleted. Namespaces named after the run id but missing from the
    record (an older plan, a half-written record) are included.
    """
    prefix = f"{PREFIX}{record.run_id}-"
    namespaces = sorted(
        set(record.namespaces) | {n for n in list_namespaces() if n.startswith(prefix)}
    )
    pids = set(namespace_pids(*namespaces)) - {os.getpid()}
    terminate(pids, children)
    delete_namespaces(namespaces)
    remove_sockets(record.run_id)
    shutil.rmtree(record.workdir, ignore_errors=True)
    state.remove(record.run_id)


def teardown_id(run_id: str) -> None:
    """:func:`teardown` by run id.

    A lab whose state file is gone but whose namespaces are still there is
    removed too; :class:`UnknownLabError` when there is neither.
    """
    try:
        record = state.load(run_id)
    except UnknownLabError:
        leftovers = tuple(n for n in list_namespaces() if n.startswith(f"{PREFIX}{run_id}-"))
        if not leftovers:
            raise
        record = LabRecord(
            run_id=run_id,
            scenario="",
            namespaces=leftovers,
            servers=(),
            owner_pid=0,
            owner_start=None,
            created=0.0,
        )
    teardown(record)


def orphan_namespaces() -> list[str]:
    """Lab namespaces (``nk-<id>-<role>``) whose run id has no state file."""
    recorded = {r.run_id for r in state.load_all()}
    return [
        n
        for n in list_namespaces()
        if (m := NAMESPACE_RE.match(n))
        and m.group(1) not in recorded
        and not state.state_path(m.group(1)).exists()
    ]


def remove_orphans() -> list[str]:
    """Delete :func:`orphan_namespaces` (and what runs in them); returns their names."""
    orphans = orphan_namespaces()
    pids = set(namespace_pids(*orphans)) - {os.getpid()}
    terminate(pids)
    delete_namespaces(orphans)
    return orphans


def terminate(pids: Iterable[int], children: Iterable[subprocess.Popen[bytes]] = ()) -> None:
    """SIGTERM ``pids``, SIGKILL those left after a grace period, reap ``children``."""
    pending = set(pids)
    own = list(children)
    pending |= {c.pid for c in own if c.poll() is None}
    for pid in pending:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + TERMINATE_GRACE_S
    while time.monotonic() < deadline:
        for child in own:
            child.poll()  # reap, so a finished child stops counting as alive
        pending = {pid for pid in pending if _alive(pid)}
        if not pending:
            break
        time.sleep(0.01)
    for pid in pending:
        _signal(pid, signal.SIGKILL)
    for child in own:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=TERMINATE_GRACE_S)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")
