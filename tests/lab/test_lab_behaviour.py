"""Each scenario's NAT really behaves as its expectation claims.

Two independent witnesses, neither of them natkit's classifier:

(a) raw UDP sockets on both sides of the NAT (``natkit.lab.oracle``): the
    peer host sees the external endpoints directly, so mapping, filtering,
    port allocation and hairpinning are read off, not inferred;
(b) coturn's RFC 5780 client, ``turnutils_natdiscovery``, run in the client
    namespace against coturn on the lab's internet.
"""

from __future__ import annotations

import pytest
from peer_tools import natdiscovery, parse_verdicts

from natkit.lab import (
    FilteringBehavior,
    Lab,
    MappingBehavior,
    PortAllocation,
)
from natkit.lab.nat import RANDOM_PORT_RANGE, SEQUENTIAL_BASE_PORT, SEQUENTIAL_PORTS
from natkit.lab.oracle import Observation, observe, observe_tcp
from natkit.lab.servers import stun_answers

pytestmark = pytest.mark.lab

_observations: dict[str, Observation] = {}


@pytest.fixture
def seen(lab: Lab) -> Observation:
    """The raw-socket observation of ``lab``, made once per scenario and worker."""
    name = lab.scenario.name
    if name not in _observations:
        _observations[name] = observe(lab)
    return _observations[name]


# ----------------------------------------------------------- (a) raw sockets


def test_whole_classification_matches(lab: Lab, seen: Observation) -> None:
    tcp_source = observe_tcp(lab) if lab.scenario.expected.udp_blocked else None
    assert seen.classification(tcp_source) == lab.scenario.expected, seen


def test_mapping(lab: Lab, seen: Observation) -> None:
    expected = lab.scenario.expected
    if expected.udp_blocked:
        assert seen.mapped_same is None
        return
    same, port, addr = seen.mapped_same, seen.mapped_port, seen.mapped_addr
    assert same is not None
    assert port is not None
    assert addr is not None
    assert {same.address, port.address, addr.address} == {lab.public_address}
    if expected.mapping is MappingBehavior.EIM:
        assert same == port == addr
    elif expected.mapping is MappingBehavior.ADM:
        assert same == port != addr
    else:
        assert expected.mapping is MappingBehavior.APDM
        assert len({same, port, addr}) == 3


_ADMITTED = {
    FilteringBehavior.EIF: {"same", "port", "addr"},
    FilteringBehavior.ADF: {"same", "port"},
    FilteringBehavior.APDF: {"same"},
    FilteringBehavior.UNKNOWN: set(),
}


def test_filtering(lab: Lab, seen: Observation) -> None:
    assert seen.filtering_delivered == _ADMITTED[lab.scenario.expected.filtering]


def test_port_allocation(lab: Lab, seen: Observation) -> None:
    allocation = lab.scenario.expected.port_allocation
    pairs = seen.allocations
    outside = [o for _, o in pairs]
    if allocation is PortAllocation.UNKNOWN:
        assert pairs == ()
    elif allocation is PortAllocation.PRESERVING:
        assert all(i == o for i, o in pairs), pairs
    elif allocation is PortAllocation.SEQUENTIAL:
        assert len(pairs) == 5  # three destinations of one socket, two fresh sockets
        base = SEQUENTIAL_BASE_PORT
        assert outside == list(range(outside[0], outside[0] + 5))
        assert base <= outside[0]
        assert outside[-1] < base + SEQUENTIAL_PORTS
    else:
        assert allocation is PortAllocation.RANDOM
        assert not any(i == o for i, o in pairs), pairs
        assert len(set(outside)) == len(outside)
        if lab.scenario.name == "eim-random-ports":
            low, high = RANDOM_PORT_RANGE
            assert all(low <= o <= high for o in outside), outside


def test_hairpin(lab: Lab, seen: Observation) -> None:
    assert seen.hairpin_delivered is lab.scenario.expected.hairpin
    if seen.hairpin_delivered:
        # Looped back with the public address as source, like a real hairpin.
        assert seen.hairpin_source is not None
        assert seen.hairpin_source.address == lab.public_address


def test_tcp_passes_natted(lab: Lab) -> None:
    """TCP gets through every scenario (also udp-blocked), from the public address."""
    source = observe_tcp(lab)
    assert source is not None
    assert source.address == lab.public_address


def test_stun_servers_answer_from_client(lab: Lab) -> None:
    assert lab.stun_servers, "pooled labs run at least coturn"
    for name, addresses in lab.stun_servers.items():
        answered = stun_answers(lab.client_namespace, addresses.all(), timeout=1.0)
        assert answered is not lab.scenario.expected.udp_blocked, name


# ------------------------------------------------ (b) turnutils_natdiscovery


def test_parse_verdicts() -> None:
    text = (
        "NAT with Endpoint Independent Mapping!\n====\n"
        "NAT with Address and Port Dependent Filtering!\n"
    )
    assert parse_verdicts(text) == {"Mapping": "EIM", "Filtering": "APDF"}
    assert parse_verdicts("NAT with Address Dependent Filtering!") == {"Filtering": "ADF"}
    assert parse_verdicts("STUN receive timeout..") == {}


def test_natdiscovery_agrees(lab: Lab) -> None:
    if "coturn" not in lab.stun_servers:
        pytest.skip("pooled labs run without coturn (NATKIT_LAB_SERVERS)")
    output = natdiscovery(lab, lab.stun_servers["coturn"].primary, "-m", "-f")
    verdicts = parse_verdicts(output)
    expected = lab.scenario.expected
    if expected.udp_blocked:
        assert verdicts == {}, output
    else:
        # natdiscovery has no "no NAT" verdict: an open host reads as EIM + EIF.
        want = {"Mapping": expected.mapping.value, "Filtering": expected.filtering.value}
        assert verdicts == want, output


@pytest.mark.scenarios("eim-apdf-hairpin", "eim-apdf")
def test_natdiscovery_hairpin(lab: Lab) -> None:
    if "coturn" not in lab.stun_servers:
        pytest.skip("pooled labs run without coturn (NATKIT_LAB_SERVERS)")
    output = natdiscovery(lab, lab.stun_servers["coturn"].primary, "-H")
    assert ("successful hairpinning" in output) is lab.scenario.expected.hairpin, output
