"""The NAT model alone (no network): RFC 4787's requirements, one by one.

Names: X = internal endpoint, Y/Z = remote endpoints, as in RFC 4787 §4.1.
"""

from __future__ import annotations

import ipaddress
import itertools
import random
from dataclasses import replace

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
from natkit.simulations.firewall import Firewall, FirewallConfig

PUBLIC = ipaddress.IPv4Address("198.51.100.1")
X = Endpoint.of("192.168.1.2", 40000)
X2 = Endpoint.of("192.168.1.3", 40000)  # another host, same port
Y1 = Endpoint.of("203.0.113.10", 3478)
Y1_OTHER_PORT = Endpoint.of("203.0.113.10", 3479)
Y2 = Endpoint.of("203.0.113.11", 3478)


def make(config: NatConfig | None = None, seed: int = 1, **changes: object) -> Nat:
    base = config if config is not None else NatConfig()
    return Nat(replace(base, **changes), PUBLIC, random.Random(seed))  # type: ignore[arg-type]


def external(nat: Nat, src: Endpoint, dst: Endpoint, now: float = 0.0) -> Endpoint:
    result = nat.outbound(src, dst, now)
    assert isinstance(result, Endpoint), result
    return result


# -- mapping behaviour (RFC 4787 §4.1) ------------------------------------------------


@pytest.mark.parametrize(
    ("mapping", "same_for_other_port", "same_for_other_address"),
    [
        (MappingBehavior.EIM, True, True),
        (MappingBehavior.ADM, True, False),
        (MappingBehavior.APDM, False, False),
    ],
)
def test_mapping_reuse_follows_the_mapping_behaviour(
    mapping: MappingBehavior, same_for_other_port: bool, same_for_other_address: bool
) -> None:
    nat = make(mapping=mapping)
    first = external(nat, X, Y1)
    assert first.address == PUBLIC
    assert external(nat, X, Y1) == first  # the very same flow always reuses
    assert (external(nat, X, Y1_OTHER_PORT) == first) is same_for_other_port
    assert (external(nat, X, Y2) == first) is same_for_other_address


def test_req1_eim_gives_one_mapping_per_internal_endpoint() -> None:
    nat = make(mapping=MappingBehavior.EIM)
    ports = {external(nat, X, Endpoint.of("203.0.113.10", p)).port for p in range(1000, 1100)}
    assert len(ports) == 1
    assert len(nat.mappings(0.0)) == 1


def test_distinct_internal_endpoints_never_share_an_external_port() -> None:
    # RFC 4787 §4.2.2: no port overloading.
    nat = make()
    assert external(nat, X, Y1) != external(nat, X2, Y1)


# -- filtering behaviour (RFC 4787 §5) -------------------------------------------------


@pytest.mark.parametrize(
    ("filtering", "from_same_endpoint", "from_other_port", "from_other_address"),
    [
        (FilteringBehavior.EIF, True, True, True),
        (FilteringBehavior.ADF, True, True, False),
        (FilteringBehavior.APDF, True, False, False),
    ],
)
def test_inbound_passes_as_the_filter_says(
    filtering: FilteringBehavior,
    from_same_endpoint: bool,
    from_other_port: bool,
    from_other_address: bool,
) -> None:
    nat = make(filtering=filtering)
    mapped = external(nat, X, Y1)
    for remote, admitted in [
        (Y1, from_same_endpoint),
        (Y1_OTHER_PORT, from_other_port),
        (Y2, from_other_address),
    ]:
        result = nat.inbound(remote, mapped, 0.0)
        assert result == (X if admitted else PacketDropReason.FILTERED), remote


def test_inbound_to_an_unmapped_port_is_dropped_as_no_mapping() -> None:
    nat = make(filtering=FilteringBehavior.EIF)
    mapped = external(nat, X, Y1)
    assert nat.inbound(Y1, Endpoint(PUBLIC, mapped.port + 1), 0.0) is PacketDropReason.NO_MAPPING


def test_eim_with_apdf_admits_every_remote_the_mapping_has_sent_to() -> None:
    # Permissions accumulate on the one EIM mapping (the hole-punching case).
    nat = make(mapping=MappingBehavior.EIM, filtering=FilteringBehavior.APDF)
    mapped = external(nat, X, Y1)
    assert nat.inbound(Y2, mapped, 0.0) is PacketDropReason.FILTERED
    assert external(nat, X, Y2) == mapped
    assert nat.inbound(Y2, mapped, 0.0) == X
    assert nat.mappings(0.0)[0].permits == (Y1, Y2)


def test_apdm_mapping_admits_only_its_own_remote_under_adf() -> None:
    nat = make(mapping=MappingBehavior.APDM, filtering=FilteringBehavior.ADF)
    to_y1 = external(nat, X, Y1)
    to_y2 = external(nat, X, Y2)
    assert nat.inbound(Y1_OTHER_PORT, to_y1, 0.0) == X
    assert nat.inbound(Y1, to_y2, 0.0) is PacketDropReason.FILTERED


