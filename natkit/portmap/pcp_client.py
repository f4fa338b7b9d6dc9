"""A PCP MAP client (RFC 6887) as a sans-IO core.

What it adds to the shared lease engine (:mod:`natkit.portmap.lease`):

* A random 96-bit nonce from the RNG passed in; every MAP response must
  echo it, with our protocol and internal port (RFC 6887 §11.2), and every
  renewal and the deletion repeat it, so the server can tell us apart from
  an off-path spoofer and from another client. (A client that ignored the
  nonce had its deletes refused and its leases linger for two hours.)
* Retransmission per §8.1.1 and renewals per §11.2.1 (:mod:`timing`).
* The epoch rule of §8.5: a response or ANNOUNCE whose epoch does not fit
  means the server lost its state; the mapping is re-created at once (after
  a response) or after a random 0-``announce_delay`` s wait (after an
  ANNOUNCE, which every client behind the gateway receives at once, §14.1).
* An ANNOUNCE with a plausible epoch still re-validates the mapping with
  one renewal (subject to the 4 s spacing).
* UNSUPP_VERSION ends the client with ``MappingFailed.server_version``;
  version 0 means "retry with NAT-PMP" (RFC 6886 §1.1).
* Error responses hold for their lifetime (§7.2): short-lifetime errors are
  retried after it (bounded by IRT and MRT), and after twice the previous
  wait when they repeat (:func:`~natkit.portmap.timing.error_backoff`);
  long-lifetime ones end the client.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.portmap.epoch import EpochRule, EpochTracker
from natkit.portmap.events import FailureReason
from natkit.portmap.lease import Exchange, ExchangeKind, LeaseClient, LeaseDropReason
from natkit.portmap.mapping import (
    LifetimePolicy,
    MappingProtocol,
    PcpDetails,
    TransportProtocol,
)
from natkit.portmap.pcp import (
    NONCE_LENGTH,
    SHORT_LIFETIME_ERRORS,
    Opcode,
    PcpResponse,
    ResultCode,
    build_map_request,
    parse_response,
)
from natkit.portmap.timing import PcpRetransmission, pcp_first_renewal, pcp_next_renewal

#: RFC 6887 result codes onto the protocol-independent failure reasons.
FAILURE_FOR_RESULT: dict[int, FailureReason] = {
    ResultCode.UNSUPP_VERSION: FailureReason.UNSUPPORTED_VERSION,
    ResultCode.NOT_AUTHORIZED: FailureReason.NOT_AUTHORIZED,
    ResultCode.MALFORMED_REQUEST: FailureReason.MALFORMED_REQUEST,
    ResultCode.UNSUPP_OPCODE: FailureReason.UNSUPPORTED_OPCODE,
    ResultCode.UNSUPP_OPTION: FailureReason.UNSUPPORTED_OPTION,
    ResultCode.MALFORMED_OPTION: FailureReason.MALFORMED_OPTION,
    ResultCode.NETWORK_FAILURE: FailureReason.NETWORK_FAILURE,
    ResultCode.NO_RESOURCES: FailureReason.NO_RESOURCES,
    ResultCode.UNSUPP_PROTOCOL: FailureReason.UNSUPPORTED_PROTOCOL,
    ResultCode.USER_EX_QUOTA: FailureReason.USER_EX_QUOTA,
    ResultCode.CANNOT_PROVIDE_EXTERNAL: FailureReason.CANNOT_PROVIDE_EXTERNAL,
    ResultCode.ADDRESS_MISMATCH: FailureReason.ADDRESS_MISMATCH,
    ResultCode.EXCESSIVE_REMOTE_PEERS: FailureReason.EXCESSIVE_REMOTE_PEERS,
}


@dataclass(frozen=True, slots=True)
class PcpConfig:
    """Knobs of a PCP MAP client (seconds)."""

    lifetime: LifetimePolicy = field(default_factory=LifetimePolicy)
    #: Creation and deletion retransmit per RFC 6887 §8.1.1.
    retransmission: PcpRetransmission = field(default_factory=PcpRetransmission)
    #: RFC 6887 §11.2.1: renewals MUST NOT be sent closer together.
    min_renewal_interval: float = 4.0
    #: Act on an ANNOUNCE after a uniform random wait up to this long.
    announce_delay: float = 5.0
    #: Stop trying to delete after this long (the lease then just expires).
    delete_timeout: float = 10.0


class PcpClient(LeaseClient):
    """Maintains one PCP MAP mapping of ``internal`` through ``gateway``.

    ``internal.address`` goes into the PCP Client's IP Address field, so it
    must be the address requests leave from (else ADDRESS_MISMATCH).
    ``gateway`` is the PCP server's endpoint (port 5351); it need not be the
    default gateway. ``rng`` draws the nonce and the jitter; the default is
    ``random.SystemRandom`` because the nonce is a (weak) credential.

    To clean up after an earlier run (a lease journal), pass its ``nonce``
    and ``previous_external`` with ``start=False`` and call :meth:`delete`;
    to take its mapping back, the same without ``start=False``.
    """

    protocol = MappingProtocol.PCP

    def __init__(
        self,
        gateway: Endpoint,
        internal: Endpoint,
        now: float,
        *,
        transport: TransportProtocol = TransportProtocol.UDP,
        config: PcpConfig | None = None,
        rng: random.Random | None = None,
        nonce: bytes | None = None,
        previous_external: Endpoint | None = None,
        start: bool = True,
    ) -> None:
        self.config = config or PcpConfig()
        super().__init__(
            gateway,
            internal,
            transport=transport,
            lifetime=self.config.lifetime,
            epoch=EpochTracker(EpochRule.PCP),
            rng=rng,
            min_renewal_interval=self.config.min_renewal_interval,
            max_error_wait=self.config.retransmission.mrt,
            previous_external=previous_external,
        )
        if nonce is not None and len(nonce) != NONCE_LENGTH:
            raise LocalProtocolError(f"mapping nonce of {len(nonce)} bytes, not 12")
        #: The mapping nonce (RFC 6887 §11.1), fixed for the client's life.
        #: Journal it: only this nonce can delete the mapping later.
        self.nonce = nonce if nonce is not None else self._rng.randbytes(NONCE_LENGTH)
        self._start_or_hold(now, start)

    # -- lease hooks --------------------------------------------------------------

    def _begin(self, now: float) -> None:
        self._start(ExchangeKind.CREATE, now)

    def _request(self, kind: ExchangeKind, lifetime: int, suggested: Endpoint | None) -> bytes:
        # RFC 6887 §11.2: suggest what was assigned before; at first, the
        # internal port and no particular address.
        return build_map_request(
            client_address=self.internal.address,
            nonce=self.nonce,
            protocol=self.transport,
            internal_port=self.internal.port,
            suggested_external_port=self._suggested_port(suggested),
            suggested_external_address=None if suggested is None else suggested.address,
            lifetime=lifetime,
        )

    def _deadline(self, exchange: Exchange) -> float | None:
        if exchange.kind is ExchangeKind.DELETE:
            return exchange.started + self.config.delete_timeout
        if exchange.kind is ExchangeKind.CREATE and self.config.retransmission.mrd:
            return exchange.started + self.config.retransmission.mrd
        return None

    def _schedule(self, exchange: Exchange, now: float) -> None:
        if exchange.kind is ExchangeKind.RENEW:
            # One request per renewal window (RFC 6887 §11.2.1), until expiry.
            mapping = self._mapping
            exchange.next_send = (
                None
                if mapping is None
                else pcp_next_renewal(
                    mapping.granted_at,
                    mapping.lifetime,
                    now,
                    self._rng,
                    self.config.min_renewal_interval,
                )
            )
            return
        policy = self.config.retransmission
        exchange.timeout = (
            policy.first_timeout(self._rng)
            if exchange.transmissions == 1
            else policy.next_timeout(exchange.timeout, self._rng)
        )
        if policy.exhausted(exchange.transmissions):
            exchange.next_send = None
            last_wait = now + exchange.timeout
            give_up = exchange.give_up_at
            exchange.give_up_at = last_wait if give_up is None else min(give_up, last_wait)
        else:
            exchange.next_send = now + exchange.timeout

    def _first_renewal(self, granted_at: float, lifetime: int) -> float:
        return pcp_first_renewal(granted_at, lifetime, self._rng)

    def _renewal_retry_at(self, exchange: Exchange, now: float) -> float | None:
        mapping = self._mapping
        if mapping is None:
            return None
        sent = exchange.last_sent if exchange.last_sent is not None else now
        return pcp_next_renewal(
            mapping.granted_at, mapping.lifetime, sent, self._rng, self.config.min_renewal_interval
        )

    # -- datagrams ----------------------------------------------------------------

    def _on_datagram(self, data: bytes, now: float) -> None:
        message = self._decode(data, parse_response, ResultCode.UNSUPP_VERSION, now)
        if message is None:
            return
        if message.opcode is Opcode.ANNOUNCE:
            self._on_announce(message, now)
        else:
            self._on_map(message, now)

    def _on_announce(self, message: PcpResponse, now: float) -> None:
        if message.result != ResultCode.SUCCESS:
            self._drop(LeaseDropReason.UNEXPECTED)
            return
        restarted = self._note_epoch(message.epoch, now, announced=True)
        # Every client behind the gateway hears the same multicast: spread out.
        at = now + self._rng.uniform(0, self.config.announce_delay)
        if restarted:
            self._recreate(now, at)
        else:
            self._revalidate(now, at - now)

    def _on_map(self, message: PcpResponse, now: float) -> None:
        fields = message.map
        exchange = self._exchange
        if fields is None:
            # A header-only error (the server could not parse the request):
            # no nonce to check, so only believable while we wait for one.
            if exchange is None:
                self._drop(LeaseDropReason.UNEXPECTED)
                return
        elif fields.nonce != self.nonce:
            self._drop(LeaseDropReason.WRONG_NONCE)
            return
        elif fields.protocol != self.transport or fields.internal_port != self.internal.port:
            self._drop(LeaseDropReason.WRONG_MAPPING)
            return
        restarted = self._note_epoch(message.epoch, now, announced=False)
        if message.result != ResultCode.SUCCESS:
            self._on_error(message, now, restarted)
            return
        if fields is None:
            # The parser refuses a header-only success; never trust one anyway.
            self._drop(LeaseDropReason.MALFORMED)
            return
        if exchange is not None and exchange.kind is ExchangeKind.DELETE:
            self._on_delete_answer(message.lifetime)
            return
        external = Endpoint(fields.external_address, fields.external_port)
        if external.port == 0 or external.address.is_unspecified:
            self._drop(LeaseDropReason.BAD_GRANT)
            return
        details = PcpDetails(self.nonce, message.epoch)
        if exchange is None:
            self._on_unsolicited(message, external, details, now, restarted)
        else:
            self._grant(external, message.lifetime, now, details, restarted=restarted)

    def _on_unsolicited(
        self,
        message: PcpResponse,
        external: Endpoint,
        details: PcpDetails,
        now: float,
        restarted: bool,
    ) -> None:
        """A MAP success nobody is waiting for: a server-initiated update
        (RFC 6887 §14.2), or a duplicate of an answer already taken."""
        mapping = self._mapping
        if mapping is None:
            self._drop(LeaseDropReason.UNEXPECTED)
        elif message.lifetime == 0:
            self._revoke(now)
        elif external == mapping.external and not restarted:
            self._drop(LeaseDropReason.STALE)
        else:
            self._grant(external, message.lifetime, now, details, restarted=restarted)

    def _on_error(self, message: PcpResponse, now: float, restarted: bool) -> None:
        code = message.result
        policy = self.config.retransmission
        retry_after = min(max(float(message.lifetime), policy.irt), policy.mrt)
        self._refuse(
            FAILURE_FOR_RESULT.get(code, FailureReason.UNKNOWN_RESULT),
            code,
            now,
            transient=code in SHORT_LIFETIME_ERRORS,
            retry_after=retry_after,
            server_version=message.version if code == ResultCode.UNSUPP_VERSION else None,
        )
        if restarted and self._mapping is not None and self._exchange is None:
            # The renewal failed on a restarted server: the mapping is gone.
            self._recreate(now, self._renew_at if self._renew_at is not None else now)
