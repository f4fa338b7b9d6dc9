"""``natkit connect --traffic RATE``: a steady numbered stream to every peer, and its loss.

Each node sends ``RATE`` datagrams a second to every peer over the peer's
selected path (``Connection.send``: direct, or through the relay), each
carrying a sequence number; a send while the peer has no path still uses up
a number (it counts as lost at the receiver, and as ``unsent`` here). The
receiver counts what arrives from each peer:

* ``data`` line: the first datagram from a peer (its ``seq``, ``relayed``,
  and ``pending_direct``: direct pairs whose checks had not ended yet);
* ``traffic`` line, every second per peer and at exit: ``sent``,
  ``unsent`` (no path at the time), ``received``, ``relayed`` (of those,
  through a relay), ``missing`` (numbers between the first and the last
  received that never came: lost datagrams, and late ones until they come),
  ``last_seq``.

This is how the lab measures datagrams lost while a path changes (read
``missing`` before and after), and the first datagram's arrival; it is a
measuring tool, not a tunnel. A datagram is ``NKtd`` + an 8-byte number
(12 bytes; never STUN, never a birthday probe).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass
from typing import Any

from natkit.aio.connect import Connection
from natkit.cli.connect_relay import Printer
from natkit.errors import LocalProtocolError
from natkit.ice.candidates import CandidateKind
from natkit.ice.events import PathSelected
from natkit.ice.pairs import PairState

__all__ = ["MAGIC", "Traffic"]

MAGIC = b"NKtd"
_PACKET = struct.Struct("!4sQ")
#: Sequence numbers remembered as missing (older gaps are counted, not kept).
MISSING_MEMORY = 100_000
_PENDING = (PairState.FROZEN, PairState.WAITING, PairState.IN_PROGRESS)


@dataclass(slots=True)
class _Peer:
    sent: int = 0
    unsent: int = 0
    received: int = 0
    relayed: int = 0
    duplicates: int = 0
    missing: int = 0
    first_seq: int | None = None
    next_seq: int = 0


class Traffic:
    """Sends and counts the stream (module doc)."""

    def __init__(self, connection: Connection, rate: float, out: Printer) -> None:
        self.connection = connection
        self.rate = rate
        self._out = out
        self._peers: dict[Any, _Peer] = {}
        self._gaps: dict[Any, set[int]] = {}
        self._seq: dict[Any, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.other = 0

    def _peer(self, peer: Any) -> _Peer:
        found = self._peers.get(peer)
        if found is None:
            found = self._peers[peer] = _Peer()
            self._gaps[peer] = set()
        return found

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._send_loop()), loop.create_task(self._report_loop())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self.report()

    # -- sending ----------------------------------------------------------------------------

    def on_event(self, event: object) -> None:
        # The first path to a peer: send one at once (time to first packet).
        if isinstance(event, PathSelected) and event.previous is None:
            self._send(event.peer)

    def _send(self, peer: Any) -> None:
        seq = self._seq.get(peer, 0)
        self._seq[peer] = seq + 1
        counts = self._peer(peer)
        if self.connection.send(peer, _PACKET.pack(MAGIC, seq)):
            counts.sent += 1
        else:
            counts.unsent += 1

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.rate
        next_at = loop.time()
        while True:
            next_at += interval
            for peer in self.connection.peers:
                self._send(peer)
            # Catch up after a late wake-up, never faster than the rate on average.
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    # -- receiving --------------------------------------------------------------------------

    def on_data(self, peer: Any, data: bytes, relayed: bool) -> None:
        if len(data) != _PACKET.size or data[:4] != MAGIC:
            self.other += 1
            return
        _, seq = _PACKET.unpack(data)
        counts = self._peer(peer)
        gaps = self._gaps[peer]
        if counts.first_seq is None:
            counts.first_seq = seq
            counts.next_seq = seq + 1
            pending = self._pending_direct(peer)
            self._out(
                {
                    "event": "data",
                    "peer": str(peer),
                    "seq": seq,
                    "relayed": relayed,
                    "first": True,
                    "pending_direct": pending,
                },
                (
                    f"first data from {peer}: #{seq}{' (relayed)' if relayed else ''},"
                    f" {pending} direct pairs still being checked",
                    False,
                ),
            )
        elif seq >= counts.next_seq:
            for missing in range(counts.next_seq, seq):
                if len(gaps) < MISSING_MEMORY:
                    gaps.add(missing)
            counts.missing += seq - counts.next_seq
            counts.next_seq = seq + 1
        elif seq in gaps:
            gaps.discard(seq)
            counts.missing -= 1
        else:
            counts.duplicates += 1
            return
        counts.received += 1
        if relayed:
            counts.relayed += 1

    def _pending_direct(self, peer: Any) -> int:
        """Direct pairs whose checks have not ended (time to first packet: the
        first datagram came over the relay while these were still running)."""
        try:
            rows = self.connection.pairs(peer)
        except LocalProtocolError:
            return 0
        return sum(
            1
            for row in rows
            if row.relay is None
            and CandidateKind.RELAY not in (row.local_kind, row.remote_kind)
            and row.state in _PENDING
        )

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.report()

    def report(self) -> None:
        for peer, counts in self._peers.items():
            last = None if counts.first_seq is None else counts.next_seq - 1
            self._out(
                {
                    "event": "traffic",
                    "peer": str(peer),
                    "rate": self.rate,
                    "sent": counts.sent,
                    "unsent": counts.unsent,
                    "received": counts.received,
                    "relayed": counts.relayed,
                    "missing": counts.missing,
                    "duplicates": counts.duplicates,
                    "last_seq": last,
                },
                (
                    f"traffic with {peer}: sent {counts.sent} (+{counts.unsent} without a path),"
                    f" received {counts.received} ({counts.relayed} relayed),"
                    f" missing {counts.missing}",
                    False,
                ),
            )
