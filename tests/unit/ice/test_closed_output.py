"""A long-running command's reader going away (:mod:`natkit.cli.closed_output`)."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

from natkit.cli.closed_output import OutputGuard


class _ClosedPipe(io.StringIO):
    """A stream whose reader has gone (every write: EPIPE); no descriptor."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_failed_write_reports_the_closed_output_once() -> None:
    calls: list[str] = []
    guard = OutputGuard(lambda: calls.append("closed"))
    gone, other = _ClosedPipe(), io.StringIO()
    guard.write("first", gone)
    guard.write("second", gone)  # not tried again, not reported again
    guard.write("still here", other)
    assert calls == ["closed"]
    assert guard.closed
    assert other.getvalue() == "still here\n"


async def test_a_pipe_whose_reader_closes_is_noticed_without_writing() -> None:
    read_fd, write_fd = os.pipe()
    closed = asyncio.Event()
    guard = OutputGuard(closed.set)
    with os.fdopen(write_fd, "w") as stream:
        try:
            guard.watch(stream)
            guard.write("path_selected", stream)
            assert os.read(read_fd, 100) == b"path_selected\n"
            await asyncio.sleep(0.05)
            assert not closed.is_set()  # a live reader is not a closed one
            os.close(read_fd)
            await asyncio.wait_for(closed.wait(), 10)
            # The descriptor now goes to /dev/null: later lines do not raise.
            guard.write("later", stream)
            stream.write("at exit\n")
            stream.flush()
        finally:
            guard.close()


async def test_only_pipes_are_watched(tmp_path: Path) -> None:
    guard = OutputGuard(lambda: None)
    with (tmp_path / "out").open("w") as stream:
        guard.watch(stream)  # a regular file cannot be polled: not watched, no error
    guard.watch(io.StringIO())  # no descriptor at all
    guard.close()
