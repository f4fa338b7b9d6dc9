"""A long-running command whose output reader goes away (``| head``, ``| grep -m1``).

Python ignores SIGPIPE, so a write to a pipe whose last reader has closed
raises :class:`BrokenPipeError`. natkit's commands take that as "the reader
has what it wanted" and exit 0 (:func:`natkit.cli.main.main`). A command
that runs until stopped (``natkit connect``) must do more:

* a write that fails must stop the command in order (sessions closed,
  relays and port mappings released), not raise out of an event callback,
  where the node counts it and carries on;
* it must notice the closed pipe while it has nothing to print, or
  ``natkit connect --json-line ... | grep -m1 path_selected`` would keep
  running after grep exited, until the next event, hours later. The kernel
  flags a pipe's write end with ``POLLERR`` once its last reader has closed
  (pipe(7)); epoll reports that to any registered callback, so
  :meth:`OutputGuard.watch` registers one on a pipe stdout.

Once closed, the stream's descriptor is pointed at ``/dev/null``, so later
lines and the interpreter's final flush go nowhere instead of raising.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import select
import stat
import sys
from collections.abc import Callable
from typing import TextIO

__all__ = ["OutputGuard"]


class OutputGuard:
    """Writes lines; calls ``on_closed`` once when a stream's reader is gone."""

    def __init__(self, on_closed: Callable[[], None]) -> None:
        self._on_closed = on_closed
        self._watched: list[tuple[asyncio.AbstractEventLoop, int]] = []
        self._gone: list[TextIO] = []
        #: The reader of an output stream went away (``on_closed`` was called).
        self.closed = False

    def write(self, line: str, stream: TextIO) -> None:
        """Print ``line`` to ``stream`` and flush; a closed pipe calls ``on_closed``."""
        if stream in self._gone:
            return
        try:
            print(line, file=stream, flush=True)
        except BrokenPipeError:
            self._closed(stream)

    def watch(self, stream: TextIO | None = None) -> None:
        """Notice, without writing, when the reader of ``stream`` (stdout) closes.

        Only a pipe is watched: a terminal's descriptor is also readable when
        the user types, and regular files cannot be polled.
        """
        stream = sys.stdout if stream is None else stream
        fd = _fileno(stream)
        if fd is None or not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return
        loop = asyncio.get_running_loop()
        # A pipe's write end is never readable: the callback runs on POLLERR only.
        loop.add_reader(fd, self._check, stream, fd)
        self._watched.append((loop, fd))

    def close(self) -> None:
        """Stop watching (idempotent)."""
        watched, self._watched = self._watched, []
        for loop, fd in watched:
            loop.remove_reader(fd)

    def _check(self, stream: TextIO, fd: int) -> None:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0)):
            self._closed(stream)

    def _closed(self, stream: TextIO) -> None:
        self.close()
        self._gone.append(stream)
        fd = _fileno(stream)
        if fd is not None:
            # What is still buffered, and every later line, goes nowhere.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
        if not self.closed:
            self.closed = True
            self._on_closed()


def _fileno(stream: TextIO) -> int | None:
    with contextlib.suppress(AttributeError, ValueError, io.UnsupportedOperation):
        return stream.fileno()
    return None
