"""The named lab scenarios: a public contract (``natkit lab up NAME``).

A scenario is a chain of NATs between the client and the lab's internet,
outermost first (empty: the client is on the internet itself), a one-line
description, and the classification a correct classifier must report for
it. The expectation is written out by hand rather than derived from the
specs, so that it reads as the contract it is; ``tests/lab`` proves each one
on the real kernel, independently of natkit's classifier.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from natkit.lab.classification import (
    Classification,
    FilteringBehavior,
    MappingBehavior,
    PortAllocation,
)
from natkit.lab.errors import UnknownScenarioError
from natkit.lab.miniupnpd import PortMappingSpec
from natkit.lab.nat import NatSpec

EIM, ADM, APDM = MappingBehavior.EIM, MappingBehavior.ADM, MappingBehavior.APDM
EIF, ADF, APDF = FilteringBehavior.EIF, FilteringBehavior.ADF, FilteringBehavior.APDF
PRESERVING = PortAllocation.PRESERVING
SEQUENTIAL = PortAllocation.SEQUENTIAL
RANDOM = PortAllocation.RANDOM


@dataclass(frozen=True, slots=True)
class Scenario:
    """One buildable network between the client and the lab's internet."""

    name: str
    description: str
    nats: tuple[NatSpec, ...]
    """The NAT routers from the internet inwards; ``()`` puts the client on the internet."""
    expected: Classification
    """What natkit's classifier must report from the client namespace."""


def _nat(
    mapping: MappingBehavior,
    filtering: FilteringBehavior,
    allocation: PortAllocation,
    *,
    hairpin: bool = False,
) -> Classification:
    return Classification(
        mapping=mapping,
        filtering=filtering,
        hairpin=hairpin,
        port_allocation=allocation,
        udp_blocked=False,
        behind_nat=True,
    )


_ALL: tuple[Scenario, ...] = (
    Scenario(
        "no-nat",
        "client on the internet itself (198.51.100.50): no NAT, no firewall",
        (),
        Classification(EIM, EIF, None, PRESERVING, udp_blocked=False, behind_nat=False),
    ),
    Scenario(
        "eim-eif",
        "full cone: one mapping for all destinations, anyone may send to it",
        (NatSpec(EIM, EIF, PRESERVING),),
        _nat(EIM, EIF, PRESERVING),
    ),
    Scenario(
        "eim-adf",
        "restricted cone: one mapping, inbound only from addresses already sent to",
        (NatSpec(EIM, ADF, PRESERVING),),
        _nat(EIM, ADF, PRESERVING),
    ),
    Scenario(
        "eim-apdf",
        "port-restricted cone (Linux masquerade as is): inbound only from endpoints sent to",
        (NatSpec(EIM, APDF, PRESERVING),),
        _nat(EIM, APDF, PRESERVING),
    ),
    Scenario(
        "eim-apdf-hairpin",
        "port-restricted cone that loops LAN traffic to its public address back in",
        (NatSpec(EIM, APDF, PRESERVING, hairpin=True),),
        _nat(EIM, APDF, PRESERVING, hairpin=True),
    ),
    Scenario(
        "eim-random-ports",
        "port-restricted cone that moves every mapping into ports 20000-29999",
        (NatSpec(EIM, APDF, RANDOM),),
        _nat(EIM, APDF, RANDOM),
    ),
    Scenario(
        "adm-apdf",
        "a new random mapping per destination address, reused across its ports",
        (NatSpec(ADM, APDF, RANDOM),),
        _nat(ADM, APDF, RANDOM),
    ),
    Scenario(
        "apdm-apdf",
        "symmetric NAT: a new random mapping per destination address and port",
        (NatSpec(APDM, APDF, RANDOM),),
        _nat(APDM, APDF, RANDOM),
    ),
    Scenario(
        "apdm-sequential",
        "symmetric NAT handing out consecutive ports (40000, 40001, ...)",
        (NatSpec(APDM, APDF, SEQUENTIAL),),
        _nat(APDM, APDF, SEQUENTIAL),
    ),
    Scenario(
        "cgnat",
        "double NAT: home masquerade behind a carrier masquerade on 100.64.0.0/24",
        (NatSpec(EIM, APDF, PRESERVING), NatSpec(EIM, APDF, PRESERVING)),
        _nat(EIM, APDF, PRESERVING),
    ),
    Scenario(
        "udp-blocked",
        "the router drops all forwarded UDP; TCP still passes, NATed",
        (NatSpec(EIM, APDF, PRESERVING, block_udp=True),),
        # TCP still crosses the NAT, and the classifier's TCP check sees it.
        Classification.udp_blocked_result(behind_nat=True),
    ),
    Scenario(
        "upnp",
        "port-restricted cone whose router runs miniupnpd: UPnP IGD:2, NAT-PMP and PCP",
        (NatSpec(EIM, APDF, PRESERVING, port_mapping=PortMappingSpec()),),
        _nat(EIM, APDF, PRESERVING),
    ),
    Scenario(
        "upnp-igd1",
        "as upnp, but miniupnpd describes itself as IGD:1 (no AddAnyPortMapping)",
        (NatSpec(EIM, APDF, PRESERVING, port_mapping=PortMappingSpec(igd_v1=True)),),
        _nat(EIM, APDF, PRESERVING),
    ),
)

#: Every scenario by name, in a stable, documented order.
SCENARIOS: Mapping[str, Scenario] = MappingProxyType({s.name: s for s in _ALL})


def get_scenario(name: str) -> Scenario:
    """Look a scenario up by name; raises :class:`UnknownScenarioError`."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UnknownScenarioError(name, list(SCENARIOS)) from None
