"""The NAT's two extras: shared ports (Linux-style APDM) and static mappings (PCP/UPnP).

Names as in test_sim_nat_model.py: X = internal endpoint, Y/Z = remotes.
"""

from __future__ import annotations

import ipaddress
import math
import random

import pytest

from natkit.endpoint import Endpoint
from natkit.simulations import (
    FilteringBehavior,
    MappingBehavior,
    Nat,
    NatConfig,
    PacketDropReason,
    PortAllocation,
    SimulationError,
)

PUBLIC = ipaddress.IPv4Address("198.51.100.1")
X = Endpoint.of("192.168.1.2", 40000)
X2 = Endpoint.of("192.168.1.3", 40000)
Y = Endpoint.of("203.0.113.10", 3478)
Z = Endpoint.of("203.0.113.11", 3478)

SHARING = NatConfig(
    MappingBehavior.APDM,
    FilteringBehavior.APDF,
    PortAllocation.RANDOM,
    port_range=(5000, 5003),
    port_sharing=True,
)


def external(nat: Nat, src: Endpoint, dst: Endpoint, now: float = 0.0) -> Endpoint:
    result = nat.outbound(src, dst, now)
    assert isinstance(result, Endpoint), result
    return result


# -- port sharing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mapping", "filtering"),
    [
        (MappingBehavior.EIM, FilteringBehavior.APDF),
        (MappingBehavior.ADM, FilteringBehavior.APDF),
        (MappingBehavior.APDM, FilteringBehavior.ADF),
        (MappingBehavior.APDM, FilteringBehavior.EIF),
    ],
)
def test_port_sharing_needs_apdm_and_apdf(
    mapping: MappingBehavior, filtering: FilteringBehavior
) -> None:
    with pytest.raises(SimulationError, match="port_sharing needs APDM mapping and APDF"):
        NatConfig(mapping, filtering, port_sharing=True)


def test_shared_ports_hold_more_mappings_than_the_range_has_ports() -> None:
    nat = Nat(SHARING, PUBLIC, random.Random(1))
    remotes = [Endpoint.of("203.0.113.10", 3000 + i) for i in range(3)]
    sockets = [Endpoint.of("192.168.1.2", 40000 + i) for i in range(4)]
    seen: dict[Endpoint, set[int]] = {}
    for remote in remotes:
        for sock in sockets:
            seen.setdefault(remote, set()).add(external(nat, sock, remote).port)
    # 12 mappings on 4 ports; toward any one remote, the 4 sockets never share one.
    assert len(nat.mappings(0.0)) == 12
    assert all(ports == {5000, 5001, 5002, 5003} for ports in seen.values())
    assert nat.outbound(Endpoint.of("192.168.1.2", 40004), remotes[0], 0.0) is (
        PacketDropReason.PORTS_EXHAUSTED
    )


def test_a_shared_port_is_told_apart_by_the_source() -> None:
    nat = Nat(SHARING, PUBLIC, random.Random(2))
    to_y = external(nat, X, Y)
    # Find a second mapping, from another host to another remote, on the same port.
    port = to_y.port
    other = next(
        sock
        for sock in (Endpoint.of("192.168.1.3", 40000 + i) for i in range(100))
        if external(nat, sock, Z).port == port
    )
    assert nat.inbound(Y, to_y, 1.0) == X
    assert nat.inbound(Z, to_y, 1.0) == other
    stranger = Endpoint.of("203.0.113.12", 3478)
    # No 5-tuple matches: the NAT has no mapping for it at all.
    assert nat.inbound(stranger, to_y, 1.0) is PacketDropReason.NO_MAPPING


def test_shared_mappings_time_out_and_free_their_port_for_that_remote() -> None:
    config = NatConfig(
        MappingBehavior.APDM,
        FilteringBehavior.APDF,
        PortAllocation.RANDOM,
        port_range=(5000, 5000),
        port_sharing=True,
        mapping_timeout=10.0,
    )
    nat = Nat(config, PUBLIC, random.Random(3))
    assert external(nat, X, Y).port == 5000
    assert external(nat, X2, Z).port == 5000
    assert nat.outbound(X2, Y, 1.0) is PacketDropReason.PORTS_EXHAUSTED
    assert nat.inbound(Y, Endpoint(PUBLIC, 5000), 10.0) is PacketDropReason.NO_MAPPING
    assert external(nat, X2, Y, 10.0).port == 5000
    assert nat.inbound(Y, Endpoint(PUBLIC, 5000), 10.5) == X2


def test_sharing_keeps_the_label_honest() -> None:
    assert SHARING.label == "APDM/APDF/random/shared"
    assert NatConfig.symmetric().label == "APDM/APDF/random"


# -- static mappings ------------------------------------------------------------------


@pytest.mark.parametrize(
    "config", [NatConfig.symmetric(), NatConfig.port_restricted_cone(), SHARING], ids=str
)
def test_a_static_mapping_is_eim_and_eif_and_never_expires(config: NatConfig) -> None:
    nat = Nat(config, PUBLIC, random.Random(4))
    mapped = nat.add_static_mapping(X, None, 0.0)
    assert config.port_range[0] <= mapped.port <= config.port_range[1]
    later = 10 * config.mapping_timeout
    # EIM: the same external endpoint toward everyone, at any time.
    assert external(nat, X, Y) == mapped
    assert external(nat, X, Z, later) == mapped
    # EIF: anyone may send to it, having been sent nothing.
    stranger = Endpoint.of("203.0.113.99", 9)
    assert nat.inbound(stranger, mapped, later) == X
    (view,) = (v for v in nat.mappings(later) if v.external == mapped)
    assert view.expires == math.inf
    assert view.internal == X


def test_a_static_mapping_takes_the_port_asked_for_unless_it_is_busy() -> None:
    nat = Nat(NatConfig.symmetric(), PUBLIC, random.Random(5))
    assert nat.add_static_mapping(X, 6000, 0.0) == Endpoint(PUBLIC, 6000)
    with pytest.raises(SimulationError, match="already has a static mapping"):
        nat.add_static_mapping(X, 6001, 0.0)
    with pytest.raises(SimulationError, match="port 6000 is in use"):
        nat.add_static_mapping(X2, 6000, 0.0)
    busy = external(nat, X2, Y).port
    with pytest.raises(SimulationError, match=f"port {busy} is in use"):
        nat.add_static_mapping(Endpoint.of("192.168.1.4", 1), busy, 0.0)


def test_a_static_mapping_never_shares_its_port() -> None:
    config = NatConfig(
        MappingBehavior.APDM,
        FilteringBehavior.APDF,
        PortAllocation.RANDOM,
        port_range=(5000, 5001),
        port_sharing=True,
    )
    nat = Nat(config, PUBLIC, random.Random(6))
    shared = external(nat, X2, Y).port
    with pytest.raises(SimulationError, match="in use"):
        nat.add_static_mapping(X, shared, 0.0)
    fixed = nat.add_static_mapping(X, None, 0.0)
    assert fixed.port != shared
    # Dynamic mappings keep off the static port, even toward new remotes.
    assert external(nat, X2, Z).port == shared
    assert nat.outbound(Endpoint.of("192.168.1.4", 1), Y, 0.0) is PacketDropReason.PORTS_EXHAUSTED
