"""Events the classifier core hands to its driver."""

from __future__ import annotations

from dataclasses import dataclass

from natkit.endpoint import Endpoint
from natkit.probe.report import ClassificationReport


@dataclass(frozen=True, slots=True)
class TcpCheckRequested:
    """Please send ``request`` to ``server`` over TCP and hand back the reply
    (:meth:`NatClassifier.tcp_check_completed`). TCP reachability is what
    lets the classifier call UDP blocked without waiting out a timeout."""

    server: Endpoint
    request: bytes


@dataclass(frozen=True, slots=True)
class ClassificationCompleted:
    """The run is over; no more datagrams or timers will follow."""

    report: ClassificationReport


ClassifierEvent = TcpCheckRequested | ClassificationCompleted
