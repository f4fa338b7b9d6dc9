"""SSDP discovery of an IGD as a sans-IO piece of the port mapper.

natkit's own M-SEARCH (:mod:`natkit.portmap.ssdp`) goes to the multicast
group and, unicast, to the gateway when one is named, from the port
mapper's one socket (PCP and NAT-PMP share it; answers are told apart by
source). It is repeated at ``resend_at`` offsets, UDP being lossy. Every
answer is checked before anything is fetched; once a usable one is in, the
search waits ``settle`` longer so a preferred device can still win, then
:func:`~natkit.portmap.ssdp.select_gateway` picks. Bytes that are not an
acceptable answer are only counted.
"""

from __future__ import annotations

from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError
from natkit.portmap.ssdp import (
    SEARCH_TARGETS,
    SSDP_ENDPOINT,
    SSDP_PORT,
    SsdpDecodeError,
    SsdpResponse,
    build_msearch,
    parse_response,
    select_gateway,
)
from natkit.portmap.upnp_calls import UpnpConfig
from natkit.sansio import Datagram


class SsdpSearch:
    """One search, started at ``now``; read :attr:`done` and :attr:`chosen`."""

    def __init__(
        self,
        now: float,
        *,
        gateway: IPAddress | None = None,
        config: UpnpConfig | None = None,
        socket: int = 0,
        only_gateway: bool = False,
    ) -> None:
        if only_gateway and gateway is None:
            raise LocalProtocolError("only the gateway's answer is wanted: name the gateway")
        self.config = config or UpnpConfig()
        # A named-only gateway is asked by unicast alone (UDA 1.1 §1.3.2): no
        # other device on the LAN needs to hear the search.
        multicast = self.config.multicast and not only_gateway
        targets: list[Endpoint] = [SSDP_ENDPOINT] if multicast else []
        if gateway is not None:
            targets.append(Endpoint(gateway, SSDP_PORT))
        targets.extend(self.config.extra_targets)
        if not targets:
            raise LocalProtocolError("UPnP discovery has nowhere to send: name the gateway")
        self.gateway = gateway
        #: Answers from other devices are ignored (the user named the gateway).
        self.only_gateway = only_gateway
        self.targets = tuple(targets)
        self.started = now
        self.socket = socket
        #: Answers accepted, first first; and those refused.
        self.accepted: list[SsdpResponse] = []
        self.rejected: list[SsdpDecodeError] = []
        #: Good answers from devices other than the gateway, with ``only_gateway``.
        self.ignored: list[SsdpResponse] = []
        #: Set once the search is over; :attr:`chosen` is then final.
        self.done_at: float | None = None
        self.chosen: SsdpResponse | None = None
        self._sends = sorted(now + offset for offset in self.config.resend_at)
        self._deadline = now + self.config.discovery_timeout
        self._outbox: list[Datagram] = []

    @property
    def done(self) -> bool:
        return self.done_at is not None

    def receive(self, data: bytes, source: Endpoint, now: float) -> None:
        """A datagram that did not come from the PCP/NAT-PMP server."""
        if self.done:
            return
        try:
            response = parse_response(data, source)
        except SsdpDecodeError as exc:
            self.rejected.append(exc)
            return
        if any(r.location == response.location for r in self.accepted):
            return
        if self.only_gateway and response.source.address != self.gateway:
            # Not "preferred": another IGD would map a port on a NAT the
            # user did not name (and the search waits on for the gateway).
            if all(r.location != response.location for r in self.ignored):
                self.ignored.append(response)
            return
        self.accepted.append(response)
        if len(self.accepted) == 1:
            self._deadline = min(self._deadline, now + self.config.settle)

    def handle_timer(self, now: float) -> None:
        if self.done:
            return
        while self._sends and self._sends[0] <= now:
            self._sends.pop(0)
            for target in self.targets:
                for search in SEARCH_TARGETS:
                    self._outbox.append(Datagram(build_msearch(search), target, self.socket))
        if now >= self._deadline:
            self.stop(now)

    def stop(self, now: float) -> None:
        """End the search now with what came in."""
        if self.done:
            return
        self.done_at = now
        self._sends.clear()
        self.chosen = select_gateway(self.accepted, self.gateway, only=self.only_gateway)

    def get_timer(self) -> float | None:
        if self.done:
            return None
        return min([self._deadline, *self._sends[:1]])

    def datagrams_to_send(self) -> list[Datagram]:
        out, self._outbox = self._outbox, []
        return out

    def summary(self) -> str:
        """Why nothing was chosen, in words (for reports)."""
        refused = len(self.rejected)
        notes = [f"{refused} answers refused"] if refused else []
        if self.ignored:
            others = ", ".join(sorted({str(r.source.address) for r in self.ignored}))
            notes.append(f"ignored the IGD at {others}")
        detail = f" ({'; '.join(notes)})" if notes else ""
        where = f" at {self.gateway}" if self.only_gateway else ""
        return f"no UPnP IGD answered{where}{detail}"
