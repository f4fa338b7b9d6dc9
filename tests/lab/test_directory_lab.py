"""The DNS directory against real knot: a primary taking TSIG-signed RFC 2136
updates and a secondary fed by NOTIFY + IXFR, on the lab's internet.

Two nodes behind different real NATs (``birthday-one-hard``: ``client``
behind a symmetric NAT, ``client-b`` behind a port-preserving one) publish
and read sealed messages through the zone. The messages are opaque bytes
here: the directory never opens them (sealing is natkit.identity's, tested
there). Each node runs its own event loop on a thread inside its
namespace, so every DNS packet crosses the lab's NATs.

The tests share the pooled ``birthday-one-hard`` lab (and its xdist group)
with the birthday tests, and one knot pair for the module.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import shutil
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from natkit.aio.dns_directory import DirectoryConfig, DnsDirectory, open_directory
from natkit.directory.errors import RefusalReason, UpdateRefused
from natkit.directory.names import instance_name, message_name
from natkit.directory.poll import PollConfig
from natkit.directory.spec import parse_directory
from natkit.directory.tsig import TsigKey
from natkit.lab import Lab
from natkit.lab.knot import PRIMARY_ROLE, SECONDARY_ROLE, KnotDirectory
from natkit.lab.netns import in_netns
from natkit.signal.channel import MAX_SEALED, Envelope

SCENARIO = "birthday-one-hard"
pytestmark = [pytest.mark.lab, pytest.mark.xdist_group(SCENARIO)]
T = TypeVar("T")
CONFIG = DirectoryConfig(poll=PollConfig(interval=1.0))
#: A bound to fail on, not a speed target.
TIMEOUT_S = 20.0


@dataclass(frozen=True, slots=True)
class NodeKey:
    """Stands in for natkit.identity.PublicKey: 32 bytes, base64 ``str()``."""

    raw: bytes

    def __str__(self) -> str:
        return base64.b64encode(self.raw).decode()


def node_key(name: str) -> NodeKey:
    return NodeKey(hashlib.sha256(f"{name}-{os.getpid()}".encode()).digest())


#: Nodes that get keys of their own, confined to their names.
FRANK, GRACE = node_key("frank"), node_key("grace")


@pytest.fixture(scope="module")
def knot(lab_pool: Any) -> Iterator[KnotDirectory]:
    if shutil.which("knotd") is None:
        reason = "the DNS directory lab needs knotd (Debian package 'knot')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    lab = lab_pool.get(SCENARIO)
    with KnotDirectory.start(lab, nodes=(FRANK.raw, GRACE.raw)) as servers:
        yield servers


def run_in(lab: Lab, role: str, main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main`` on its own event loop inside ``role``'s namespace."""
    return lab.call_in(role, lambda: asyncio.run(asyncio.wait_for(main(), TIMEOUT_S)))


def directory(knot: KnotDirectory, key: NodeKey, **kwargs: Any) -> DnsDirectory:
    kwargs.setdefault("tsig", knot.update_key)
    kwargs.setdefault("config", CONFIG)
    return DnsDirectory(parse_directory(knot.directory), key, key_factory=NodeKey, **kwargs)


async def take(channel: DnsDirectory, count: int) -> list[Envelope]:
    got: list[Envelope] = []
    async for envelope in channel.receive():
        got.append(envelope)
        if len(got) == count:
            break
    return got


def names_at(knot: KnotDirectory, role: str, name: Any, rdtype: Any) -> tuple[str, int]:
    """rcode and answer count for one query, asked from the server's namespace."""
    server = knot.primary if role == PRIMARY_ROLE else knot.secondary

    def ask() -> tuple[str, int]:
        response = dns.query.tcp(
            dns.message.make_query(name, rdtype), str(server.address), timeout=2
        )
        return dns.rcode.to_text(response.rcode()), sum(len(r) for r in response.answer)

    return in_netns(knot.namespace(role), ask)


def test_two_nodes_behind_nats_exchange_messages_through_the_primary(
    knot: KnotDirectory,
) -> None:
    lab = knot.lab
    alice, bob = node_key("alice"), node_key("bob")
    # With a 4,096-byte message the window (~5.6 KB) exceeds any UDP answer:
    # knot truncates it and the read must fall back to TCP.
    offers = [b"announcement", secrets.token_bytes(MAX_SEALED), b"candidates"]

    async def alice_sends() -> None:
        # The command line's way in: dns:ZONE@SERVER and the keymgr file.
        channel = open_directory(
            knot.directory,
            alice,
            tsig_key_file=knot.update_key_file,
            config=CONFIG,
            key_factory=NodeKey,
        )
        async with channel:
            for offer in offers:
                await channel.send(bob, offer)
            # Presence (instance records, then the PTR), then one per message.
            assert channel.counters.updates == 5

    run_in(lab, lab.site().client_role, alice_sends)

    async def bob_reads_and_answers() -> tuple[list[Envelope], set[bytes]]:
        async with directory(knot, bob) as channel:
            channel.watch(alice)
            got = await take(channel, 3)
            await channel.send(alice, b"answer")
            nodes = {k.raw for k in await channel.nodes()}
            return got, nodes

    got, nodes = run_in(lab, lab.site("b").client_role, bob_reads_and_answers)
    assert [e.sealed for e in got] == offers
    assert {e.sender for e in got} == {alice}
    assert {alice.raw, bob.raw} <= nodes

    async def alice_reads() -> list[Envelope]:
        async with directory(knot, alice) as channel:
            channel.watch(bob)
            return await take(channel, 1)

    assert [e.sealed for e in run_in(lab, lab.site().client_role, alice_reads)] == [b"answer"]


