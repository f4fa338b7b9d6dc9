"""The real-kernel NAT lab: scenarios built from Linux network namespaces.

Each scenario is a small internet (a bridge with STUN servers on RFC 5737
addresses), zero or more NAT routers whose RFC 4787 behaviour is written in
nftables, and a client namespace behind them. natkit's classifier, tests and
benchmarks run in the client namespace and compare what they find with the
scenario's expected classification::

    import json, sys
    from natkit.lab import Lab

    with Lab.up("eim-adf") as lab:
        servers = [f"--server={s.primary}" for s in lab.stun_servers.values()]
        argv = [sys.executable, "-m", "natkit.cli", "classify", "--json", *servers]
        report = json.loads(lab.client_exec(argv, check=True).stdout)
        assert lab.scenario.expected.mismatches(report) == []

A scenario may add further sites on the same internet (``birthday-one-hard``,
``birthday-both-hard``): ``lab.site("b")`` names the roles (``client-b``,
``nat-b``) and public address of site ``b``, so two NATed hosts can be
connected to each other.

IPv6 scenarios (``dual-stack``, ``nat64``, ``nat64-56``) add 2001:db8::/32
to the internet and the client (:mod:`natkit.lab.ipv6`): a dual-stack
client, or an IPv6-only one whose router runs tayga (NAT64) and unbound
(DNS64); ``lab.dns_server``, ``lab.nat64_prefix`` and
``lab.client_addresses_v6`` describe them, and coturn serves IPv6 there and
STUN over TLS in every lab (``lab.tls_certificate``).

``lab.socket(role)`` gives a socket living in a lab namespace for use in this
process (asyncio included); ``natkit.lab.oracle`` reads the ground truth of
a scenario with such sockets on both sides of the NAT. From the shell:
``natkit lab up|down|list`` and ``natkit classify --lab SCENARIO``.

Needs root. Everything the lab creates is named ``nk-<run id>-...`` and is
recorded under ``/run/natkit/labs`` until torn down (``natkit lab down``).
"""

from natkit.lab.classification import (
    Classification,
    FilteringBehavior,
    MappingBehavior,
    PortAllocation,
)
from natkit.lab.errors import (
    CommandError,
    LabError,
    LabPermissionError,
    MissingToolError,
    ServerStartError,
    UnknownLabError,
    UnknownScenarioError,
)
from natkit.lab.ipv6 import Ipv6Spec
from natkit.lab.lab import Lab
from natkit.lab.nat import NatSpec
from natkit.lab.plan import SitePlan
from natkit.lab.scenarios import SCENARIOS, Scenario, Site, get_scenario
from natkit.lab.servers import DEFAULT_SERVERS, ServerAddresses, ServerKind
from natkit.lab.state import LabRecord
from natkit.lab.teardown import orphan_namespaces, remove_orphans, teardown_id

__all__ = [
    "DEFAULT_SERVERS",
    "SCENARIOS",
    "Classification",
    "CommandError",
    "FilteringBehavior",
    "Ipv6Spec",
    "Lab",
    "LabError",
    "LabPermissionError",
    "LabRecord",
    "MappingBehavior",
    "MissingToolError",
    "NatSpec",
    "PortAllocation",
    "Scenario",
    "ServerAddresses",
    "ServerKind",
    "ServerStartError",
    "Site",
    "SitePlan",
    "UnknownLabError",
    "UnknownScenarioError",
    "get_scenario",
    "orphan_namespaces",
    "remove_orphans",
    "teardown_id",
]
