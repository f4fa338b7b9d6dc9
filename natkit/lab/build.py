"""Building a lab: claiming a run id, then the network itself.

Build order (each step batched; independent steps run in parallel):

1. reserve a run id by creating the state file (:func:`reserve`);
2. ``ip -batch``: create every namespace;
3. sysctls per namespace (before links, so ``default`` values apply to them);
4. ``ip -batch`` in the root namespace: veth pairs, each end created
   directly inside its namespace;
5. ``ip -n NS -batch`` per namespace, in parallel: addresses, routes, bridge;
6. ``nft -f`` per router, in parallel; then conntrack sysctls.

Steps 2-6 are :func:`build_network`; the :class:`~natkit.lab.Lab` then
starts the servers and gateways, whose processes it keeps.
"""

from __future__ import annotations

import secrets

from natkit.lab import miniupnpd, state
from natkit.lab.errors import LabError
from natkit.lab.netns import (
    add_namespaces,
    ip_batch,
    list_namespaces,
    nft_load,
    run,
    run_all,
    write_sysctls,
)
from natkit.lab.plan import NAMESPACE_RE, RUN_ID_RE, LabPlan, plan_lab
from natkit.lab.scenarios import Scenario
from natkit.lab.servers import ServerKind
from natkit.lab.state import LabRecord

#: Attempts at drawing a free run id before giving up.
_RUN_ID_ATTEMPTS = 32


def reserve(
    scenario: Scenario, kinds: tuple[ServerKind, ...], run_id: str | None
) -> tuple[LabPlan, LabRecord]:
    """Plan the lab and claim its run id by creating the state file."""
    candidates = [run_id] if run_id is not None else [_random_id() for _ in range(_RUN_ID_ATTEMPTS)]
    in_use = {m.group(1) for n in list_namespaces() if (m := NAMESPACE_RE.match(n))}
    for candidate in candidates:
        if not RUN_ID_RE.match(candidate):
            raise ValueError(f"run id must be 5 lowercase hex digits, got {candidate!r}")
        if candidate in in_use:
            continue
        plan = plan_lab(scenario, candidate)
        record = state.new_record(
            candidate,
            scenario.name,
            tuple(plan.namespaces.values()),
            tuple(k.value for k in kinds),
        )
        if state.reserve(record):
            return plan, record
    if run_id is not None:
        raise LabError(f"lab id {run_id!r} is already in use")
    raise LabError("could not find a free lab id")


def build_network(plan: LabPlan) -> None:
    """Namespaces, links, addresses, routes and NAT rules of ``plan`` (steps 2-6)."""
    add_namespaces([h.namespace for h in plan.hosts])
    for host in plan.hosts:
        write_sysctls(host.namespace, host.sysctls)
    run(ip_batch([v.ip_command() for v in plan.veths]))
    run_all([ip_batch(h.ip_commands, h.namespace) for h in plan.hosts])
    routers = plan.routers
    run_all([nft_load(r.namespace, r.ruleset or "") for r in routers])
    run_all([nft_load(g.namespace, miniupnpd.render_chains()) for g in plan.gateways])
    for router in routers:
        write_sysctls(router.namespace, router.late_sysctls)


def _random_id() -> str:
    return secrets.token_hex(3)[:5]
