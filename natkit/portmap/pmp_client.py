"""A NAT-PMP mapping client (RFC 6886) as a sans-IO core.

What it adds to the shared lease engine (:mod:`natkit.portmap.lease`):

* Requests go one at a time (§3.1): first the public address (opcode 0),
  then the map request, each retransmitted at 250 ms, doubling, nine
  attempts (:class:`~natkit.portmap.timing.PmpRetransmission`).
* NAT-PMP has no nonce: a map response is ours when it comes from the
  gateway's address and port with our opcode and internal port (§3.3).
* Renewal at half the lifetime, suggesting the external port granted
  (never swapped with the internal one); an unanswered renewal is retried
  halfway to expiry (§3.3, "like DHCP").
* The epoch rule of §3.6 on every packet; on a restart the address is
  asked again and the mapping re-created (§3.7). Unsolicited address
  announcements (§3.2.1) either reveal a restart or a new external address
  (then the mapping is renewed to confirm it).
* A PCP ANNOUNCE from the gateway (RFC 6887 §14.1.3) prompts a renewal
  after a random wait: miniupnpd announces its restarts in PCP only, never
  with the NAT-PMP announcement §3.2.1 asks for at boot (captured in the
  lab, docs/dependencies.md). Its epoch is PCP's, which need not be
  NAT-PMP's (miniupnpd resets only the PCP one when its address changes),
  so the renewal answer's own epoch decides (§3.6), and the renewal itself
  re-creates a lost mapping (§3.7); a restart found that way counts as
  announced.
* Deletion: lifetime 0, the same internal port, and the external port
  granted as the suggestion. §3.4 asks for 0 there, but gateways must
  ignore the field, and some (MikroTik) refuse any request with external
  port 0, so natkit never sends it.
* Errors carry no lifetime in NAT-PMP: NETWORK_FAILURE and
  OUT_OF_RESOURCES are retried after ``error_retry``, then after twice the
  previous wait while they repeat, up to ``max_error_retry``; the rest, and
  unknown codes (§3.5: "MUST be treated as fatal"), end the client.
* :meth:`~natkit.portmap.lease.LeaseClient.probe`: the public address
  request alone, which creates nothing; a port mapper asks it first and
  maps later without asking again (:class:`ExternalAddressFound`).
"""

from __future__ import annotations

import ipaddress
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
    PmpDetails,
    TransportProtocol,
)
from natkit.portmap.pcp import is_announcement
from natkit.portmap.pmp import (
    TRANSIENT_ERRORS,
    PmpAddressResponse,
    PmpMapResponse,
    PmpResultCode,
    build_map_request,
    build_public_address_request,
    map_opcode,
    parse_response,
)
from natkit.portmap.timing import PmpRetransmission

#: RFC 6886 result codes onto the protocol-independent failure reasons.
FAILURE_FOR_RESULT: dict[int, FailureReason] = {
    PmpResultCode.UNSUPPORTED_VERSION: FailureReason.UNSUPPORTED_VERSION,
    PmpResultCode.NOT_AUTHORIZED: FailureReason.NOT_AUTHORIZED,
    PmpResultCode.NETWORK_FAILURE: FailureReason.NETWORK_FAILURE,
    PmpResultCode.OUT_OF_RESOURCES: FailureReason.NO_RESOURCES,
    PmpResultCode.UNSUPPORTED_OPCODE: FailureReason.UNSUPPORTED_OPCODE,
}


@dataclass(frozen=True, slots=True)
class PmpConfig:
    """Knobs of a NAT-PMP client (seconds)."""

    lifetime: LifetimePolicy = field(default_factory=LifetimePolicy)
    retransmission: PmpRetransmission = field(default_factory=PmpRetransmission)
    #: RFC 6886 §3.1: deletions are advisory; "once or twice" is enough.
    delete_attempts: int = 3
    #: Retry transient errors after this long (NAT-PMP errors carry no lifetime)...
    error_retry: float = 30.0
    #: ...doubling while they repeat, up to this (RFC 6887 §8.1.1's MRT).
    max_error_retry: float = 1024.0
    #: Renewals never go out closer together than this.
    min_renewal_interval: float = 4.0
    #: Renew after a PCP ANNOUNCE from the gateway after a uniform random wait
    #: up to this long: every client behind it hears the same multicast
    #: (RFC 6887 §14.1.3 spreads PCP clients over 0-5 s the same way).
    announce_delay: float = 5.0

    def __post_init__(self) -> None:
        if (
            self.delete_attempts < 1
            or not 0 < self.error_retry <= self.max_error_retry
            or self.announce_delay < 0
        ):
            raise LocalProtocolError(f"impossible NAT-PMP config {self!r}")


