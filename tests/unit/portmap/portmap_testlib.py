"""Shared by the port-mapping tests: a fake gateway and a virtual-clock harness.

``FakeGateway`` answers PCP and NAT-PMP the way LAB.md saw miniupnpd do it
(PCP lifetimes clamped to 120-86400 s, version 3 answered with version 2,
a new nonce taking a mapping over and the old one then refused, the epoch
restarting at 0), and counts every message it handles, after tailscale's
``igd_test.go``. It packs and unpacks bytes by hand from the RFC layouts,
independently of natkit's codec, so a codec bug cannot cancel itself out.

``Harness`` drives one client core and the gateway on a virtual clock:
datagrams arrive instantly, timers fire exactly at their deadline; the UPnP
calls a client asks for are answered at once by a ``FakeUpnp``.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from fake_upnp import FakeUpnp

from natkit.endpoint import Endpoint
from natkit.portmap.events import PortmapEvent
from natkit.portmap.lease import LeaseClient
from natkit.portmap.upnp_calls import UpnpCall, UpnpCallRequested
from natkit.portmap.upnp_client import UpnpClient

GATEWAY = Endpoint.parse("192.168.1.1:5351")
CLIENT = Endpoint.parse("192.168.1.10:40000")
INTERNAL = Endpoint.parse("192.168.1.10:51820")
EXTERNAL_IP = ipaddress.IPv4Address("203.0.113.7")
NONCE = bytes.fromhex("0102030405060708090a0b0c")

V4_MAPPED = b"\x00" * 10 + b"\xff\xff"


def v4mapped(address: str) -> bytes:
    return V4_MAPPED + ipaddress.IPv4Address(address).packed


# --- hand-made PCP and NAT-PMP bytes (RFC 6887 §7.2, §11.1; RFC 6886 §3) ---------------


def pcp_map_response(
    *,
    nonce: bytes = NONCE,
    result: int = 0,
    lifetime: int = 7200,
    epoch: int = 100,
    protocol: int = 17,
    internal_port: int = 51820,
    external_port: int = 51820,
    external_address: str = str(EXTERNAL_IP),
    opcode_byte: int = 0x81,
    version: int = 2,
) -> bytes:
    header = struct.pack("!BBBBII12x", version, opcode_byte, 0, result, lifetime, epoch)
    body = struct.pack(
        "!12sB3xHH16s",
        nonce,
        protocol,
        internal_port,
        external_port,
        v4mapped(external_address),
    )
    return header + body


def pcp_announce_response(*, epoch: int, result: int = 0) -> bytes:
    return struct.pack("!BBBBII12x", 2, 0x80, 0, result, 0, epoch)


def pmp_address_response(*, epoch: int, address: str = str(EXTERNAL_IP), result: int = 0) -> bytes:
    return struct.pack("!BBHI4s", 0, 128, result, epoch, ipaddress.IPv4Address(address).packed)


def pmp_map_response(
    *,
    epoch: int,
    internal_port: int = 51820,
    external_port: int = 51820,
    lifetime: int = 7200,
    result: int = 0,
    opcode: int = 1,
) -> bytes:
    return struct.pack(
        "!BBHIHHI", 0, 128 + opcode, result, epoch, internal_port, external_port, lifetime
    )


# --- the fake gateway -----------------------------------------------------------------


@dataclass(slots=True)
class Lease:
    nonce: bytes | None
    external_port: int
    expires_at: float
    #: Nonces this lease was taken away from (they now get NOT_AUTHORIZED).
    revoked: set[bytes] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class PcpSeen:
    """One PCP MAP request as the gateway parsed it."""

    time: float
    lifetime: int
    client_address: ipaddress.IPv4Address | ipaddress.IPv6Address
    nonce: bytes
    protocol: int
    internal_port: int
    suggested_port: int


@dataclass(frozen=True, slots=True)
class PmpSeen:
    """One NAT-PMP map request as the gateway parsed it."""

    time: float
    opcode: int
    internal_port: int
    suggested_port: int
    lifetime: int


class FakeGateway:
    """A PCP + NAT-PMP server in miniature (see the module docstring)."""

    def __init__(
        self,
        endpoint: Endpoint = GATEWAY,
        external: ipaddress.IPv4Address = EXTERNAL_IP,
        now: float = 0.0,
        *,
        pcp: bool = True,
        pmp: bool = True,
    ) -> None:
        self.endpoint = endpoint
        self.external = external
        self.pcp = pcp
        self.pmp = pmp
        self.counters: Counter[str] = Counter()
        self.pcp_seen: list[PcpSeen] = []
        self.pmp_seen: list[PmpSeen] = []
        self.leases: dict[tuple[int, str, int], Lease] = {}
        self.epoch_start = now - 100  # it has been up a while
        self.next_port = 60000
        #: miniupnpd's PCP bounds (LAB.md).
        self.min_lifetime = 120
        self.max_lifetime = 86400
        #: Answer nothing at all.
        self.silent = False
        #: Answer with this lifetime whatever was asked (absurd-value tests).
        self.lifetime_override: int | None = None
        #: Answer the next requests with these PCP/NAT-PMP result codes.
        self.errors: list[tuple[int, int]] = []
        #: Refuse NAT-PMP requests suggesting external port 0 (MikroTik).
        self.refuse_port_zero = True

    def epoch(self, now: float) -> int:
        return int(now - self.epoch_start)

    def restart(self, now: float, *, keep_leases: bool = False) -> None:
        """Reboot: the epoch starts again; leases survive only if persisted."""
        self.counters["restart"] += 1
        self.epoch_start = now
        if not keep_leases:
            self.leases.clear()

    def pcp_announcement(self, now: float) -> bytes:
        return pcp_announce_response(epoch=self.epoch(now))

    def pmp_announcement(self, now: float) -> bytes:
        return pmp_address_response(epoch=self.epoch(now), address=str(self.external))

    def handle(self, data: bytes, source: Endpoint, now: float) -> bytes | None:
        """One request in, at most one response out."""
        self.counters["received"] += 1
        if self.silent or len(data) < 2:
            return None
        if data[0] == 0:
            if not self.pmp:
                return None
            return self._pmp(data, source, now)
        if not self.pcp:
            # A NAT-PMP-only server: RFC 6886 §3.5, 8 bytes, version 0.
            self.counters["unsupported_version"] += 1
            return struct.pack("!BBHI", 0, 0x80 | data[1], 1, self.epoch(now))
        if data[0] != 2:
            self.counters["unsupported_version"] += 1
            return struct.pack("!BBBBII12x", 2, 0x80 | data[1], 0, 1, 1800, self.epoch(now))
        return self._pcp(data, source, now)

    # -- PCP ------------------------------------------------------------------------------

    def _pcp_error(self, data: bytes, code: int, lifetime: int, now: float) -> bytes:
        header = struct.pack("!BBBBII12x", 2, 0x80 | data[1], 0, code, lifetime, self.epoch(now))
        return header + data[24:60]

    def _pcp(self, data: bytes, source: Endpoint, now: float) -> bytes | None:
        opcode = data[1] & 0x7F
        lifetime = struct.unpack_from("!I", data, 4)[0]
        client = data[8:24]
        if opcode == 0:
            self.counters["pcp_announce"] += 1
            return pcp_announce_response(epoch=self.epoch(now))
        if opcode != 1 or len(data) < 60:
            self.counters["pcp_malformed"] += 1
            return None
        nonce, protocol, internal_port, suggested_port, _addr = struct.unpack_from(
            "!12sB3xHH16s", data, 24
        )
        address = ipaddress.ip_address(client[12:]) if client[:12] == V4_MAPPED else None
        self.pcp_seen.append(
            PcpSeen(
                now,
                lifetime,
                address or ipaddress.IPv6Address(client),
                nonce,
                protocol,
                internal_port,
                suggested_port,
            )
        )
        self.counters["pcp_delete" if lifetime == 0 else "pcp_map"] += 1
        if self.errors:
            code, error_lifetime = self.errors.pop(0)
            return self._pcp_error(data, code, error_lifetime, now)
        if address != source.address:
            return self._pcp_error(data, 12, 1800, now)  # ADDRESS_MISMATCH
        key = (protocol, str(source.address), internal_port)
        lease = self.leases.get(key)
        if lease is not None and nonce in lease.revoked:
            return self._pcp_error(data, 2, 1800, now)  # NOT_AUTHORIZED
        if lifetime == 0:
            if lease is not None and lease.nonce != nonce:
                # The failure users met: a client that ignored its nonce
                # could not delete, and the lease lingered.
                return self._pcp_error(data, 2, 1800, now)  # NOT_AUTHORIZED
            self.leases.pop(key, None)
            return self._pcp_reply(nonce, protocol, internal_port, external=0, lifetime=0, now=now)
        if lease is not None and lease.nonce != nonce and lease.nonce is not None:
            lease.revoked.add(lease.nonce)  # miniupnpd: the new nonce takes it over
        granted = self.lifetime_override
        if granted is None:
            granted = min(max(lifetime, self.min_lifetime), self.max_lifetime)
        port = self._allocate(key, lease, suggested_port)
        self.leases[key] = Lease(nonce, port, now + granted, lease.revoked if lease else set())
        return self._pcp_reply(
            nonce, protocol, internal_port, external=port, lifetime=granted, now=now
        )

    def _pcp_reply(
        self,
        nonce: bytes,
        protocol: int,
        internal: int,
        *,
        external: int,
        lifetime: int,
        now: float,
    ) -> bytes:
        return pcp_map_response(
            nonce=nonce,
            protocol=protocol,
            internal_port=internal,
            external_port=external,
            lifetime=lifetime,
            epoch=self.epoch(now),
            external_address=str(self.external),
        )

    def _allocate(self, key: tuple[int, str, int], lease: Lease | None, suggested: int) -> int:
        if lease is not None:
            return lease.external_port
        taken = {other.external_port for k, other in self.leases.items() if k[0] == key[0]}
        if suggested and suggested not in taken:
            return suggested
        while self.next_port in taken:
            self.next_port += 1
        return self.next_port

    # -- NAT-PMP --------------------------------------------------------------------------

    def _pmp(self, data: bytes, source: Endpoint, now: float) -> bytes | None:
        opcode = data[1]
        if opcode == 0 and len(data) == 2:
            self.counters["pmp_address"] += 1
            return pmp_address_response(epoch=self.epoch(now), address=str(self.external))
        if opcode not in (1, 2) or len(data) != 12:
            self.counters["pmp_malformed"] += 1
            return None
        _v, _op, _r, internal, suggested, lifetime = struct.unpack("!BBHHHI", data)
        self.pmp_seen.append(PmpSeen(now, opcode, internal, suggested, lifetime))
        self.counters["pmp_delete" if lifetime == 0 else "pmp_map"] += 1
        epoch = self.epoch(now)
        if self.errors:
            code, _ = self.errors.pop(0)
            return pmp_map_response(
                epoch=epoch, internal_port=internal, external_port=0, lifetime=0, result=code
            )
        if suggested == 0 and self.refuse_port_zero:
            self.counters["pmp_refused_port_zero"] += 1
            return pmp_map_response(
                epoch=epoch, internal_port=internal, external_port=0, lifetime=0, result=2
            )
        key = (opcode, str(source.address), internal)
        lease = self.leases.get(key)
        if lifetime == 0:
            self.leases.pop(key, None)
            return pmp_map_response(
                epoch=epoch, internal_port=internal, external_port=0, lifetime=0, opcode=opcode
            )
        granted = self.lifetime_override if self.lifetime_override is not None else lifetime
        port = self._allocate(key, lease, suggested)
        self.leases[key] = Lease(None, port, now + granted)
        return pmp_map_response(
            epoch=epoch,
            internal_port=internal,
            external_port=port,
            lifetime=granted,
            opcode=opcode,
        )


# --- the virtual-clock harness ----------------------------------------------------------


class Harness:
    """Drives ``client`` against ``gateway``; see the module docstring.

    ``intercept`` may drop (return ``None``) or rewrite a reply before the
    client sees it.
    """

    def __init__(
        self,
        client: LeaseClient,
        gateway: FakeGateway,
        *,
        source: Endpoint = CLIENT,
        now: float = 0.0,
        intercept: Callable[[bytes], bytes | None] | None = None,
        upnp: FakeUpnp | None = None,
    ) -> None:
        self.client = client
        self.gateway = gateway
        self.upnp = upnp
        self.source = source
        self.now = now
        self.intercept = intercept
        self.events: list[tuple[float, PortmapEvent]] = []
        self.sent: list[tuple[float, bytes]] = []

    def flush(self) -> None:
        """Deliver everything in flight until the client has nothing to send."""
        for _ in range(1000):
            datagrams = self.client.datagrams_to_send(self.now)
            calls = self._collect()
            if not datagrams and not calls:
                return
            for call in calls:
                answer = None if self.upnp is None else self.upnp.answer(call, self.now)
                if answer is not None and isinstance(self.client, UpnpClient):
                    self.client.upnp_call_completed(answer, self.now)
            for datagram in datagrams:
                assert datagram.remote == self.gateway.endpoint
                self.sent.append((self.now, datagram.data))
                reply = self.gateway.handle(datagram.data, self.source, self.now)
                if reply is not None and self.intercept is not None:
                    reply = self.intercept(reply)
                if reply is not None:
                    self.client.receive_datagram(reply, self.gateway.endpoint, 0, self.now)
        raise AssertionError("the client never stopped sending")

    def deliver(self, data: bytes, source: Endpoint | None = None, socket: int = 0) -> None:
        """A datagram arrives at the client now (announcements, hostile input)."""
        self.client.receive_datagram(data, source or self.gateway.endpoint, socket, self.now)
        self.flush()

    def call(self, action: Callable[[float], None]) -> None:
        """Call into the client now (``client.delete``...), then flush."""
        action(self.now)
        self.flush()

    def run_until(
        self, until: float, stop: Callable[[PortmapEvent], bool] | None = None
    ) -> list[PortmapEvent]:
        """Fire timers up to ``until`` (or until ``stop`` matches an event);
        return the events that happened meanwhile."""
        first = len(self.events)
        self.flush()
        for _ in range(100_000):
            if stop is not None and any(stop(e) for _, e in self.events[first:]):
                break
            deadline = self.client.get_timer()
            if deadline is None or deadline > until:
                self.now = max(self.now, until)
                break
            self.now = max(self.now, deadline)
            self.client.handle_timer(self.now)
            self.flush()
        else:
            raise AssertionError("timers never settled")
        return [event for _, event in self.events[first:]]

    def _collect(self) -> list[UpnpCall]:
        calls: list[UpnpCall] = []
        while (event := self.client.next_event()) is not None:
            if isinstance(event, UpnpCallRequested):
                calls.append(event.call)
            else:
                self.events.append((self.now, event))
        return calls

    def of_type(self, kind: type) -> list[tuple[float, PortmapEvent]]:
        return [(t, e) for t, e in self.events if isinstance(e, kind)]
