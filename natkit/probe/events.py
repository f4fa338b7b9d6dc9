"""Events the classifier core hands to its driver."""

from __future__ import annotations

from dataclasses import dataclass

from natkit.probe.report import ClassificationReport


@dataclass(frozen=True, slots=True)
class ClassificationCompleted:
    """The run is over; no more datagrams or timers will follow."""

    report: ClassificationReport


#: Everything the classifier emits (one event: the stream check is a
#: :class:`~natkit.sansio.StreamRequest`, not an event).
ClassifierEvent = ClassificationCompleted
