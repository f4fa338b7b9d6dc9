"""Who an allocation may talk to: permissions by address, channels by endpoint.

RFC 8656 §9: a permission names an IP address (any port) and lives 300 s;
§12: a channel binds a number (0x4000-0x4FFF) to one peer endpoint for 600 s
and also installs a permission for its address. The client keeps both tables
here; :mod:`natkit.turn.client` decides when to send what.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from natkit.endpoint import Endpoint, IPAddress
from natkit.turn.channel_data import MAX_CHANNEL, MIN_CHANNEL
from natkit.turn.events import Outcome


class PermissionState(Enum):
    #: CreatePermission sent (or waiting for the allocation); datagrams are held.
    PENDING = "pending"
    INSTALLED = "installed"


class ChannelState(Enum):
    #: ChannelBind sent (or waiting for the allocation): Send indications meanwhile.
    PENDING = "pending"
    BOUND = "bound"
    #: Refused: the peer keeps using Send/Data indications.
    FAILED = "failed"
    #: Released (its peer is gone): no longer refreshed, so it lapses at the
    #: server (RFC 8656 §12: 10 min). The number stays tied to its peer: if
    #: the peer comes back, the same number is bound again.
    RELEASED = "released"


@dataclass(slots=True)
class Permission:
    peer: IPAddress
    state: PermissionState = PermissionState.PENDING
    #: A CreatePermission for it is in flight.
    requested: bool = False
    #: Datagrams waiting for the permission: (peer endpoint, data).
    held: deque[tuple[Endpoint, bytes]] = field(default_factory=deque)


@dataclass(slots=True)
class Channel:
    number: int
    peer: Endpoint
    state: ChannelState = ChannelState.PENDING
    #: A ChannelBind for it is in flight.
    requested: bool = False


#: Refused addresses remembered before expired ones are swept.
MAX_REFUSALS = 1024


class PeerTable:
    """Permissions and channels of one allocation."""

    def __init__(self) -> None:
        #: Addresses whose permission was refused: until when to hold off, and why.
        self.refusals: dict[IPAddress, tuple[float, Outcome]] = {}
        self.permissions: dict[IPAddress, Permission] = {}
        self.channels: dict[Endpoint, Channel] = {}
        self._by_number: dict[int, Channel] = {}
        self._next_number = MIN_CHANNEL

    def permission(self, peer: IPAddress) -> Permission | None:
        return self.permissions.get(peer)

    def add_permission(self, peer: IPAddress) -> Permission:
        permission = self.permissions.get(peer)
        if permission is None:
            permission = self.permissions[peer] = Permission(peer)
        return permission

    def remove_permission(self, peer: IPAddress) -> int:
        """Forget ``peer``'s permission (and its channels); returns how many held
        datagrams were dropped with it."""
        permission = self.permissions.pop(peer, None)
        for endpoint in [e for e in self.channels if e.address == peer]:
            self._by_number.pop(self.channels.pop(endpoint).number, None)
        return len(permission.held) if permission is not None else 0

    def release(self, peer: IPAddress) -> int:
        """Stop keeping ``peer``'s permission (and its channels): the permission
        is forgotten, the channels are marked released (their numbers kept);
        returns how many held datagrams were dropped."""
        permission = self.permissions.pop(peer, None)
        for channel in self.channels.values():
            if channel.peer.address == peer:
                channel.state = ChannelState.RELEASED
        return len(permission.held) if permission is not None else 0

    def refuse(self, peer: IPAddress, until: float, now: float, outcome: Outcome) -> None:
        """Hold off asking for ``peer`` again until ``until``."""
        if len(self.refusals) >= MAX_REFUSALS:  # keep the table bounded
            self.refusals = {a: r for a, r in self.refusals.items() if r[0] > now}
        self.refusals[peer] = (until, outcome)

    def refusal(self, peer: IPAddress, now: float) -> Outcome | None:
        """Why ``peer`` was refused, while the hold lasts; else ``None``."""
        refusal = self.refusals.get(peer)
        if refusal is None:
            return None
        if now < refusal[0]:
            return refusal[1]
        del self.refusals[peer]
        return None

    def channel(self, peer: Endpoint) -> Channel | None:
        return self.channels.get(peer)

    def channel_by_number(self, number: int) -> Channel | None:
        return self._by_number.get(number)

    @property
    def channels_left(self) -> int:
        return MAX_CHANNEL + 1 - self._next_number

    def new_channel(self, peer: Endpoint) -> Channel | None:
        """A fresh channel number for ``peer``, or ``None`` when all are used.

        Numbers are never reused within an allocation: a number once bound
        stays tied to its peer at the server (RFC 8656 §12), even after a
        refusal here.
        """
        if self._next_number > MAX_CHANNEL:
            return None
        channel = Channel(self._next_number, peer)
        self._next_number += 1
        self.channels[peer] = channel
        self._by_number[channel.number] = channel
        return channel

    def held_count(self) -> int:
        return sum(len(p.held) for p in self.permissions.values())

    def clear(self) -> int:
        """Forget everything; returns how many held datagrams were dropped."""
        dropped = self.held_count()
        self.refusals.clear()
        self.permissions.clear()
        self.channels.clear()
        self._by_number.clear()
        return dropped
