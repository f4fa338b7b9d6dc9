"""RFC 6052 synthesis/extraction and RFC 7050 prefix discovery (pure functions)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from natkit.errors import LocalProtocolError
from natkit.nat64 import (
    PREFIX_LENGTHS,
    PRIMARY_WKA,
    SECONDARY_WKA,
    WELL_KNOWN_PREFIX,
    Nat64PrefixError,
    Nat64Status,
    embedded_ipv4,
    extract,
    find_prefix,
    prefix_problem,
    prefixes_from_answers,
    synthesize,
    translation_problem,
)

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
Net6 = ipaddress.IPv6Network

#: RFC 6052 §2.4, Table 1: 192.0.2.33 under each network-specific prefix.
RFC6052_TABLE = [
    ("2001:db8::/32", "2001:db8:c000:221::"),
    ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
    ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
    ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
    ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
    ("2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"),
]
EXAMPLE_V4 = V4("192.0.2.33")


@pytest.mark.parametrize(("prefix", "expected"), RFC6052_TABLE)
def test_rfc6052_table_synthesis_and_extraction(prefix: str, expected: str) -> None:
    network = Net6(prefix)
    assert synthesize(network, EXAMPLE_V4) == V6(expected)
    assert extract(V6(expected), network.prefixlen) == EXAMPLE_V4
    assert embedded_ipv4(V6(expected), network) == EXAMPLE_V4


def test_rfc6052_well_known_prefix_example() -> None:
    # RFC 6052 §2.4: 64:ff9b::192.0.2.33 is the table's WKP line, but §3.1
    # forbids the WKP with a non-global address: extraction works,
    # synthesis refuses.
    assert extract(V6("64:ff9b::192.0.2.33"), 96) == EXAMPLE_V4
    with pytest.raises(Nat64PrefixError, match=r"RFC 6052 §3\.1"):
        synthesize(WELL_KNOWN_PREFIX, EXAMPLE_V4)
    assert synthesize(WELL_KNOWN_PREFIX, V4("8.8.8.8")) == V6("64:ff9b::808:808")


@given(
    length=st.sampled_from(PREFIX_LENGTHS),
    high=st.integers(min_value=0, max_value=(1 << 64) - 1),
    ipv4=st.integers(min_value=0, max_value=(1 << 32) - 1),
)
def test_every_length_round_trips(length: int, high: int, ipv4: int) -> None:
    # A prefix: any bits up to the length within the first 64, zero u octet.
    bits = high << 64 if length <= 64 else (high << 64) | (ipv4 & 0x00FFFFFF) << 32
    network = Net6((bits, length), strict=False)
    address = V4(ipv4)
    if network == WELL_KNOWN_PREFIX or prefix_problem(network) is not None:
        return
    synthesized = synthesize(network, address)
    assert synthesized in network
    assert extract(synthesized, length) == address
    assert embedded_ipv4(synthesized, network) == address
    # The u octet (bits 64-71) stays zero (RFC 6052 §2.2).
    assert synthesized.packed[8] == 0


@given(
    length=st.sampled_from(PREFIX_LENGTHS),
    high=st.integers(min_value=0x2000 << 48, max_value=(0x3FFF << 48) - 1),
)
def test_discovery_finds_any_prefix_of_any_length(length: int, high: int) -> None:
    network = Net6((high << 64, length), strict=False)
    answers = [synthesize(network, PRIMARY_WKA), synthesize(network, SECONDARY_WKA)]
    found = prefixes_from_answers(answers)
    assert found.status is Nat64Status.FOUND, found.reason
    assert found.prefixes == (network,)


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("2001:db8::/36", "prefix length /36"),
        ("2001:db8:0:0:ff00::/96", "u octet"),
        ("::ffff:0:0/96", "IPv4-mapped"),
        ("fe80::/64", "link-local"),
        ("ff02::/32", "multicast"),
        ("::/96", "IPv4-compatible"),
    ],
)
def test_unusable_prefixes_are_named(prefix: str, problem: str) -> None:
    reason = prefix_problem(Net6(prefix))
    assert reason is not None
    assert problem in reason
    with pytest.raises(Nat64PrefixError):
        synthesize(Net6(prefix), V4("8.8.8.8"))


def test_usable_prefixes() -> None:
    for prefix in ("64:ff9b::/96", "2001:db8:64::/96", "2001:db8:6400::/56", "64:ff9b:1::/48"):
        assert prefix_problem(Net6(prefix)) is None
    assert translation_problem(Net6("2001:db8:64::/96"), V4("203.0.113.10")) is None
    assert "not global" in (translation_problem(WELL_KNOWN_PREFIX, V4("10.0.0.1")) or "")


def test_extract_rejects_a_length_rfc6052_does_not_have() -> None:
    with pytest.raises(LocalProtocolError):
        extract(V6("2001:db8::1"), 36)


def test_embedded_ipv4_outside_the_prefix_or_with_a_u_octet() -> None:
    prefix = Net6("2001:db8:64::/96")
    assert embedded_ipv4(V6("2001:db8:65::1"), prefix) is None
    # Byte 8 (the u octet) is 0x01 here.
    assert embedded_ipv4(V6("2001:db8:6400:c0:100:aa::"), Net6("2001:db8:6400::/56")) is None
    assert find_prefix(V6("2001:db8:64::cb00:710a"), [Net6("2001:db8:1::/96"), prefix]) == prefix
    assert find_prefix(V6("2001:db8:99::1"), [prefix]) is None


# -- RFC 7050 discovery -------------------------------------------------------------


def both(prefix: str) -> list[V6]:
    """What a DNS64 with ``prefix`` answers for ipv4only.arpa."""
    network = Net6(prefix)
    if network == WELL_KNOWN_PREFIX:
        # synthesize() refuses the WKP with these non-global addresses (RFC
        # 6052 §3.1), but a DNS64 does exactly that for ipv4only.arpa.
        return [V6(f"64:ff9b::{PRIMARY_WKA}"), V6(f"64:ff9b::{SECONDARY_WKA}")]
    return [synthesize(network, PRIMARY_WKA), synthesize(network, SECONDARY_WKA)]


@pytest.mark.parametrize("prefix", ["64:ff9b::/96", "2001:db8:64::/96", "2001:db8:6400::/56"])
def test_one_prefix_found(prefix: str) -> None:
    found = prefixes_from_answers(both(prefix))
    assert found.status is Nat64Status.FOUND
    assert found.found
    assert found.prefixes == (Net6(prefix),)
    assert found.reason == f"found {prefix} in 2 AAAA record(s) for ipv4only.arpa"


def test_what_unbound_sends_for_the_lab_prefixes() -> None:
    # Answers seen from unbound 1.17 with dns64-prefix set (see the lab).
    found = prefixes_from_answers([V6("2001:db8:64::c000:ab"), V6("2001:db8:64::c000:aa")])
    assert found.prefixes == (Net6("2001:db8:64::/96"),)
    found = prefixes_from_answers([V6("2001:db8:6400:c0:0:aa::"), V6("2001:db8:6400:c0:0:ab::")])
    assert found.prefixes == (Net6("2001:db8:6400::/56"),)


def test_several_prefixes_in_the_resolvers_order() -> None:
    answers = both("2001:db8:64::/96") + both("2001:db8:1200::/40") + both("64:ff9b::/96")
    found = prefixes_from_answers(answers)
    assert found.status is Nat64Status.FOUND
    assert found.prefixes == (
        Net6("2001:db8:64::/96"),
        Net6("2001:db8:1200::/40"),
        WELL_KNOWN_PREFIX,
    )


def test_no_aaaa_means_no_dns64() -> None:
    found = prefixes_from_answers([])
    assert found.status is Nat64Status.ABSENT
    assert not found.found
    assert found.reason == "no AAAA record for ipv4only.arpa: the resolver does not do DNS64"


def test_wrong_embedded_bytes_are_invalid() -> None:
    wrong = [V6("2001:db8:64::c000:ac"), V6("2001:db8:64::808:808")]
    found = prefixes_from_answers(wrong)
    assert found.status is Nat64Status.INVALID
    assert found.prefixes == ()
    assert found.reason == (
        "AAAA records for ipv4only.arpa embed neither 192.0.0.170 nor 192.0.0.171 at any"
        " RFC 6052 position (2001:db8:64::c000:ac, 2001:db8:64::808:808)"
    )


def test_inconsistent_prefixes_are_invalid() -> None:
    answers = [
        synthesize(Net6("2001:db8:64::/96"), PRIMARY_WKA),
        synthesize(Net6("2001:db8:6400::/56"), SECONDARY_WKA),
    ]
    found = prefixes_from_answers(answers)
    assert found.status is Nat64Status.INVALID
    assert found.reason.startswith("inconsistent prefixes: ")
    assert "2001:db8:64::/96 carries only 192.0.0.170" in found.reason
    assert "2001:db8:6400::/56 carries only 192.0.0.171" in found.reason


def test_one_prefix_complete_and_another_partial_is_inconsistent() -> None:
    answers = [*both("2001:db8:64::/96"), both("64:ff9b::/96")[0]]
    found = prefixes_from_answers(answers)
    assert found.status is Nat64Status.INVALID
    assert "64:ff9b::/96 carries only 192.0.0.170" in found.reason


def test_only_the_primary_synthesised_is_accepted_with_a_note() -> None:
    found = prefixes_from_answers([synthesize(Net6("2001:db8:64::/96"), PRIMARY_WKA)])
    assert found.status is Nat64Status.FOUND
    assert found.prefixes == (Net6("2001:db8:64::/96"),)
    assert "only 192.0.0.170 was synthesised" in found.reason


def test_native_aaaa_beside_the_synthesis_is_ignored() -> None:
    found = prefixes_from_answers([*both("2001:db8:64::/96"), V6("2001:db8::1:2")])
    assert found.status is Nat64Status.FOUND
    assert "ignored 2001:db8::1:2" in found.reason


def test_a_nonzero_u_octet_is_not_a_synthesis() -> None:
    found = prefixes_from_answers(
        [V6("2001:db8:6400:c0:100:aa::"), V6("2001:db8:6400:c0:100:ab::")]
    )
    assert found.status is Nat64Status.INVALID


def test_ambiguous_position_is_settled_by_the_secondary_address() -> None:
    # The /32 prefix 2001:db8:: with 192.0.0.170 put at /32 gives
    # 2001:db8:c000:aa:: ...; craft a /64 prefix whose bits spell
    # 192.0.0.170 at the /32 position as well.
    prefix = Net6("2001:db8:c000:aa::/64")
    primary = synthesize(prefix, PRIMARY_WKA)
    secondary = synthesize(prefix, SECONDARY_WKA)
    # The primary sits at /32 (prefix bits) and at /64.
    assert extract(primary, 32) == PRIMARY_WKA
    assert extract(primary, 64) == PRIMARY_WKA
    found = prefixes_from_answers([primary, secondary])
    assert found.status is Nat64Status.FOUND, found.reason
    assert found.prefixes == (prefix,)


def test_ambiguous_position_without_the_secondary_is_invalid() -> None:
    primary = synthesize(Net6("2001:db8:c000:aa::/64"), PRIMARY_WKA)
    found = prefixes_from_answers([primary])
    assert found.status is Nat64Status.INVALID
    assert "at several positions (/32, /64)" in found.reason


def test_a_valid_prefix_survives_a_rejected_one() -> None:
    # Answers in IPv4-mapped space (a broken resolver) embed the addresses at /96.
    mapped = [V6("::ffff:c000:aa"), V6("::ffff:c000:ab")]
    found = prefixes_from_answers([*both("2001:db8:64::/96"), *mapped])
    assert found.status is Nat64Status.FOUND
    assert found.prefixes == (Net6("2001:db8:64::/96"),)
    assert "::ffff:0:0/96 rejected: IPv4-mapped prefix" in found.reason
    only_bad = prefixes_from_answers(mapped)
    assert only_bad.status is Nat64Status.INVALID
    assert only_bad.reason == "::ffff:0:0/96 rejected: IPv4-mapped prefix"
