"""WireGuard sites for the lab tests: the quick start's wg-quick files, and
``natkit connect --wireguard`` on each site as a user runs it.

:func:`wireguard_sites` brings every site's WireGuard up (``wg-quick up``
with the file ``natkit lab up`` wrote: peers, no endpoints), starts
``natkit connect --wireguard`` on each with ``--json-line`` (read by
:class:`connect_nodes.Node`), and at the end stops natkit (SIGTERM) and
takes WireGuard down, also when the test failed.
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from connect_nodes import LIVENESS, STUN, Node

from natkit.lab import Lab
from natkit.lab.rendezvous import RENDEZVOUS
from natkit.lab.servers import natkit_cli_env
from natkit.lab.wireguard_quick import QuickStartSite, quick_start


@dataclass
class WgSite:
    """One site's WireGuard interface and natkit."""

    lab: Lab
    quick: QuickStartSite
    node: Node | None = None

    @property
    def role(self) -> str:
        return self.quick.role

    @property
    def interface(self) -> str:
        return self.quick.interface

    @property
    def address(self) -> str:
        return str(self.quick.tunnel_address.ip)

    def up(self) -> None:
        self.lab.exec(self.role, ["wg-quick", "up", str(self.quick.config)], check=True)

    def down(self) -> None:
        self.lab.exec(self.role, ["wg-quick", "down", str(self.quick.config)], timeout=30)

    def wg(self, *args: str) -> str:
        return self.lab.exec(self.role, ["wg", *args], check=True, timeout=10).stdout

    def connect_argv(self, *extra: str, signalling: Sequence[str] | None = None) -> list[str]:
        where = ["--rendezvous", str(RENDEZVOUS)] if signalling is None else list(signalling)
        return [sys.executable, "-m", "natkit.cli", "connect", "--wireguard", self.interface,
                *where, "--stun", STUN, "--json-line", "--no-portmap", *extra]  # fmt: skip

    def printed_flags(self) -> list[str]:
        """What the ``natkit connect`` line ``natkit lab up`` printed for this
        site has after ``--stun SERVER`` (relay and port-range flags)."""
        argv = shlex.split(self.quick.commands[1])
        return argv[argv.index("--stun") + 2 :]

    def start(self, *extra: str, signalling: Sequence[str] | None = None) -> Node:
        proc = self.lab.popen(
            self.role,
            self.connect_argv(*extra, signalling=signalling),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=natkit_cli_env(),
        )
        self.node = Node.watch(self.role, proc)
        return self.node

    def ping(self, other: WgSite, *, count: int = 1, wait: float = 1.0, interval: float = 0.2
             ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        argv = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(wait), other.address]
        return self.lab.exec(self.role, argv, timeout=count * interval + wait + 10)

    def ping_until_answered(self, other: WgSite, timeout: float = LIVENESS) -> float:
        """Ping until one is answered; the seconds it took."""
        started = time.monotonic()
        while True:
            result = self.ping(other)
            if result.returncode == 0:
                return time.monotonic() - started
            assert time.monotonic() - started < timeout, (
                f"no ping {self.role} -> {other.role} in {timeout:g} s: {result.stdout}"
                f"\n{self.wg('show', self.interface)}"
                f"\nnatkit: {self.node.lines[-6:] if self.node else None}"
            )

    def verified(self, timeout: float = LIVENESS) -> list[dict[str, object]]:
        """Wait until natkit verified an endpoint for every peer; those lines."""
        assert self.node is not None
        peers = len(quick_start(self.lab)) - 1
        deadline = time.monotonic() + timeout
        while True:
            lines = self.node.events("endpoint_verified")
            if len({line["peer"] for line in lines}) >= peers:
                return lines
            if time.monotonic() > deadline:
                notable = {"path_selected", "path_lost", "peer_unreachable", "endpoint_set",
                           "endpoint_reverted", "wireguard_failed", "signalling"}  # fmt: skip
                seen = [line for line in self.node.lines if line["event"] in notable]
                raise AssertionError(f"{self.role}: not every peer verified: {seen}")
            time.sleep(0.1)


@contextlib.contextmanager
def wireguard_sites(
    lab: Lab, *extra: str, start: bool = True, signalling: Sequence[str] | None = None
) -> Iterator[list[WgSite]]:
    """Every site's WireGuard up and (``start``) natkit on it (module doc)."""
    sites = [WgSite(lab, quick) for quick in quick_start(lab)]
    try:
        for site in sites:
            site.up()
        if start:
            for site in sites:
                site.start(*extra, signalling=signalling)
        yield sites
    finally:
        for site in sites:
            if site.node is not None:
                with contextlib.suppress(Exception):
                    site.node.stop()
                site.node.kill()
        for site in sites:
            site.down()