# -- port allocation (RFC 4787 §4.2) ------------------------------------------------------


def test_preserving_keeps_the_internal_port_when_free() -> None:
    nat = make(allocation=PortAllocation.PRESERVING)
    assert external(nat, X, Y1).port == X.port


def test_preserving_within_range_then_random_for_the_second_claimant() -> None:
    nat = make(allocation=PortAllocation.PRESERVING)
    assert external(nat, X, Y1).port == 40000
    second = external(nat, X2, Y1).port
    assert second != 40000
    assert 1024 <= second <= 65535


def test_preserving_outside_the_range_picks_inside_it() -> None:
    nat = make(allocation=PortAllocation.PRESERVING, port_range=(20000, 30000))
    assert 20000 <= external(nat, X, Y1).port <= 30000


@pytest.mark.parametrize("delta", [1, 2, 7, -1])
def test_sequential_allocation_steps_by_delta(delta: int) -> None:
    nat = make(NatConfig.symmetric(), allocation=PortAllocation.SEQUENTIAL, sequential_delta=delta)
    ports = [external(nat, X, Endpoint.of("203.0.113.10", 1000 + i)).port for i in range(20)]
    span = 65535 - 1024 + 1
    steps = {(b - a) % span for a, b in itertools.pairwise(ports)}
    assert steps == {delta % span}


def test_sequential_wraps_within_the_range_and_skips_live_ports() -> None:
    nat = make(
        NatConfig.symmetric(),
        allocation=PortAllocation.SEQUENTIAL,
        port_range=(5000, 5003),
    )
    ports = [external(nat, X, Endpoint.of("203.0.113.10", 1000 + i)).port for i in range(4)]
    assert sorted(ports) == [5000, 5001, 5002, 5003]
    assert (
        nat.outbound(X, Endpoint.of("203.0.113.10", 2000), 0.0) is PacketDropReason.PORTS_EXHAUSTED
    )


def test_sequential_with_a_delta_sharing_a_factor_with_the_range_still_fills_it() -> None:
    # Span 4, delta 2: the stepped walk visits two ports, then any free one is taken.
    nat = make(
        NatConfig.symmetric(),
        allocation=PortAllocation.SEQUENTIAL,
        sequential_delta=2,
        port_range=(5000, 5003),
    )
    ports = [external(nat, X, Endpoint.of("203.0.113.10", 1000 + i)).port for i in range(4)]
    assert sorted(ports) == [5000, 5001, 5002, 5003]
    assert (ports[1] - ports[0]) % 4 == 2


def test_random_allocation_is_uniformish_in_range_and_seed_determined() -> None:
    def ports(seed: int) -> list[int]:
        nat = make(NatConfig.symmetric(), seed=seed, port_range=(10000, 19999))
        return [external(nat, X, Endpoint.of("203.0.113.10", 1000 + i)).port for i in range(500)]

    sample = ports(3)
    assert all(10000 <= p <= 19999 for p in sample)
    assert len(set(sample)) == 500
    # Four equal bins each get roughly a quarter (expected 125, sd ~10).
    bins = [sum(1 for p in sample if 10000 + 2500 * i <= p < 12500 + 2500 * i) for i in range(4)]
    assert all(90 <= b <= 160 for b in bins), bins
    assert ports(3) == sample
    assert ports(4) != sample


# -- timers (RFC 4787 §4.3) -----------------------------------------------------------------


def test_req5_mapping_expires_after_the_timeout_without_traffic() -> None:
    nat = make(filtering=FilteringBehavior.EIF, mapping_timeout=120.0)
    mapped = external(nat, X, Y1, now=0.0)
    assert nat.inbound(Y1, mapped, 119.9) == X
    assert nat.inbound(Y1, mapped, 120.0) is PacketDropReason.NO_MAPPING
    assert nat.mappings(120.0) == ()


def test_req6_outbound_traffic_refreshes_the_mapping() -> None:
    nat = make(mapping_timeout=30.0)
    mapped = external(nat, X, Y1, now=0.0)
    assert external(nat, X, Y1, now=25.0) == mapped
    assert nat.inbound(Y1, mapped, 50.0) == X  # 25 s after the refresh
    assert nat.mappings(50.0)[0].expires == 55.0


def test_inbound_traffic_refreshes_only_when_configured() -> None:
    for inbound_refresh, alive_at_50 in [(False, False), (True, True)]:
        nat = make(
            filtering=FilteringBehavior.EIF, mapping_timeout=30.0, inbound_refresh=inbound_refresh
        )
        mapped = external(nat, X, Y1, now=0.0)
        assert nat.inbound(Y1, mapped, 25.0) == X
        assert (nat.inbound(Y1, mapped, 50.0) == X) is alive_at_50


