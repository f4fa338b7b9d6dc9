"""The hop probe's pure parts: reading a path for NAT layers, the verdicts
``nat_layering`` draws from it, and the per-TTL schedule."""

from __future__ import annotations

import ipaddress

import pytest

from natkit.addresses import AddressKind, address_kind, is_public, is_shared
from natkit.endpoint import Endpoint
from natkit.probe.hop_trace import HopPacing, HopProbe, HopTrace
from natkit.probe.hops import (
    Hop,
    HopReply,
    Tier,
    describe_path,
    path_evidence,
)
from natkit.probe.layering import nat_layering

ip = ipaddress.ip_address
SERVER = Endpoint.parse("203.0.113.10:3478")
LOCAL = [ip("192.168.1.2")]
MAPPED = [("203.0.113.10:3478", Endpoint.parse("198.51.100.1:40000"))]


def router(ttl: int, address: str) -> Hop:
    return Hop(ttl, HopReply.TIME_EXCEEDED, ip(address))


def server(ttl: int) -> Hop:
    return Hop(ttl, HopReply.DESTINATION, SERVER.address)


def silent(ttl: int) -> Hop:
    return Hop(ttl, HopReply.NONE)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("192.168.1.1", AddressKind.PRIVATE),
        ("10.1.2.3", AddressKind.PRIVATE),
        ("172.31.0.1", AddressKind.PRIVATE),
        ("100.64.0.1", AddressKind.SHARED),
        ("100.127.255.254", AddressKind.SHARED),
        ("100.128.0.1", AddressKind.PUBLIC),
        ("203.0.113.10", AddressKind.PUBLIC),  # RFC 5737: the lab's internet
        ("8.8.8.8", AddressKind.PUBLIC),
        ("169.254.1.1", AddressKind.OTHER),
        ("fd00::1", AddressKind.PRIVATE),
        ("2001:4860::1", AddressKind.PUBLIC),
        ("fe80::1", AddressKind.OTHER),
        ("127.0.0.1", AddressKind.OTHER),
        ("198.18.0.1", AddressKind.OTHER),  # RFC 2544 benchmarking
    ],
)
def test_address_kinds(address: str, kind: AddressKind) -> None:
    assert address_kind(ip(address)) is kind
    assert is_shared(ip(address)) is (kind is AddressKind.SHARED)
    assert is_public(ip(address)) is (kind is AddressKind.PUBLIC)


# -- reading a path ----------------------------------------------------------------------------


def test_cgnat_path_two_tiers_and_a_shared_router() -> None:
    hops = [router(1, "192.168.1.1"), router(2, "100.64.0.1"), server(3)]
    evidence = path_evidence(hops, origin=ip("192.168.1.2"))
    assert evidence.shared_router == hops[1]
    assert evidence.tiers == (Tier(ip("192.168.1.2"), None), Tier(ip("100.64.0.1"), 2))
    assert evidence.same_tier == ()
    assert evidence.whole_path == (hops[0], hops[1])


def test_hops_after_the_first_public_one_do_not_count() -> None:
    # An ISP numbering its core links privately is no NAT of ours.
    hops = [router(1, "192.168.1.1"), router(2, "198.51.100.254"), router(3, "100.64.9.9")]
    evidence = path_evidence(hops, origin=ip("192.168.1.2"))
    assert evidence.shared_router is None
    assert len(evidence.tiers) == 1
    assert evidence.whole_path is None  # the server never answered


def test_two_routers_in_one_block_are_one_tier() -> None:
    hops = [router(1, "192.168.1.1"), router(2, "192.168.0.1"), router(3, "198.51.100.254")]
    evidence = path_evidence(hops, origin=ip("192.168.1.2"))
    assert len(evidence.tiers) == 1
    assert evidence.same_tier == (hops[1],)


def test_a_gap_breaks_the_whole_path_but_not_the_tiers() -> None:
    hops = [router(1, "192.168.1.1"), silent(2), router(3, "10.0.0.1"), server(4)]
    evidence = path_evidence(hops, origin=ip("192.168.1.2"))
    assert evidence.whole_path is None
    assert [t.address for t in evidence.tiers] == [ip("192.168.1.2"), ip("10.0.0.1")]


def test_describe_path() -> None:
    hops = [router(1, "192.168.1.1"), silent(2), server(3)]
    assert describe_path(hops) == (
        "TTL 1 192.168.1.1 (private), TTL 2 no answer, TTL 3 203.0.113.10 (public, the server)"
    )


# -- the verdicts ------------------------------------------------------------------------------


def test_shared_router_means_cgnat_and_two_tiers_double_nat() -> None:
    hops = [router(1, "192.168.1.1"), router(2, "100.64.0.1"), server(3)]
    verdict = nat_layering(local=LOCAL, mapped=MAPPED, hops=hops)
    assert verdict.cgnat is True
    assert "100.64.0.1" in verdict.cgnat_reason
    assert "RFC 6598" in verdict.cgnat_reason
    assert verdict.double_nat is True
    assert "192.168.1.2" in verdict.double_nat_reason
    assert "100.64.0.1" in verdict.double_nat_reason


