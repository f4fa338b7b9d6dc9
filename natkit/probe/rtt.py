"""The classifier's round-trip times: what the path does now, and its slowest route.

Theory of operation
-------------------
Every answered attempt is a sample: the time from sending it to its first
answer, the time it was sent, and the address the answer came from. The
classifier paces by two numbers drawn from them:

* the **current** RTT: the median of the samples of the attempts sent most
  recently, within ``memory`` seconds (by send time) of the newest answered
  one. A stall (a blocked event loop, Wi-Fi, bufferbloat, a NAT busy after
  a flush) delays the answers to the attempts sent during it; as soon as an
  attempt sent after it is answered, those samples are older than the
  newest by more than the stall and drop out. The stall is forgotten within
  ``memory`` of its end, instead of weighing on a smoothed average (RFC 6298
  gives each new sample 1/8) or, as a worst-ever maximum did, for the rest
  of the run;
* the **slowest route's excess**: how much longer answers from one address
  take than answers from the others to attempts sent at about the same
  time (each sample against the other address's sample nearest in send
  time), at its smallest. A stall delays every route alike, so it cancels
  out of the difference, while a route that is slow for good (the alternate
  server farther away than the primary) keeps its excess for the whole
  run, and with it the time an answer from there is waited for (RFC 5780
  §4.4's change-request answers come from that route, and its only other
  samples are the mapping tests' first answers).

The report's ``rtt`` is the median of every sample: one stalled burst among
dozens of answers does not move it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from statistics import median

from natkit.endpoint import IPAddress


@dataclass(frozen=True, slots=True)
class RttSample:
    """One answered attempt."""

    sent_at: float
    rtt: float
    source: IPAddress


class PathRtt:
    """RTT samples of one run, and the estimates the classifier paces by."""

    def __init__(self, memory: float) -> None:
        #: Samples older than this (by send time) than the newest no longer
        #: count as "current".
        self.memory = memory
        # Sorted by send time (answers come roughly in that order: cheap inserts).
        self._samples: list[RttSample] = []
        self._recent: list[float] | None = None
        self._excess: float | None = None

    def add(self, sent_at: float, rtt: float, source: IPAddress) -> None:
        """Record the first answer to an attempt sent at ``sent_at``."""
        bisect.insort(self._samples, RttSample(sent_at, rtt, source), key=lambda s: s.sent_at)
        self._recent = None
        self._excess = None

    @property
    def samples(self) -> int:
        return len(self._samples)

    def _recent_rtts(self) -> list[float]:
        if self._recent is None:
            if not self._samples:
                self._recent = []
            else:
                horizon = self._samples[-1].sent_at - self.memory
                start = bisect.bisect_left(self._samples, horizon, key=lambda s: s.sent_at)
                self._recent = [s.rtt for s in self._samples[start:]]
        return self._recent

    @property
    def current(self) -> float | None:
        """The median RTT of the recently sent attempts (``None``: no sample yet)."""
        recent = self._recent_rtts()
        return median(recent) if recent else None

    @property
    def current_max(self) -> float | None:
        """The largest RTT among the recently sent attempts."""
        recent = self._recent_rtts()
        return max(recent) if recent else None

    @property
    def route_excess(self) -> float:
        """How much slower than the others the slowest answering address is
        at its best (0 with a single address; never negative)."""
        if self._excess is None:
            self._excess = self._compute_excess()
        return self._excess

    def _compute_excess(self) -> float:
        samples = self._samples
        best: dict[IPAddress, float] = {}
        for index, sample in enumerate(samples):
            other = _nearest_other(samples, index)
            if other is None:
                continue
            difference = sample.rtt - other.rtt
            known = best.get(sample.source)
            if known is None or difference < known:
                best[sample.source] = difference
        return max(0.0, *best.values()) if best else 0.0

    @property
    def typical(self) -> float | None:
        """The median of every sample (what the report calls the RTT)."""
        return median(s.rtt for s in self._samples) if self._samples else None


def _nearest_other(samples: list[RttSample], index: int) -> RttSample | None:
    """The sample from another address sent nearest in time to ``samples[index]``."""
    sample = samples[index]
    left = index - 1
    while left >= 0 and samples[left].source == sample.source:
        left -= 1
    right = index + 1
    while right < len(samples) and samples[right].source == sample.source:
        right += 1
    candidates = []
    if left >= 0:
        candidates.append(samples[left])
    if right < len(samples):
        candidates.append(samples[right])
    if not candidates:
        return None
    return min(candidates, key=lambda other: abs(other.sent_at - sample.sent_at))
