"""The in-memory signalling hub, through the SignalChannel interface."""

from __future__ import annotations

import asyncio

import pytest

from natkit.aio.signal_hub import SignalHub
from natkit.errors import LocalProtocolError
from natkit.identity import PrivateKey, seal, unseal
from natkit.signal import (
    MAX_SEALED,
    ChannelEvent,
    ChannelState,
    DownReason,
    Envelope,
    SignalChannel,
    StateChanged,
    Undeliverable,
    UndeliverableReason,
)

ALICE = PrivateKey.generate()
BOB = PrivateKey.generate()
CAROL = PrivateKey.generate()


async def next_message(channel: SignalChannel) -> Envelope:
    async for envelope in channel.receive():
        return envelope
    raise AssertionError("receive() ended")


async def settle() -> None:
    """Let call_soon'd listener calls run."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_sealed_round_trip_through_the_hub() -> None:
    hub = SignalHub()
    alice: SignalChannel = hub.channel(ALICE.public_key)
    bob: SignalChannel = hub.channel(BOB.public_key)
    assert alice.state is ChannelState.UP
    await alice.send(BOB.public_key, seal(ALICE, BOB.public_key, b"offer"))
    envelope = await next_message(bob)
    assert envelope.sender == ALICE.public_key
    assert unseal(BOB, envelope.sender, envelope.sealed) == b"offer"
    assert hub.counters.delivered == 1


async def test_offline_recipient_is_reported_not_raised() -> None:
    hub = SignalHub()
    alice = hub.channel(ALICE.public_key)
    events: list[ChannelEvent] = []
    alice.subscribe(events.append)
    await alice.send(CAROL.public_key, b"x" * 40)
    await settle()
    assert events == [Undeliverable(CAROL.public_key, UndeliverableReason.OFFLINE)]
    assert hub.counters.offline == 1


async def test_full_inbox_drops_and_reports_busy() -> None:
    hub = SignalHub(inbox_limit=2)
    alice = hub.channel(ALICE.public_key)
    hub.channel(BOB.public_key)
    events: list[ChannelEvent] = []
    alice.subscribe(events.append)
    for _ in range(3):
        await alice.send(BOB.public_key, b"m")
    await settle()
    assert events == [Undeliverable(BOB.public_key, UndeliverableReason.BUSY)]
    assert hub.counters.busy == 1
    assert hub.counters.delivered == 2


async def test_down_and_up_again_emit_state_changes() -> None:
    hub = SignalHub()
    alice = hub.channel(ALICE.public_key)
    bob = hub.channel(BOB.public_key)
    events: list[ChannelEvent] = []
    unsubscribe = bob.subscribe(events.append)
    hub.set_online(BOB.public_key, False)
    await alice.send(BOB.public_key, b"lost")
    hub.set_online(BOB.public_key, True)
    await settle()
    assert events == [
        StateChanged(ChannelState.CONNECTING, ChannelState.UP, DownReason.LOST, "hub: set offline"),
        StateChanged(ChannelState.UP, ChannelState.CONNECTING),
    ]
    assert hub.counters.offline == 1
    unsubscribe()
    hub.set_online(BOB.public_key, False)
    await settle()
    assert len(events) == 2


async def test_close_ends_receive_and_refuses_sends() -> None:
    hub = SignalHub()
    alice = hub.channel(ALICE.public_key)
    task = asyncio.create_task(next_message(alice))
    await settle()
    await alice.close()
    with pytest.raises(AssertionError, match="receive"):
        await task
    with pytest.raises(LocalProtocolError, match="closed"):
        await alice.send(BOB.public_key, b"x")
    # The key may attach again once closed.
    assert hub.channel(ALICE.public_key).state is ChannelState.UP


async def test_limits_and_double_attach() -> None:
    hub = SignalHub()
    alice = hub.channel(ALICE.public_key)
    with pytest.raises(LocalProtocolError, match="limit"):
        await alice.send(BOB.public_key, bytes(MAX_SEALED + 1))
    with pytest.raises(LocalProtocolError, match="empty"):
        await alice.send(BOB.public_key, b"")
    with pytest.raises(LocalProtocolError, match="already"):
        hub.channel(ALICE.public_key)


async def test_intercept_drops_selected_messages() -> None:
    hub = SignalHub()
    alice = hub.channel(ALICE.public_key)
    bob = hub.channel(BOB.public_key)
    hub.intercept = lambda sender, recipient, sealed: sealed != b"drop me"
    await alice.send(BOB.public_key, b"drop me")
    await alice.send(BOB.public_key, b"keep me")
    assert (await next_message(bob)).sealed == b"keep me"
    assert hub.counters.intercepted == 1


async def test_listener_exceptions_do_not_break_the_channel() -> None:
    hub = SignalHub()
    alice = hub.channel(ALICE.public_key)
    bob = hub.channel(BOB.public_key)
    seen: list[object] = []

    def bad(event: ChannelEvent) -> None:
        raise RuntimeError("listener bug")

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda loop, context: seen.append(context["exception"]))
    alice.subscribe(bad)
    await alice.send(CAROL.public_key, b"x")
    await settle()
    await alice.send(BOB.public_key, b"still works")
    assert (await next_message(bob)).sealed == b"still works"
    assert len(seen) == 1