def test_a_whole_path_with_one_router_is_one_nat() -> None:
    verdict = nat_layering(local=LOCAL, mapped=MAPPED, hops=[router(1, "192.168.1.1"), server(2)])
    assert (verdict.cgnat, verdict.double_nat) == (False, False)
    assert "192.168.1.1" in verdict.cgnat_reason


def test_a_silent_nat_leaves_it_unknown() -> None:
    # The carrier NAT sends no Time Exceeded: never guess it away.
    hops = [router(1, "192.168.1.1"), silent(2), server(3)]
    verdict = nat_layering(local=LOCAL, mapped=MAPPED, hops=hops)
    assert (verdict.cgnat, verdict.double_nat) == (None, None)
    assert "TTL 2 no answer" in verdict.cgnat_reason


def test_two_private_tiers_without_shared_space_are_double_nat_only() -> None:
    hops = [router(1, "192.168.1.1"), router(2, "10.0.0.1"), server(3)]
    verdict = nat_layering(local=LOCAL, mapped=MAPPED, hops=hops)
    assert verdict.cgnat is None
    assert verdict.double_nat is True


def test_routers_in_one_private_block_say_nothing() -> None:
    hops = [router(1, "192.168.1.1"), router(2, "192.168.0.1"), server(3)]
    verdict = nat_layering(local=LOCAL, mapped=MAPPED, hops=hops)
    assert verdict.double_nat is None
    assert "192.168.0.1" in verdict.double_nat_reason


def test_private_routers_say_nothing_when_there_is_no_nat() -> None:
    mapped = [("s", Endpoint.parse("198.51.100.50:4000"))]
    hops = [router(1, "10.0.0.1"), router(2, "100.64.0.1"), server(3)]
    verdict = nat_layering(local=[ip("198.51.100.50")], mapped=mapped, hops=hops)
    assert (verdict.cgnat, verdict.double_nat) == (False, False)
    assert verdict.cgnat_reason.startswith("no NAT")


def test_the_gateway_evidence_still_comes_first() -> None:
    hops = [router(1, "192.168.1.1"), server(2)]
    verdict = nat_layering(local=LOCAL, mapped=MAPPED, gateway_external=ip("100.64.0.2"), hops=hops)
    assert verdict.cgnat is True
    assert "reports external address 100.64.0.2" in verdict.cgnat_reason


def test_without_hops_nothing_changes() -> None:
    verdict = nat_layering(local=LOCAL, mapped=MAPPED)
    assert (verdict.cgnat, verdict.double_nat) == (None, None)
    assert "path" not in verdict.cgnat_reason


# -- the schedule ------------------------------------------------------------------------------

PACING = HopPacing(interval=0.015, window=0.015)


def always(probe: HopProbe) -> bool:
    return True


def send_due(trace: HopTrace, now: float) -> list[int]:
    due = trace.due(now, PACING, always)
    for probe in due:
        trace.sent(probe, now)
    return [probe.ttl for probe in due]


def test_all_ttls_go_at_once_and_an_answer_is_not_retried() -> None:
    trace = HopTrace(SERVER, [3, 4, 5, 6], max_attempts=2)
    assert send_due(trace, 0.0) == [1, 2, 3, 4]
    trace.record(trace.probes[0], router(1, "192.168.1.1"))
    trace.record(trace.probes[1], server(2))
    trace.record(trace.probes[2], server(3))
    # TTLs past the server are not needed: nothing to retry, nothing to wait for.
    assert send_due(trace, 0.016) == []
    assert trace.done
    assert trace.hops() == (router(1, "192.168.1.1"), server(2))


def test_a_silent_ttl_gets_its_attempts_then_a_window() -> None:
    trace = HopTrace(SERVER, [3, 4], max_attempts=2)
    send_due(trace, 0.0)
    trace.record(trace.probes[1], server(2))
    assert send_due(trace, 0.010) == []  # not lost yet
    assert list(trace.wakeups()) == [0.015]
    assert send_due(trace, 0.015) == [1]
    assert send_due(trace, 0.029) == []
    assert not trace.done
    send_due(trace, 0.030)
    assert trace.done
    assert trace.hops() == (silent(1), server(2))


def test_the_first_public_router_ends_the_path() -> None:
    trace = HopTrace(SERVER, [3, 4, 5], max_attempts=2)
    send_due(trace, 0.0)
    trace.record(trace.probes[1], router(2, "198.51.100.254"))
    send_due(trace, 0.001)
    assert trace.probes[2].settled  # TTL 3 is past it
    assert not trace.probes[0].settled


def test_a_ttl_waits_until_ready_and_nothing_sent_is_not_probed() -> None:
    trace = HopTrace(SERVER, [3], max_attempts=2)
    assert trace.due(0.0, PACING, lambda probe: False) == []
    assert trace.hops() is None
    assert not HopTrace(SERVER, [], max_attempts=2).enabled