def test_the_secondary_serves_the_same_messages_after_the_transfer(knot: KnotDirectory) -> None:
    lab = knot.lab
    carol, dave = node_key("carol"), node_key("dave")
    messages = [b"first", b"second"]

    async def carol_sends() -> None:
        async with directory(knot, carol) as channel:
            for message in messages:
                await channel.send(dave, message)

    run_in(lab, lab.site().client_role, carol_sends)
    serial = knot.wait_transferred()
    assert knot.serial(SECONDARY_ROLE) == serial

    async def dave_reads_the_secondary() -> tuple[list[Envelope], int]:
        channel = directory(knot, dave, read_servers=(knot.secondary,))
        async with channel:
            channel.watch(carol)
            got = await take(channel, 2)
            return got, channel.counters.read_failures

    got, failures = run_in(lab, lab.site("b").client_role, dave_reads_the_secondary)
    assert [e.sealed for e in got] == messages
    assert failures == 0
    # It got there by NOTIFY and incremental transfer from the primary's journal.
    log = knot.log_path(SECONDARY_ROLE).read_text()
    assert "IXFR, incoming" in log
    name = message_name(parse_directory(knot.directory).zone, carol.raw, dave.raw)
    assert names_at(knot, SECONDARY_ROLE, name, dns.rdatatype.TXT) == ("NOERROR", 2)


@pytest.mark.parametrize(
    ("key", "reason", "why"),
    [
        (
            "wrong-secret",
            RefusalReason.BAD_SIGNATURE,
            "has a different secret on the server (BADSIG)",
        ),
        ("unknown-name", RefusalReason.BAD_KEY, "the server knows no TSIG key 'stranger.'"),
        ("none", RefusalReason.NOT_AUTHORIZED, "none was given (NOTAUTH): pass --tsig-key FILE"),
    ],
)
def test_a_refused_update_publishes_nothing_and_says_why(
    knot: KnotDirectory, tmp_path: Path, key: str, reason: RefusalReason, why: str
) -> None:
    lab = knot.lab
    eve = node_key(f"eve-{key}")
    good = knot.update_key
    tsig: TsigKey | None = {
        "wrong-secret": TsigKey(good.name, good.algorithm, secrets.token_bytes(32)),
        "unknown-name": TsigKey("stranger.", good.algorithm, good.secret),
        "none": None,
    }[key]
    before = knot.serial()

    async def eve_publishes() -> tuple[UpdateRefused, UpdateRefused]:
        channel = directory(knot, eve, tsig=tsig)
        try:
            with pytest.raises(UpdateRefused) as at_start:
                await channel.announce()
            with pytest.raises(UpdateRefused) as at_send:
                await channel.send(node_key("bob"), b"forged offer")
            return at_start.value, at_send.value
        finally:
            await channel.close()

    at_start, at_send = run_in(lab, lab.site().client_role, eve_publishes)
    for refusal in (at_start, at_send):
        assert refusal.reason is reason
        assert why in str(refusal)
        assert str(refusal).startswith(
            f"DNS server {knot.primary} refused the update of zone {knot.zone}: "
        )
        assert str(refusal).endswith("; nothing was published")
    # Nothing was published: the serial did not move, the names do not exist.
    assert knot.serial() == before
    zone = parse_directory(knot.directory).zone
    assert names_at(knot, PRIMARY_ROLE, instance_name(zone, eve.raw), dns.rdatatype.TXT)[0] == (
        "NXDOMAIN"
    )


def test_a_node_key_writes_only_under_its_own_name(knot: KnotDirectory) -> None:
    lab = knot.lab

    def own_directory(key: NodeKey, key_of: NodeKey) -> DnsDirectory:
        return open_directory(
            knot.directory,
            key,
            tsig_key_file=knot.node_key_file(key_of.raw),
            config=CONFIG,
            key_factory=NodeKey,
        )

    async def frank_sends() -> None:
        async with own_directory(FRANK, FRANK) as channel:
            await channel.send(GRACE, b"from frank, with his own key")

    run_in(lab, lab.site().client_role, frank_sends)

    async def grace_reads() -> list[Envelope]:
        async with own_directory(GRACE, GRACE) as channel:
            channel.watch(FRANK)
            return await take(channel, 1)

    got = run_in(lab, lab.site("b").client_role, grace_reads)
    assert [e.sealed for e in got] == [b"from frank, with his own key"]
    before = knot.serial()

    async def frank_poses_as_grace() -> UpdateRefused:
        channel = own_directory(GRACE, FRANK)
        try:
            with pytest.raises(UpdateRefused) as caught:
                await channel.send(FRANK, b"forged")
            return caught.value
        finally:
            await channel.close()

    refusal = run_in(lab, lab.site().client_role, frank_poses_as_grace)
    assert refusal.reason is RefusalReason.BAD_KEY
    assert "its ACL does not let that key update these names" in str(refusal)
    assert knot.serial() == before
