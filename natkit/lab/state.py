"""State files: what a lab is made of, on disk, so any process can remove it.

A lab is recorded in ``STATE_DIR/<run id>.json`` *before* its first
namespace is created, and updated with server pids as they start. Creating
that file with ``O_EXCL`` is also how a run id is reserved, so parallel
builders (pytest-xdist workers, several users) never pick the same id.
``natkit lab down`` works from these files alone, which is what lets it
clean up after a process that was killed mid-test.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from natkit.lab.errors import UnknownLabError
from natkit.statefile import process_alive, process_start_time, replace_file

#: Where lab state lives; ``NATKIT_LAB_STATE_DIR`` overrides it (tests, non-/run systems).
STATE_DIR = Path(os.environ.get("NATKIT_LAB_STATE_DIR", "/run/natkit/labs"))
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class LabRecord:
    """The on-disk description of one lab instance."""

    run_id: str
    scenario: str
    namespaces: tuple[str, ...]
    servers: tuple[str, ...]
    owner_pid: int
    owner_start: int | None
    """Start time of the owner (``/proc/PID/stat`` field 22), to survive pid reuse."""
    created: float
    """Wall-clock creation time (for people; nothing computes with it)."""
    detached: bool = False
    """Left running on purpose (``natkit lab up``): never considered stale."""
    pids: dict[str, int] = field(default_factory=dict)
    """Server name -> pid of the processes the lab started."""
    loss_percent: float = 0.0

    @property
    def path(self) -> Path:
        return state_path(self.run_id)

    @property
    def workdir(self) -> Path:
        """Per-lab directory for logs, pid files and server databases."""
        return STATE_DIR / f"{self.run_id}.d"

    @property
    def owner_alive(self) -> bool:
        return process_alive(self.owner_pid, self.owner_start)

    @property
    def stale(self) -> bool:
        """An owned lab whose owner process is gone (killed test run, crash)."""
        return not self.detached and not self.owner_alive

    def to_json(self) -> str:
        data = asdict(self)
        data["version"] = FORMAT_VERSION
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LabRecord:
        data = json.loads(text)
        return cls(
            run_id=str(data["run_id"]),
            scenario=str(data["scenario"]),
            namespaces=tuple(str(n) for n in data["namespaces"]),
            servers=tuple(str(s) for s in data["servers"]),
            owner_pid=int(data["owner_pid"]),
            owner_start=None if data["owner_start"] is None else int(data["owner_start"]),
            created=float(data["created"]),
            detached=bool(data.get("detached", False)),
            pids={str(k): int(v) for k, v in data.get("pids", {}).items()},
            loss_percent=float(data.get("loss_percent", 0.0)),
        )


def state_path(run_id: str) -> Path:
    return STATE_DIR / f"{run_id}.json"


def new_record(
    run_id: str, scenario: str, namespaces: tuple[str, ...], servers: tuple[str, ...]
) -> LabRecord:
    pid = os.getpid()
    return LabRecord(
        run_id=run_id,
        scenario=scenario,
        namespaces=namespaces,
        servers=servers,
        owner_pid=pid,
        owner_start=process_start_time(pid),
        created=time.time(),
    )


def reserve(record: LabRecord) -> bool:
    """Create the state file only if none exists for this id; False if taken."""
    STATE_DIR.mkdir(parents=True, exist_ok=True, mode=0o755)
    try:
        fd = os.open(record.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(record.to_json())
    return True


def save(record: LabRecord) -> None:
    """Replace the state file atomically (write a sibling, then rename)."""
    replace_file(record.path, record.to_json())


def load(run_id: str) -> LabRecord:
    try:
        return LabRecord.from_json(state_path(run_id).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnknownLabError(run_id) from None


def load_all() -> list[LabRecord]:
    """Every recorded lab, oldest first; unreadable files are skipped."""
    records: list[LabRecord] = []
    if not STATE_DIR.is_dir():
        return records
    for path in STATE_DIR.glob("*.json"):
        try:
            records.append(LabRecord.from_json(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(records, key=lambda r: r.created)


def remove(run_id: str) -> None:
    state_path(run_id).unlink(missing_ok=True)
