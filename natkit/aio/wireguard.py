"""Running ``wg`` for natkit: read a WireGuard interface, set a peer's endpoint.

:class:`WireGuardControl` is the one place natkit runs wireguard-tools'
``wg``; argv building and output parsing are pure
(:mod:`natkit.wireguard.commands`, :mod:`natkit.wireguard.dump`). Each call
runs one ``wg`` process under a timeout (a hung ``wg`` is killed), and every
failure becomes a typed :class:`~natkit.wireguard.errors.WireGuardError`:
``wg`` missing, no such interface, no permission, anything else with its
exit status and message. Output is parsed and dropped: ``wg show dump``
prints the interface's private key, which is never kept; the one call that
keeps it is :meth:`WireGuardControl.private_key`, for a node that uses
WireGuard's key pair as its own (:mod:`natkit.aio.wireguard_node`).

``command_prefix`` runs ``wg`` somewhere else, e.g. ``("nsenter", "-t",
PID, "-m", "-n")`` to reach a wireguard-go whose UAPI socket lives in a
private mount namespace (the lab does this, :mod:`natkit.lab.wireguard`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence

from natkit.endpoint import Endpoint
from natkit.identity import KeyFormatError, PrivateKey
from natkit.wireguard.commands import (
    PeerConfig,
    check_interface,
    classify_failure,
    latest_handshakes_argv,
    private_key_argv,
    set_endpoint_argv,
    set_peer_argv,
    show_dump_argv,
)
from natkit.wireguard.dump import NONE, InterfaceStatus, parse_dump, parse_latest_handshakes
from natkit.wireguard.errors import WgCommandError, WgNotInstalledError, WgOutputError
from natkit.wireguard.keys import WireGuardKey

#: Seconds one ``wg`` run may take; ``wg`` answers in milliseconds.
DEFAULT_TIMEOUT_S = 10.0
#: The most output natkit reads from one run (a dump of ~10,000 peers).
_OUTPUT_LIMIT = 4 * 1024 * 1024


class WireGuardControl:
    """Reads and sets one WireGuard interface through ``wg``."""

    def __init__(
        self,
        interface: str,
        *,
        command_prefix: Sequence[str] = (),
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.interface = check_interface(interface)
        self.command_prefix = tuple(command_prefix)
        self.timeout = timeout

    async def status(self) -> InterfaceStatus:
        """The interface, its public key, listen port and peers (``wg show IFACE dump``)."""
        return parse_dump(await self._run(show_dump_argv(self.interface)), self.interface)

    async def latest_handshakes(self) -> dict[WireGuardKey, int | None]:
        """Peer -> Unix time of its last handshake, ``None`` if never."""
        out = await self._run(latest_handshakes_argv(self.interface))
        return parse_latest_handshakes(out)

    async def set_endpoint(self, peer: WireGuardKey, endpoint: Endpoint) -> None:
        """Point WireGuard at ``endpoint`` for ``peer`` (``wg set IFACE peer KEY endpoint``)."""
        await self._run(set_endpoint_argv(self.interface, peer, endpoint))

    async def set_peer(self, config: PeerConfig) -> None:
        """``wg set IFACE peer KEY ...`` with what ``config`` sets. Creates the
        peer if the interface lacks it: set only peers read from :meth:`status`."""
        await self._run(set_peer_argv(self.interface, config))

    async def private_key(self) -> PrivateKey:
        """The interface's private key (``wg show IFACE private-key``), e.g. to
        use WireGuard's key pair as the natkit node's; never logged or quoted."""
        text = (await self._run(private_key_argv(self.interface))).strip()
        if text == NONE:
            raise WgOutputError(1, "private-key", "the interface has no private key")
        try:
            return PrivateKey.from_base64(text)
        except KeyFormatError:
            raise WgOutputError(1, "private-key", "not a key") from None

    async def _run(self, argv: list[str]) -> str:
        full = [*self.command_prefix, *argv]
        try:
            proc = await asyncio.create_subprocess_exec(
                *full,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=_OUTPUT_LIMIT,
            )
        except FileNotFoundError:
            raise WgNotInstalledError(full[0]) from None
        except PermissionError as exc:
            raise WgCommandError(full, None, f"cannot run {full[0]}: {exc.strerror}") from None
        try:
            async with asyncio.timeout(self.timeout):
                out, err = await proc.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise classify_failure(full, self.interface, None, "", root=_root()) from None
        except BaseException:
            # Cancelled: leave no process behind.
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        stderr = err.decode("utf-8", "replace")
        if proc.returncode != 0:
            raise classify_failure(full, self.interface, proc.returncode, stderr, root=_root())
        try:
            return out.decode("utf-8")
        except UnicodeDecodeError:
            raise WgCommandError(full, proc.returncode, "output is not UTF-8") from None


def _root() -> bool:
    return os.geteuid() == 0
