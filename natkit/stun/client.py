"""A sans-IO STUN client: many transactions over a set of local sockets.

It owns transaction IDs, retransmission and matching; it never opens a
socket or reads a clock. Responses are matched by transaction ID only and
reported with the address they came from: a caller that must insist on the
source (most do) sets ``require_matching_source``; the NAT classifier does
not, because a response from the wrong address is evidence it must see
(a server that ignored CHANGE-REQUEST).
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.sansio import Datagram
from natkit.stun.codec import Message, StunDecodeError, encode_message, parse_message
from natkit.stun.constants import TRANSACTION_ID_LENGTH, MessageClass
from natkit.stun.events import (
    ClientEvent,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from natkit.stun.integrity import IntegrityError, verify_integrity
from natkit.stun.transaction import (
    ClientTransaction,
    RetransmissionPolicy,
    RtoEstimator,
    TransactionState,
)

#: How many finished transaction IDs the client remembers.
FINISHED_MEMORY = 256


@dataclass(slots=True)
class ClientCounters:
    """What the client dropped, and why (never raised to the driver)."""

    malformed: int = 0
    unknown_transaction: int = 0
    unexpected_source: int = 0
    bad_integrity: int = 0
    late_or_duplicate: int = 0


class StunClient:
    """Sends requests, retransmits them, and matches responses (see module doc)."""

    def __init__(
        self,
        *,
        policy: RetransmissionPolicy | None = None,
        rto_estimator: RtoEstimator | None = None,
        require_matching_source: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy or RetransmissionPolicy()
        self.rto_estimator = rto_estimator or RtoEstimator(initial_rto=self.policy.rto)
        self.require_matching_source = require_matching_source
        self.counters = ClientCounters()
        self._rng = rng or random.Random()
        self._transactions: dict[bytes, ClientTransaction] = {}
        self._keys: dict[bytes, bytes] = {}
        self._unsigned_errors: dict[bytes, frozenset[int]] = {}
        # Recently finished IDs, to tell a late duplicate from a stranger's reply.
        self._finished: deque[bytes] = deque(maxlen=FINISHED_MEMORY)
        self._deadlines: list[tuple[float, bytes]] = []
        self._outbox: list[Datagram] = []
        self._events: deque[ClientEvent] = deque()

    # -- requests ---------------------------------------------------------------

    def new_transaction_id(self) -> bytes:
        return self._rng.randbytes(TRANSACTION_ID_LENGTH)

    def send_request(
        self,
        message: Message,
        remote: Endpoint,
        now: float,
        *,
        socket: int = 0,
        policy: RetransmissionPolicy | None = None,
        integrity_key: bytes | None = None,
        fingerprint: bool = False,
        unsigned_errors: frozenset[int] = frozenset(),
    ) -> bytes:
        """Start a transaction for ``message`` (a request); returns its ID.

        ``integrity_key`` signs the request and is then required on the
        response (RFC 8489 §6.3.3: a response failing the check is dropped),
        except on error responses whose code is in ``unsigned_errors`` and
        that carry no MESSAGE-INTEGRITY at all: RFC 8489 §9.2.5 handles 401
        and 438 before any integrity check (the server may not know the key),
        and TURN servers send 437 the same way.
        """
        if message.message_class is not MessageClass.REQUEST:
            raise LocalProtocolError("only requests start transactions")
        tid = message.transaction_id
        if tid in self._transactions:
            raise LocalProtocolError("transaction ID already in use")
        policy = policy or self.policy
        rto = self.rto_estimator.rto if policy.adaptive else policy.rto
        data = encode_message(message, integrity_key=integrity_key, fingerprint=fingerprint)
        txn = ClientTransaction(
            transaction_id=tid,
            request=data,
            remote=remote,
            socket=socket,
            policy=policy,
            rto=rto,
            now=now,
        )
        self._transactions[tid] = txn
        if integrity_key is not None:
            self._keys[tid] = integrity_key
            if unsigned_errors:
                self._unsigned_errors[tid] = unsigned_errors
        self._service(txn, now)
        return tid

    def cancel(self, transaction_id: bytes) -> None:
        """Stop retransmitting; a late response is then silently dropped."""
        txn = self._transactions.pop(transaction_id, None)
        if txn is not None:
            txn.state = TransactionState.CANCELLED
            self._forget(transaction_id)

    def pending(self) -> int:
        return len(self._transactions)

    def transaction(self, transaction_id: bytes) -> ClientTransaction | None:
        return self._transactions.get(transaction_id)

    # -- SansIOCore -------------------------------------------------------------

    def receive_datagram(self, data: bytes, remote: Endpoint, socket: int, now: float) -> None:
        try:
            message = parse_message(data)
        except StunDecodeError:
            self.counters.malformed += 1
            return
        if message.message_class in (MessageClass.REQUEST, MessageClass.INDICATION):
            self._events.append(RequestReceived(message, remote, socket))
            return
        self.receive_response(message, remote, socket, now)

    def receive_response(self, message: Message, remote: Endpoint, socket: int, now: float) -> None:
        """Match an already-parsed response (for drivers that demultiplex)."""
        tid = message.transaction_id
        txn = self._transactions.get(tid)
        if txn is None:
            if tid in self._finished:
                self.counters.late_or_duplicate += 1
            else:
                self.counters.unknown_transaction += 1
            return
        if self.require_matching_source and remote != txn.remote:
            self.counters.unexpected_source += 1
            return
        key = self._keys.get(tid)
        if key is not None and not self._unsigned_error_allowed(tid, message):
            try:
                verify_integrity(message, key)
            except IntegrityError:
                self.counters.bad_integrity += 1
                return
        self._forget(tid)
        txn.state = TransactionState.SUCCEEDED
        rtt = txn.unambiguous_rtt(now)
        if rtt is not None:
            self.rto_estimator.update(rtt)
        self._events.append(
            ResponseReceived(
                transaction_id=tid,
                response=message,
                source=remote,
                socket=socket,
                request_remote=txn.remote,
                rtt=rtt,
                elapsed=now - txn.started,
                transmissions=txn.transmissions,
            )
        )

    def handle_timer(self, now: float) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            _, tid = heapq.heappop(self._deadlines)
            txn = self._transactions.get(tid)
            if txn is not None:
                self._service(txn, now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        out, self._outbox = self._outbox, []
        return out

    def get_timer(self) -> float | None:
        while self._deadlines and self._deadlines[0][1] not in self._transactions:
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else None

    def next_event(self) -> ClientEvent | None:
        return self._events.popleft() if self._events else None

    # -- internals --------------------------------------------------------------

    def _unsigned_error_allowed(self, tid: bytes, message: Message) -> bool:
        if message.has_message_integrity:
            return False  # present, so it must match
        if message.message_class is not MessageClass.ERROR_RESPONSE:
            return False
        error = message.error_code
        return error is not None and error.code in self._unsigned_errors.get(tid, frozenset())

    def _forget(self, tid: bytes) -> None:
        self._transactions.pop(tid, None)
        self._keys.pop(tid, None)
        self._unsigned_errors.pop(tid, None)
        self._finished.append(tid)

    def _service(self, txn: ClientTransaction, now: float) -> None:
        if txn.due_transmission(now):
            self._outbox.append(Datagram(txn.request, txn.remote, txn.socket))
        if txn.expired(now):
            txn.state = TransactionState.TIMED_OUT
            self._forget(txn.transaction_id)
            self._events.append(
                TransactionTimedOut(txn.transaction_id, txn.remote, txn.socket, txn.transmissions)
            )
            return
        deadline = txn.deadline
        if deadline is not None:
            heapq.heappush(self._deadlines, (deadline, txn.transaction_id))
