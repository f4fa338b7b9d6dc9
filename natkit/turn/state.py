"""The allocation's life cycle and the client's counters."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class AllocationState(Enum):
    """Where the allocation is; ``closed`` and ``failed`` are terminal."""

    IDLE = "idle"
    ALLOCATING = "allocating"
    ALLOCATED = "allocated"
    DEALLOCATING = "deallocating"
    CLOSED = "closed"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (AllocationState.CLOSED, AllocationState.FAILED)


@dataclass(slots=True)
class TurnCounters:
    """What the client dropped or retried, and why (never raised)."""

    #: Bytes from the server that are neither valid STUN nor valid ChannelData.
    malformed: int = 0
    #: Datagrams from anywhere but the server (or on another socket).
    wrong_source: int = 0
    #: ChannelData on a channel number we never asked for.
    unknown_channel: int = 0
    #: Data indications from an address without a permission.
    no_permission: int = 0
    #: STUN requests, or indications other than Data, from the server.
    unexpected: int = 0
    #: Input after the allocation ended.
    after_close: int = 0
    #: Datagrams ``send()`` could not take (closed, refused, or too many held).
    dropped_sends: int = 0
    stale_nonces: int = 0
    server_errors: int = 0
    refreshes: int = 0
    keepalives: int = 0
    icmp_errors: int = 0
    sent_channel_data: int = 0
    sent_indications: int = 0
