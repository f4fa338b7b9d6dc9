"""At-least-once delivery: the sender's window and the reader's cursor, on
a fake clock."""

from __future__ import annotations

import pytest

from natkit.directory.records import MAX_WINDOW, MessageRecord, check_window
from natkit.directory.window import Outbox, Reader, WindowConfig

STREAM, NEW_STREAM = "00000000000000aa", "00000000000000bb"


def test_window_config_is_bounded() -> None:
    with pytest.raises(ValueError, match=r"window must be 1\.\.10"):
        WindowConfig(window=MAX_WINDOW + 1)
    with pytest.raises(ValueError, match=r"window must be 1\.\.10"):
        WindowConfig(window=0)
    with pytest.raises(ValueError, match="retain"):
        WindowConfig(retain=-1)


def test_outbox_numbers_per_recipient_and_keeps_the_last_window() -> None:
    box: Outbox[str] = Outbox(STREAM, WindowConfig(window=3, retain=10))
    for i in range(5):
        box.push("b", b"%d" % i, now=0.0)
    box.push("c", b"x", now=0.0)
    assert [r.seq for r in box.window("b")] == [3, 4, 5]
    assert [r.sealed for r in box.window("b")] == [b"2", b"3", b"4"]
    assert [r.seq for r in box.window("c")] == [1]
    assert box.window("nobody") == ()
    # Never published, so pushing them out risked nothing a reader could see.
    assert box.evicted_unpublished == 2
    assert box.evicted_early == 0


def test_a_full_window_admits_the_next_message_once_the_oldest_was_readable_long_enough() -> None:
    box: Outbox[str] = Outbox(STREAM, WindowConfig(window=2, retain=10))
    assert box.admit_at("b", 0.0) == 0.0
    box.push("b", b"1", 0.0)
    box.mark_published("b", 1, now=1.0)
    box.push("b", b"2", 2.0)
    box.mark_published("b", 2, now=3.0)
    # Full: the oldest went out at 1.0, so it must stay until 11.0.
    assert box.admit_at("b", 5.0) == 11.0
    assert box.admit_at("b", 11.0) == 11.0
    box.push("b", b"3", 11.0)
    assert box.evicted_early == 0
    # The next one waits for message 2 (published at 3.0).
    assert box.admit_at("b", 11.0) == 13.0
    # A caller that does not wait pushes out a young message: counted.
    box.push("b", b"4", 11.5)
    assert box.evicted_early == 1


def test_unpublished_messages_do_not_hold_the_window() -> None:
    box: Outbox[str] = Outbox(STREAM, WindowConfig(window=2, retain=10))
    box.push("b", b"1", 0.0)
    box.push("b", b"2", 0.0)
    assert box.admit_at("b", 0.0) == 0.0
    assert box.pending() == ("b",)


def test_mark_published_covers_only_what_the_update_carried() -> None:
    box: Outbox[str] = Outbox(STREAM, WindowConfig(window=4))
    box.push("b", b"1", 0.0)
    box.push("b", b"2", 0.0)
    box.mark_published("b", 1, now=1.0)
    assert box.is_published("b", 1)
    assert not box.is_published("b", 2)
    assert box.pending() == ("b",)
    box.mark_published("b", 2, now=2.0)
    assert box.pending() == ()


def _window(stream: str, *seqs: int) -> tuple[MessageRecord, ...]:
    return check_window(MessageRecord(stream, s, b"m%d" % s) for s in seqs)


def test_reader_delivers_each_message_once_in_order() -> None:
    reader: Reader[str] = Reader()
    first = reader.accept("a", _window(STREAM, 1, 2))
    assert [r.seq for r in first.new] == [1, 2]
    assert first.missed == 0
    again = reader.accept("a", _window(STREAM, 1, 2, 3))
    assert [r.seq for r in again.new] == [3]
    assert again.duplicates == 2
    assert reader.accept("a", _window(STREAM, 2, 3)).new == ()


def test_reader_counts_the_gap_when_it_fell_behind_the_window() -> None:
    reader: Reader[str] = Reader()
    reader.accept("a", _window(STREAM, 1, 2))
    late = reader.accept("a", _window(STREAM, 6, 7, 8))
    assert [r.seq for r in late.new] == [6, 7, 8]
    assert late.missed == 3  # 3, 4 and 5 were never seen
    # Joining after the sender had sent more than a window: a gap too.
    assert Reader[str]().accept("a", _window(STREAM, 4, 5)).missed == 3


def test_a_restarted_sender_is_read_from_its_new_start_and_its_old_stream_never_again() -> None:
    reader: Reader[str] = Reader()
    reader.accept("a", _window(STREAM, 5, 6))
    restart = reader.accept("a", _window(NEW_STREAM, 1))
    assert restart.restarted
    assert [r.seq for r in restart.new] == [1]
    # A lagging secondary still serves the old stream: ignored, not re-delivered.
    stale = reader.accept("a", _window(STREAM, 5, 6, 7))
    assert stale.stale
    assert stale.new == ()
    assert [r.seq for r in reader.accept("a", _window(NEW_STREAM, 1, 2)).new] == [2]


def test_a_stale_copy_of_the_same_stream_delivers_nothing() -> None:
    reader: Reader[str] = Reader()
    reader.accept("a", _window(STREAM, 1, 2, 3))
    older = reader.accept("a", _window(STREAM, 1, 2))
    assert older.new == ()
    assert older.missed == 0
    assert older.duplicates == 2


def test_empty_windows_keep_the_cursor() -> None:
    reader: Reader[str] = Reader()
    reader.accept("a", _window(STREAM, 1))
    assert reader.accept("a", ()).new == ()
    assert reader.accept("a", _window(STREAM, 1)).new == ()
    reader.forget("a")
    assert [r.seq for r in reader.accept("a", _window(STREAM, 1)).new] == [1]


@pytest.mark.parametrize("poll_every", [1.0, 5.0, 9.9])
def test_a_reader_polling_within_retain_sees_every_message_of_a_burst(poll_every: float) -> None:
    """The at-least-once promise, simulated: the sender sends 50 messages as
    fast as the window admits; a reader reading every ``poll_every`` (< retain)
    seconds gets all 50 and counts no gap."""
    config = WindowConfig(window=4, retain=10.0)
    box: Outbox[str] = Outbox(STREAM, config)
    reader: Reader[str] = Reader()
    got: list[int] = []
    now, next_read, sent = 0.0, 0.0, 0
    while len(got) < 50:
        if sent < 50 and box.admit_at("b", now) <= now:
            box.push("b", b"m", now)
            box.mark_published("b", box.window("b")[-1].seq, now)
            sent += 1
        if now >= next_read:
            delivery = reader.accept("b", box.window("b"))
            assert delivery.missed == 0
            got += [r.seq for r in delivery.new]
            next_read = now + poll_every
        now = round(now + 0.1, 6)
    assert got == list(range(1, 51))
