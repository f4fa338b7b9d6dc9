"""``natkit connect`` processes in lab namespaces, read line by line.

Each :class:`Node` is the real command, started as a user would (the key
file the lab made for that client host, the lab's rendezvous and STUN
server), with ``--json-line``; a thread collects its JSON lines as they
come, so a test can wait for an event while the process keeps running,
then signal it and read the rest.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from natkit.lab import Lab
from natkit.lab.rendezvous import RENDEZVOUS, key_path
from natkit.lab.servers import natkit_cli_env

#: natkit's STUN server in the lab.
STUN = "203.0.113.10:3478"
#: Longest wait for something that should happen in a second or two.
LIVENESS = 30.0

Line = dict[str, Any]


def public_key(lab: Lab, role: str) -> str:
    from natkit.identity.keyfile import load_private_key  # noqa: PLC0415

    return str(load_private_key(key_path(lab.record.workdir, role)).public_key)


def connect_argv(lab: Lab, role: str, peers: Sequence[str], *extra: str) -> list[str]:
    argv = [
        sys.executable, "-m", "natkit.cli", "connect",
        "--rendezvous", str(RENDEZVOUS),
        "--key", str(key_path(lab.record.workdir, role)),
        "--stun", STUN, "--json-line",
    ]  # fmt: skip
    for peer in peers:
        argv += ["--peer", public_key(lab, peer)]
    return [*argv, *extra]


@dataclass
class Node:
    """One running ``natkit connect`` (see the module doc)."""

    role: str
    proc: subprocess.Popen[str]
    lines: list[Line] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def watch(cls, role: str, proc: subprocess.Popen[str]) -> Node:
        """Read a started process's JSON lines and stderr on threads."""
        node = cls(role, proc)
        for target in (node._read_stdout, node._read_stderr):
            thread = threading.Thread(target=target, daemon=True, name=f"{role}-reader")
            thread.start()
            node._threads.append(thread)
        return node

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for text in self.proc.stdout:
            with self._changed:
                self.lines.append(json.loads(text))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr.extend(self.proc.stderr)

    def events(self, name: str) -> list[Line]:
        with self._changed:
            return [line for line in self.lines if line["event"] == name]

    def wait(self, predicate: Callable[[Line], bool], timeout: float = LIVENESS) -> Line:
        """The first line (seen so far or coming) that ``predicate`` accepts."""
        deadline = time.monotonic() + timeout
        with self._changed:
            index = 0
            while True:
                while index < len(self.lines):
                    line = self.lines[index]
                    index += 1
                    if predicate(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and index >= len(self.lines)):
                    raise AssertionError(
                        f"{self.role}: no such line in {timeout:g} s; exit {self.proc.poll()};"
                        f" lines: {self.lines[-8:]}; stderr: {''.join(self.stderr)[-2000:]}"
                    )
                self._changed.wait(min(remaining, 0.2))

    def wait_event(self, name: str, timeout: float = LIVENESS, **keys: Any) -> Line:
        return self.wait(
            lambda line: line["event"] == name and all(line.get(k) == v for k, v in keys.items()),
            timeout,
        )

    def finish(self, timeout: float = LIVENESS) -> int:
        """Wait for the process to exit by itself; its status."""
        status = self.proc.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout)
        return status

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> int:
        """Signal the process and wait for it; its status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.finish()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=LIVENESS)


def start_node(lab: Lab, role: str, peers: Sequence[str], *extra: str) -> Node:
    """``natkit connect`` in ``role``'s namespace toward the client hosts ``peers``."""
    proc = lab.popen(
        role,
        connect_argv(lab, role, peers, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=natkit_cli_env(),
    )
    return Node.watch(role, proc)


def when(line: Line) -> float:
    """A line's ``time`` as a POSIX timestamp."""
    return datetime.fromisoformat(line["time"].replace("Z", "+00:00")).timestamp()


def agree(a: Line, b: Line) -> bool:
    """Two ``path_selected`` lines name the same path from both ends."""
    return (a["local"], a["remote"]) == (b["remote"], b["local"])
