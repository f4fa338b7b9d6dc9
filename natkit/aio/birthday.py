"""Run :class:`~natkit.birthday.prober.BirthdayProber` on real UDP sockets.

Each function binds the sockets its role needs, builds the plan on the real
clock (``loop.time()``) once they are bound, and returns the terminal event:
:class:`~natkit.birthday.events.PairFound` or
:class:`~natkit.birthday.events.SearchExhausted`. All sockets are closed on
return; the ACKs that end a run are sent before that.

``on_send`` sees every datagram the core sends, stamped with the ``now``
the core sent it at (the time its pacing rule is stated in), so a caller
can count budget and rate from the core's own send times.

Through a real NAT the hard side needs the easy side's *mapped* endpoint:
:func:`learn_mapped_endpoint` asks a STUN server from the very local
endpoint the easy side will then spray from (an EIM NAT keeps that mapping
for every destination).

:func:`probe_birthday` (``natkit.probe_birthday``) is one side of a search
as ``natkit birthday probe`` runs it: the role's sockets, timing and
defaults, the STUN step included.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Sequence

from natkit.aio.driver import local_endpoint, open_udp_sockets, run_to_completion
from natkit.aio.stun_query import stun_binding
from natkit.birthday.events import BirthdayEvent
from natkit.birthday.ports import FULL_RANGE, PortRange
from natkit.birthday.prober import BirthdayProber, ProberConfig
from natkit.birthday.schedule import DEFAULT_RATE, SendPlan, opener_plan, pacing_gap, spray_plan
from natkit.birthday.wire import BirthdayRole
from natkit.endpoint import Endpoint, IPAddress
from natkit.errors import LocalProtocolError, NatkitTimeout
from natkit.sansio import SansIOCore, SendObserver


async def run_prober(
    config: ProberConfig,
    endpoints: Sequence[Endpoint],
    make_plan: Callable[[list[Endpoint], float], SendPlan],
    *,
    on_send: SendObserver | None = None,
) -> BirthdayEvent:
    """Bind ``endpoints`` (port 0: any), plan with ``make_plan(bound, now)``, run."""

    def make_core(sockets: list[Endpoint], now: float) -> SansIOCore[BirthdayEvent]:
        return BirthdayProber(config, sockets, make_plan(sockets, now), now)

    def result_of(event: BirthdayEvent) -> BirthdayEvent:
        return event  # every event a prober emits ends its run

    return await run_to_completion(make_core, endpoints, result_of, on_send=on_send)


def opener_rounds(duration: float, keepalive: float) -> int:
    """Rounds of OPENs that keep mappings alive for ``duration`` seconds."""
    return max(1, math.floor(duration / keepalive) + 1)


def spray_seconds(probes: int, rate: float) -> float:
    """How long a spray of ``probes`` takes at ``rate`` (what the peer must outlast)."""
    return probes * pacing_gap(rate)


async def probe_hard(
    config: ProberConfig,
    peer: Endpoint,
    *,
    ports: int = 256,
    duration: float = 30.0,
    keepalive: float = 15.0,
    local_address: str = "0.0.0.0",
    on_send: SendObserver | None = None,
) -> BirthdayEvent:
    """The hard side of one-hard mode: ``ports`` sockets send OPENs to the
    easy side's mapped endpoint ``peer``, refreshed every ``keepalive``
    seconds, and answer the first probe that gets in within ``duration``."""
    rounds = opener_rounds(duration, keepalive)
    # The core ends ``answer_timeout`` after its last paced send. The last
    # OPEN goes out long before the easy side's last probe (one round when
    # duration < keepalive), so the hard side waits out the rest of
    # ``duration`` that way, or it would close its sockets mid-search.
    opens = opener_plan(peer, ports, config.rate, keepalive=keepalive, rounds=rounds).sends
    last_open = opens[-1].at  # seconds after the start
    listen = dataclasses.replace(
        config, answer_timeout=max(config.answer_timeout, duration - last_open)
    )

    def make_plan(_: list[Endpoint], now: float) -> SendPlan:
        return opener_plan(peer, ports, config.rate, start=now, keepalive=keepalive, rounds=rounds)

    return await run_prober(
        listen, [Endpoint.of(local_address, 0)] * ports, make_plan, on_send=on_send
    )


async def probe_easy(
    config: ProberConfig,
    peer_address: IPAddress,
    rng: random.Random,
    *,
    port_range: PortRange = FULL_RANGE,
    local: Endpoint | None = None,
    start_delay: float = 0.0,
    on_send: SendObserver | None = None,
) -> BirthdayEvent:
    """The easy side of one-hard mode: one socket (``local``, whose mapped
    endpoint the hard side targets) sprays ``config.budget`` probes at
    random ports of ``peer_address``, after ``start_delay`` seconds (the
    time the hard side needs to open its mappings)."""

    def make_plan(_: list[Endpoint], now: float) -> SendPlan:
        return spray_plan(
            peer_address, port_range, config.budget, config.rate, rng, start=now + start_delay
        )

    return await run_prober(
        config, [local or Endpoint.of("0.0.0.0", 0)], make_plan, on_send=on_send
    )


async def probe_both_hard(
    config: ProberConfig,
    peer_address: IPAddress,
    rng: random.Random,
    *,
    ports: int = 256,
    port_range: PortRange = FULL_RANGE,
    local_address: str = "0.0.0.0",
    on_send: SendObserver | None = None,
) -> BirthdayEvent:
    """Both-hard mode, either side: ``ports`` sockets spray
    ``config.budget`` probes at random (socket, port) pairs of the peer's IP."""

    def make_plan(_: list[Endpoint], now: float) -> SendPlan:
        return spray_plan(
            peer_address, port_range, config.budget, config.rate, rng, sockets=ports, start=now
        )

    return await run_prober(
        config, [Endpoint.of(local_address, 0)] * ports, make_plan, on_send=on_send
    )


