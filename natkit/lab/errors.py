"""Exceptions raised by the namespace lab.

They hang off :class:`natkit.errors.NatkitError` like the rest of natkit, on
their own branch: a lab failure is neither a peer's fault nor a protocol
misuse, it is the host refusing to build what was asked (no root, a missing
tool, a command that failed, a server that never became ready).
"""

from __future__ import annotations

from collections.abc import Sequence

from natkit.errors import NatkitError


class LabError(NatkitError):
    """Root of every error the lab raises."""


class LabPermissionError(LabError):
    """The lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and does not have it."""


class MissingToolError(LabError):
    """An external program the lab drives is not installed."""

    def __init__(self, tool: str, package: str) -> None:
        super().__init__(f"{tool!r} not found; install the Debian package {package!r}")
        self.tool = tool
        self.package = package


class UnknownScenarioError(LabError):
    """``Lab.up`` was given a scenario name that is not in the registry."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(f"unknown lab scenario {name!r}; known: {', '.join(known)}")
        self.name = name
        self.known = tuple(known)


class UnknownLabError(LabError):
    """No state file exists for the given lab id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no lab with id {run_id!r} is recorded")
        self.run_id = run_id


class CommandError(LabError):
    """A command run to build or drive the lab exited with a failure status."""

    def __init__(
        self, argv: Sequence[str], returncode: int, stderr: str, namespace: str | None = None
    ) -> None:
        where = f" in {namespace}" if namespace else ""
        detail = stderr.strip() or "(no stderr)"
        super().__init__(f"{' '.join(argv)!r}{where} exited {returncode}: {detail}")
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.namespace = namespace


class ServerStartError(LabError):
    """A server process in the lab exited or did not become ready in time."""

    def __init__(self, server: str, reason: str, log_tail: str = "") -> None:
        message = f"server {server!r} did not start: {reason}"
        if log_tail:
            message += f"\n--- last log lines ---\n{log_tail}"
        super().__init__(message)
        self.server = server
        self.reason = reason
        self.log_tail = log_tail
