"""Decision rules: observations in, verdict and reason out.

Kept as data and tiny pure functions (after h11's ``_state.py``) so each
rule can be read against the RFC and tested on its own. Nothing here
guesses: whatever the table does not cover is ``UNKNOWN`` with a reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from enum import Enum
from itertools import pairwise

from natkit.endpoint import Endpoint
from natkit.probe.report import FilteringBehavior, MappingBehavior, PortAllocation


class CheckResult(Enum):
    """A filtering or hairpin test's outcome, as the decision tables see it."""

    ANSWERED = "answered from the expected address"
    WRONG_SOURCE = "answered, but not from the address CHANGE-REQUEST asked for"
    REFUSED = "answered with an error response"
    SILENT = "conclusively unanswered"
    INCONCLUSIVE = "unanswered, but loss makes that inconclusive"
    NOT_RUN = "not run"


def mapping_from_rfc5780(
    test_i: Endpoint | None, test_ii: Endpoint | None, test_iii: Endpoint | None
) -> tuple[MappingBehavior, str]:
    """RFC 5780 §4.3: mapped addresses seen towards (primary), (alternate IP,
    primary port) and (alternate IP, alternate port), from one socket."""
    if test_i is None:
        return MappingBehavior.UNKNOWN, "test I (primary address) got no answer"
    if test_ii is None:
        return MappingBehavior.UNKNOWN, "test II (alternate address) got no answer"
    if test_i == test_ii:
        if test_iii is not None and test_iii != test_i:
            return (
                MappingBehavior.UNKNOWN,
                f"inconsistent: {test_i} towards both addresses but {test_iii} "
                "towards the alternate port",
            )
        return (
            MappingBehavior.EIM,
            f"same mapping {test_i} towards the primary and alternate address",
        )
    if test_iii is None:
        return MappingBehavior.UNKNOWN, "test III (alternate address and port) got no answer"
    if test_ii == test_iii:
        return (
            MappingBehavior.ADM,
            f"new mapping {test_ii} for the alternate address, kept for its other port",
        )
    return (
        MappingBehavior.APDM,
        f"new mappings for each destination: {test_i}, {test_ii}, {test_iii}",
    )


def mapping_from_servers(mapped: Sequence[Endpoint]) -> tuple[MappingBehavior, str]:
    """Without an RFC 5780 server: one socket's mappings towards servers on
    different addresses. Equal means EIM; different means address- or
    address-and-port-dependent, which only RFC 5780 tests can tell apart."""
    if len(mapped) < 2:
        return (
            MappingBehavior.UNKNOWN,
            "no RFC 5780 server (OTHER-ADDRESS) and fewer than two servers answered",
        )
    if len(set(mapped)) == 1:
        return MappingBehavior.EIM, f"same mapping {mapped[0]} towards {len(mapped)} servers"
    return (
        MappingBehavior.UNKNOWN,
        "mapping depends on the destination ("
        + ", ".join(str(m) for m in mapped)
        + "); telling ADM from APDM needs an RFC 5780 server",
    )


_FILTERING: dict[tuple[CheckResult, CheckResult], tuple[FilteringBehavior, str]] = {
    (CheckResult.SILENT, CheckResult.ANSWERED): (
        FilteringBehavior.ADF,
        "no answer from the alternate address; answers from the primary address's other port",
    ),
    (CheckResult.SILENT, CheckResult.SILENT): (
        FilteringBehavior.APDF,
        "no answer from the alternate address nor from the primary address's other port",
    ),
}


def filtering_from_rfc5780(
    change_both: CheckResult, change_port: CheckResult
) -> tuple[FilteringBehavior, str]:
    """RFC 5780 §4.4 test II (change IP and port) and test III (change port)."""
    if change_both is CheckResult.ANSWERED:
        return FilteringBehavior.EIF, "an answer from the alternate address and port got through"
    for result in (change_both, change_port):
        if result in (CheckResult.WRONG_SOURCE, CheckResult.REFUSED):
            return (
                FilteringBehavior.UNKNOWN,
                f"the server did not honour CHANGE-REQUEST: {result.value}",
            )
    decided = _FILTERING.get((change_both, change_port))
    if decided is not None:
        return decided
    return (
        FilteringBehavior.UNKNOWN,
        f"change IP+port test {change_both.value}; change port test {change_port.value}",
    )


def hairpin_from_test(result: CheckResult) -> tuple[bool | None, str]:
    """RFC 5780 §4.5 (hairpinning): did our request to our own mapped address come back?"""
    if result is CheckResult.ANSWERED:
        return True, "a request sent to our own mapped address came back"
    if result is CheckResult.SILENT:
        return False, "a request sent to our own mapped address never came back"
    return None, f"hairpin test {result.value}"


#: Largest step between consecutive allocations still called "sequential".
SEQUENTIAL_MAX_DELTA = 16
#: Gaps up to this many steps are tolerated (other hosts' traffic interleaves).
SEQUENTIAL_MAX_SKIP = 8
#: Fewer samples than this cannot show a pattern.
MIN_ALLOCATION_SAMPLES = 3


def port_allocation(
    samples: Sequence[tuple[int, int]],
) -> tuple[PortAllocation, int | None, str]:
    """Allocation pattern from (local port, mapped port) pairs of distinct
    sockets' first packets towards one destination.

    Order-free on purpose: loss reorders which packet reaches the NAT first,
    but a sequential allocator still hands out one tight arithmetic run.
    """
    if len(samples) < MIN_ALLOCATION_SAMPLES:
        return PortAllocation.UNKNOWN, None, f"only {len(samples)} sockets got a mapping"
    if all(local == mapped for local, mapped in samples):
        return PortAllocation.PRESERVING, None, f"all {len(samples)} sockets kept their port"
    ports = sorted(mapped for _, mapped in samples)
    if len(set(ports)) != len(ports):
        return PortAllocation.UNKNOWN, None, "two sockets were given the same external port"
    gaps = [b - a for a, b in pairwise(ports)]
    delta = Counter(gaps).most_common(1)[0][0]
    if delta <= SEQUENTIAL_MAX_DELTA and all(
        g % delta == 0 and g <= SEQUENTIAL_MAX_SKIP * delta for g in gaps
    ):
        return (
            PortAllocation.SEQUENTIAL,
            delta,
            f"{len(ports)} external ports in steps of {delta}: {ports[0]}..{ports[-1]}",
        )
    preserved = sum(local == mapped for local, mapped in samples)
    return (
        PortAllocation.RANDOM,
        None,
        f"{len(ports)} external ports without a pattern ({preserved} kept their local port)",
    )
