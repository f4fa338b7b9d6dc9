"""The UPnP IGD client on the shared lease engine, on a virtual clock
against a fake device (hours of virtual time in milliseconds)."""

from __future__ import annotations

import itertools
import random
from collections import deque

import pytest
from fake_upnp import LOCATION, FakeUpnp, Held
from portmap_testlib import INTERNAL, FakeGateway, Harness

from natkit.endpoint import Endpoint
from natkit.portmap.events import (
    ExternalAddressFound,
    FailureReason,
    LossReason,
    MappingDeleted,
    MappingFailed,
    MappingGranted,
    MappingLost,
    MappingRenewed,
)
from natkit.portmap.igd import UpnpDetails, UpnpErrorCode
from natkit.portmap.lease_state import ClientState, LeaseStateError
from natkit.portmap.mapping import LifetimeNote, LifetimePolicy, MappingProtocol
from natkit.portmap.timing import PcpRetransmission
from natkit.portmap.upnp_calls import UpnpAction, UpnpConfig
from natkit.portmap.upnp_client import UpnpClient

HOURS = 3600.0
ADD = UpnpAction.ADD_PORT_MAPPING


def upnp(fake: FakeUpnp | None = None, *, now: float = 0.0, **kwargs: object) -> Harness:
    config = kwargs.pop("config", UpnpConfig())
    client = UpnpClient(LOCATION, INTERNAL, now, config=config, label="natkit test",  # type: ignore[arg-type]
                        rng=random.Random(3), **kwargs)  # type: ignore[arg-type]  # fmt: skip
    return Harness(client, FakeGateway(), upnp=fake or FakeUpnp(), now=now)


def granted(harness: Harness) -> MappingGranted:
    events = harness.run_until(harness.now + 1)
    grants = [e for e in events if isinstance(e, MappingGranted)]
    assert grants, events
    return grants[-1]


def actions(fake: FakeUpnp) -> list[UpnpAction]:
    return [call.action for _, call in fake.calls]


def test_lifecycle_connect_add_any_renew_delete() -> None:
    fake = FakeUpnp()
    harness = upnp(fake)
    mapping = granted(harness).mapping
    # The description is checked before miniupnpc is pointed at it; AddAny's
    # permanent lease is brought down to ours at once.
    assert actions(fake) == [
        UpnpAction.FETCH_DESCRIPTION,
        UpnpAction.SELECT_IGD,
        UpnpAction.ADD_ANY_PORT_MAPPING,
        ADD,
        UpnpAction.GET_EXTERNAL_ADDRESS,
    ]
    assert fake.held[(40123, "UDP")] == Held(INTERNAL, "natkit test", 7200)
    assert mapping.protocol is MappingProtocol.UPNP_IGD
    assert mapping.external == Endpoint.parse("203.0.113.7:40123")
    assert mapping.gateway == Endpoint.parse("192.168.1.1:5000")  # the control URL's
    assert mapping.details == UpnpDetails(
        LOCATION, 2, "urn:schemas-upnp-org:service:WANIPConnection:2", "natkit test"
    )
    assert mapping.renew_at == 3600.0
    events = harness.run_until(3600)
    assert [type(e) for e in events] == [MappingRenewed]
    assert fake.calls[-1][1].external_port == 40123
    harness.call(harness.client.delete)
    assert harness.events[-1][1] == MappingDeleted(events[0].mapping, confirmed=True)  # type: ignore[union-attr]
    assert fake.held == {}
    assert harness.client.state is ClientState.DELETED


