"""Loopback bridges: WireGuard over a path whose socket is not WireGuard's.

A direct path leaves from WireGuard's own port (shared with natkit), so
WireGuard sends to the peer itself. Two kinds of path cannot:

* a **relayed** path (TURN, issue 12): the datagrams must be wrapped for the
  relay by natkit's TURN client (Send indications or ChannelData, over UDP,
  TCP or TLS to the server);
* a path on **another socket**, e.g. one that birthday probing found: a
  both-hard birthday search needs hundreds of sockets (each a new NAT
  mapping), and WireGuard has exactly one port, so the socket that hit is
  natkit's, not WireGuard's.

For those, natkit gives WireGuard a loopback endpoint per peer
(:class:`PeerBridge`, ``127.0.0.1:PORT``): what WireGuard sends there goes
to ``Connection.send(peer, data)``, which sends it over the peer's selected
path, through the relay or from the birthday socket; what the node's data
path says came from the peer (``on_data(peer, data, relayed)``,
:mod:`natkit.aio.connect_data`) is sent to WireGuard's port from the
peer's bridge, so WireGuard sees the bridge as the peer's endpoint and its
roaming stays put. Moving the endpoint between the
bridge and a direct path keeps WireGuard's session (the peer is never
removed), so no handshake is lost on a downgrade or an upgrade. Only the
bridged peers' traffic passes through Python; a direct path never does.

The bridge answers only WireGuard: datagrams to it from any other source
are dropped and counted (another local program could otherwise inject
traffic into the path).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from natkit.aio.sharedsock import ready_datagrams
from natkit.endpoint import Endpoint

#: ``send(peer, data)`` → whether a path took it (``Connection.send``).
SendToPeer = Callable[[Any, bytes], bool]


@dataclass(slots=True)
class BridgeCounters:
    """What the bridges carried and dropped."""

    #: Datagrams from WireGuard sent over a peer's path.
    to_peer: int = 0
    #: Datagrams from the peer handed to WireGuard.
    to_wireguard: int = 0
    #: From WireGuard while the peer had no path (lost; WireGuard retries).
    no_path: int = 0
    #: To a bridge from something other than WireGuard's port.
    foreign: int = 0
    #: Sends the kernel refused.
    send_errors: int = 0
    #: Data from a peer without a bridge (it reached natkit on a path whose
    #: WireGuard endpoint is direct: a late datagram of an old path).
    unbridged: int = 0


class PeerBridge:
    """One peer's loopback endpoint for WireGuard (see the module doc)."""

    def __init__(
        self,
        peer: Any,
        wireguard: Endpoint,
        send: SendToPeer,
        counters: BridgeCounters,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.peer = peer
        #: WireGuard's port on loopback: the only source answered, the only destination.
        self.wireguard = wireguard
        self._send = send
        self.counters = counters
        self._loop = loop
        family = socket.AF_INET if wireguard.address.version == 4 else socket.AF_INET6
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._sock.bind((str(wireguard.address), 0))
            self._sock.setblocking(False)
            loop.add_reader(self._sock.fileno(), self._readable)
        except BaseException:
            self._sock.close()
            raise
        self.endpoint = Endpoint.from_sockaddr(self._sock.getsockname())
        self._closed = False

    def to_wireguard(self, data: bytes) -> None:
        """Hand a datagram from the peer to WireGuard."""
        if self._closed:
            return
        try:
            self._sock.sendto(data, self.wireguard.sockaddr())
        except OSError:  # a full buffer: UDP loses it anyway, WireGuard copes
            self.counters.send_errors += 1
            return
        self.counters.to_wireguard += 1

    def _readable(self) -> None:
        try:
            for data, address in ready_datagrams(self._sock, lambda: self._closed):
                if Endpoint.from_sockaddr(address) != self.wireguard:
                    self.counters.foreign += 1
                    continue
                if self._send(self.peer, data):
                    self.counters.to_peer += 1
                else:
                    self.counters.no_path += 1
        except OSError:
            self.counters.send_errors += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()


class Bridges:
    """Every bridged peer's :class:`PeerBridge` (see the module doc)."""

    def __init__(
        self,
        wireguard_port: int,
        send: SendToPeer,
        loop: asyncio.AbstractEventLoop,
        *,
        address: str = "127.0.0.1",
    ) -> None:
        self.wireguard = Endpoint.parse(address, wireguard_port)
        self._send = send
        self._loop = loop
        self.counters = BridgeCounters()
        self._bridges: dict[Any, PeerBridge] = {}

    def endpoint(self, peer: Any) -> Endpoint:
        """``peer``'s bridge endpoint (the bridge is made on first use)."""
        bridge = self._bridges.get(peer)
        if bridge is None:
            bridge = PeerBridge(peer, self.wireguard, self._send, self.counters, self._loop)
            self._bridges[peer] = bridge
        return bridge.endpoint

    def bridged(self, peer: Any) -> bool:
        return peer in self._bridges

    def from_peer(self, peer: Any, data: bytes) -> bool:
        """A datagram the node's data path says ``peer`` sent (the node's
        ``on_data``): to WireGuard, from the peer's bridge; whether the peer
        has one (a peer on a direct path talks to WireGuard itself)."""
        bridge = self._bridges.get(peer)
        if bridge is None:
            self.counters.unbridged += 1
            return False
        bridge.to_wireguard(data)
        return True

    def remove(self, peer: Any) -> None:
        bridge = self._bridges.pop(peer, None)
        if bridge is not None:
            bridge.close()

    def close(self) -> None:
        for bridge in self._bridges.values():
            bridge.close()
        self._bridges.clear()
