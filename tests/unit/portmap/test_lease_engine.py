"""The lease engine's explicit states: the table, illegal calls raising with
the state named, backoff of repeated errors, probes, and what a deletion
says about a gateway that never answered."""

from __future__ import annotations

import random

import pytest
from portmap_testlib import GATEWAY, INTERNAL, FakeGateway, Harness

from natkit.errors import LocalProtocolError
from natkit.portmap.events import ExternalAddressFound, MappingDeleted, MappingFailed
from natkit.portmap.lease_state import (
    ALLOWED_CALLS,
    FINISHED,
    TRANSITIONS,
    ClientState,
    LeaseCall,
    LeaseStateError,
)
from natkit.portmap.mapping import MappingProtocol
from natkit.portmap.pcp import ResultCode
from natkit.portmap.pcp_client import PcpClient
from natkit.portmap.pmp import PmpResultCode
from natkit.portmap.pmp_client import PmpClient, PmpConfig


def pcp(gateway: FakeGateway | None = None, **kwargs: object) -> Harness:
    client = PcpClient(GATEWAY, INTERNAL, 0.0, rng=random.Random(7), **kwargs)  # type: ignore[arg-type]
    return Harness(client, gateway or FakeGateway())


def test_the_table_is_closed() -> None:
    assert set(TRANSITIONS) == set(ClientState)
    assert all(not TRANSITIONS[state] for state in FINISHED)
    for call, states in ALLOWED_CALLS.items():
        assert not states & FINISHED, call


@pytest.mark.parametrize(
    ("setup", "call", "state"),
    [
        ("held", LeaseCall.START, ClientState.HELD),
        ("failed", LeaseCall.START, ClientState.FAILED),
        ("deleting", LeaseCall.DELETE, ClientState.DELETING),
        ("deleted", LeaseCall.DELETE, ClientState.DELETED),
        ("deleted", LeaseCall.REVALIDATE, ClientState.DELETED),
        ("idle", LeaseCall.REVALIDATE, ClientState.IDLE),
        ("deleting", LeaseCall.REVALIDATE, ClientState.DELETING),
    ],
)
def test_illegal_calls_raise_naming_the_state(
    setup: str, call: LeaseCall, state: ClientState
) -> None:
    gateway = FakeGateway(pcp=setup != "failed")
    harness = pcp(gateway, start=setup != "idle")
    harness.run_until(1)
    if setup in ("deleting", "deleted"):
        gateway.silent = setup == "deleting"
        harness.call(harness.client.delete)
    client = harness.client
    assert client.state is state
    method = {
        LeaseCall.START: client.start,
        LeaseCall.DELETE: client.delete,
        LeaseCall.REVALIDATE: client.revalidate,
    }[call]
    with pytest.raises(LeaseStateError) as caught:
        method(harness.now)
    assert isinstance(caught.value, LocalProtocolError)
    assert caught.value.state is state
    assert caught.value.attempted is call
    assert str(caught.value) == f"{call.value}() is not allowed in state {state.value}"


def test_pcp_has_no_probe_and_start_with_probe_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="pcp has no probe"):
        PcpClient(GATEWAY, INTERNAL, 0.0, start=False).probe(0.0)
    with pytest.raises(LocalProtocolError, match="probe first"):
        PmpClient(GATEWAY, INTERNAL, 0.0, start=True, probe=True)


def test_a_nat_pmp_probe_creates_nothing_then_maps_without_asking_again() -> None:
    gateway = FakeGateway()
    probe = PmpClient(GATEWAY, INTERNAL, 0.0, start=False, probe=True)
    harness = Harness(probe, gateway)
    assert probe.state is ClientState.PROBING
    [found] = harness.run_until(1)
    assert found == ExternalAddressFound(MappingProtocol.NAT_PMP, gateway.external, 100)
    assert probe.state is ClientState.IDLE
    assert gateway.counters["pmp_address"] == 1
    assert not gateway.leases
    harness.call(probe.start)
    assert probe.state is ClientState.HELD
    assert gateway.counters["pmp_address"] == 1  # the probe's answer was used
    # A probe ended early deletes nothing: nothing was asked for.
    idle = PmpClient(GATEWAY, INTERNAL, 0.0, start=False, probe=True)
    idle.delete(0.5)
    assert idle.next_event() == MappingDeleted(None, confirmed=True)
    assert idle.datagrams_to_send(0.5)[0].data == b"\x00\x00"  # only the probe went out


def test_a_refused_probe_is_final() -> None:
    gateway = FakeGateway()
    gateway.silent = True
    harness = Harness(PmpClient(GATEWAY, INTERNAL, 0.0, start=False, probe=True), gateway)
    from portmap_testlib import pmp_address_response  # noqa: PLC0415

    harness.deliver(pmp_address_response(epoch=5, result=PmpResultCode.NETWORK_FAILURE))
    [(_, event)] = harness.of_type(MappingFailed)
    assert isinstance(event, MappingFailed)
    assert event.terminal  # a probe does not retry: its caller decides
    assert harness.client.state is ClientState.FAILED


@pytest.mark.parametrize("kind", ["pcp", "pmp"])
def test_repeated_transient_errors_back_off(kind: str) -> None:
    gateway = FakeGateway()
    if kind == "pcp":
        gateway.errors = [(ResultCode.NO_RESOURCES, 30)] * 20
        harness = pcp(gateway)
    else:
        gateway.errors = [(PmpResultCode.OUT_OF_RESOURCES, 0)] * 20
        harness = Harness(PmpClient(GATEWAY, INTERNAL, 0.0, config=PmpConfig()), gateway)
    harness.run_until(5000)
    retries = [e.retry_at - t for t, e in harness.of_type(MappingFailed)]  # type: ignore[union-attr]
    assert retries[:6] == [30, 60, 120, 240, 480, 960]
    assert set(retries[6:]) == {1024}


def test_an_unanswered_deletion_says_whether_the_gateway_ever_answered() -> None:
    silent = FakeGateway()
    silent.silent = True
    harness = pcp(silent)
    harness.run_until(20)
    harness.call(harness.client.delete)
    harness.run_until(100)
    deleted = harness.events[-1][1]
    assert deleted == MappingDeleted(None, confirmed=False, gateway_answered=False)
    assert isinstance(deleted, MappingDeleted)
    assert not deleted.may_linger
    # A gateway that answered before and then went silent may hold it still.
    gateway = FakeGateway()
    harness = pcp(gateway)
    mapping = harness.run_until(1)[0].mapping  # type: ignore[union-attr]
    gateway.silent = True
    harness.call(harness.client.delete)
    harness.run_until(100)
    deleted = harness.events[-1][1]
    assert deleted == MappingDeleted(mapping, confirmed=False)
    assert isinstance(deleted, MappingDeleted)
    assert deleted.may_linger
