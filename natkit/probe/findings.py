"""From a finished run's probes to the report: which verdict, and why.

The classifier hands over everything it observed as one :class:`Findings`;
:func:`build_report` applies the decision tables of
:mod:`natkit.probe.verdicts` and writes a reason for every verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from natkit.endpoint import Endpoint
from natkit.probe.evidence import LossEvidence
from natkit.probe.hops import Hop, describe_path
from natkit.probe.layering import NatLayering, nat_layering
from natkit.probe.probes import Probe, TcpCheck, first_mapped
from natkit.probe.report import (
    ClassificationReport,
    FilteringBehavior,
    MappingBehavior,
    ProbeObservation,
    ProbeOutcome,
    RunStatus,
    ServerReport,
    Verdict,
)
from natkit.probe.verdicts import (
    filtering_from_rfc5780,
    hairpin_from_test,
    mapping_from_rfc5780,
    mapping_from_servers,
    port_allocation,
)
from natkit.stun.constants import ChangeFlags


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What a server said about itself in its first answer."""

    other_address: Endpoint | None
    software: str | None


@dataclass(frozen=True, slots=True)
class Findings:
    """Everything one classification run observed."""

    servers: tuple[Endpoint, ...]
    sockets: tuple[Endpoint, ...]
    #: The MAPPING socket's local endpoint.
    local: Endpoint
    #: The MAPPING socket's binding probe to each server.
    bindings: Mapping[Endpoint, Probe]
    server_info: Mapping[Endpoint, ServerInfo]
    #: The server that ran the RFC 5780 tests, if any offered OTHER-ADDRESS.
    discovery: Endpoint | None
    #: RFC 5780 §4.3 tests II and III, §4.4 tests II and III.
    mapping_tests: tuple[Probe, Probe] | None
    filtering_tests: tuple[Probe, Probe] | None
    hairpin: Probe | None
    hairpin_wanted: bool
    #: First packets of distinct sockets to the reference server.
    allocation_probes: tuple[Probe, ...]
    probes: tuple[Probe, ...]
    tcp: TcpCheck
    any_udp_answer: bool
    #: The run's RTT (:attr:`natkit.probe.rtt.PathRtt.typical`).
    rtt: float | None
    evidence: LossEvidence
    duration: float
    #: What the hop probe found toward the reference server (``None``: not run).
    hops: tuple[Hop, ...] | None = None

    def mapped(self) -> Endpoint | None:
        """The MAPPING socket's mapped address: towards the first server, else any."""
        return first_mapped(self.servers, self.bindings)


def build_report(f: Findings) -> ClassificationReport:
    reasons: dict[Verdict, str] = {}
    mapped = f.mapped()

    if f.any_udp_answer:
        status = RunStatus.OK
    elif f.tcp.rtt is not None:
        status = RunStatus.UDP_BLOCKED
    else:
        status = RunStatus.UNREACHABLE
    reasons[Verdict.UDP_BLOCKED] = {
        RunStatus.OK: "UDP answers received",
        RunStatus.UDP_BLOCKED: "the server answered over TCP but never over UDP",
        RunStatus.UNREACHABLE: "no answer over UDP or TCP from any server",
    }[status]

    behind_nat: bool | None
    if mapped is not None:
        behind_nat = mapped != f.local
        reasons[Verdict.BEHIND_NAT] = f"local {f.local}, mapped {mapped}"
    elif f.tcp.mapped is not None:
        behind_nat = f.tcp.mapped.address != f.local.address
        reasons[Verdict.BEHIND_NAT] = f"local {f.local.address}, TCP mapped {f.tcp.mapped}"
    else:
        behind_nat = None
        reasons[Verdict.BEHIND_NAT] = "no mapped address"

    mapping, reasons[Verdict.MAPPING] = _mapping(f, mapped)
    filtering, reasons[Verdict.FILTERING] = _filtering(f)
    if f.hairpin is not None:
        hairpin, reasons[Verdict.HAIRPIN] = hairpin_from_test(f.hairpin.result())
    else:
        hairpin = None
        if not f.hairpin_wanted:
            reasons[Verdict.HAIRPIN] = "not tested"
        elif behind_nat is False:
            reasons[Verdict.HAIRPIN] = "not behind a NAT"
        else:
            reasons[Verdict.HAIRPIN] = "not tested: no mapped address"
    samples = [
        (f.sockets[p.socket].port, p.mapped.port)
        for p in f.allocation_probes
        if p.mapped is not None
    ]
    allocation, delta, reasons[Verdict.PORT_ALLOCATION] = port_allocation(samples)

    both = [
        a
        for p in f.probes
        for a in p.answers
        if a.mapped_address is not None and a.plain_mapped_address is not None
    ]
    alg = any(a.mapped_address != a.plain_mapped_address for a in both) if both else None
    layering = _layering(f)
    reasons[Verdict.CGNAT] = layering.cgnat_reason
    reasons[Verdict.DOUBLE_NAT] = layering.double_nat_reason
    reasons[Verdict.PATH] = (
        "not probed" if f.hops is None else f"toward {f.servers[0]}: {describe_path(f.hops)}"
    )
    return ClassificationReport(
        status=status,
        udp_blocked=not f.any_udp_answer,
        behind_nat=behind_nat,
        mapping=mapping,
        filtering=filtering,
        hairpin=hairpin,
        port_allocation=allocation,
        port_allocation_delta=delta,
        mapped_address=mapped,
        local_address=f.local,
        alg_detected=alg,
        servers=tuple(
            ServerReport(
                address=server,
                answered=bool(f.bindings[server].answers),
                other_address=_info(f, server).other_address,
                software=_info(f, server).software,
            )
            for server in f.servers
        ),
        rtt=f.rtt if f.rtt is not None else f.tcp.rtt,
        loss_estimate=f.evidence.observed_loss,
        duration=f.duration,
        reasons=reasons,
        observations=tuple(_observe(f, p) for p in f.probes),
        tcp_mapped_address=f.tcp.mapped,
        cgnat=layering.cgnat,
        double_nat=layering.double_nat,
        path=f.hops,
    )