class StunUnansweredError(NatkitTimeout):
    """The STUN server did not answer in time, so the mapped endpoint is unknown."""

    def __init__(self, server: Endpoint) -> None:
        super().__init__(f"no STUN answer from {server}")
        self.server = server


async def learn_mapped_endpoint(
    server: Endpoint, local: Endpoint, *, timeout: float = 3.0
) -> tuple[Endpoint, Endpoint]:
    """Bind ``local`` (port 0: pick one), ask ``server`` for its mapped
    endpoint, and release the port again; returns ``(bound, mapped)``.

    The easy side then binds ``bound`` for its spray: the NAT made the
    mapping for that inside endpoint, and an EIM NAT gives it to every
    destination while it lives (tens of seconds at least, RFC 4787 REQ-5).
    Raises :class:`StunUnansweredError` without an answer.
    """
    # Settle the port first, so the STUN exchange and the spray share it.
    [sock] = open_udp_sockets([local])
    bound = local_endpoint(sock)
    sock.close()
    mapped = await stun_binding(server, bound, timeout=timeout)
    if mapped is None:
        raise StunUnansweredError(server)
    return bound, mapped


async def probe_birthday(
    role: BirthdayRole | str,
    peer: Endpoint | IPAddress | str,
    *,
    key: bytes,
    session: bytes = bytes(8),
    both_hard: bool = False,
    ports: int = 256,
    budget: int = 2048,
    rate: float = DEFAULT_RATE,
    port_range: PortRange = FULL_RANGE,
    local_address: str | None = None,
    local_port: int = 0,
    stun: Endpoint | None = None,
    on_mapped: Callable[[Endpoint], None] | None = None,
    start_delay: float | None = None,
    duration: float | None = None,
    keepalive: float = 15.0,
    answer_timeout: float = 2.0,
    rng: random.Random | None = None,
    on_send: SendObserver | None = None,
) -> BirthdayEvent:
    """Run one side of a birthday search against ``peer``; the outcome is
    :class:`~natkit.birthday.events.PairFound` (the pair of endpoints that
    reached each other) or :class:`~natkit.birthday.events.SearchExhausted`.

    Both peers agree on ``key`` (at least 16 bytes), ``session`` (8 bytes),
    ``both_hard``, ``ports``, ``budget`` and ``rate`` out of band and take
    different roles. One-hard mode (``both_hard=False``): the hard side opens ``ports`` mappings
    toward the easy side's *mapped* endpoint ``peer`` (``IP:PORT``) and
    keeps them open for ``duration`` (default: the easy side's spray plus
    10 s), refreshed every ``keepalive`` seconds; the easy side sprays
    ``budget`` probes at random ports of the hard side's address ``peer``
    after ``start_delay`` (default ``ports / rate``, the time the hard
    side needs). With ``stun`` the easy side first learns its mapped
    endpoint from that STUN server, on the socket it then sprays from, and
    hands it to ``on_mapped`` (to pass to the hard side) before it starts.
    Both-hard mode (both behind APDM NATs): both sides spray from ``ports``
    sockets.
    ``port_range``: the hard NAT's ports. Raises
    :class:`~natkit.errors.LocalProtocolError` for settings that cannot
    work, :class:`StunUnansweredError` when ``stun`` does not answer.
    """
    role = BirthdayRole(role)
    aims_at_endpoint = role is BirthdayRole.HARD and not both_hard
    if isinstance(peer, str):
        peer = Endpoint.parse(peer, default_port=None if aims_at_endpoint else 0)
    elif not isinstance(peer, Endpoint):
        if aims_at_endpoint:
            raise LocalProtocolError("the hard side aims at the easy side's IP:PORT")
        peer = Endpoint(peer, 0)
    if ports < 1 or keepalive <= 0 or budget < 0:
        raise LocalProtocolError("ports and keepalive must be positive, budget not negative")
    if stun is not None and (role is not BirthdayRole.EASY or both_hard):
        raise LocalProtocolError("stun is for the easy side of one-hard mode")
    config = ProberConfig(
        key=key,
        session=session,
        side=role.side,
        rate=rate,
        budget=0 if aims_at_endpoint else budget,
        answer_timeout=answer_timeout,
        peer_address=peer.address,
    )
    local = local_address or ("0.0.0.0" if peer.address.version == 4 else "::")
    rng = rng or random.Random()
    if both_hard:
        return await probe_both_hard(
            config, peer.address, rng, ports=ports, port_range=port_range,
            local_address=local, on_send=on_send,
        )  # fmt: skip
    if role is BirthdayRole.HARD:
        if duration is None:
            duration = ports / rate + spray_seconds(budget, rate) + 10.0
        return await probe_hard(
            config, peer, ports=ports, duration=duration, keepalive=keepalive,
            local_address=local, on_send=on_send,
        )  # fmt: skip
    bound = Endpoint.of(local, local_port)
    if stun is not None:
        bound, mapped = await learn_mapped_endpoint(stun, bound)
        if on_mapped is not None:
            on_mapped(mapped)
    return await probe_easy(
        config, peer.address, rng, port_range=port_range, local=bound,
        start_delay=ports / rate if start_delay is None else start_delay, on_send=on_send,
    )  # fmt: skip
