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


#: The nftables table every cut lives in.
CUT_TABLE = "nk_cut"


def drop_forwarded(lab: Lab, router: str, rules: list[str], table: str = CUT_TABLE) -> None:
    """Drop forwarded packets matching any of ``rules`` (nft rule text) on
    ``router``, before the NAT's own filter."""
    ruleset = (
        f"table ip {table} {{\n chain forward {{\n"
        "  type filter hook forward priority filter - 10; policy accept;\n"
        + "".join(f"  {rule}\n" for rule in rules)
        + " }\n}\n"
    )
    lab.exec(router, ["nft", "-f", "-"], input=ruleset, check=True, timeout=10)


def pass_forwarded(lab: Lab, router: str, table: str = CUT_TABLE, *, check: bool = False) -> None:
    """Remove what :func:`drop_forwarded` added (a table already gone is fine
    unless ``check``)."""
    lab.exec(router, ["nft", "delete", "table", "ip", table], check=check, timeout=10)


@dataclass
class UdpCut:
    """UDP between a router's site and ``address`` dropped (module doc)."""

    lab: Lab
    #: The router role whose forward hook drops (a site's outermost NAT).
    router: str
    address: str
    table: str = CUT_TABLE
    active: bool = False

    def rules(self) -> list[str]:
        return [
            f"ip daddr {self.address} meta l4proto udp drop",
            f"ip saddr {self.address} meta l4proto udp drop",
        ]

    def cut(self) -> float:
        """Drop from now on; the wall-clock time the rule was in place."""
        drop_forwarded(self.lab, self.router, self.rules(), self.table)
        self.active = True
        return time.time()

    def restore(self) -> float:
        """Pass again; the wall-clock time the rule was gone."""
        if self.active:
            pass_forwarded(self.lab, self.router, self.table, check=True)
            self.active = False
        return time.time()

    def __enter__(self) -> UdpCut:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.restore()
