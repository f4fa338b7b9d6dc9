"""Two connect nodes signalling through the DNS directory (an in-memory
zone): the node watches its peers on the directory, and re-announces when
the directory comes back UP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import dns.name
from directory_testlib import PRIMARY, UPDATE_KEY, FakeZone

from natkit.aio.connect import Connection, ConnectOptions, NodeEvent, StateChanged
from natkit.aio.dns_directory import DirectoryConfig, DnsDirectory
from natkit.directory.poll import PollConfig
from natkit.directory.spec import DirectorySpec
from natkit.directory.window import WindowConfig
from natkit.gather.host import HostPolicy
from natkit.identity import PrivateKey
from natkit.signal.channel import ChannelState

ZONE = dns.name.from_text("natkit.test.")
FAST = DirectoryConfig(poll=PollConfig(interval=1.0), window=WindowConfig(retain=1.0), retry=0.01)
OPTIONS = ConnectOptions(
    local_addresses=("127.0.0.1",),
    portmap=False,
    nat64=False,
    interface_poll=0.0,
    host=HostPolicy(include_loopback=True),
)


async def until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_two_nodes_connect_through_the_directory_and_reannounce_when_it_returns() -> None:
    zone = FakeZone(ZONE)
    keys = [PrivateKey.generate(), PrivateKey.generate()]
    seen: list[list[NodeEvent]] = [[], []]
    nodes = [
        Connection(
            key,
            DnsDirectory(
                DirectorySpec(ZONE, PRIMARY),
                key.public_key,
                tsig=UPDATE_KEY,
                config=FAST,
                transport=zone,
            ),
            options=OPTIONS,
            on_event=events.append,
        )
        for key, events in zip(keys, seen, strict=True)
    ]
    try:
        await nodes[0].start([keys[1].public_key])
        await nodes[1].start([keys[0].public_key])
        for node, key in zip(nodes, reversed(keys), strict=True):
            assert isinstance(node.channel, DnsDirectory)
            assert node.channel.watched == (key.public_key,)
        await until(
            lambda: all(
                n.selected(k.public_key) for n, k in zip(nodes, reversed(keys), strict=True)
            )
        )
        assert nodes[0].signalling is ChannelState.UP
        # The server goes away for an update and comes back: the node is
        # told (CONNECTING, then UP) and re-announces itself.
        ups = nodes[0].counters.signalling_up
        zone.servfail_next = 1
        nodes[0].network_changed()  # new checks, new messages to publish
        nodes[0].remove_peer(keys[1].public_key)
        assert nodes[0].channel.watched == ()  # type: ignore[attr-defined]
        nodes[0].add_peer(keys[1].public_key)
        await until(lambda: nodes[0].counters.signalling_up > ups)
        states = [e.state for e in seen[0] if isinstance(e, StateChanged)]
        assert states[-2:] == [ChannelState.CONNECTING, ChannelState.UP]
        await until(lambda: nodes[0].selected(keys[1].public_key) is not None)
    finally:
        for node in nodes:
            await node.close()