def _info(f: Findings, server: Endpoint) -> ServerInfo:
    return f.server_info.get(server, ServerInfo(None, None))


def _mapping(f: Findings, mapped: Endpoint | None) -> tuple[MappingBehavior, str]:
    if mapped is None:
        return MappingBehavior.UNKNOWN, "no UDP mapping was seen"
    if mapped == f.local:
        # RFC 5780 §4.3: not NATed, so the effective mapping is endpoint-independent.
        return MappingBehavior.EIM, "not behind a NAT: the mapped address is the local one"
    if f.discovery is not None and f.mapping_tests is not None:
        test_ii, test_iii = f.mapping_tests
        return mapping_from_rfc5780(f.bindings[f.discovery].mapped, test_ii.mapped, test_iii.mapped)
    mapped_by_address: dict[object, Endpoint] = {}
    for server in f.servers:
        found = f.bindings[server].mapped
        if found is not None:
            mapped_by_address.setdefault(server.address, found)
    return mapping_from_servers(list(mapped_by_address.values()))


def _filtering(f: Findings) -> tuple[FilteringBehavior, str]:
    if f.filtering_tests is None:
        ignored = [
            f"{server}'s {other} is another address family"
            for server in f.servers
            if (other := _info(f, server).other_address) is not None
            and other.address.version != server.address.version
        ]
        if ignored:
            return (
                FilteringBehavior.UNKNOWN,
                "no server offered a usable RFC 5780 OTHER-ADDRESS (" + "; ".join(ignored) + ")",
            )
        return FilteringBehavior.UNKNOWN, "no server offered RFC 5780 (OTHER-ADDRESS)"
    change_both, change_port = f.filtering_tests
    return filtering_from_rfc5780(change_both.result(), change_port.result())


def _layering(f: Findings) -> NatLayering:
    """CGNAT / double NAT from this run's IPv4 observations (no gateway asked)."""
    mapped = [
        (str(server), found)
        for server in f.servers
        if (found := f.bindings[server].mapped) is not None and found.address.version == 4
    ]
    if not mapped and f.tcp.mapped is not None and f.tcp.mapped.address.version == 4:
        mapped = [(f"{f.tcp.server} (TCP)", f.tcp.mapped)]
    ipv4_local = [f.local.address] if f.local.address.version == 4 else []
    # The hops are toward the reference server: evidence about the IPv4 path
    # only when that server is an IPv4 one.
    hops = f.hops if f.servers[0].address.version == 4 else None
    return nat_layering(local=ipv4_local, mapped=mapped, hops=hops)


def _observe(f: Findings, probe: Probe) -> ProbeObservation:
    return ProbeObservation(
        test=probe.test,
        local=f.sockets[probe.socket],
        destination=probe.destination,
        change_ip=bool(probe.change & ChangeFlags.CHANGE_IP),
        change_port=bool(probe.change & ChangeFlags.CHANGE_PORT),
        attempts=len(probe.attempts),
        outcome=probe.outcome or ProbeOutcome.NOT_RUN,
        answers=tuple(probe.answers),
        false_negative_probability=probe.false_negative,
    )
