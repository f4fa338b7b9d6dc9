"""Events the STUN client core hands to its driver (past tense: they happened)."""

from __future__ import annotations

from dataclasses import dataclass

from natkit.endpoint import Endpoint
from natkit.stun.codec import Message


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A success or error response matched one of our transactions."""

    transaction_id: bytes
    response: Message
    #: Where the response came from (differs from the request's destination
    #: when the server honoured CHANGE-REQUEST).
    source: Endpoint
    #: Local socket index it arrived on.
    socket: int
    #: Where the request was sent.
    request_remote: Endpoint
    #: Round-trip time, ``None`` when retransmissions make it ambiguous (Karn).
    rtt: float | None
    #: Seconds from the first transmission to the response.
    elapsed: float
    transmissions: int


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """No acceptable response before the retransmission schedule ran out."""

    transaction_id: bytes
    request_remote: Endpoint
    socket: int
    transmissions: int


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """Someone sent us a STUN request or indication (ICE checks, hairpin probes)."""

    message: Message
    source: Endpoint
    socket: int


ClientEvent = ResponseReceived | TransactionTimedOut | RequestReceived
