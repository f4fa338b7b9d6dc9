"""A cut direct path: UDP to and from one address dropped on a lab router.

:class:`UdpCut` adds an nftables table on a router's ``forward`` hook (at a
priority before the NAT's own filter) that drops UDP to and from
``address``, e.g. the other site's public address: the direct path between
two sites dies while the path to a TURN server on another address lives.
:meth:`UdpCut.restore` deletes the table; leaving the ``with`` block
restores too, so a failing test or benchmark leaves no rule behind (the
lab's teardown removes the namespace anyway).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from natkit.lab.lab import Lab


@dataclass
class UdpCut:
    """UDP between a router's site and ``address`` dropped (module doc)."""

    lab: Lab
    #: The router role whose forward hook drops (a site's outermost NAT).
    router: str
    address: str
    table: str = "nk_cut"
    active: bool = False

    def rules(self) -> str:
        return (
            f"table ip {self.table} {{\n chain forward {{\n"
            "  type filter hook forward priority filter - 10; policy accept;\n"
            f"  ip daddr {self.address} meta l4proto udp drop\n"
            f"  ip saddr {self.address} meta l4proto udp drop\n }}\n}}\n"
        )

    def cut(self) -> float:
        """Drop from now on; the wall-clock time the rule was in place."""
        self.lab.exec(self.router, ["nft", "-f", "-"], input=self.rules(), check=True, timeout=10)
        self.active = True
        return time.time()

    def restore(self) -> float:
        """Pass again; the wall-clock time the rule was gone."""
        if self.active:
            argv = ["nft", "delete", "table", "ip", self.table]
            self.lab.exec(self.router, argv, check=True, timeout=10)
            self.active = False
        return time.time()

    def __enter__(self) -> UdpCut:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.restore()
