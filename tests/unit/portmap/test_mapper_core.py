"""The port mapper core on a virtual clock: the decision table, the race on
one socket, the journal events, the close. The gateway speaks PCP and
NAT-PMP (``FakeGateway``) and answers SSDP and UPnP calls (``FakeUpnp``)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from fake_upnp import FakeUpnp, ssdp_answer
from portmap_testlib import CLIENT, GATEWAY, INTERNAL, FakeGateway

from natkit.endpoint import Endpoint
from natkit.portmap.choice import PREFERENCE, TABLE, Decision, Phase, Verdict, decide
from natkit.portmap.events import MappingDeleted, MappingRenewed
from natkit.portmap.mapper import MapperCore, PortMapperConfig
from natkit.portmap.mapper_events import (
    LeaseClosed,
    LeaseExternalKnown,
    LeaseOpened,
    MapperClosed,
    MapperEvent,
    PortMapSettled,
)
from natkit.portmap.mapping import MappingProtocol
from natkit.portmap.report import PortMapResult, ProbeStatus
from natkit.portmap.upnp_calls import UpnpAction, UpnpCallRequested, UpnpConfig
from natkit.portmap.wire import gateway_protocols

PCP, PMP, UPNP = MappingProtocol.PCP, MappingProtocol.NAT_PMP, MappingProtocol.UPNP_IGD
W, A, M, D, N = Phase.WAITING, Phase.AVAILABLE, Phase.MAPPED, Phase.DONE, Phase.NOT_WANTED

# --- the decision table ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("pcp", "pmp", "upnp", "expected"),
    [
        (Phase.MAPPING, A, A, Decision()),  # PCP is preferred: wait for it
        (Phase.MAPPING, W, W, Decision()),
        (D, A, A, Decision(map=PMP)),
        (D, D, A, Decision(map=UPNP)),
        (D, W, A, Decision()),  # NAT-PMP may still answer
        (N, N, A, Decision(map=UPNP)),
        (M, A, W, Decision(winner=PCP, settled=True, cut_short=(UPNP,))),
        (D, M, D, Decision(winner=PMP, settled=True)),
        (D, D, D, Decision(settled=True)),
        (N, N, N, Decision(settled=True)),
    ],
)
def test_decision_table(pcp: Phase, pmp: Phase, upnp: Phase, expected: Decision) -> None:
    assert decide({PCP: pcp, PMP: pmp, UPNP: upnp}) == expected


def test_waiting_for_all_settles_when_nothing_is_open() -> None:
    phases = {PCP: M, PMP: A, UPNP: W}
    assert decide(phases, wait_for_all=True) == Decision(winner=PCP)
    assert decide({**phases, UPNP: A}, wait_for_all=True) == Decision(winner=PCP, settled=True)


def test_table_covers_every_phase() -> None:
    assert set(TABLE) == set(Phase)
    assert PREFERENCE == (PCP, PMP, UPNP)
    assert TABLE[Phase.AVAILABLE] is Verdict.MAP


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (bytes.fromhex("02810000") + bytes(56), (True, False)),  # PCP MAP answer
        (bytes.fromhex("0080000000000001") + bytes(4), (False, True)),  # NAT-PMP address
        (bytes.fromhex("0081000100000005"), (True, False)),  # NAT-PMP's "unsupported" to PCP
        (bytes.fromhex("02800001") + bytes(20), (True, True)),  # a PCP ANNOUNCE...
        (bytes.fromhex("02810001") + bytes(56), (False, True)),  # PCP's "unsupported" to NAT-PMP
        (b"\x00", (True, True)),
    ],
)
def test_gateway_datagrams_go_to_their_client(data: bytes, expected: tuple[bool, bool]) -> None:
    assert gateway_protocols(data) == expected


# --- the core on a virtual clock -----------------------------------------------------------


@dataclass
class Race:
    """Drives a MapperCore against the fakes (datagrams and calls answered at once)."""

    core: MapperCore
    gateway: FakeGateway
    upnp: FakeUpnp | None
    now: float = 0.0
    events: list[tuple[float, MapperEvent]] = field(default_factory=list)
    #: Every datagram sent, with the time: (time, destination, bytes).
    sent: list[tuple[float, Endpoint, bytes]] = field(default_factory=list)

    def flush(self) -> None:
        for _ in range(1000):
            datagrams = self.core.datagrams_to_send(self.now)
            calls = []
            while (event := self.core.next_event()) is not None:
                if isinstance(event, UpnpCallRequested):
                    calls.append(event.call)
                else:
                    self.events.append((self.now, event))
            if not datagrams and not calls:
                return
            for call in calls:
                answer = None if self.upnp is None else self.upnp.answer(call, self.now)
                if answer is not None:
                    self.core.upnp_call_completed(answer, self.now)
            for datagram in datagrams:
                self.sent.append((self.now, datagram.remote, datagram.data))
                self._deliver(datagram.remote, datagram.data)
        raise AssertionError("the core never stopped")

    def _deliver(self, remote: Endpoint, data: bytes) -> None:
        if remote == self.gateway.endpoint:
            reply = self.gateway.handle(data, CLIENT, self.now)
            if reply is not None:
                self.core.receive_datagram(reply, self.gateway.endpoint, 0, self.now)
        elif remote.port == 1900 and self.upnp is not None:
            source = Endpoint(self.gateway.endpoint.address, 1900)
            self.core.receive_datagram(ssdp_answer(), source, 0, self.now)

    def run_until(self, until: float, stop: Callable[[MapperEvent], bool] | None = None) -> None:
        self.flush()
        for _ in range(100_000):
            if stop is not None and any(stop(e) for _, e in self.events):
                return
            deadline = self.core.get_timer()
            if deadline is None or deadline > until:
                self.now = max(self.now, until)
                return
            self.now = max(self.now, deadline)
            self.core.handle_timer(self.now)
            self.flush()
        raise AssertionError("timers never settled")

    def settle(self, limit: float = 60.0) -> PortMapResult:
        self.run_until(limit, stop=lambda e: isinstance(e, PortMapSettled))
        [result] = [e.result for _, e in self.events if isinstance(e, PortMapSettled)]
        return result

    def of_type(self, kind: type) -> list[MapperEvent]:
        return [e for _, e in self.events if isinstance(e, kind)]


def race(
    gateway: FakeGateway | None = None,
    upnp: FakeUpnp | None = None,
    *,
    wait_for_all: bool = False,
    **config: object,
) -> Race:
    upnp_config = UpnpConfig(multicast=False)  # unicast to the gateway only
    settings = PortMapperConfig(upnp=upnp_config, **config)  # type: ignore[arg-type]
    core = MapperCore(GATEWAY, INTERNAL, 0.0, config=settings, rng=random.Random(1),
                      wait_for_all=wait_for_all)  # fmt: skip
    return Race(core, gateway or FakeGateway(), upnp)


def statuses(result: PortMapResult) -> dict[MappingProtocol, ProbeStatus]:
    return {r.protocol: r.status for r in result.protocols}


def test_pcp_wins_and_the_others_are_only_asked() -> None:
    upnp = FakeUpnp()
    r = race(upnp=upnp, wait_for_all=True)
    result = r.settle()
    assert result.mapping is not None
    assert result.mapping.protocol is PCP
    assert statuses(result) == {
        PCP: ProbeStatus.MAPPED,
        PMP: ProbeStatus.AVAILABLE,
        UPNP: ProbeStatus.AVAILABLE,
    }
    upnp_result = result.result_for(UPNP)
    assert upnp_result.detail == "IGD:2 at http://192.168.1.1:5000/rootDesc.xml"
    assert str(upnp_result.external_address) == upnp.external_ip
    assert result.mapped_after == 0.0
    # One socket: PCP, NAT-PMP and the M-SEARCH all left socket 0; only PCP mapped.
    assert r.gateway.counters["pcp_map"] == 1
    assert r.gateway.counters["pmp_map"] == 0
    assert upnp.held == {}


def test_silent_pcp_gives_way_to_nat_pmp_after_the_grace() -> None:
    gateway = FakeGateway(pcp=True)
    gateway.silent = False
    r = race(gateway, fallback_grace=0.25, protocols=(PCP, PMP))
    original = gateway.handle

    def no_pcp(data: bytes, source: Endpoint, now: float) -> bytes | None:
        return None if data[0] == 2 else original(data, source, now)

    gateway.handle = no_pcp  # type: ignore[method-assign]
    result = r.settle()
    assert result.mapping is not None
    assert result.mapping.protocol is PMP
    assert statuses(result)[PCP] is ProbeStatus.NO_ANSWER
    assert result.mapped_after == pytest.approx(0.25)


def test_nat_pmp_only_gateway() -> None:
    r = race(FakeGateway(pcp=False), protocols=(PCP, PMP))
    result = r.settle()
    assert result.mapping is not None
    assert result.mapping.protocol is PMP
    pcp = result.result_for(PCP)
    assert (pcp.status, pcp.result_code) == (ProbeStatus.UNSUPPORTED, 1)


def test_upnp_maps_when_neither_pcp_nor_nat_pmp_answers() -> None:
    gateway = FakeGateway()
    gateway.silent = True
    upnp = FakeUpnp()
    r = race(gateway, upnp, probe_timeout=2.0)
    result = r.settle()
    assert result.mapping is not None
    assert result.mapping.protocol is UPNP
    assert statuses(result) == {
        PCP: ProbeStatus.NO_ANSWER,
        PMP: ProbeStatus.NO_ANSWER,
        UPNP: ProbeStatus.MAPPED,
    }
    assert upnp.count(UpnpAction.GET_EXTERNAL_ADDRESS) == 1  # the probe's answer served


def test_nothing_answers() -> None:
    gateway = FakeGateway()
    gateway.silent = True
    r = race(gateway, FakeUpnp(silent={UpnpAction.FETCH_DESCRIPTION}))
    r.upnp = None  # no SSDP answer either
    result = r.settle()
    assert result.mapping is None
    assert set(statuses(result).values()) == {ProbeStatus.NO_ANSWER}
    assert result.result_for(UPNP).detail == "no UPnP IGD answered"


def test_the_journal_entry_comes_before_the_request() -> None:
    r = race(protocols=(PCP,))
    # Nothing may go out before the driver has handled LeaseOpened...
    assert r.core.datagrams_to_send(0.0) == []
    first = r.core.next_event()
    assert isinstance(first, LeaseOpened)
    assert r.core.next_event() is None
    # ...the request goes at the next tick.
    assert r.core.get_timer() == 0.0
    r.run_until(0.0)
    assert r.gateway.counters["pcp_map"] == 1
    entry = first.entry
    client = r.core.client(PCP)
    assert client is not None
    assert entry.nonce == client.nonce.hex()  # type: ignore[attr-defined]
    [known] = r.of_type(LeaseExternalKnown)
    assert isinstance(known, LeaseExternalKnown)
    assert (known.entry_id, known.external.port) == (entry.id, 51820)


def test_a_request_never_answered_is_forgotten_on_close() -> None:
    gateway = FakeGateway()
    gateway.silent = True
    r = race(gateway, protocols=(PCP, PMP))
    result = r.settle()
    assert result.mapping is None
    opened = [e.entry.id for e in r.of_type(LeaseOpened)]  # type: ignore[union-attr]
    r.core.close(r.now)
    r.run_until(r.now + 60, stop=lambda e: isinstance(e, MapperClosed))
    closed = [e.entry_id for e in r.of_type(LeaseClosed)]  # type: ignore[union-attr]
    assert opened
    assert sorted(closed) == sorted(opened)
    assert r.core.finished


def test_close_deletes_the_mapping_and_says_when_done() -> None:
    r = race(protocols=(PCP,))
    result = r.settle()
    assert result.mapping is not None
    r.run_until(5000)
    assert r.of_type(MappingRenewed)  # the winner's events follow the result
    r.core.close(r.now)
    r.flush()
    [closed] = r.of_type(MapperClosed)
    assert isinstance(closed, MapperClosed)
    assert isinstance(closed.deleted, MappingDeleted)
    assert closed.deleted.confirmed
    assert not r.gateway.leases
    assert len(r.of_type(LeaseClosed)) == 1
