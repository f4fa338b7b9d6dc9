"""Loopback bridges (natkit.aio.wireguard_bridge) between two connect nodes
on loopback sockets that are not "WireGuard's": what a stand-in WireGuard
sends to its bridge crosses the selected path and reaches the other
WireGuard from that one's bridge; nothing else gets through."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from natkit.aio.connect import Connection, ConnectOptions
from natkit.aio.signal_hub import SignalHub
from natkit.aio.wireguard_bridge import Bridges
from natkit.endpoint import Endpoint
from natkit.gather.host import HostPolicy
from natkit.identity import PrivateKey

OPTIONS = ConnectOptions(
    local_addresses=("127.0.0.1",),
    portmap=False,
    nat64=False,
    interface_poll=0.0,
    host=HostPolicy(include_loopback=True),
)


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def receive(sock: socket.socket) -> tuple[bytes, Endpoint]:
    loop = asyncio.get_running_loop()
    data, address = await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), 5)
    return data, Endpoint.from_sockaddr(address)


async def test_wireguard_traffic_crosses_a_path_that_is_not_wireguards_socket() -> None:
    hub = SignalHub()
    keys = [PrivateKey.generate(), PrivateKey.generate()]
    bridges: list[Bridges] = []

    def deliver(index: int) -> Callable[[object, bytes, bool], None]:
        return lambda peer, data, relayed: bridges[index].from_peer(peer, data) and None

    nodes = [
        Connection(k, hub.channel(k.public_key), options=OPTIONS, on_data=deliver(i))
        for i, k in enumerate(keys)
    ]
    wireguards = [udp(), udp()]
    loop = asyncio.get_running_loop()
    try:
        for node, wireguard in zip(nodes, wireguards, strict=True):
            bridges.append(Bridges(wireguard.getsockname()[1], node.send, loop))
        await nodes[0].start([keys[1].public_key])
        await nodes[1].start([keys[0].public_key])
        await until(lambda: all(n.selected(n.peers[0]) for n in nodes))
        ends = [b.endpoint(n.peers[0]) for b, n in zip(bridges, nodes, strict=True)]
        assert all(str(e.address) == "127.0.0.1" for e in ends)
        # WireGuard A -> its bridge -> the path -> B's bridge -> WireGuard B, and back.
        wireguards[0].sendto(b"\x04wireguard data a", ends[0].sockaddr())
        assert await receive(wireguards[1]) == (b"\x04wireguard data a", ends[1])
        wireguards[1].sendto(b"\x04wireguard data b", ends[1].sockaddr())
        assert await receive(wireguards[0]) == (b"\x04wireguard data b", ends[0])
        assert (bridges[0].counters.to_peer, bridges[0].counters.to_wireguard) == (1, 1)
        # Only WireGuard may use a bridge: another local sender is dropped.
        intruder = udp()
        intruder.sendto(b"\x04injected", ends[0].sockaddr())
        await until(lambda: bridges[0].counters.foreign == 1)
        intruder.close()
        assert bridges[1].counters.to_wireguard == 1
        # STUN on the path is natkit's (checks, keepalives), never WireGuard's.
        answered = nodes[1].stats.answers_sent
        nodes[0].network_changed()  # every pair is checked again, now
        await until(lambda: nodes[1].stats.answers_sent > answered)
        await asyncio.sleep(0.05)
        assert bridges[1].counters.to_wireguard == 1
        # A peer without a bridge (its WireGuard talks to it directly) gets nothing here.
        bridges[1].remove(nodes[1].peers[0])
        wireguards[0].sendto(b"\x04late", ends[0].sockaddr())
        await until(lambda: bridges[1].counters.unbridged == 1)
    finally:
        for made in bridges:
            made.close()
        for node in nodes:
            await node.close()
        for wireguard in wireguards:
            wireguard.close()
