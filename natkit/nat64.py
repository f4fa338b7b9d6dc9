"""NAT64 prefixes: RFC 6052 address synthesis and RFC 7050 discovery, as pure functions.

Theory of operation
-------------------
A NAT64 (RFC 6146) lets an IPv6-only host reach IPv4 hosts at IPv6
addresses that embed the IPv4 address in a *prefix* (RFC 6052 §2.2): the
well-known ``64:ff9b::/96`` or a network-specific prefix of length 32, 40,
48, 56, 64 or 96. Except for /96 the four IPv4 bytes straddle the "u" octet
(bits 64-71), which is always zero, so a /56 prefix puts one byte before
it and three after::

    /32  PPPP PPPP 4444 4444 uu SS SS SS SS SS SS SS
    /40  PPPP PPPP PP44 4444 uu 44 SS SS SS SS SS SS
    /48  PPPP PPPP PPPP 4444 uu 44 44 SS SS SS SS SS
    /56  PPPP PPPP PPPP PP44 uu 44 44 44 SS SS SS SS
    /64  PPPP PPPP PPPP PPPP uu 44 44 44 44 SS SS SS
    /96  PPPP PPPP PPPP PPPP uu PP PP PP 44 44 44 44

(each group one byte; P prefix, 4 IPv4, u the u octet, S the zero suffix).

A host learns the prefix by asking its resolver for the AAAA records of
``ipv4only.arpa`` (RFC 7050 §3), a name with only A records, 192.0.0.170
and 192.0.0.171 (RFC 8880 §2). A DNS64 (RFC 6147) synthesises AAAA records
from them; the host looks for the well-known IPv4 bytes at every RFC 6052
position and reads the prefix off. :func:`prefixes_from_answers` is that
search, with the checks that make a bogus answer "no NAT64" with a reason
rather than a wrong prefix:

1. no AAAA at all: there is no DNS64 (the resolver did not synthesise);
2. addresses that embed neither well-known address anywhere are not a
   synthesis (a native AAAA, or garbage) and are ignored; if nothing else
   is left, the answer is invalid;
3. where the primary address could sit at several positions (a prefix whose
   own bits happen to spell 192.0.0.170), the position that also holds the
   secondary address 192.0.0.171 decides (RFC 7050 §3);
4. the two well-known addresses must agree on the prefixes: the resolver
   synthesises every A record with every prefix it has, so 192.0.0.170 under
   one prefix and 192.0.0.171 only under another is inconsistent;
5. each prefix must be usable (u octet zero, RFC 6052 §2.2; not multicast,
   link-local, loopback or IPv4-mapped).

Several prefixes are allowed (RFC 7050 §3: a network may run several
NAT64s); they are kept in the order the resolver gave them. Nothing here
does I/O: ``natkit.aio.dns`` asks the resolver (dnspython) and hands
the addresses over. The optional DNSSEC validation of RFC 7050 §3.1 is not
done; the checks above are heuristics, as RFC 7050 §3 says discovery is.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from natkit.errors import LocalProtocolError

IPv4Address = ipaddress.IPv4Address
IPv6Address = ipaddress.IPv6Address
IPv6Network = ipaddress.IPv6Network

#: RFC 6052 §2.1: the Well-Known Prefix.
WELL_KNOWN_PREFIX = IPv6Network("64:ff9b::/96")
#: RFC 6052 §2.2: the only prefix lengths an IPv4-embedded address may use.
PREFIX_LENGTHS: tuple[int, ...] = (32, 40, 48, 56, 64, 96)
#: RFC 7050 §2 / RFC 8880 §2: the name with only A records.
IPV4ONLY_ARPA = "ipv4only.arpa."
#: RFC 7050 §2.2: the primary and secondary well-known IPv4 addresses.
PRIMARY_WKA = IPv4Address("192.0.0.170")
SECONDARY_WKA = IPv4Address("192.0.0.171")
WELL_KNOWN_ADDRESSES = (PRIMARY_WKA, SECONDARY_WKA)

#: Byte offsets of the four IPv4 bytes for each prefix length (RFC 6052 §2.2,
#: skipping the u octet at byte 8).
_IPV4_BYTES: dict[int, tuple[int, int, int, int]] = {
    32: (4, 5, 6, 7),
    40: (5, 6, 7, 9),
    48: (6, 7, 9, 10),
    56: (7, 9, 10, 11),
    64: (9, 10, 11, 12),
    96: (12, 13, 14, 15),
}
_U_OCTET = 8
#: Prefixes no NAT64 can use (RFC 6052 §2.2 leaves them out by construction).
_FORBIDDEN = (
    (IPv6Network("::ffff:0:0/96"), "IPv4-mapped"),
    (IPv6Network("::/96"), "IPv4-compatible or unspecified"),
    (IPv6Network("ff00::/8"), "multicast"),
    (IPv6Network("fe80::/10"), "link-local"),
    (IPv6Network("::1/128"), "loopback"),
)


class Nat64PrefixError(LocalProtocolError):
    """A prefix (or prefix and IPv4 address) RFC 6052 does not allow."""

    def __init__(self, prefix: IPv6Network, reason: str) -> None:
        self.prefix = prefix
        self.reason = reason
        super().__init__(f"{prefix}: {reason}")


def prefix_problem(prefix: IPv6Network) -> str | None:
    """Why ``prefix`` cannot be a NAT64 prefix, or ``None`` when it can."""
    if prefix.prefixlen not in PREFIX_LENGTHS:
        return f"prefix length /{prefix.prefixlen} is not one of RFC 6052's (32, 40, ... 96)"
    if prefix.network_address.packed[_U_OCTET]:
        return "bits 64-71 (the u octet) are not zero (RFC 6052 §2.2)"
    for network, name in _FORBIDDEN:
        if prefix.network_address in network:
            return f"{name} prefix"
    return None


def translation_problem(prefix: IPv6Network, ipv4: IPv4Address) -> str | None:
    """Why ``ipv4`` must not be embedded in ``prefix``, or ``None``.

    RFC 6052 §3.1: the Well-Known Prefix MUST NOT carry non-global IPv4
    addresses (RFC 1918, RFC 5737 ...); translators such as tayga drop such
    packets. A network-specific prefix may carry any address.
    """
    problem = prefix_problem(prefix)
    if problem is not None:
        return problem
    if prefix == WELL_KNOWN_PREFIX and not ipv4.is_global:
        return f"{ipv4} is not global and the well-known prefix may not carry it (RFC 6052 §3.1)"
    return None


def synthesize(prefix: IPv6Network, ipv4: IPv4Address) -> IPv6Address:
    """The IPv4-embedded IPv6 address of ``ipv4`` under ``prefix`` (RFC 6052 §2.3).

    Raises :class:`Nat64PrefixError` for a prefix RFC 6052 does not allow,
    or for a non-global address under the well-known prefix (§3.1).
    """
    problem = translation_problem(prefix, ipv4)
    if problem is not None:
        raise Nat64PrefixError(prefix, problem)
    address = bytearray(prefix.network_address.packed)
    for offset, value in zip(_IPV4_BYTES[prefix.prefixlen], ipv4.packed, strict=True):
        address[offset] = value
    # The u octet and the suffix stay zero (RFC 6052 §2.2): the network
    # address has zeros there (the u octet of a /96 was checked above).
    return IPv6Address(bytes(address))


def extract(address: IPv6Address, prefix_length: int) -> IPv4Address:
    """The IPv4 address embedded in ``address`` at ``prefix_length`` (RFC 6052 §2.3).

    Only the position is used; whether ``address`` is really a synthesis
    (prefix, zero u octet and suffix) is :func:`embedded_ipv4`'s question.
    """
    if prefix_length not in _IPV4_BYTES:
        raise LocalProtocolError(f"prefix length /{prefix_length} is not one of RFC 6052's")
    packed = address.packed
    return IPv4Address(bytes(packed[i] for i in _IPV4_BYTES[prefix_length]))


def _is_synthesis_shape(address: IPv6Address) -> bool:
    """The u octet is zero (RFC 6052 §2.2 MUST). The suffix after the IPv4
    bytes only SHOULD be zero, so it is not checked: that is what makes a
    well-known address appear at several positions possible (rule 3)."""
    return address.packed[_U_OCTET] == 0


def embedded_ipv4(address: IPv6Address, prefix: IPv6Network) -> IPv4Address | None:
    """The IPv4 address ``address`` stands for under ``prefix``, or ``None``
    when it is not inside ``prefix`` or its u octet is not zero."""
    if address not in prefix or prefix.prefixlen not in _IPV4_BYTES:
        return None
    if not _is_synthesis_shape(address):
        return None
    return extract(address, prefix.prefixlen)


def find_prefix(address: IPv6Address, prefixes: Sequence[IPv6Network]) -> IPv6Network | None:
    """The first of ``prefixes`` under which ``address`` is a synthesis."""
    for prefix in prefixes:
        if embedded_ipv4(address, prefix) is not None:
            return prefix
    return None


def _prefix_at(address: IPv6Address, prefix_length: int) -> IPv6Network:
    return IPv6Network(f"{address}/{prefix_length}", strict=False)


# -- RFC 7050 discovery -------------------------------------------------------


class Nat64Status(Enum):
    """What NAT64 discovery came to."""

    #: At least one valid prefix.
    FOUND = "found"
    #: The resolver answered without AAAA records: it does not synthesise.
    ABSENT = "absent"
    #: AAAA records came back, but not a valid DNS64 synthesis (bogus answer).
    INVALID = "invalid"
    #: The resolver could not be asked or did not answer (timeout, error).
    FAILED = "failed"
    #: Discovery does not apply here (no IPv6 address to use a NAT64 with).
    NOT_APPLICABLE = "not_applicable"
    #: Not tried (switched off).
    NOT_TESTED = "not_tested"


@dataclass(frozen=True, slots=True)
class Nat64Discovery:
    """The outcome of RFC 7050 discovery, with the reason in words."""

    status: Nat64Status
    #: Valid prefixes, in the resolver's order (empty unless ``FOUND``).
    prefixes: tuple[IPv6Network, ...] = ()
    reason: str = ""
    #: The AAAA records as received (for the report).
    answers: tuple[IPv6Address, ...] = ()
    #: The resolver asked, as text (``None``: not asked).
    dns_server: str | None = None
    #: Seconds from the query to the answer.
    rtt: float | None = None

    @property
    def found(self) -> bool:
        return self.status is Nat64Status.FOUND


def nat64_to_dict(discovery: Nat64Discovery) -> dict[str, Any]:
    """The JSON ``nat64`` object of ``natkit classify`` and ``natkit candidates``."""
    return {
        "status": discovery.status.value,
        "prefixes": [str(p) for p in discovery.prefixes],
        "reason": discovery.reason,
        "dns_server": discovery.dns_server,
        "answers": [str(a) for a in discovery.answers],
        "rtt_ms": None if discovery.rtt is None else round(discovery.rtt * 1000, 3),
    }


@dataclass(frozen=True, slots=True)
class _Hit:
    """One well-known address found in one answer at one position."""

    answer: IPv6Address
    prefix: IPv6Network
    wka: IPv4Address


def _hits(answer: IPv6Address) -> list[_Hit]:
    found: list[_Hit] = []
    if not _is_synthesis_shape(answer):
        return found
    for length in PREFIX_LENGTHS:
        embedded = extract(answer, length)
        if embedded in WELL_KNOWN_ADDRESSES:
            found.append(_Hit(answer, _prefix_at(answer, length), embedded))
    return found


def _names(prefixes: Sequence[IPv6Network]) -> str:
    return ", ".join(str(p) for p in prefixes)


def _resolve_ambiguity(per_answer: list[list[_Hit]]) -> tuple[list[_Hit], list[str]]:
    """Rule 3: keep, for an answer with several positions, those whose
    prefix also carries the *other* well-known address in some answer."""
    all_hits = [hit for hits in per_answer for hit in hits]
    chosen: list[_Hit] = []
    problems: list[str] = []
    for hits in per_answer:
        if len(hits) <= 1:
            chosen.extend(hits)
            continue
        confirmed = [
            h for h in hits if any(o.prefix == h.prefix and o.wka != h.wka for o in all_hits)
        ]
        if len(confirmed) == 1:
            chosen.extend(confirmed)
        else:
            lengths = ", ".join(f"/{h.prefix.prefixlen}" for h in hits)
            problems.append(
                f"{hits[0].answer} embeds {hits[0].wka} at several positions ({lengths})"
                " and the other well-known address does not tell which"
            )
    return chosen, problems


def prefixes_from_answers(answers: Sequence[IPv6Address]) -> Nat64Discovery:
    """RFC 7050 §3: the NAT64 prefixes behind the AAAA records of ``ipv4only.arpa``.

    Pure: the addresses are whatever the resolver returned, in its order.
    See the module docstring for the rules; every outcome has a reason.
    """
    received = tuple(answers)
    if not received:
        return Nat64Discovery(
            Nat64Status.ABSENT,
            reason="no AAAA record for ipv4only.arpa: the resolver does not do DNS64",
        )
    per_answer = [_hits(a) for a in received]
    ignored = [a for a, hits in zip(received, per_answer, strict=True) if not hits]
    if len(ignored) == len(received):
        return Nat64Discovery(
            Nat64Status.INVALID,
            answers=received,
            reason=(
                "AAAA records for ipv4only.arpa embed neither 192.0.0.170 nor 192.0.0.171"
                " at any RFC 6052 position (" + ", ".join(str(a) for a in received) + ")"
            ),
        )
    hits, ambiguous = _resolve_ambiguity(per_answer)
    if ambiguous:
        return Nat64Discovery(Nat64Status.INVALID, answers=received, reason="; ".join(ambiguous))

    # Rule 4: both well-known addresses, where both appear, under the same prefixes.
    by_prefix: dict[IPv6Network, set[IPv4Address]] = {}
    for hit in hits:
        by_prefix.setdefault(hit.prefix, set()).add(hit.wka)
    seen = {hit.wka for hit in hits}
    if len(seen) == len(WELL_KNOWN_ADDRESSES):
        partial = [p for p, wkas in by_prefix.items() if len(wkas) < len(WELL_KNOWN_ADDRESSES)]
        if partial:
            detail = "; ".join(
                f"{p} carries only {', '.join(str(w) for w in sorted(by_prefix[p]))}"
                for p in partial
            )
            return Nat64Discovery(
                Nat64Status.INVALID,
                answers=received,
                reason=f"inconsistent prefixes: {detail} (a DNS64 synthesises both"
                " addresses with every prefix)",
            )

    # Rule 5: each prefix must be usable.
    valid: list[IPv6Network] = []
    rejected: list[str] = []
    for prefix in by_prefix:
        problem = prefix_problem(prefix)
        if problem is None:
            valid.append(prefix)
        else:
            rejected.append(f"{prefix} rejected: {problem}")
    if not valid:
        return Nat64Discovery(Nat64Status.INVALID, answers=received, reason="; ".join(rejected))

    notes = [f"found {_names(valid)} in {len(received)} AAAA record(s) for ipv4only.arpa"]
    if len(seen) == 1:
        notes.append(f"only {next(iter(seen))} was synthesised")
    if ignored:
        notes.append("ignored " + ", ".join(str(a) for a in ignored) + " (no well-known address)")
    notes.extend(rejected)
    return Nat64Discovery(
        Nat64Status.FOUND, prefixes=tuple(valid), answers=received, reason="; ".join(notes)
    )


#: The discovery result for a host that could not use a NAT64 anyway.
NAT64_NOT_APPLICABLE = Nat64Discovery(
    Nat64Status.NOT_APPLICABLE,
    reason="no IPv6 address beyond loopback and link-local: a NAT64 is of no use here",
)
