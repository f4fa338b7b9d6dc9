"""Socket-free harness: one rendezvous server core, client cores wired to it
by hand, a virtual clock (after h11's ConnectionPair)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from natkit.identity import PrivateKey
from natkit.signal.client import ClientEvent, RendezvousClient
from natkit.signal.server import (
    ConnId,
    RendezvousServer,
    ServerConfig,
    ServerEvent,
)


@dataclass
class Link:
    """One connection: a client core (or raw bytes) at one end."""

    conn: ConnId
    client: RendezvousClient | None
    #: The driver stops taking bytes from the server for it (a non-reader).
    stalled: bool = False
    closed: bool = False
    #: What the server wrote to it (raw links keep it all).
    written: bytearray = field(default_factory=bytearray)
    events: list[ClientEvent] = field(default_factory=list)


class Harness:
    def __init__(self, config: ServerConfig | None = None, seed: int = 1) -> None:
        self.server = RendezvousServer(config or ServerConfig(), random.Random(seed).randbytes)
        self.now = 0.0
        self.links: dict[ConnId, Link] = {}
        self.server_events: list[ServerEvent] = []
        self._port = 40000
        self._waiting: set[ConnId] = set()

    def connect(self, key: PrivateKey | None, source: str | None = None) -> Link:
        """A client core for ``key`` (``None``: a raw link driven by hand);
        ``source``: the address the server counts handshakes by."""
        self._port += 1
        conn = self.server.open(f"127.0.0.1:{self._port}", self.now, source)
        client = None if key is None else RendezvousClient(key, self.now)
        link = Link(conn, client)
        self.links[conn] = link
        self.pump()
        return link

    def raw(self, link: Link, data: bytes) -> None:
        self.server.receive(link.conn, data, self.now)
        self.pump()

    def advance(self, seconds: float, step: float = 0.5) -> None:
        """Move the clock, firing the server's and the clients' timers."""
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            timer = self.server.get_timer()
            if timer is not None and timer <= self.now:
                self.server.handle_timer(self.now)
            for link in self.links.values():
                if link.client is not None and not link.closed:
                    deadline = link.client.get_timer()
                    if deadline is not None and deadline <= self.now:
                        link.client.handle_timer(self.now)
            self.pump()

    def pump(self) -> None:
        """Move bytes both ways until nothing moves."""
        moved = True
        while moved:
            moved = False
            while (event := self.server.next_event()) is not None:
                self.server_events.append(event)
            self._waiting |= self.server.take_dirty()
            for conn in sorted(self._waiting):
                link = self.links[conn]
                if link.closed:
                    self._waiting.discard(conn)
                    continue
                if link.stalled and not self.server.wants_close(conn):
                    continue  # the socket takes nothing: the driver waits
                self._waiting.discard(conn)
                # A stalled link being closed is aborted: its bytes are never read.
                data = b"" if link.stalled else self.server.data_to_send(conn)
                link.written += data
                if link.client is not None and data:
                    link.client.receive(data, self.now)
                    moved = True
                if self.server.wants_close(conn):
                    link.closed = True
                    if link.client is not None:
                        link.client.eof(self.now)
                    self.server.lost(conn, self.now)
                    moved = True
            for link in self.links.values():
                client = link.client
                if client is None:
                    continue
                data = client.data_to_send()
                if data and not link.closed:
                    self.server.receive(link.conn, data, self.now)
                    moved = True
                while (event := client.next_event()) is not None:
                    link.events.append(event)
                    moved = True
            while (event := self.server.next_event()) is not None:
                self.server_events.append(event)

    def hang_up(self, link: Link) -> None:
        """The client side closes the connection."""
        link.closed = True
        self.server.lost(link.conn, self.now)
        self.pump()
