"""Gathering as data: which server to ask from which socket, and what the answers make.

Pure functions on both sides of the I/O:

* :func:`plan_targets` decides, per server, the paths to ask it over: an
  IPv4 server directly from the IPv4 socket when IPv4 is routed, and through
  every usable NAT64 prefix from the IPv6 socket (that is how an IPv6-only
  host reaches an IPv4 server "by itself"); an IPv6 server directly, unless
  its address is a synthesis under a discovered prefix (then it *is* an
  IPv4 server behind the NAT64, e.g. a name DNS64 answered for); TCP (and
  TLS for ``stuns:`` servers) besides, for when UDP is blocked.
* :func:`find_disagreements` groups what servers said per socket and path.
* :func:`assemble_candidates` turns host addresses, observations, the port
  mapping and static endpoints into prioritised, de-duplicated candidates
  (RFC 8445 §5.1.3: a reflexive address equal to a host one is redundant).
* :func:`build_report` adds the verdicts (UDP blocked, CGNAT/double NAT).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from natkit.endpoint import Endpoint, Family, IPAddress
from natkit.gather.candidates import (
    Candidate,
    CandidateKind,
    CandidateReport,
    CandidateTransport,
    DisagreementKind,
    MappedDisagreement,
    PathKind,
    PortMapObservation,
    PortMapStatus,
    ServerObservation,
)
from natkit.gather.host import ClatDetection, InterfaceAddress
from natkit.gather.reflexive import StreamTarget, StunTarget
from natkit.nat64 import Nat64Discovery, embedded_ipv4, find_prefix, synthesize
from natkit.nat64 import translation_problem as nat64_problem
from natkit.probe.layering import NatLayering, nat_layering

#: RFC 8445 §5.1.2.2 type preferences. A port mapping has no SDP type of its
#: own (it is announced as ``srflx``); it ranks between host and srflx because
#: the gateway forwards to it whatever the NAT's filtering (§5.1.2.1 leaves
#: the values to the agent).
TYPE_PREFERENCE: dict[CandidateKind, int] = {
    CandidateKind.HOST: 126,
    CandidateKind.MAPPED: 110,
    CandidateKind.STATIC: 105,
    CandidateKind.SRFLX: 100,
    # Behind a translator: usable by IPv4 peers, but one more box in the way.
    CandidateKind.NAT64: 90,
}
_PROTOCOL_NAMES = {"pcp": "PCP", "nat-pmp": "NAT-PMP", "upnp-igd": "UPnP IGD"}
#: Taken off the type preference of TCP/TLS candidates (below every UDP one).
STREAM_PENALTY = 60


def candidate_priority(type_preference: int, local_preference: int, component: int) -> int:
    """RFC 8445 §5.1.2.1: (2^24)*type + (2^8)*local + (256 - component)."""
    return (type_preference << 24) + (local_preference << 8) + (256 - component)


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """A STUN server as the user gave it, resolved to one address."""

    #: The text the user wrote (``stun.example.org:3478``, ``stuns:...``).
    label: str
    address: Endpoint
    #: ``stuns:`` (RFC 7064): ask over TLS only.
    tls: bool = False
    #: The host name, to verify a TLS certificate against.
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class TargetPlan:
    """What to ask, and why some servers cannot be asked at all."""

    udp: tuple[StunTarget, ...]
    streams: tuple[StreamTarget, ...]
    skipped: tuple[str, ...] = ()


def _socket_of(sockets: Sequence[Endpoint], family: Family) -> int | None:
    for index, local in enumerate(sockets):
        if local.family is family:
            return index
    return None


def plan_targets(
    servers: Sequence[ServerSpec],
    sockets: Sequence[Endpoint],
    prefixes: Sequence[ipaddress.IPv6Network],
    source_for: Callable[[IPAddress], IPAddress | None],
    *,
    tcp: bool = True,
) -> TargetPlan:
    """The targets for ``servers`` (see the module docstring).

    ``sockets`` are the bound local sockets (one per family, wildcard
    addresses); ``source_for(destination)`` is the local address the kernel
    routes from towards ``destination``, ``None`` when it has no route.
    """
    udp: list[StunTarget] = []
    streams: list[StreamTarget] = []
    skipped: list[str] = []
    v6 = _socket_of(sockets, Family.IPV6)
    for spec in servers:
        paths = _paths(spec, sockets, prefixes, source_for, v6)
        if isinstance(paths, str):
            skipped.append(f"{spec.label}: {paths}")
            continue
        if not spec.tls:
            udp.extend(paths)
        # Over TCP/TLS one path is enough: the direct one when there is one.
        first = next((p for p in paths if p.path is PathKind.DIRECT), paths[0])
        transports = [CandidateTransport.TLS] if spec.tls else []
        if tcp and not spec.tls:
            transports.append(CandidateTransport.TCP)
        streams.extend(
            StreamTarget(
                spec.label,
                first.server,
                first.destination,
                transport,
                first.path,
                first.prefix,
                spec.server_name,
            )
            for transport in transports
        )
    return TargetPlan(tuple(udp), tuple(streams), tuple(skipped))


def _paths(
    spec: ServerSpec,
    sockets: Sequence[Endpoint],
    prefixes: Sequence[ipaddress.IPv6Network],
    source_for: Callable[[IPAddress], IPAddress | None],
    v6: int | None,
) -> list[StunTarget] | str:
    """Every way to reach one server, or why there is none."""
    server = spec.address
    if isinstance(server.address, ipaddress.IPv6Address):
        prefix = find_prefix(server.address, prefixes)
        ipv4 = None if prefix is None else embedded_ipv4(server.address, prefix)
        if prefix is not None and ipv4 is not None:
            # A synthesised address (DNS64 answered for a name): the server is IPv4.
            return _paths(
                ServerSpec(spec.label, Endpoint(ipv4, server.port), spec.tls, spec.server_name),
                sockets,
                prefixes,
                source_for,
                v6,
            )
        if v6 is None:
            return "no IPv6 socket"
        source = source_for(server.address)
        if source is None:
            return "no IPv6 route to it"
        base = Endpoint(source, sockets[v6].port)
        return [StunTarget(spec.label, server, server, v6, base)]

    paths: list[StunTarget] = []
    reasons: list[str] = []
    v4 = _socket_of(sockets, Family.IPV4)
    source = source_for(server.address) if v4 is not None else None
    if v4 is not None and source is not None:
        paths.append(StunTarget(spec.label, server, server, v4, Endpoint(source, sockets[v4].port)))
    else:
        reasons.append("no IPv4 route to it" if v4 is not None else "no IPv4 socket")
    for prefix in prefixes:
        problem = nat64_problem(prefix, server.address)
        if problem is not None:
            reasons.append(f"not through {prefix}: {problem}")
            continue
        if v6 is None:
            reasons.append(f"not through {prefix}: no IPv6 socket")
            continue
        destination = Endpoint(synthesize(prefix, server.address), server.port)
        source = source_for(destination.address)
        if source is None:
            reasons.append(f"not through {prefix}: no IPv6 route to {destination.address}")
            continue
        base = Endpoint(source, sockets[v6].port)
        paths.append(StunTarget(spec.label, server, destination, v6, base, PathKind.NAT64, prefix))
    if not paths:
        if not prefixes:
            reasons.append("and no NAT64 prefix was found")
        return "; ".join(reasons)
    return paths


# -- what the answers mean ------------------------------------------------------------


def find_disagreements(
    observations: Sequence[ServerObservation],
) -> tuple[MappedDisagreement, ...]:
    """Servers that saw one socket (over one path and prefix) differently."""
    groups: dict[tuple[object, ...], list[ServerObservation]] = {}
    for obs in observations:
        if obs.answered and obs.transport is CandidateTransport.UDP:
            groups.setdefault((obs.base, obs.path, obs.prefix), []).append(obs)
    found: list[MappedDisagreement] = []
    for group in groups.values():
        mapped = [(o.server, o.mapped) for o in group if o.mapped is not None]
        distinct = list(dict.fromkeys(m for _, m in mapped))
        if len(distinct) < 2:
            continue
        addresses = {m.address for m in distinct}
        listing = ", ".join(f"{s} saw {m}" for s, m in mapped)
        if len(addresses) > 1:
            kind = DisagreementKind.ADDRESS
            reason = (
                f"servers disagree about the public address ({listing}):"
                " pooled NAT addresses or several exits"
            )
        else:
            kind = DisagreementKind.PORT
            reason = (
                f"servers disagree about the port ({listing}): the mapping depends on the"
                " destination (RFC 4787 address- or address-and-port-dependent), so a"
                " peer will likely see yet another port"
            )
        found.append(MappedDisagreement(group[0].base, group[0].path, kind, tuple(mapped), reason))
    return tuple(found)


def _local_preference(address: Endpoint, transport: CandidateTransport) -> int:
    # IPv6 first (RFC 8421 asks for both families early; a fixed order is
    # the simple case), UDP before TCP/TLS, which only help a relay.
    preference = 65535 if address.family is Family.IPV6 else 65000
    return preference - (30000 if transport is not CandidateTransport.UDP else 0)


def unique_priorities(candidates: Sequence[Candidate]) -> tuple[Candidate, ...]:
    """The candidates, each priority made unique by lowering the local
    preference of later ones that share it: RFC 8445 §5.1.2.1 wants a
    unique local preference for every candidate of one type (a multihomed
    host's addresses all had 65535, so their pairs tied). Earlier ones keep
    theirs: host candidates, which come first, never move when a reflexive
    one arrives."""
    used: set[int] = set()
    out: list[Candidate] = []
    for candidate in candidates:
        priority = candidate.priority
        while priority in used and (priority >> 8) & 0xFFFF > 0:
            priority -= 1 << 8  # one less local preference, same type
        used.add(priority)
        out.append(
            candidate if priority == candidate.priority else replace(candidate, priority=priority)
        )
    return tuple(out)


def _candidate(
    kind: CandidateKind,
    address: Endpoint,
    base: Endpoint | None,
    source: str,
    *,
    transport: CandidateTransport = CandidateTransport.UDP,
    rtt: float | None = None,
    sources: tuple[str, ...] = (),
    prefix: ipaddress.IPv6Network | None = None,
) -> Candidate:
    preference = TYPE_PREFERENCE[kind]
    if transport is not CandidateTransport.UDP:
        # Every UDP candidate first: a TCP/TLS one only helps a relay.
        preference -= STREAM_PENALTY
    priority = candidate_priority(preference, _local_preference(address, transport), 1)
    return Candidate(
        kind, address, base, source, transport, rtt, sources or (source,), prefix, priority
    )


def host_candidates(
    addresses: Sequence[InterfaceAddress], sockets: Sequence[Endpoint]
) -> tuple[Candidate, ...]:
    """Each usable address with the port of its family's socket."""
    found: list[Candidate] = []
    for item in addresses:
        family = Family.IPV4 if item.address.version == 4 else Family.IPV6
        index = _socket_of(sockets, family)
        if index is None:
            continue
        endpoint = Endpoint(item.address, sockets[index].port)
        found.append(_candidate(CandidateKind.HOST, endpoint, endpoint, item.interface))
    return unique_priorities(found)


def assemble_candidates(
    host: Sequence[Candidate],
    observations: Sequence[ServerObservation],
    port_mapping: PortMapObservation | None = None,
    statics: Sequence[Endpoint] = (),
    sockets: Sequence[Endpoint] = (),
) -> tuple[tuple[Candidate, ...], tuple[str, ...]]:
    """All candidates, highest priority first, and notes on what was dropped."""
    candidates: list[Candidate] = list(host)
    notes: list[str] = []
    taken = {(c.address, c.transport) for c in host}

    # A granted mapping first: the gateway promises to forward to it whatever
    # its filtering, so a server that saw the same endpoint only confirms it.
    external = None if port_mapping is None else port_mapping.external
    if port_mapping is not None and external is not None:
        confirming = tuple(
            dict.fromkeys(
                o.server
                for o in observations
                if o.answered and o.mapped == external and o.transport is CandidateTransport.UDP
            )
        )
        protocol = port_mapping.protocol or "port mapping"
        taken.add((external, CandidateTransport.UDP))
        candidates.append(
            _candidate(
                CandidateKind.MAPPED,
                external,
                port_mapping.base,
                protocol,
                rtt=port_mapping.elapsed,
                sources=(protocol, *confirming),
            )
        )
        if confirming:
            notes.append(f"{external} seen by {', '.join(confirming)} is the port mapping")

    # Reflexive addresses: one candidate per distinct address, every server
    # that reported it in ``sources``, the smallest RTT.
    grouped: dict[tuple[Endpoint, CandidateTransport, PathKind], list[ServerObservation]] = {}
    for obs in observations:
        if obs.answered and obs.mapped is not None:
            grouped.setdefault((obs.mapped, obs.transport, obs.path), []).append(obs)
    for (mapped, transport, path), group in grouped.items():
        first = group[0]
        if (mapped, transport) == (external, CandidateTransport.UDP):
            continue
        if (mapped, transport) in taken or any(mapped == o.base for o in group):
            notes.append(f"{mapped} from {first.server} is a host address: no NAT on that path")
            continue
        taken.add((mapped, transport))
        rtts = [o.rtt for o in group if o.rtt is not None]
        kind = CandidateKind.NAT64 if path is PathKind.NAT64 else CandidateKind.SRFLX
        candidates.append(
            _candidate(
                kind,
                mapped,
                first.base,
                first.server,
                transport=transport,
                rtt=min(rtts) if rtts else None,
                sources=tuple(dict.fromkeys(o.server for o in group)),
                prefix=first.prefix,
            )
        )

    for endpoint in statics:
        if (endpoint, CandidateTransport.UDP) in taken:
            notes.append(f"static {endpoint} was already found")
            continue
        taken.add((endpoint, CandidateTransport.UDP))
        index = _socket_of(sockets, endpoint.family)
        base = None if index is None else sockets[index]
        candidates.append(_candidate(CandidateKind.STATIC, endpoint, base, "static"))

    candidates = list(unique_priorities(candidates))
    candidates.sort(key=lambda c: -c.priority)
    return tuple(candidates), tuple(notes)


def udp_blocked_verdict(observations: Sequence[ServerObservation]) -> tuple[bool | None, str]:
    """UDP blocked: UDP targets existed, none answered, and TCP/TLS did."""
    udp = [o for o in observations if o.transport is CandidateTransport.UDP]
    streams = [o for o in observations if o.transport is not CandidateTransport.UDP]
    if any(o.answered for o in udp):
        return False, "UDP answers received"
    answered = [o for o in streams if o.answered]
    if answered and udp:
        names = ", ".join(dict.fromkeys(f"{o.server} ({o.transport.value})" for o in answered))
        return True, (
            f"no server answered over UDP but {names} did: UDP is blocked, so only a"
            " relay over TCP or TLS (TURN, RFC 8656 / RFC 6062) can carry traffic"
        )
    if answered:
        return None, "only TCP/TLS servers were asked"
    if not observations:
        return None, "no server was asked"
    return None, "no server answered over UDP, TCP or TLS"


def build_report(
    *,
    host: Sequence[Candidate],
    observations: Sequence[ServerObservation],
    nat64: Nat64Discovery,
    clat: ClatDetection,
    port_mapping: PortMapObservation,
    statics: Sequence[Endpoint] = (),
    sockets: Sequence[Endpoint] = (),
    duration: float,
    notes: Sequence[str] = (),
) -> CandidateReport:
    """The report of one gathering: candidates, verdicts and their reasons."""
    udp_blocked, udp_reason = udp_blocked_verdict(observations)
    # TCP/TLS mappings die with their connection: candidates only when they
    # are all there is (no UDP answer), otherwise they stay in ``servers``.
    udp_answered = any(o.answered and o.transport is CandidateTransport.UDP for o in observations)
    usable = [o for o in observations if not udp_answered or o.transport is CandidateTransport.UDP]
    candidates, dropped = assemble_candidates(host, usable, port_mapping, statics, sockets)
    direct_v4 = [
        o
        for o in observations
        if o.answered
        and o.transport is CandidateTransport.UDP
        and o.path is PathKind.DIRECT
        and o.address.family is Family.IPV4
    ]
    if not direct_v4:
        # UDP blocked: the TCP mapping is still evidence of the NAT layering.
        direct_v4 = [
            o
            for o in observations
            if o.answered and o.path is PathKind.DIRECT and o.address.family is Family.IPV4
        ]
    local = list(dict.fromkeys(o.base.address for o in direct_v4 if o.base is not None))
    mapped = [(o.server, o.mapped) for o in direct_v4 if o.mapped is not None]
    gateway = port_mapping.gateway_external
    layering = nat_layering(
        local=local,
        mapped=mapped,
        gateway_external=gateway,
        gateway_source=f"the {_PROTOCOL_NAMES.get(port_mapping.protocol, port_mapping.protocol)}"
        " gateway"
        if port_mapping.protocol
        else "the port-mapping gateway",
    )
    translated = [o for o in observations if o.answered and o.path is PathKind.NAT64]
    if not direct_v4 and translated:
        # The NAT64 is the only IPv4 path: its mapping says nothing about
        # further NAT layers on an IPv4 path this host does not have.
        public = ", ".join(dict.fromkeys(str(o.mapped.address) for o in translated if o.mapped))
        why = f"no direct IPv4 path: IPv4 is reached only through the NAT64, as {public}"
        layering = NatLayering(None, why, None, why)
    reasons = {
        "udp_blocked": udp_reason,
        "port_mapping": port_mapping.detail or port_mapping.status.value,
        "clat": clat.reason,
    }
    if port_mapping.status is PortMapStatus.NOT_TESTED and not port_mapping.detail:
        reasons["port_mapping"] = "not tested"
    extra = [*notes, *dropped]
    if extra:
        reasons["notes"] = "; ".join(extra)
    return CandidateReport(
        candidates=candidates,
        servers=tuple(observations),
        disagreements=find_disagreements(observations),
        nat64=nat64,
        clat=clat,
        layering=layering,
        port_mapping=port_mapping,
        udp_blocked=udp_blocked,
        duration=duration,
        reasons=reasons,
    )
