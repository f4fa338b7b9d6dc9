"""Is there more than one NAT, and is one of them a carrier's? A pure verdict.

Evidence, each observable from this host (RFC 6598, RFC 4787, RFC 6888):

* a local IPv4 address in 100.64.0.0/10, the shared address space RFC 6598
  reserves for carrier-grade NAT: the host sits on a carrier network;
* the port-mapping gateway's external address (PCP, NAT-PMP or UPnP said
  it) in 100.64.0.0/10 or in private space: another NAT is outside the
  gateway, a carrier's when it is shared space;
* that external address differing from the address STUN servers saw:
  another NAT is outside the gateway (double NAT);
* STUN servers seeing different public *addresses* from one socket: the NAT
  draws external addresses from a pool per destination ("arbitrary" pooling,
  which RFC 4787 §4.1 REQ-2 recommends against and large carrier NATs use),
  or the network has several exits. Servers that differ only in the port
  show destination-dependent mapping, not layering, and are not evidence;
* the routers on the way to a server, found with hop-limited probes
  (:mod:`natkit.probe.hops`): one in shared space means a carrier-grade
  NAT, two private/shared address tiers mean two NATs, and a whole path with
  a single router on it means that router is the only NAT.

Each verdict is ``True``, ``False`` or ``None`` (no evidence either way),
with a sentence naming the observations. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from natkit.addresses import is_public, is_shared
from natkit.endpoint import Endpoint, IPAddress
from natkit.probe.hops import Hop, PathEvidence, describe_path, path_evidence


@dataclass(frozen=True, slots=True)
class NatLayering:
    """The carrier-grade and double NAT verdicts, with their reasons."""

    cgnat: bool | None
    cgnat_reason: str
    double_nat: bool | None
    double_nat_reason: str


def nat_layering(
    *,
    local: Sequence[IPAddress],
    mapped: Sequence[tuple[str, Endpoint]],
    gateway_external: IPAddress | None = None,
    gateway_source: str = "the port-mapping gateway",
    hops: Sequence[Hop] | None = None,
) -> NatLayering:
    """The verdicts for one host's IPv4 path (see the module docstring).

    ``local``: the local IPv4 addresses the servers were asked from;
    ``mapped``: (server, mapped endpoint) per IPv4 server that answered on a
    direct path; ``gateway_external``: what the gateway said its external
    address is (``None``: no gateway answered, or none was asked);
    ``hops``: what the hop probe toward an IPv4 server found (``None``: not
    run; :mod:`natkit.probe.hops`).
    """
    mapped_ips = list(dict.fromkeys(m.address for _, m in mapped))
    no_nat = bool(mapped_ips) and all(ip in local for ip in mapped_ips)
    shared_local = next((a for a in local if is_shared(a)), None)
    public = mapped_ips[0] if len(mapped_ips) == 1 else None
    # Routers with private addresses on the way say nothing about NATs when
    # the servers saw our own address (an ISP numbering its links privately).
    path = None
    if hops is not None and not no_nat:
        path = path_evidence(hops, origin=local[0] if len(local) == 1 else None)
    shared_hop = None if path is None else path.shared_router
    tiers = () if path is None else path.tiers
    # Behind a NAT, a whole path with one router on it: that router is the NAT.
    whole = None if path is None or public is None else path.whole_path
    sole_router = whole[0] if whole is not None and len(whole) == 1 else None

    # -- carrier-grade NAT ------------------------------------------------------
    cgnat: bool | None
    if shared_local is not None:
        cgnat = True
        cgnat_reason = (
            f"this host's address {shared_local} is in RFC 6598 shared space (100.64.0.0/10):"
            " it is on a carrier network behind a carrier-grade NAT"
        )
    elif gateway_external is not None and is_shared(gateway_external):
        cgnat = True
        cgnat_reason = (
            f"{gateway_source} reports external address {gateway_external}, in RFC 6598"
            " shared space: a carrier-grade NAT is outside it"
        )
    elif shared_hop is not None:
        cgnat = True
        cgnat_reason = (
            f"router {shared_hop.address} (hop {shared_hop.ttl} on the way to the server) is in"
            " RFC 6598 shared space (100.64.0.0/10), before any public hop: a carrier-grade NAT"
            " is on the path"
        )
    elif len(mapped_ips) > 1:
        cgnat = True
        cgnat_reason = (
            "servers saw different public addresses from one socket ("
            + ", ".join(f"{m.address} via {s}" for s, m in mapped)
            + "): the NAT picks addresses from a pool per destination, as carrier-grade"
            " NATs do (or the network has several exits)"
        )
    elif no_nat:
        cgnat = False
        cgnat_reason = f"no NAT: servers saw this host's own address {mapped_ips[0]}"
    elif gateway_external is not None and public is not None and gateway_external == public:
        cgnat = False
        cgnat_reason = (
            f"{gateway_source}'s external address {gateway_external} is the one servers saw:"
            " no NAT outside it"
        )
    elif sole_router is not None:
        cgnat = False
        cgnat_reason = _sole_router_reason(sole_router)
    elif not mapped_ips:
        cgnat = None
        cgnat_reason = "no IPv4 server answered: no mapped address to judge by"
    else:
        cgnat = None
        cgnat_reason = (
            f"no evidence either way: local {', '.join(str(a) for a in local) or 'unknown'},"
            f" mapped {public}, "
            + (
                "no port-mapping gateway answered"
                if gateway_external is None
                else f"gateway external {gateway_external}"
            )
            + _path_note(hops, path)
        )

    # -- double NAT -------------------------------------------------------------
    double: bool | None
    if gateway_external is not None and public is not None and gateway_external != public:
        double = True
        double_reason = (
            f"{gateway_source} reports external address {gateway_external} but servers saw"
            f" {public}: another NAT is outside the gateway"
        )
    elif gateway_external is not None and not is_public(gateway_external):
        double = True
        double_reason = (
            f"{gateway_source}'s external address {gateway_external} is not public:"
            " another NAT is outside the gateway"
        )
    elif len(tiers) >= 2:
        double = True
        double_reason = (
            "two private address realms before any public hop on the way to the server: "
            + ", then ".join(tier.describe() for tier in tiers)
            + "; a second NAT is outside the first"
        )
    elif no_nat:
        double = False
        double_reason = f"no NAT: servers saw this host's own address {mapped_ips[0]}"
    elif gateway_external is not None and public is not None:
        double = False
        double_reason = (
            f"one NAT: {gateway_source}'s external address {gateway_external} is the one"
            " servers saw"
        )
    elif sole_router is not None:
        double = False
        double_reason = _sole_router_reason(sole_router)
    elif gateway_external is None:
        double = None
        double_reason = (
            "no port-mapping gateway told its external address, so a NAT outside it"
            " cannot be seen from here" + _path_note(hops, path)
        )
    else:
        double = None
        double_reason = "servers disagree about the public address"
    return NatLayering(cgnat, cgnat_reason, double, double_reason)


def _sole_router_reason(router: Hop) -> str:
    return (
        f"one NAT: the server answered at TTL {router.ttl + 1} and the one router before it,"
        f" {router.address}, answered too, so it is the only NAT on the path"
    )


def _path_note(hops: Sequence[Hop] | None, path: PathEvidence | None) -> str:
    """What the hop probe saw, for a reason that stays undecided."""
    if hops is None or path is None:
        return ""
    note = f"; path {describe_path(hops)}"
    if path.same_tier:
        routers = ", ".join(str(hop.address) for hop in path.same_tier)
        note += (
            f" ({routers}: in the same private block as the router before, a second NAT"
            " or a router inside one network)"
        )
    return note
