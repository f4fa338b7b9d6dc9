"""A steady ping through a tunnel, and the replies it lost around a moment.

``ping -D -O -i INTERVAL`` runs in a lab namespace until stopped; each reply
(``[TIME] 64 bytes from ...: icmp_seq=N ...``) and each late notice (``-O``:
``[TIME] no answer yet for icmp_seq=N``) carries the wall-clock time, so a
test or benchmark can ask how many pings went unanswered between two
moments, e.g. the cut of a direct path and the tunnel's recovery over the
relay (:meth:`PingRun.lost_between`). When each ping was sent comes from
its reply (the reply's time minus its RTT) or from its late notice (printed
as the next ping leaves, one interval later); a ping with neither (the last
ones) is placed one interval after the one before: ping's own clock drifts
a few percent from ``interval``, so counting from the start would not do.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from natkit.lab.lab import Lab

_REPLY = re.compile(
    r"^\[([0-9.]+)\] \d+ bytes from .*icmp_seq=(\d+) .*time=([0-9.]+) ms", re.MULTILINE
)
_LATE = re.compile(r"^\[([0-9.]+)\] no answer yet for icmp_seq=(\d+)", re.MULTILINE)


@dataclass
class PingRun:
    """One running ``ping`` (see the module doc)."""

    proc: subprocess.Popen[str]
    started: float
    interval: float
    output: str = ""
    #: icmp_seq -> wall-clock time of its reply.
    replies: dict[int, float] = field(default_factory=dict)
    #: icmp_seq -> wall-clock time it was sent (module doc).
    times: dict[int, float] = field(default_factory=dict)
    sent: int = 0

    @classmethod
    def start(cls, lab: Lab, role: str, address: str, interval: float = 0.1) -> PingRun:
        argv = ["ping", "-D", "-O", "-n", "-i", str(interval), "-W", "1", address]
        started = time.time()
        proc = lab.popen(role, argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return cls(proc, started, interval)

    def stop(self) -> PingRun:
        """Stop ping (SIGINT: it prints its summary) and read what it saw."""
        if self.proc.poll() is None:
            self.proc.send_signal(2)
        out, _ = self.proc.communicate(timeout=30)
        self.output = out
        self.replies = {int(seq): float(at) for at, seq, _ in _REPLY.findall(out)}
        times = {int(seq): float(at) - float(rtt) / 1000 for at, seq, rtt in _REPLY.findall(out)}
        for at, seq in _LATE.findall(out):
            times.setdefault(int(seq), float(at) - self.interval)
        transmitted = re.search(r"(\d+) packets transmitted", out)
        self.sent = int(transmitted.group(1)) if transmitted else max(times, default=0)
        previous = self.started - self.interval
        for seq in range(1, self.sent + 1):
            previous = times.setdefault(seq, previous + self.interval)
        self.times = times
        return self

    def sent_at(self, seq: int) -> float:
        return self.times[seq]

    def lost_between(self, start: float, end: float) -> int:
        """Pings sent in [``start``, ``end``) that got no reply."""
        return sum(
            1
            for seq in range(1, self.sent + 1)
            if start <= self.sent_at(seq) < end and seq not in self.replies
        )

    def first_reply_after(self, moment: float) -> float | None:
        """When the first ping sent after ``moment`` was answered."""
        after = [at for seq, at in self.replies.items() if self.sent_at(seq) >= moment]
        return min(after) if after else None
