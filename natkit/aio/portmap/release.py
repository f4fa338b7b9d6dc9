"""Deleting mappings a killed run left behind, from the lease journal (asyncio).

Each entry is deleted by a lease client of its protocol built idle
(``start=False``) with what the journal kept, on the same lease engine as
every mapping (:mod:`natkit.portmap.lease`):

* PCP: a MAP with lifetime 0 and the journaled nonce (a different nonce
  is refused, which is how leases used to linger);
* NAT-PMP: a map request with lifetime 0 for the same internal port, sent
  from the same address (the gateway knows the client by source address);
* UPnP: DeletePortMapping of the journaled external port after
  GetSpecificPortMappingEntry shows it still points at the journaled
  internal endpoint; without a granted port, every entry with the
  journaled description and internal endpoint.

An entry is dropped from the journal once its deletion is confirmed (or the
gateway says nothing is there), and when it is stale: its internal address
is not on this host, so it belongs to another network and no request could
be sent from it (reported once, then gone). Otherwise it stays for the next
run.
"""

from __future__ import annotations

import asyncio

from natkit.aio.driver import open_udp_sockets
from natkit.aio.portmap.journal import LeaseJournal
from natkit.aio.portmap.session import run_client
from natkit.aio.portmap.sockets import is_local_address
from natkit.aio.portmap.upnp import UpnpEngine
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.portmap.igd import UpnpErrorCode
from natkit.portmap.journal import JournalEntry
from natkit.portmap.lease import LeaseClient
from natkit.portmap.mapping import MappingProtocol
from natkit.portmap.pcp_client import PcpClient, PcpConfig
from natkit.portmap.pmp_client import PmpClient
from natkit.portmap.report import ReleaseOutcome
from natkit.portmap.upnp_calls import UpnpConfig
from natkit.portmap.upnp_client import UpnpClient

#: UPnP cleanup: the description, selectigd, the check and the deletion.
_UPNP_CALLS = 4


def _client(entry: JournalEntry, now: float, timeout: float) -> LeaseClient:
    """An idle client holding ``entry``'s lease (LocalProtocolError: it cannot)."""
    if entry.protocol is MappingProtocol.PCP:
        if entry.nonce is None:
            raise LocalProtocolError("journal entry has no nonce")
        try:
            nonce = bytes.fromhex(entry.nonce)
        except ValueError:
            raise LocalProtocolError(f"journal nonce is not hex: {entry.nonce!r}") from None
        return PcpClient(entry.gateway, entry.internal, now, transport=entry.transport,
                         config=PcpConfig(delete_timeout=timeout), nonce=nonce,
                         previous_external=entry.external, start=False)  # fmt: skip
    if entry.protocol is MappingProtocol.NAT_PMP:
        return PmpClient(entry.gateway, entry.internal, now, transport=entry.transport,
                         previous_external=entry.external, start=False)  # fmt: skip
    if entry.location is None:
        raise LocalProtocolError("journal entry has no description URL")
    return UpnpClient(entry.location, entry.internal, now, transport=entry.transport,
                      config=UpnpConfig(call_timeout=timeout), label=entry.description or "",
                      previous_external=entry.external, start=False)  # fmt: skip


async def release_entry(
    entry: JournalEntry, timeout: float = 3.0, upnp: UpnpEngine | None = None
) -> ReleaseOutcome:
    """Delete the mapping ``entry`` describes (see the module docstring)."""
    address = entry.internal.address
    if not is_local_address(address):
        return ReleaseOutcome(entry, False, f"stale: {address} is not an address of this host"
                              " (a lease from another network); dropped", stale=True)  # fmt: skip
    loop = asyncio.get_running_loop()
    try:
        client = _client(entry, loop.time(), timeout)
    except LocalProtocolError as exc:
        # It could never be released: keeping it would only repeat this.
        return ReleaseOutcome(entry, False, f"{exc}; dropped", stale=True)
    sockets = []
    if entry.protocol is not MappingProtocol.UPNP_IGD:
        try:
            sockets = open_udp_sockets([Endpoint(address, 0)])
        except OSError as exc:
            return ReleaseOutcome(entry, False, f"cannot send from {address}: {exc}")
    calls = _UPNP_CALLS if entry.protocol is MappingProtocol.UPNP_IGD else 1
    session = await run_client(client, sockets, upnp)
    try:
        deleted = await session.delete(calls * timeout + 1.0)
    except TimeoutError:
        return ReleaseOutcome(entry, False, "gateway did not answer")
    finally:
        session.close()
    if deleted.confirmed:
        gone = deleted.result_code == UpnpErrorCode.NO_SUCH_ENTRY_IN_ARRAY
        return ReleaseOutcome(entry, True, "not at the gateway any more" if gone else "deleted")
    if deleted.result_code is None:
        return ReleaseOutcome(entry, False, "gateway did not answer")
    return ReleaseOutcome(entry, False, f"gateway refused (result {deleted.result_code})")


async def release_orphans(journal: LeaseJournal, timeout: float = 3.0) -> list[ReleaseOutcome]:
    """Release every lease whose owner process is gone, in parallel; drop
    the journal entries of those released, and of stale ones."""
    orphans = journal.orphans()
    if not orphans:
        return []
    upnp = UpnpEngine()
    try:
        outcomes = await asyncio.gather(*(release_entry(e, timeout, upnp) for e in orphans))
    finally:
        upnp.close()
    for outcome in outcomes:
        if outcome.released or outcome.stale:
            journal.remove(outcome.entry.id)
    return list(outcomes)