def test_a_gateway_failing_every_renewal_is_not_hammered() -> None:
    """Issue 9 item 2: a gateway answering 501 to every AddPortMapping once
    saw 54,445 calls in 2 s. Over ten virtual hours the client now asks a
    bounded few times: renewals on the renewal schedule until expiry, which
    is reported (MappingLost), then re-creation backing off to MRT."""
    fake = FakeUpnp(version=1)
    harness = upnp(fake)
    mapping = granted(harness).mapping
    fake.always[ADD] = int(UpnpErrorCode.ACTION_FAILED)
    fake.calls.clear()
    events = harness.run_until(10 * HOURS)
    adds = [t for t, call in fake.calls if call.action is ADD]
    # 11 renewals before expiry (halfway each time), then ~37 re-creations.
    assert 30 <= len(adds) <= 60, len(adds)
    assert all(b - a >= 3.0 * 0.9 for a, b in itertools.pairwise(adds)), adds
    assert (
        max(len([t for t in adds if h * HOURS <= t < (h + 1) * HOURS]) for h in range(3, 10)) <= 4
    )
    lost = [e for e in events if isinstance(e, MappingLost)]
    assert lost == [MappingLost(mapping, LossReason.EXPIRED)]
    assert harness.of_type(MappingLost)[0][0] == mapping.expires_at
    failures = [e for e in events if isinstance(e, MappingFailed)]
    assert len(failures) == len(adds)
    assert not any(f.terminal for f in failures)
    assert {f.result_code for f in failures} == {501}
    # Still trying, far apart: the gateway may come back.
    assert harness.client.state is ClientState.REQUESTING
    del fake.always[ADD]
    events = harness.run_until(11 * HOURS)
    assert [type(e) for e in events][-1] is MappingGranted


def test_a_gateway_that_stops_answering_is_not_hammered_either() -> None:
    fake = FakeUpnp(version=1)
    harness = upnp(fake)
    granted(harness)
    fake.silent.add(ADD)
    fake.calls.clear()
    harness.run_until(10 * HOURS)
    adds = [t for t, call in fake.calls if call.action is ADD]
    assert 30 <= len(adds) <= 60, len(adds)
    assert harness.client.state is ClientState.REQUESTING


def test_backoff_goes_from_irt_to_mrt() -> None:
    fake = FakeUpnp(version=1)
    config = UpnpConfig(retransmission=PcpRetransmission(irt=3.0, mrt=100.0),
                        lifetime=LifetimePolicy(requested=600))  # fmt: skip
    harness = upnp(fake, config=config)
    mapping = granted(harness).mapping
    fake.always[ADD] = 501
    harness.run_until(mapping.expires_at - 0.001)
    fake.calls.clear()
    harness.run_until(mapping.expires_at + 1000)
    adds = [t - mapping.expires_at for t, call in fake.calls if call.action is ADD]
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(adds)]
    assert adds[0] == 0
    assert gaps[:6] == [3, 6, 12, 24, 48, 96]
    assert set(gaps[6:]) == {100}


def test_first_refusal_is_final() -> None:
    fake = FakeUpnp()
    fake.faults[UpnpAction.ADD_ANY_PORT_MAPPING] = deque([606])
    harness = upnp(fake)
    [event] = harness.run_until(100)
    assert isinstance(event, MappingFailed)
    assert (event.reason, event.terminal, event.result_code) == (
        FailureReason.NOT_AUTHORIZED,
        True,
        606,
    )
    assert event.detail == "UPnP AddAnyPortMapping: ACTION_NOT_AUTHORIZED (606)"
    assert harness.client.get_timer() is None


def test_conflict_on_renewal_is_a_loss_and_the_mapping_moves() -> None:
    fake = FakeUpnp(version=1)
    harness = upnp(fake)
    mapping = granted(harness).mapping
    other = Endpoint.parse("192.168.1.99:51820")
    fake.held[(mapping.external.port, "UDP")] = Held(other, "someone else", 0)
    events = harness.run_until(3600)
    lost, regrant = events
    assert lost == MappingLost(mapping, LossReason.REFUSED, 718)
    assert isinstance(regrant, MappingGranted)
    assert regrant.recreated
    assert regrant.mapping.external.port != mapping.external.port


def test_only_permanent_leases_are_noted() -> None:
    fake = FakeUpnp(version=1)
    fake.faults[ADD] = deque([725])
    mapping = granted(upnp(fake)).mapping
    assert (mapping.granted_lifetime, mapping.lifetime) == (0, 7200)
    assert mapping.notes == (LifetimeNote.ZERO_ON_SUCCESS,)
    assert [call.lease for _, call in fake.calls if call.action is ADD] == [7200, 0]


