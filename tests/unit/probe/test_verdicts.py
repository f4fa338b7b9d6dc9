"""The decision tables, rule by rule (RFC 5780 §4.3-§4.5, RFC 4787 §4.2)."""

from __future__ import annotations

import pytest

from natkit.endpoint import Endpoint
from natkit.probe.report import FilteringBehavior, MappingBehavior, PortAllocation
from natkit.probe.verdicts import (
    CheckResult,
    filtering_from_rfc5780,
    hairpin_from_test,
    mapping_from_rfc5780,
    mapping_from_servers,
    port_allocation,
)

SEQ = PortAllocation.SEQUENTIAL
X1 = Endpoint.parse("198.51.100.1:40000")
X2 = Endpoint.parse("198.51.100.1:40001")
X3 = Endpoint.parse("198.51.100.1:40002")


@pytest.mark.parametrize(
    ("test_i", "test_ii", "test_iii", "expected"),
    [
        (X1, X1, X1, MappingBehavior.EIM),
        (X1, X1, None, MappingBehavior.EIM),  # test III is not needed once II matches
        (X1, X2, X2, MappingBehavior.ADM),
        (X1, X2, X3, MappingBehavior.APDM),
        (X1, X1, X2, MappingBehavior.UNKNOWN),  # fits no RFC 4787 behaviour: say so
        (None, X1, X1, MappingBehavior.UNKNOWN),
        (X1, None, None, MappingBehavior.UNKNOWN),
        (X1, X2, None, MappingBehavior.UNKNOWN),
    ],
)
def test_mapping_rfc5780_section_4_3(
    test_i: Endpoint | None,
    test_ii: Endpoint | None,
    test_iii: Endpoint | None,
    expected: MappingBehavior,
) -> None:
    assert mapping_from_rfc5780(test_i, test_ii, test_iii)[0] is expected


def test_mapping_without_rfc5780_needs_two_servers_and_never_guesses_adm() -> None:
    assert mapping_from_servers([X1])[0] is MappingBehavior.UNKNOWN
    assert mapping_from_servers([X1, X1])[0] is MappingBehavior.EIM
    verdict, reason = mapping_from_servers([X1, X2])
    assert verdict is MappingBehavior.UNKNOWN
    assert "RFC 5780" in reason


A, S, U = CheckResult.ANSWERED, CheckResult.SILENT, CheckResult.INCONCLUSIVE


@pytest.mark.parametrize(
    ("change_both", "change_port", "expected"),
    [
        (A, A, FilteringBehavior.EIF),
        (A, S, FilteringBehavior.EIF),
        (S, A, FilteringBehavior.ADF),
        (S, S, FilteringBehavior.APDF),
        (U, S, FilteringBehavior.UNKNOWN),
        (S, U, FilteringBehavior.UNKNOWN),
        (CheckResult.WRONG_SOURCE, S, FilteringBehavior.UNKNOWN),
        (S, CheckResult.WRONG_SOURCE, FilteringBehavior.UNKNOWN),
        (CheckResult.REFUSED, CheckResult.REFUSED, FilteringBehavior.UNKNOWN),
        (CheckResult.NOT_RUN, CheckResult.NOT_RUN, FilteringBehavior.UNKNOWN),
    ],
)
def test_filtering_rfc5780_section_4_4(
    change_both: CheckResult, change_port: CheckResult, expected: FilteringBehavior
) -> None:
    assert filtering_from_rfc5780(change_both, change_port)[0] is expected


def test_a_server_ignoring_change_request_makes_filtering_unknown() -> None:
    """The classic pystun failure: an answer from the primary address to a
    change request proves nothing about filtering."""
    verdict, reason = filtering_from_rfc5780(CheckResult.WRONG_SOURCE, CheckResult.WRONG_SOURCE)
    assert verdict is FilteringBehavior.UNKNOWN
    assert "did not honour CHANGE-REQUEST" in reason


@pytest.mark.parametrize(
    ("result", "expected"),
    [(A, True), (S, False), (U, None), (CheckResult.NOT_RUN, None)],
)
def test_hairpin(result: CheckResult, expected: bool | None) -> None:
    assert hairpin_from_test(result)[0] is expected


@pytest.mark.parametrize(
    ("samples", "expected", "delta"),
    [
        ([(5000, 5000), (6001, 6001), (7002, 7002)], PortAllocation.PRESERVING, None),
        (
            [(5000, 40000), (6001, 40001), (7002, 40002), (8000, 40003)],
            PortAllocation.SEQUENTIAL,
            1,
        ),
        # loss reorders first packets: the set is still one tight run
        (
            [(5000, 40004), (6001, 40000), (7002, 40002), (8000, 40006)],
            PortAllocation.SEQUENTIAL,
            2,
        ),
        (
            [(5000, 40000), (6001, 40001), (7002, 40005), (8000, 40006)],
            PortAllocation.SEQUENTIAL,
            1,
        ),
        ([(5000, 12345), (6001, 54321), (7002, 33333), (8000, 2222)], PortAllocation.RANDOM, None),
        ([(5000, 40000), (6001, 40001)], PortAllocation.UNKNOWN, None),
        ([(5000, 40000), (6001, 40000), (7002, 40001)], PortAllocation.UNKNOWN, None),
    ],
    ids=[
        "preserving",
        "sequential",
        "sequential-reordered",
        "sequential-gap",
        "random",
        "too-few",
        "duplicate",
    ],
)
def test_port_allocation(
    samples: list[tuple[int, int]], expected: PortAllocation, delta: int | None
) -> None:
    verdict, found_delta, _ = port_allocation(samples)
    assert verdict is expected
    assert found_delta == delta
