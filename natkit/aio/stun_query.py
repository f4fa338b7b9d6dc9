"""One STUN Binding from one local endpoint: "what does this server see?"."""

from __future__ import annotations

import asyncio

from natkit.aio.driver import RUNNING, Running, run_to_completion
from natkit.endpoint import Endpoint
from natkit.sansio import SansIOCore
from natkit.stun.client import StunClient
from natkit.stun.codec import binding_request
from natkit.stun.events import ClientEvent, ResponseReceived, TransactionTimedOut
from natkit.stun.transaction import RetransmissionPolicy

#: Four tries 250 ms apart with a short final wait: about 2 s in all.
QUICK_POLICY = RetransmissionPolicy(rto=0.25, rc=4, rm=4)


async def stun_binding(
    server: Endpoint,
    local: Endpoint,
    *,
    timeout: float = 2.0,
    policy: RetransmissionPolicy = QUICK_POLICY,
) -> Endpoint | None:
    """Bind ``local`` (port 0: any), ask ``server`` once (with retransmissions),
    and return the reflexive address it reports, or ``None`` without an answer."""

    def make(_endpoints: list[Endpoint], now: float) -> SansIOCore[ClientEvent]:
        client = StunClient(policy=policy)
        client.send_request(binding_request(client.new_transaction_id()), server, now)
        return client

    def result_of(event: ClientEvent) -> Endpoint | Running | None:
        if isinstance(event, ResponseReceived):
            return event.response.reflexive_address
        if isinstance(event, TransactionTimedOut):
            return None
        return RUNNING

    try:
        async with asyncio.timeout(timeout):
            return await run_to_completion(make, [local], result_of)
    except TimeoutError:
        return None
