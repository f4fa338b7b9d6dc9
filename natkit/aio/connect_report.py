"""This node's traversal report: built from what natkit measured, kept up to date, sent.

The escalation ladder and "why relayed?" need both peers'
:class:`~natkit.ice.report.TraversalReport`. A node builds its own from

* **natkit's classifier** (mapping, filtering, port allocation, UDP
  blocked, CGNAT, double NAT, public address), run once at start against
  the node's STUN servers when :attr:`TraversalOptions.classify` says so
  (the default whenever there are STUN servers: it costs 0.1-0.5 s,
  beside the node's start, not before it), or given ready-made
  (:attr:`TraversalOptions.classification`, e.g. from a ``natkit classify``
  run the caller keeps);
* **the gatherer** (:class:`~natkit.aio.connect_gather.TrickleGathering`):
  the port-mapping protocol and mapped candidate, and the server-reflexive
  address when the classifier gave none;
* **what the node is willing to do**: birthday probing within
  :attr:`TraversalOptions.birthday` (``None``: none), and the NAT's port
  range when the caller knows it (:attr:`TraversalOptions.port_range`:
  the classifier does not measure a NAT's range, and a small one is what
  makes a both-hard birthday search worth it). The relays come from the
  agent (its configured servers).

The report is given to the agent (``set_traversal_report``: sealed to every
peer in the announcement, and the local half of each ladder) at start,
then again whenever a part changes (the classification arrives, a mapping
is granted); :class:`LocalReportChanged` tells the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any

from natkit.birthday.ports import PortRange
from natkit.endpoint import Endpoint
from natkit.errors import NatkitError
from natkit.gather.candidates import CandidateKind, PortMapObservation, PortMapStatus
from natkit.ice import ConnectAgent
from natkit.ice.report import BirthdayCapability, TraversalReport
from natkit.portmap.mapping import MappingProtocol
from natkit.probe.report import ClassificationReport

__all__ = [
    "DEFAULT_BIRTHDAY",
    "LocalReportChanged",
    "ReportKeeper",
    "TraversalOptions",
    "build_report",
]

#: What a node offers for birthday probing unless told otherwise: 64
#: mappings as the hard side, 2,048 probes at 100/s as a sprayer (one hard
#: side facing an EIM one: about 87 % on a NAT allocating from 64,512 ports).
DEFAULT_BIRTHDAY = BirthdayCapability(ports=64, probes=2048, rate=100)


@dataclass(frozen=True, slots=True)
class TraversalOptions:
    """What goes into this node's traversal report (module doc)."""

    #: Run natkit's classifier at start against the STUN servers (``None``:
    #: when there are any).
    classify: bool | None = None
    #: A classification made elsewhere (then none is run).
    classification: ClassificationReport | None = None
    #: The external ports this site's NAT allocates from, when known.
    port_range: PortRange | None = None
    #: Birthday probing this node takes part in (``None``: none).
    birthday: BirthdayCapability | None = DEFAULT_BIRTHDAY


@dataclass(frozen=True, slots=True)
class LocalReportChanged:
    """This node's traversal report changed (and was sent to every peer)."""

    report: TraversalReport
    #: The classification it was built from (``None``: none yet, or none run).
    classification: ClassificationReport | None


def build_report(
    classification: ClassificationReport | None,
    port_mapping: PortMapObservation,
    candidates: Sequence[tuple[CandidateKind, Endpoint]],
    options: TraversalOptions,
) -> TraversalReport:
    """The report from the classification, the gatherer's findings
    (``candidates``: kind and address of each local candidate) and options."""
    report = TraversalReport.from_reports(
        classification, birthday=options.birthday, port_range=options.port_range
    )
    values: dict[str, object] = {}
    if port_mapping.protocol is not None:
        values["port_mapping"] = MappingProtocol(port_mapping.protocol)
    mapped = [address for kind, address in candidates if kind is CandidateKind.MAPPED]
    if mapped:
        values["mapped"] = mapped[0]
    elif port_mapping.external is not None:
        values["mapped"] = port_mapping.external
    if report.public_address is None:
        srflx = [address for kind, address in candidates if kind is CandidateKind.SRFLX]
        if srflx:
            values["public_address"] = srflx[0].address
    return replace(report, **values) if values else report  # type: ignore[arg-type]


#: What runs the classifier (the node's :func:`natkit.aio.classify.classify` call).
Classify = Callable[[], Coroutine[Any, Any, ClassificationReport]]


class ReportKeeper:
    """Builds, sends and refreshes the node's report (module doc)."""

    def __init__(
        self,
        agent: ConnectAgent,
        options: TraversalOptions,
        *,
        now: Callable[[], float],
        transmit: Callable[[float], None],
        emit: Callable[[LocalReportChanged], None],
    ) -> None:
        self.agent = agent
        self.options = options
        self._now = now
        self._transmit = transmit
        self._emit = emit
        self.classification = options.classification
        self._port_mapping = PortMapObservation(PortMapStatus.NOT_TESTED)
        self._candidates: tuple[tuple[CandidateKind, Endpoint], ...] = ()
        self.report: TraversalReport | None = None
        self._task: asyncio.Task[None] | None = None
        #: Why no classification was made (the classifier failed, ...).
        self.notes: list[str] = []

    def start(self, classify: Classify | None) -> None:
        """Send the first report now; run ``classify`` in the background."""
        self.update()
        if classify is not None and self.classification is None:
            self._task = asyncio.get_running_loop().create_task(self._classify(classify))

    async def _classify(self, classify: Classify) -> None:
        try:
            report = await classify()
        except (NatkitError, OSError) as exc:
            self.notes.append(f"classification failed: {exc}")
            return
        self.classification = report
        self.update()

    def gathered(
        self,
        port_mapping: PortMapObservation,
        candidates: Sequence[tuple[CandidateKind, Endpoint]],
    ) -> None:
        """The gatherer's findings changed."""
        self._port_mapping = port_mapping
        self._candidates = tuple(candidates)
        self.update()

    def update(self) -> None:
        """Rebuild; when it changed, give it to the agent and tell the consumer."""
        report = build_report(
            self.classification, self._port_mapping, self._candidates, self.options
        )
        if report == self.report:
            return
        self.report = report
        now = self._now()
        self.agent.set_traversal_report(report, now)
        self._transmit(now)
        self._emit(LocalReportChanged(report, self.classification))

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
