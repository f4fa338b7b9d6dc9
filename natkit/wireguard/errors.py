"""What can go wrong when natkit drives WireGuard's ``wg`` tool.

Every error names what failed in fields (interface, program, return code),
and none ever carries key material: ``wg show dump`` prints the interface's
private key, so output is never quoted back.
"""

from __future__ import annotations

from collections.abc import Sequence

from natkit.errors import LocalProtocolError, NatkitError, RemoteProtocolError


class WireGuardError(NatkitError):
    """Root of the errors of :mod:`natkit.wireguard` and its drivers."""


class WgArgumentError(WireGuardError, LocalProtocolError, ValueError):
    """An argument natkit will not hand to ``wg`` (caller misuse)."""


class KeyFormatError(WgArgumentError):
    """A WireGuard key that is not base64 of 32 bytes."""


class InterfaceNameError(WgArgumentError):
    """An interface name ``wg`` (and Linux) cannot take."""


class WgNotInstalledError(WireGuardError):
    """A program needed to talk to WireGuard is not on PATH."""

    def __init__(self, program: str) -> None:
        self.program = program
        hint = " (Debian package wireguard-tools)" if program == "wg" else ""
        super().__init__(f"{program!r} not found{hint}")


class NoSuchInterfaceError(WireGuardError):
    """``wg`` found no WireGuard interface of that name."""

    def __init__(self, interface: str, detail: str) -> None:
        self.interface = interface
        self.detail = detail
        super().__init__(f"no WireGuard interface {interface!r} ({detail})")


class WgPermissionError(WireGuardError):
    """``wg`` may not access the interface: it needs root (CAP_NET_ADMIN)."""

    def __init__(self, interface: str, detail: str) -> None:
        self.interface = interface
        self.detail = detail
        super().__init__(
            f"no permission to access WireGuard interface {interface!r} ({detail});"
            " wg needs root or CAP_NET_ADMIN"
        )


class WgCommandError(WireGuardError):
    """``wg`` failed for another reason (or hung)."""

    def __init__(self, argv: Sequence[str], returncode: int | None, detail: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.detail = detail
        status = "timed out" if returncode is None else f"exited {returncode}"
        super().__init__(f"{' '.join(self.argv[:4])} ... {status}: {detail}")


class WgOutputError(WireGuardError, RemoteProtocolError):
    """``wg``'s output is not what its format promises (never quoted back)."""

    def __init__(self, line: int, field: str, reason: str) -> None:
        self.line = line
        self.field = field
        self.reason = reason
        super().__init__(f"wg output line {line}, {field}: {reason}")
