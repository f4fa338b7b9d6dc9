"""A sans-IO TURN client (RFC 8656) on natkit's STUN codec.

``TurnClient`` (:mod:`natkit.turn.client`) holds one allocation on one
server: Allocate with long-term or TURN REST API credentials
(:mod:`natkit.turn.credentials`), Refresh, CreatePermission, ChannelBind,
Send/Data indications and ChannelData, deallocation; over UDP, TCP or TLS
(the driver's choice: :mod:`natkit.aio.turn` runs it on asyncio). Nothing in
this package opens a socket, reads a clock or starts a task.
"""

from natkit.turn.channel_data import ChannelData, encode_channel_data, parse_channel_data
from natkit.turn.client import MAX_DATA, TurnClient
from natkit.turn.config import TurnConfig, TurnTransport
from natkit.turn.credentials import Credentials, rest_credentials
from natkit.turn.events import (
    AllocationCreated,
    AllocationFailed,
    AllocationLost,
    AllocationRefreshed,
    ChannelBindFailed,
    ChannelBound,
    DataReceived,
    Deallocated,
    Outcome,
    PermissionCreated,
    PermissionFailed,
    PingCompleted,
    TurnError,
    TurnEvent,
    TurnFailure,
)
from natkit.turn.framing import FramingError, StreamFramer
from natkit.turn.state import AllocationState, TurnCounters

__all__ = [
    "MAX_DATA",
    "AllocationCreated",
    "AllocationFailed",
    "AllocationLost",
    "AllocationRefreshed",
    "AllocationState",
    "ChannelBindFailed",
    "ChannelBound",
    "ChannelData",
    "Credentials",
    "DataReceived",
    "Deallocated",
    "FramingError",
    "Outcome",
    "PermissionCreated",
    "PermissionFailed",
    "PingCompleted",
    "StreamFramer",
    "TurnClient",
    "TurnConfig",
    "TurnCounters",
    "TurnError",
    "TurnEvent",
    "TurnFailure",
    "TurnTransport",
    "encode_channel_data",
    "parse_channel_data",
    "rest_credentials",
]