def test_probe_then_start_asks_the_address_once() -> None:
    fake = FakeUpnp()
    harness = upnp(fake, start=False, probe=True)
    [found] = harness.run_until(1)
    assert found == ExternalAddressFound(MappingProtocol.UPNP_IGD, Endpoint.parse(
        "203.0.113.7:1").address)  # fmt: skip
    assert harness.client.state is ClientState.IDLE
    assert fake.held == {}
    harness.call(harness.client.start)
    assert isinstance(harness.events[-1][1], MappingGranted)
    assert fake.count(UpnpAction.GET_EXTERNAL_ADDRESS) == 1


def test_cleanup_deletes_only_what_still_points_at_us() -> None:
    fake = FakeUpnp()
    fake.held[(40123, "UDP")] = Held(INTERNAL, "natkit test", 7200)
    leaked = Endpoint.parse("203.0.113.7:40123")
    harness = upnp(fake, start=False, previous_external=leaked)
    harness.call(harness.client.delete)
    assert harness.events[-1][1] == MappingDeleted(None, confirmed=True)
    assert fake.held == {}
    # Someone else's mapping on that port now: left alone, reported gone.
    other = Held(Endpoint.parse("192.168.1.99:1"), "x", 0)
    fake.held[(40123, "UDP")] = other
    harness = upnp(fake, start=False, previous_external=leaked)
    harness.call(harness.client.delete)
    assert harness.events[-1][1] == MappingDeleted(None, True, 714)
    assert fake.held == {(40123, "UDP"): other}


def test_cleanup_without_a_port_finds_its_entries_by_label() -> None:
    fake = FakeUpnp()
    ours = Held(INTERNAL, "natkit test", 7200)
    theirs = Held(INTERNAL, "natkit 0000beef", 7200)  # another run's label
    fake.held = {(1000, "UDP"): ours, (2000, "TCP"): ours, (3000, "UDP"): theirs}
    harness = upnp(fake, start=False)
    harness.call(harness.client.delete)
    assert harness.events[-1][1] == MappingDeleted(None, confirmed=True)
    assert fake.held == {(3000, "UDP"): theirs}
    deleted = [(c.external_port, c.transport.name) for _, c in fake.calls
               if c.action is UpnpAction.DELETE_PORT_MAPPING]  # fmt: skip
    assert deleted == [(1000, "UDP"), (2000, "TCP")]


def test_a_bad_description_is_never_selected() -> None:
    fake = FakeUpnp(description_body=b"<!DOCTYPE x [<!ENTITY a 'b'>]><root/>")
    harness = upnp(fake)
    [event] = harness.run_until(10)
    assert isinstance(event, MappingFailed)
    assert event.reason is FailureReason.INVALID_DESCRIPTION
    assert actions(fake) == [UpnpAction.FETCH_DESCRIPTION]


def test_late_and_foreign_answers_are_stale() -> None:
    fake = FakeUpnp()
    fake.silent.add(UpnpAction.SELECT_IGD)
    harness = upnp(fake, config=UpnpConfig(call_timeout=5.0))
    events = harness.run_until(10)
    assert [type(e) for e in events] == [MappingFailed]  # the first call timed out
    client = harness.client
    assert isinstance(client, UpnpClient)
    from natkit.portmap.upnp_calls import UpnpAnswer  # noqa: PLC0415

    client.upnp_call_completed(UpnpAnswer(2), harness.now)
    assert sum(client.dropped.values()) == 1


def test_illegal_calls_name_the_state() -> None:
    harness = upnp(FakeUpnp())
    granted(harness)
    with pytest.raises(LeaseStateError, match=r"^start\(\) is not allowed in state held$"):
        harness.client.start(harness.now)
    harness.call(harness.client.delete)
    with pytest.raises(LeaseStateError) as caught:
        harness.client.delete(harness.now)
    assert caught.value.state is ClientState.DELETED
