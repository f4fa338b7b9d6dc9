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
  show destination-dependent mapping, not layering, and are not evidence.

Each verdict is ``True``, ``False`` or ``None`` (no evidence either way),
with a sentence naming the observations. Nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from natkit.endpoint import Endpoint, IPAddress

#: RFC 6598 shared address space (carrier-grade NAT).
SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
#: RFC 5737 documentation networks: the lab's internet, counted as public.
_DOCUMENTATION = (
    ipaddress.IPv4Network("192.0.2.0/24"),
    ipaddress.IPv4Network("198.51.100.0/24"),
    ipaddress.IPv4Network("203.0.113.0/24"),
)


@dataclass(frozen=True, slots=True)
class NatLayering:
    """The carrier-grade and double NAT verdicts, with their reasons."""

    cgnat: bool | None
    cgnat_reason: str
    double_nat: bool | None
    double_nat_reason: str


def is_shared(address: IPAddress) -> bool:
    """In RFC 6598's 100.64.0.0/10."""
    return isinstance(address, ipaddress.IPv4Address) and address in SHARED_ADDRESS_SPACE


def is_public(address: IPAddress) -> bool:
    """Routable on the internet, counting the RFC 5737 networks the lab uses."""
    if isinstance(address, ipaddress.IPv4Address) and any(address in n for n in _DOCUMENTATION):
        return True
    return address.is_global


def nat_layering(
    *,
    local: Sequence[IPAddress],
    mapped: Sequence[tuple[str, Endpoint]],
    gateway_external: IPAddress | None = None,
    gateway_source: str = "the port-mapping gateway",
) -> NatLayering:
    """The verdicts for one host's IPv4 path (see the module docstring).

    ``local``: the local IPv4 addresses the servers were asked from;
    ``mapped``: (server, mapped endpoint) per IPv4 server that answered on a
    direct path; ``gateway_external``: what the gateway said its external
    address is (``None``: no gateway answered, or none was asked).
    """
    mapped_ips = list(dict.fromkeys(m.address for _, m in mapped))
    no_nat = bool(mapped_ips) and all(ip in local for ip in mapped_ips)
    shared_local = next((a for a in local if is_shared(a)), None)
    public = mapped_ips[0] if len(mapped_ips) == 1 else None

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
    elif no_nat:
        double = False
        double_reason = f"no NAT: servers saw this host's own address {mapped_ips[0]}"
    elif gateway_external is not None and public is not None:
        double = False
        double_reason = (
            f"one NAT: {gateway_source}'s external address {gateway_external} is the one"
            " servers saw"
        )
    elif gateway_external is None:
        double = None
        double_reason = (
            "no port-mapping gateway told its external address, so a NAT outside it"
            " cannot be seen from here"
        )
    else:
        double = None
        double_reason = "servers disagree about the public address"
    return NatLayering(cgnat, cgnat_reason, double, double_reason)
