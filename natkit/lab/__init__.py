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
        argv = [sys.executable, "-m", "cli", "classify", "--json", *servers]
        report = json.loads(lab.client_exec(argv, check=True).stdout)
        assert lab.scenario.expected.mismatches(report) == []

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
from natkit.lab.lab import Lab, orphan_namespaces, remove_orphans, teardown_id
from natkit.lab.nat import NatSpec
from natkit.lab.scenarios import SCENARIOS, Scenario, get_scenario
from natkit.lab.servers import DEFAULT_SERVERS, ServerAddresses, ServerKind
from natkit.lab.state import LabRecord

__all__ = [
    "DEFAULT_SERVERS",
    "SCENARIOS",
    "Classification",
    "CommandError",
    "FilteringBehavior",
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
    "UnknownLabError",
    "UnknownScenarioError",
    "get_scenario",
    "orphan_namespaces",
    "remove_orphans",
    "teardown_id",
]
