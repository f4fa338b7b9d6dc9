"""The DNS directory channel over an in-memory zone: delivery, refusals,
transient failures, hostile records, reading from secondaries.

knot itself is the evidence (tests/lab/test_directory_lab.py); these pin
the channel's own logic, fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import dns.exception
import dns.name
import pytest
from directory_testlib import PRIMARY, SECONDARY, UPDATE_KEY, FakeZone, NodeKey, node_key

from natkit.aio.dns_directory import DirectoryConfig, DnsDirectory, open_directory
from natkit.directory.errors import (
    DirectorySpecError,
    RefusalReason,
    TsigKeyFileError,
    UpdateRefused,
)
from natkit.directory.names import instance_name, message_name, service_name
from natkit.directory.poll import PollConfig
from natkit.directory.records import MessageRecord, message_strings
from natkit.directory.spec import DirectorySpec
from natkit.directory.tsig import TsigAlgorithm, TsigKey
from natkit.directory.window import WindowConfig
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.signal.channel import MAX_SEALED, ChannelState, DownReason, Envelope, StateChanged

ZONE = dns.name.from_text("natkit.test.")
SPEC = DirectorySpec(ZONE, PRIMARY)
ALICE, BOB = node_key("alice"), node_key("bob")
FAST = DirectoryConfig(poll=PollConfig(interval=1.0), retry=0.01)


@pytest.fixture
def zone() -> FakeZone:
    return FakeZone(ZONE)


@pytest.fixture
async def make(zone: FakeZone) -> AsyncIterator[Callable[..., DnsDirectory]]:
    made: list[DnsDirectory] = []

    def factory(key: NodeKey, **kwargs: object) -> DnsDirectory:
        kwargs.setdefault("tsig", UPDATE_KEY)
        kwargs.setdefault("config", FAST)
        directory = DnsDirectory(SPEC, key, transport=zone, key_factory=NodeKey, **kwargs)  # type: ignore[arg-type]
        made.append(directory)
        return directory

    yield factory
    for directory in made:
        await directory.close()


async def _take(directory: DnsDirectory, count: int, timeout: float = 5.0) -> list[Envelope]:
    got: list[Envelope] = []

    async def collect() -> None:
        async for envelope in directory.receive():
            got.append(envelope)
            if len(got) == count:
                return

    await asyncio.wait_for(collect(), timeout)
    return got


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(wait(), timeout)


async def test_two_nodes_exchange_messages_each_once_in_order(
    zone: FakeZone, make: Callable[..., DnsDirectory]
) -> None:
    alice, bob = make(ALICE), make(BOB)
    await alice.announce()
    for i in range(3):
        await alice.send(BOB, b"offer %d" % i)
    bob.watch(ALICE)
    got = await _take(bob, 3)
    assert [e.sealed for e in got] == [b"offer 0", b"offer 1", b"offer 2"]
    assert all(e.sender is ALICE for e in got)
    # Read again: nothing new is delivered, the three are counted as duplicates.
    reads = bob.counters.reads
    bob.poll_soon(ALICE)
    await _until(lambda: bob.counters.reads > reads)
    assert bob.counters.messages == 3
    assert bob.counters.duplicates == 3
    await alice.send(BOB, b"candidates")
    bob.poll_soon()
    assert [e.sealed for e in await _take(bob, 1)] == [b"candidates"]
    # What is in the zone: PTR, instance TXT, one window of four.
    assert zone.txt(instance_name(ZONE, ALICE.raw))[0][0] == b"txtvers=1"
    assert len(zone.txt(message_name(ZONE, ALICE.raw, BOB.raw))) == 4
    assert (service_name(ZONE), dns.rdatatype.PTR) in zone.rrsets
    # Presence went out once: later updates carry only the window.
    assert sum(1 for u in zone.updates for r in u.update if r.name == service_name(ZONE)) == 1


async def test_messages_to_others_are_not_read(
    zone: FakeZone, make: Callable[..., DnsDirectory]
) -> None:
    alice, bob = make(ALICE), make(BOB)
    carol = node_key("carol")
    await alice.send(carol, b"for carol")
    await alice.send(BOB, b"for bob")
    bob.watch(ALICE)
    assert [e.sealed for e in await _take(bob, 1)] == [b"for bob"]
    queried = {q.question[0].name for q, _ in zone.queries}
    assert queried == {message_name(ZONE, ALICE.raw, BOB.raw)}


async def test_bad_sends_are_refused_locally(make: Callable[..., DnsDirectory]) -> None:
    alice = make(ALICE)
    with pytest.raises(LocalProtocolError, match=r"1\.\.4096 bytes, got 0"):
        await alice.send(BOB, b"")
    with pytest.raises(LocalProtocolError, match="got 4097"):
        await alice.send(BOB, b"x" * (MAX_SEALED + 1))
    with pytest.raises(LocalProtocolError, match="not a node key"):
        await alice.send("bob", b"x")  # type: ignore[arg-type]
    await alice.send(BOB, b"x" * MAX_SEALED)
    await alice.close()
    with pytest.raises(LocalProtocolError, match="closed"):
        await alice.send(BOB, b"x")


@pytest.mark.parametrize(
    ("key", "reason", "text"),
    [
        (
            TsigKey(UPDATE_KEY.name, UPDATE_KEY.algorithm, b"w" * 32),
            RefusalReason.BAD_SIGNATURE,
            "the TSIG key 'natkit-update.' has a different secret on the server (BADSIG)",
        ),
        (
            TsigKey("stranger.", TsigAlgorithm.HMAC_SHA256, b"w" * 32),
            RefusalReason.BAD_KEY,
            "the server knows no TSIG key 'stranger.' with this algorithm, or its ACL does"
            " not let that key update these names (BADKEY)",
        ),
        (
            None,
            RefusalReason.NOT_AUTHORIZED,
            "it wants updates signed with a TSIG key and none was given (NOTAUTH):"
            " pass --tsig-key FILE",
        ),
    ],
)
async def test_refused_updates_raise_and_publish_nothing(
    zone: FakeZone,
    make: Callable[..., DnsDirectory],
    key: TsigKey | None,
    reason: RefusalReason,
    text: str,
) -> None:
    alice = make(ALICE, tsig=key)
    with pytest.raises(UpdateRefused) as caught:
        await alice.announce()
    assert caught.value.reason is reason
    assert str(caught.value) == (
        f"DNS server 203.0.113.53:53 refused the update of zone natkit.test.: {text};"
        " nothing was published"
    )
    with pytest.raises(UpdateRefused):
        await alice.send(BOB, b"offer")
    assert zone.rrsets == {}
    # Refusals are not retried in the background: start and send, no more.
    await asyncio.sleep(0.05)
    assert len(zone.updates) == 2


async def test_an_unreachable_server_does_not_raise_and_the_window_goes_out_later(
    zone: FakeZone, make: Callable[..., DnsDirectory]
) -> None:
    alice = make(ALICE)
    zone.fail_next = [TimeoutError(), OSError(113, "No route to host")]
    zone.servfail_next = 1
    await alice.announce()  # times out: recorded, retried
    assert alice.counters.update_failures == 1
    assert alice.last_error == "update to 203.0.113.53:53 failed: TimeoutError"
    await alice.send(BOB, b"offer")
    await _until(lambda: len(zone.txt(message_name(ZONE, ALICE.raw, BOB.raw))) == 1)
    assert alice.counters.update_failures == 3  # timeout, no route, SERVFAIL
    assert alice.last_error is None
    assert (service_name(ZONE), dns.rdatatype.PTR) in zone.rrsets


async def test_a_full_window_waits_until_the_oldest_was_readable_for_retain(
    zone: FakeZone, make: Callable[..., DnsDirectory]
) -> None:
    config = DirectoryConfig(
        poll=PollConfig(interval=1.0), window=WindowConfig(window=2, retain=1.0)
    )
    alice = make(ALICE, config=config)
    loop = asyncio.get_running_loop()
    await alice.send(BOB, b"1")
    first = loop.time()
    await alice.send(BOB, b"2")
    await alice.send(BOB, b"3")
    assert loop.time() >= first + 1.0
    name = message_name(ZONE, ALICE.raw, BOB.raw)
    assert sorted(s[2] for s in zone.txt(name)) == [b"seq=2", b"seq=3"]
    assert alice.counters.evicted_early == 0


async def test_hostile_records_are_dropped_and_counted(
    zone: FakeZone, make: Callable[..., DnsDirectory]
) -> None:
    bob = make(BOB)
    name = message_name(ZONE, ALICE.raw, BOB.raw)
    good = message_strings(MessageRecord("00000000000000aa", 1, b"real"))
    zone.put_txt(name, good, (b"txtvers=1", b"stream=zz"), (b"\x00" * 255,), (b"txtvers=1",) * 40)
    bob.watch(ALICE)
    assert [e.sealed for e in await _take(bob, 1)] == [b"real"]
    assert bob.counters.records_dropped == 3
    # A set that mixes streams is dropped whole: nothing delivered.
    other = message_strings(MessageRecord("00000000000000bb", 2, b"forged"))
    zone.put_txt(name, good, other)
    reads = bob.counters.reads
    bob.poll_soon()
    await _until(lambda: bob.counters.reads > reads)
    assert bob.counters.records_dropped == 4
    assert bob.counters.messages == 1


async def test_reads_move_to_the_next_server_after_a_failure(
    zone: FakeZone, make: Callable[..., DnsDirectory]
) -> None:
    alice = make(ALICE)
    bob = make(BOB, read_servers=(SECONDARY, PRIMARY))
    await alice.send(BOB, b"offer")
    zone.fail_next = [TimeoutError()]
    bob.watch(ALICE)
    await _until(lambda: bob.counters.read_failures == 1)
    assert bob.last_error == "read from 203.0.113.54:53 failed: TimeoutError"
    # The failed peer backs off (2 x 1 s); ask at once instead.
    bob.poll_soon()
    assert [e.sealed for e in await _take(bob, 1)] == [b"offer"]
    assert zone.served[PRIMARY] == 1


async def test_close_withdraws_only_when_asked(
    zone: FakeZone, make: Callable[..., DnsDirectory]
) -> None:
    alice = make(ALICE)
    await alice.send(BOB, b"offer")
    await alice.close()
    before = set(zone.names())
    assert message_name(ZONE, ALICE.raw, BOB.raw) in before
    again = make(ALICE)
    await again.send(BOB, b"offer")
    await again.close(withdraw=True)
    assert zone.names() == set()


async def test_receive_ends_on_close(make: Callable[..., DnsDirectory]) -> None:
    bob = make(BOB)
    bob.watch(ALICE)
    reader = asyncio.ensure_future(_take(bob, 1))
    await asyncio.sleep(0.01)
    assert not reader.done()
    await bob.close()
    assert await asyncio.wait_for(reader, 1.0) == []
    assert [e async for e in bob.receive()] == []


async def test_nodes_and_browsing(zone: FakeZone, make: Callable[..., DnsDirectory]) -> None:
    alice, bob = make(ALICE), make(BOB)
    await alice.announce()
    await bob.announce()
    assert sorted(k.raw for k in await bob.nodes()) == sorted([ALICE.raw, BOB.raw])
    await alice.send(BOB, b"hello")
    browsing = make(BOB, config=DirectoryConfig(poll=PollConfig(interval=1.0), browse_interval=1.0))
    assert [e.sealed for e in await _take(browsing, 1)] == [b"hello"]
    assert browsing.watched == (ALICE,)


def test_open_directory_from_the_command_line_forms(tmp_path: Path) -> None:
    key_file = tmp_path / "update.key"
    key_file.write_text(f"hmac-sha256:natkit-update:{'A' * 43}=\n")
    key_file.chmod(0o600)
    directory = open_directory(
        "dns:natkit.test@203.0.113.53",
        ALICE,
        tsig_key_file=key_file,
        read_servers=["203.0.113.54"],
    )
    assert str(directory.spec) == "dns:natkit.test.@203.0.113.53:53"
    assert directory.read_servers == (SECONDARY,)
    assert directory.tsig is not None
    assert directory.tsig.name == "natkit-update."
    with pytest.raises(DirectorySpecError, match="must start with dns:"):
        open_directory("natkit.test@203.0.113.53", ALICE, tsig_key_file=key_file)
    with pytest.raises(TsigKeyFileError, match="cannot read it"):
        open_directory("dns:natkit.test@203.0.113.53", ALICE, tsig_key_file=tmp_path / "nope")


def test_config_bounds() -> None:
    with pytest.raises(ValueError, match="ttl"):
        DirectoryConfig(ttl=-1)
    with pytest.raises(ValueError, match="browse_interval"):
        DirectoryConfig(browse_interval=0.5)
    with pytest.raises(ValueError, match="retain must be at least the poll interval"):
        DirectoryConfig(poll=PollConfig(interval=20.0), window=WindowConfig(retain=10.0))


# -- the channel's state (what a connect node re-announces on) -------------------------


async def test_sends_while_the_server_fails_wait_for_the_retry_backoff(
    zone: FakeZone, make: Callable[..., DnsDirectory]
) -> None:
    # Before: every send tried an update at once and counted a failure, so the
    # backoff it reported doubled per send (retry_in 128 s after a few sends)
    # while sends kept hitting the failing server far more often than that.
    alice = make(ALICE, config=DirectoryConfig(poll=PollConfig(interval=1.0), retry=30.0))
    zone.fail_next = [TimeoutError()] * 50
    await alice.announce()
    for _ in range(5):
        await alice.send(BOB, b"offer")
    assert 50 - len(zone.fail_next) == 1  # one update tried; the rest wait for the retry
    assert alice.counters.update_failures == 1
    assert alice.state is ChannelState.CONNECTING


async def test_sends_queued_while_the_server_failed_go_out_when_it_returns(
    zone: FakeZone, make: Callable[..., DnsDirectory]
) -> None:
    alice = make(ALICE, config=DirectoryConfig(poll=PollConfig(interval=1.0), retry=0.05))
    zone.fail_next = [TimeoutError(), TimeoutError()]
    await alice.announce()
    await alice.send(BOB, b"one")
    await asyncio.sleep(0.06)  # the first retry fails too; the next works
    await alice.send(BOB, b"two")
    await _until(lambda: len(zone.txt(message_name(ZONE, ALICE.raw, BOB.raw))) == 2)
    assert alice.state is ChannelState.UP


async def test_state_follows_the_server_up_down_up_and_refused(
    zone: FakeZone, make: Callable[..., DnsDirectory]
) -> None:
    alice = make(ALICE)
    events: list[StateChanged] = []
    alice.subscribe(lambda event: events.append(event) if isinstance(event, StateChanged) else None)
    assert alice.state is ChannelState.CONNECTING
    zone.fail_next = [TimeoutError()]
    alice.start()  # in the background: the first update times out, the retry works
    await _until(lambda: alice.state is ChannelState.UP)
    down = events[0]
    assert (down.state, down.reason, down.retry_in) == (
        ChannelState.CONNECTING,
        DownReason.UNREACHABLE,
        FAST.retry,
    )
    assert down.detail == "update to 203.0.113.53:53 failed: TimeoutError"
    assert events[-1].state is ChannelState.UP
    # A failed update after that: CONNECTING, then UP again when it goes through.
    zone.servfail_next = 1
    await alice.send(BOB, b"offer")
    await _until(lambda: len(zone.txt(message_name(ZONE, ALICE.raw, BOB.raw))) == 1)
    await asyncio.sleep(0)  # listeners are called soon, not at once
    assert [e.state for e in events] == [ChannelState.CONNECTING, ChannelState.UP] * 2
    # The endpoint advertised (WireGuard's mapping, say) changes in place.
    assert alice.advertised is None
    mapped = Endpoint.parse("198.51.100.1:51820")
    await alice.advertise(mapped)
    assert alice.advertised == mapped
    srv = zone.rrsets[(instance_name(ZONE, ALICE.raw), dns.rdatatype.SRV)]
    assert [r.port for r in srv] == [51820]


async def test_a_refusal_in_the_background_is_the_state_and_is_not_retried(
    zone: FakeZone, make: Callable[..., DnsDirectory]
) -> None:
    bob = make(BOB)
    await bob.send(ALICE, b"offer")  # something for alice to read: reads need no key
    wrong = TsigKey(UPDATE_KEY.name, TsigAlgorithm.HMAC_SHA256, b"w" * 32)
    alice = make(ALICE, tsig=wrong)
    events: list[StateChanged] = []
    alice.subscribe(lambda event: events.append(event) if isinstance(event, StateChanged) else None)
    alice.watch(BOB)
    await _until(lambda: alice.counters.reads > 0)
    alice.start()
    await _until(lambda: bool(events))
    # Reads alone never made it UP: only the primary taking an update does.
    (refused,) = events
    assert (refused.state, refused.reason) == (ChannelState.CONNECTING, DownReason.REFUSED)
    assert "(BADSIG); nothing was published" in refused.detail
    await asyncio.sleep(0.05)
    assert len(zone.updates) == 3  # bob's two, alice's one
    assert instance_name(ZONE, ALICE.raw) not in zone.names()
    await alice.close()
    assert alice.state is ChannelState.CLOSED


async def test_an_unsigned_answer_says_what_it_likely_means(
    zone: FakeZone, make: Callable[..., DnsDirectory]
) -> None:
    # knot answers an update for a zone it does not serve unsigned (NOTAUTH);
    # dnspython raises FormError("response requires a TSIG ...").
    alice = make(ALICE)
    zone.fail_next = [dns.exception.FormError("response requires a TSIG but does not have one")]
    await alice.announce()
    assert alice.last_error is not None
    assert "without a TSIG signature (is it authoritative for the zone" in alice.last_error
