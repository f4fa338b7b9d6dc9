"""Ground truth for a lab, measured with raw sockets on both sides of the NAT.

A classifier sees the NAT from the inside only and must infer; the lab can
look from both sides at once. This module holds sockets in the client
namespace *and* on the ``peer`` internet host (192.0.2.10 and .11, one
process, see :func:`natkit.lab.netns.in_netns`) and reads the answers off
directly:

* mapping (RFC 4787 §4.1): one client socket sends to three peer sockets,
  ``same`` (.10, port A), ``port`` (.10, port B) and ``addr`` (.11); the
  peer sockets see which external endpoint each packet came from;
* port allocation (§4.2): the (inside port, external port) pairs of the new
  mappings, in the order they were made, from those sends and two more
  fresh sockets;
* filtering (§5): a fresh socket sends to ``same`` only, then all three
  peer sockets send to its external endpoint; what reaches it is the
  filter;
* hairpinning (§6): a socket on the client's second address sends to the
  external endpoint of a socket on the first.

It needs a lab without packet loss, in a clean state (``Lab.reset_state``).
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import select
import socket
import time
from dataclasses import dataclass

from natkit.endpoint import Endpoint
from natkit.lab.classification import (
    Classification,
    FilteringBehavior,
    MappingBehavior,
    PortAllocation,
)
from natkit.lab.lab import Lab
from natkit.lab.plan import CLIENT_ROLE, PEER_ADDRESSES, PEER_ROLE

#: How long a packet that should arrive may take (a local veth path: < 1 ms).
ARRIVAL_TIMEOUT_S = 1.0
#: How long to wait before concluding that a packet was filtered.
FILTER_WINDOW_S = 0.5
#: Inside ports are drawn from here: clear of the ephemeral default range's
#: low end, of ``masquerade to :20000-29999`` and of the sequential 40000-40511.
INSIDE_PORTS = (50000, 59999)


@dataclass(frozen=True, slots=True)
class Observation:
    """What the raw-socket probes saw; :meth:`classification` interprets it."""

    local: Endpoint
    """The mapping probe's inside endpoint."""
    mapped_same: Endpoint | None
    """Its external endpoint as seen by ``same``; ``None``: nothing arrived."""
    mapped_port: Endpoint | None
    """... as seen by ``port`` (same address, other port)."""
    mapped_addr: Endpoint | None
    """... as seen by ``addr`` (other address)."""
    allocations: tuple[tuple[int, int], ...]
    """(inside port, external port) of each new mapping, in creation order."""
    filtering_delivered: frozenset[str]
    """Which of ``same``, ``port``, ``addr`` reached the filtering probe."""
    hairpin_delivered: bool | None
    """``None`` when not applicable (no NAT, or one client address)."""
    hairpin_source: Endpoint | None
    """Where the hairpinned packet appeared to come from."""

    @property
    def udp_blocked(self) -> bool:
        return self.mapped_same is None

    @property
    def behind_nat(self) -> bool | None:
        if self.mapped_same is None:
            return None
        return self.mapped_same != self.local

    @property
    def mapping(self) -> MappingBehavior:
        same, port, addr = self.mapped_same, self.mapped_port, self.mapped_addr
        if same is None or port is None or addr is None:
            return MappingBehavior.UNKNOWN
        if same == port == addr:
            return MappingBehavior.EIM
        if same == port:
            return MappingBehavior.ADM
        if len({same, port, addr}) == 3:
            return MappingBehavior.APDM
        return MappingBehavior.UNKNOWN

    @property
    def filtering(self) -> FilteringBehavior:
        got = self.filtering_delivered
        if "same" not in got:
            return FilteringBehavior.UNKNOWN
        if {"port", "addr"} <= got:
            return FilteringBehavior.EIF
        if "addr" in got:
            return FilteringBehavior.UNKNOWN
        return FilteringBehavior.ADF if "port" in got else FilteringBehavior.APDF

    @property
    def port_allocation(self) -> PortAllocation:
        pairs = self.allocations
        if not pairs:
            return PortAllocation.UNKNOWN
        if all(inside == outside for inside, outside in pairs):
            return PortAllocation.PRESERVING
        outside = [o for _, o in pairs]
        if len(outside) >= 3 and all(b - a == 1 for a, b in itertools.pairwise(outside)):
            return PortAllocation.SEQUENTIAL
        return PortAllocation.RANDOM

    def classification(self, tcp_source: Endpoint | None = None) -> Classification:
        """What the raw sockets saw; with UDP blocked, whether the host is
        NATed comes from ``tcp_source``, the source a TCP peer saw."""
        if self.udp_blocked:
            behind_nat = None if tcp_source is None else tcp_source.address != self.local.address
            return Classification.udp_blocked_result(behind_nat=behind_nat)
        return Classification(
            mapping=self.mapping,
            filtering=self.filtering,
            hairpin=self.hairpin_delivered,
            port_allocation=self.port_allocation,
            udp_blocked=False,
            behind_nat=self.behind_nat,
        )