class PmpClient(LeaseClient):
    """Maintains one NAT-PMP mapping of ``internal`` through ``gateway``.

    NAT-PMP is IPv4 only; ``internal.address`` is recorded in the mapping
    (the gateway takes it from the packet's source, §3.3). ``gateway`` is
    the server endpoint (port 5351), which need not be the default gateway.
    ``rng`` draws the wait before acting on a PCP ANNOUNCE.

    To clean up after an earlier run, pass ``previous_external`` with
    ``start=False`` and call :meth:`delete` (NAT-PMP identifies the mapping
    by the source address and internal port alone). ``start=False,
    probe=True`` asks only the public address; :meth:`start` maps after.
    """

    protocol = MappingProtocol.NAT_PMP
    can_probe = True

    def __init__(
        self,
        gateway: Endpoint,
        internal: Endpoint,
        now: float,
        *,
        transport: TransportProtocol = TransportProtocol.UDP,
        config: PmpConfig | None = None,
        rng: random.Random | None = None,
        previous_external: Endpoint | None = None,
        external_address: ipaddress.IPv4Address | None = None,
        start: bool = True,
        probe: bool = False,
    ) -> None:
        if gateway.address.version != 4:
            raise LocalProtocolError("NAT-PMP is IPv4 only")
        self.config = config or PmpConfig()
        super().__init__(
            gateway,
            internal,
            transport=transport,
            lifetime=self.config.lifetime,
            epoch=EpochTracker(EpochRule.NAT_PMP),
            rng=rng,
            min_renewal_interval=self.config.min_renewal_interval,
            max_error_wait=self.config.max_error_retry,
            previous_external=previous_external,
        )
        #: The gateway's external address, once it told us. A caller that
        #: already asked (a port mapper's probe) passes it in, and the first
        #: request is then the map request: one round trip saved.
        self.external_address: ipaddress.IPv4Address | None = external_address
        # A PCP ANNOUNCE asked for a check; the next epoch seen answers it.
        self._check_announced = False
        self._start_or_hold(now, start, probe)

    # -- lease hooks --------------------------------------------------------------

    def _begin(self, now: float) -> None:
        kind = ExchangeKind.ADDRESS if self.external_address is None else ExchangeKind.CREATE
        self._start(kind, now)

    def _request(self, kind: ExchangeKind, lifetime: int, suggested: Endpoint | None) -> bytes:
        if kind is ExchangeKind.ADDRESS:
            return build_public_address_request()
        # RFC 6886 §3.3: suggest the port granted before, else the internal port.
        return build_map_request(
            transport=self.transport,
            internal_port=self.internal.port,
            suggested_external_port=self._suggested_port(suggested),
            lifetime=lifetime,
        )

    def _deadline(self, exchange: Exchange) -> float | None:
        return None  # the attempt count decides (RFC 6886 §3.1)

    def _schedule(self, exchange: Exchange, now: float) -> None:
        attempts = (
            self.config.delete_attempts
            if exchange.kind is ExchangeKind.DELETE
            else self.config.retransmission.attempts
        )
        wait = self.config.retransmission.wait_after(exchange.transmissions)
        if exchange.transmissions >= attempts:
            # After the ninth attempt, wait 64 s more, then give up.
            exchange.next_send = None
            give_up = exchange.give_up_at
            exchange.give_up_at = now + wait if give_up is None else min(give_up, now + wait)
        else:
            exchange.next_send = now + wait

    def _recreate(self, now: float, at: float) -> None:
        # The external address may have changed with the restart: ask again,
        # then map (requests stay serial, §3.1).
        if self._may_recreate():
            self._start(ExchangeKind.ADDRESS, now, at=at, recreate=True)

    # -- datagrams ----------------------------------------------------------------

    def _note_epoch(self, epoch: int, now: float, *, announced: bool) -> bool:
        # The first epoch after a PCP ANNOUNCE is the answer to the check it
        # prompted: a restart seen there was announced, if only in PCP.
        prompted, self._check_announced = self._check_announced, False
        return super()._note_epoch(epoch, now, announced=announced or prompted)

    def _on_datagram(self, data: bytes, now: float) -> None:
        if is_announcement(data):
            self._on_pcp_announcement(now)
            return
        message = self._decode(data, parse_response, PmpResultCode.UNSUPPORTED_VERSION, now)
        if isinstance(message, PmpAddressResponse):
            self._on_address(message, now)
        elif isinstance(message, PmpMapResponse):
            self._on_map(message, now)

    def _on_pcp_announcement(self, now: float) -> None:
        """The gateway's PCP half says it restarted (or its address changed):
        renew soon, and let the NAT-PMP epoch of the answer tell (module
        docstring). A request already in flight will tell just as well."""
        if self._mapping is None or not self._may_recreate():
            self._drop(LeaseDropReason.UNEXPECTED)
            return
        self._check_announced = True
        self._revalidate(now, self._rng.uniform(0, self.config.announce_delay))

    def _on_address(self, message: PmpAddressResponse, now: float) -> None:
        exchange = self._exchange
        solicited = exchange is not None and exchange.kind is ExchangeKind.ADDRESS
        if message.result != PmpResultCode.SUCCESS:
            if solicited:
                self._note_epoch(message.epoch, now, announced=False)
                self._on_error(message.result, now)
            else:
                self._drop(LeaseDropReason.UNEXPECTED)
            return
        if message.address.is_unspecified:
            self._drop(LeaseDropReason.BAD_GRANT)
            return
        # RFC 6886 §3.6: every packet from the gateway carries the epoch.
        restarted = self._note_epoch(message.epoch, now, announced=not solicited)
        moved = self.external_address is not None and message.address != self.external_address
        self.external_address = message.address
        if exchange is not None and exchange.probe:
            self._probe_answered(message.address, message.epoch)
        elif solicited:
            recreate = exchange is not None and exchange.recreate
            self._start(ExchangeKind.CREATE, now, recreate=recreate or self._mapping is not None)
        elif restarted:
            # An announcement after a restart (§3.2.1): it carries the address.
            self._start_recreate_now(now)
        elif moved and self._mapping is not None:
            self._revalidate(now)

    def _on_map(self, message: PmpMapResponse, now: float) -> None:
        exchange = self._exchange
        if message.opcode != map_opcode(self.transport) or message.internal_port != (
            self.internal.port
        ):
            self._drop(LeaseDropReason.WRONG_MAPPING)
            return
        if exchange is None or exchange.kind is ExchangeKind.ADDRESS:
            self._note_epoch(message.epoch, now, announced=False)
            self._drop(LeaseDropReason.UNEXPECTED)
            return
        restarted = self._note_epoch(message.epoch, now, announced=False)
        if message.result != PmpResultCode.SUCCESS:
            self._on_error(message.result, now)
            if restarted and self._mapping is not None and self._exchange is None:
                self._recreate(now, now)
            return
        if exchange.kind is ExchangeKind.DELETE:
            self._on_delete_answer(message.lifetime)
            return
        address = self.external_address
        if message.external_port == 0 or address is None:
            self._drop(LeaseDropReason.BAD_GRANT)
            return
        self._grant(
            Endpoint(address, message.external_port),
            message.lifetime,
            now,
            PmpDetails(message.epoch),
            restarted=restarted,
        )

    def _on_error(self, code: int, now: float) -> None:
        self._refuse(
            FAILURE_FOR_RESULT.get(code, FailureReason.UNKNOWN_RESULT),
            code,
            now,
            transient=code in TRANSIENT_ERRORS,
            retry_after=self.config.error_retry,
        )

    def _start_recreate_now(self, now: float) -> None:
        if self._may_recreate():
            self._start(ExchangeKind.CREATE, now, recreate=True)
