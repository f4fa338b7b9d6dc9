"""RFC 8489 §6.2.1 client transactions over UDP, driven by ``now``.

A request is sent at 0, RTO, 3·RTO, 7·RTO, … (the interval doubles), Rc
times in all; after the last transmission the client waits Rm·RTO before
giving up. With the RFC defaults (RTO 500 ms, Rc 7, Rm 16) that is 39.5 s.
``RtoEstimator`` supplies an RTT-adaptive initial RTO (RFC 6298) for the
"adaptive" mode. Nothing here reads a clock or opens a socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError


@dataclass(frozen=True, slots=True)
class RetransmissionPolicy:
    """Retransmission knobs (RFC 8489 §6.2.1)."""

    #: Initial retransmission timeout in seconds (RFC: 500 ms or more on the Internet).
    rto: float = 0.5
    #: Total number of transmissions.
    rc: int = 7
    #: After the last transmission, wait ``rm`` times the initial RTO.
    rm: int = 16
    #: Take the initial RTO from the shared :class:`RtoEstimator` once it has samples.
    adaptive: bool = False

    def __post_init__(self) -> None:
        if self.rto <= 0 or self.rc < 1 or self.rm < 1:
            raise LocalProtocolError(f"impossible retransmission policy {self!r}")

    def give_up_after(self, rto: float | None = None) -> float:
        """Seconds from the first transmission until the transaction fails."""
        base = self.rto if rto is None else rto
        return base * (((1 << (self.rc - 1)) - 1) + self.rm)


def smooth_rtt(srtt: float | None, rttvar: float | None, sample: float) -> tuple[float, float]:
    """RFC 6298 §2.2-2.3: the new (SRTT, RTTVAR) after one RTT ``sample``
    (``srtt`` ``None``: the first sample). Shared by the RTO estimator and the
    connect core's per-pair RTT, so there is one smoothing in natkit."""
    if srtt is None or rttvar is None:
        return sample, sample / 2
    return 0.875 * srtt + 0.125 * sample, 0.75 * rttvar + 0.25 * abs(srtt - sample)


class RtoEstimator:
    """Smoothed RTT and RTO per RFC 6298 §2, with a configurable floor.

    RFC 8489 wants at least 500 ms towards unknown Internet servers; a
    diagnostic on a path whose RTT was just measured may go lower, so the
    floor is the caller's choice.
    """

    def __init__(
        self,
        initial_rto: float = 0.5,
        min_rto: float = 0.5,
        max_rto: float = 60.0,
        granularity: float = 0.001,
    ) -> None:
        self._initial_rto = initial_rto
        self.min_rto = min_rto
        self.max_rto = max_rto
        self.granularity = granularity
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.samples = 0

    def update(self, rtt: float) -> None:
        """Feed one unambiguous RTT sample (Karn: never from a retransmission)."""
        if rtt < 0:
            raise LocalProtocolError(f"negative RTT sample {rtt}")
        self.srtt, self.rttvar = smooth_rtt(self.srtt, self.rttvar, rtt)
        self.samples += 1

    @property
    def rto(self) -> float:
        if self.srtt is None or self.rttvar is None:
            return self._initial_rto
        rto = self.srtt + max(self.granularity, 4 * self.rttvar)
        return min(self.max_rto, max(self.min_rto, rto))


class TransactionState(Enum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    TIMED_OUT = "timed out"
    CANCELLED = "cancelled"


class ClientTransaction:
    """One request's retransmission schedule and outcome."""

    def __init__(
        self,
        *,
        transaction_id: bytes,
        request: bytes,
        remote: Endpoint,
        socket: int,
        policy: RetransmissionPolicy,
        rto: float,
        now: float,
    ) -> None:
        self.transaction_id = transaction_id
        self.request = request
        self.remote = remote
        self.socket = socket
        self.policy = policy
        self.rto = rto
        self.started = now
        self.transmissions = 0
        self.last_sent = now
        self.state = TransactionState.PENDING
        self._next_send: float | None = now
        self._fail_at = now + policy.give_up_after(rto)

    @property
    def deadline(self) -> float | None:
        """When this transaction next needs attention."""
        if self.state is not TransactionState.PENDING:
            return None
        if self._next_send is not None:
            return min(self._next_send, self._fail_at)
        return self._fail_at

    def due_transmission(self, now: float) -> bool:
        """True (and schedule the next one) when a copy must go out now."""
        if self.state is not TransactionState.PENDING or self._next_send is None:
            return False
        if now < self._next_send:
            return False
        self.transmissions += 1
        self.last_sent = now
        if self.transmissions >= self.policy.rc:
            self._next_send = None
        else:
            # Intervals double: RTO, 2·RTO, 4·RTO… measured from the first send.
            self._next_send = self.started + self.rto * ((1 << self.transmissions) - 1)
        return True

    def expired(self, now: float) -> bool:
        return self.state is TransactionState.PENDING and now >= self._fail_at

    def unambiguous_rtt(self, now: float) -> float | None:
        """RTT of a response, or ``None`` when a retransmission makes it ambiguous."""
        return now - self.started if self.transmissions == 1 else None