def test_each_permission_has_its_own_timer() -> None:
    nat = make(filtering=FilteringBehavior.APDF, mapping_timeout=30.0)
    mapped = external(nat, X, Y1, now=0.0)
    assert external(nat, X, Y2, now=20.0) == mapped  # keeps the mapping alive
    assert nat.inbound(Y2, mapped, 40.0) == X
    assert nat.inbound(Y1, mapped, 40.0) is PacketDropReason.FILTERED  # Y1's permission is stale


def test_a_new_mapping_after_expiry_may_get_a_new_port() -> None:
    nat = make(NatConfig.symmetric(), mapping_timeout=10.0)
    first = external(nat, X, Y1, now=0.0)
    second = external(nat, X, Y1, now=11.0)
    assert first != second
    assert nat.created == 2


def test_mapping_table_cap() -> None:
    nat = make(NatConfig.symmetric(), max_mappings=2, mapping_timeout=10.0)
    external(nat, X, Y1, now=0.0)
    external(nat, X, Y2, now=1.0)
    assert nat.outbound(X, Y1_OTHER_PORT, 2.0) is PacketDropReason.TABLE_FULL
    external(nat, X, Y1_OTHER_PORT, now=10.5)  # the first mapping has expired
    assert len(nat.mappings(10.5)) == 2


# -- hairpinning (RFC 4787 §6) ---------------------------------------------------------------


def test_hairpin_disabled_drops() -> None:
    nat = make(filtering=FilteringBehavior.EIF)
    target = external(nat, X, Y1)
    assert nat.hairpin(X2, target, 0.0) is PacketDropReason.HAIRPIN_DISABLED


def test_req9_hairpin_translates_the_source_to_the_senders_external_endpoint() -> None:
    nat = make(filtering=FilteringBehavior.EIF, hairpinning=True)
    target = external(nat, X, Y1)
    result = nat.hairpin(X2, target, 0.0)
    assert isinstance(result, tuple)
    source, destination = result
    assert destination == X
    assert source.address == PUBLIC
    assert source == external(nat, X2, Y1)  # EIM: the same mapping X2 uses everywhere


def test_hairpin_is_filtered_like_any_inbound_datagram() -> None:
    nat = make(filtering=FilteringBehavior.APDF, hairpinning=True)
    target = external(nat, X, Y1)
    assert nat.hairpin(X2, target, 0.0) is PacketDropReason.FILTERED
    sender = external(nat, X2, Y1)
    external(nat, X, sender)  # X opens a permission for X2's external endpoint
    assert nat.hairpin(X2, target, 0.0) == (sender, X)


# -- blocking, firewall, configuration --------------------------------------------------------


def test_udp_blocked_drops_both_ways() -> None:
    nat = make(udp_blocked=True)
    assert nat.outbound(X, Y1, 0.0) is PacketDropReason.UDP_BLOCKED
    assert nat.inbound(Y1, Endpoint(PUBLIC, 40000), 0.0) is PacketDropReason.UDP_BLOCKED


@pytest.mark.parametrize(
    ("filtering", "from_other_port", "from_other_address"),
    [
        (FilteringBehavior.EIF, True, True),
        (FilteringBehavior.ADF, True, False),
        (FilteringBehavior.APDF, False, False),
    ],
)
def test_firewall_filters_without_translating(
    filtering: FilteringBehavior, from_other_port: bool, from_other_address: bool
) -> None:
    inside = Endpoint.of("198.51.100.2", 5000)
    fw = Firewall(FirewallConfig(filtering=filtering, timeout=30.0))
    assert fw.inbound(Y1, inside, 0.0) is PacketDropReason.FILTERED  # nothing sent yet
    assert fw.outbound(inside, Y1, 0.0) is None
    assert fw.inbound(Y1, inside, 1.0) is None
    assert (fw.inbound(Y1_OTHER_PORT, inside, 1.0) is None) is from_other_port
    assert (fw.inbound(Y2, inside, 1.0) is None) is from_other_address
    assert fw.inbound(Y1, inside, 30.0) is PacketDropReason.FILTERED  # timed out


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"port_range": (0, 10)}, "bad port range"),
        ({"port_range": (2000, 1000)}, "bad port range"),
        ({"sequential_delta": 0}, "sequential_delta must not be 0"),
        ({"mapping_timeout": 0.0}, "mapping_timeout must be > 0"),
        ({"max_mappings": 0}, "max_mappings must be >= 1"),
    ],
)
def test_impossible_configurations_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(SimulationError, match=message):
        replace(NatConfig(), **changes)  # type: ignore[arg-type]


def test_presets_and_labels() -> None:
    assert NatConfig().label == "EIM/APDF/preserving"
    assert NatConfig.full_cone().label == "EIM/EIF/preserving"
    assert NatConfig.restricted_cone().label == "EIM/ADF/preserving"
    assert NatConfig.port_restricted_cone().label == "EIM/APDF/preserving"
    assert NatConfig.symmetric().label == "APDM/APDF/random"