class _Probe:
    """Sockets on both sides of the lab's NAT, closed together."""

    def __init__(self, lab: Lab, stack: contextlib.ExitStack) -> None:
        self._lab = lab
        self._stack = stack
        self._nonce = secrets.token_hex(4)

    def client(self, address_index: int = 0) -> socket.socket:
        address = str(self._lab.client_addresses[address_index])
        while True:
            sock = self._stack.enter_context(self._lab.socket(CLIENT_ROLE))
            port = INSIDE_PORTS[0] + secrets.randbelow(INSIDE_PORTS[1] - INSIDE_PORTS[0] + 1)
            try:
                sock.bind((address, port))
            except OSError:
                continue
            return sock

    def peer(self, address: str) -> socket.socket:
        sock = self._stack.enter_context(self._lab.socket(PEER_ROLE))
        sock.bind((address, 0))
        return sock

    def send(self, src: socket.socket, dst: tuple[str, int], tag: str) -> None:
        src.sendto(f"{self._nonce} {tag}".encode(), dst)

    def exchange(self, src: socket.socket, dst: socket.socket, tag: str) -> Endpoint | None:
        """Send ``tag`` from ``src`` to ``dst``; the source ``dst`` saw, if it arrived."""
        self.send(src, dst.getsockname(), tag)
        got = self.collect([dst], ARRIVAL_TIMEOUT_S, until={tag})
        return got.get(tag)

    def collect(
        self, socks: list[socket.socket], window: float, until: set[str] | None = None
    ) -> dict[str, Endpoint]:
        """Tags received on ``socks`` within ``window`` s -> their source endpoints."""
        seen: dict[str, Endpoint] = {}
        deadline = time.monotonic() + window
        while (remaining := deadline - time.monotonic()) > 0:
            if until is not None and until <= seen.keys():
                break
            readable, _, _ = select.select(socks, [], [], remaining)
            for sock in readable:
                try:
                    data, source = sock.recvfrom(2048)
                except OSError:  # ICMP errors surface on the next recv
                    continue
                nonce, _, tag = data.decode(errors="replace").partition(" ")
                if nonce == self._nonce:
                    seen[tag] = Endpoint.from_sockaddr(source)
        return seen


def observe(lab: Lab) -> Observation:
    """Probe ``lab``'s NAT with raw sockets; see the module docstring."""
    with contextlib.ExitStack() as stack:
        probe = _Probe(lab, stack)
        same = probe.peer(str(PEER_ADDRESSES[0]))
        other_port = probe.peer(str(PEER_ADDRESSES[0]))
        other_addr = probe.peer(str(PEER_ADDRESSES[1]))

        # Mapping: one inside socket, three destinations, one at a time so
        # that mappings are created in a known order.
        main = probe.client()
        local = Endpoint.from_sockaddr(main.getsockname())
        mapped_same = probe.exchange(main, same, "map-same")
        if mapped_same is None:
            return Observation(local, None, None, None, (), frozenset(), None, None)
        mapped_port = probe.exchange(main, other_port, "map-port")
        mapped_addr = probe.exchange(main, other_addr, "map-addr")
        externals: list[Endpoint] = []
        for ext in (mapped_same, mapped_port, mapped_addr):
            if ext is not None and ext not in externals:
                externals.append(ext)
        allocations = [(local.port, ext.port) for ext in externals]
        for i in range(2):
            fresh = probe.client()
            ext = probe.exchange(fresh, same, f"alloc-{i}")
            if ext is not None:
                allocations.append((fresh.getsockname()[1], ext.port))

        # Filtering: a socket that has talked to ``same`` only.
        filt = probe.client()
        filt_ext = probe.exchange(filt, same, "filter-open")
        delivered: frozenset[str] = frozenset()
        hairpin: bool | None = None
        hairpin_source: Endpoint | None = None
        if filt_ext is not None:
            for sock, tag in ((same, "same"), (other_port, "port"), (other_addr, "addr")):
                probe.send(sock, filt_ext.sockaddr(), tag)
            delivered = frozenset(probe.collect([filt], FILTER_WINDOW_S))

        # Hairpin: second inside address -> first one's external endpoint.
        behind_nat = mapped_same != local
        if behind_nat and len(lab.client_addresses) > 1:
            first = probe.client(0)
            first_ext = probe.exchange(first, same, "hairpin-open")
            if first_ext is not None:
                second = probe.client(1)
                probe.send(second, first_ext.sockaddr(), "hairpin")
                got = probe.collect([first], FILTER_WINDOW_S, until={"hairpin"})
                hairpin = "hairpin" in got
                hairpin_source = got.get("hairpin")

        return Observation(
            local=local,
            mapped_same=mapped_same,
            mapped_port=mapped_port,
            mapped_addr=mapped_addr,
            allocations=tuple(allocations),
            filtering_delivered=delivered,
            hairpin_delivered=hairpin,
            hairpin_source=hairpin_source,
        )


def observe_tcp(lab: Lab, timeout: float = ARRIVAL_TIMEOUT_S) -> Endpoint | None:
    """Connect by TCP from the client to the peer host; the source it saw, or ``None``."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(lab.socket(PEER_ROLE, kind=socket.SOCK_STREAM))
        listener.bind((str(PEER_ADDRESSES[0]), 0))
        listener.listen(1)
        client = stack.enter_context(lab.socket(CLIENT_ROLE, kind=socket.SOCK_STREAM))
        client.settimeout(timeout)
        try:
            client.connect(listener.getsockname())
        except OSError:
            return None
        listener.settimeout(timeout)
        conn, source = listener.accept()
        conn.close()
        return Endpoint.from_sockaddr(source)
