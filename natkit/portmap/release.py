"""Deleting mappings a killed run left behind, from the lease journal (asyncio).

Each journal entry holds what its protocol needs to delete the mapping
(:mod:`natkit.portmap.journal`):

* PCP: a MAP with lifetime 0 and the journaled nonce (a different nonce
  is refused, which is how leases used to linger);
* NAT-PMP: a map request with lifetime 0 for the same internal port, sent
  from the same address (the gateway knows the client by source address);
* UPnP: DeletePortMapping of the journaled external port, after
  GetSpecificPortMappingEntry shows it still points at the journaled
  internal endpoint; without a granted port, every entry with the
  journaled description and internal endpoint.

An entry is dropped from the journal once its deletion is confirmed, or
when the gateway says the mapping is not there; otherwise it stays for the
next run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from natkit.aio.driver import open_udp_sockets
from natkit.aio.portmap import MappingSession
from natkit.endpoint import Endpoint
from natkit.errors import NatkitError
from natkit.portmap.igd import UpnpError
from natkit.portmap.journal import JournalEntry, LeaseJournal
from natkit.portmap.lease import LeaseClient
from natkit.portmap.mapping import MappingProtocol, TransportProtocol
from natkit.portmap.pcp_client import PcpClient, PcpConfig
from natkit.portmap.pmp_client import PmpClient
from natkit.portmap.upnp_client import UpnpConfig, UpnpSession


@dataclass(frozen=True, slots=True)
class ReleaseOutcome:
    """What happened to one journaled lease."""

    entry: JournalEntry
    #: The gateway confirmed the deletion (or that nothing was there).
    released: bool
    detail: str = ""


async def _delete_lease(entry: JournalEntry, timeout: float) -> ReleaseOutcome:
    loop = asyncio.get_running_loop()
    try:
        sockets = open_udp_sockets([Endpoint(entry.internal.address, 0)])
    except OSError as exc:
        return ReleaseOutcome(entry, False, f"cannot send from {entry.internal.address}: {exc}")
    client: LeaseClient
    if entry.protocol is MappingProtocol.PCP:
        if entry.nonce is None:
            for sock in sockets:
                sock.close()
            return ReleaseOutcome(entry, False, "journal entry has no nonce")
        client = PcpClient(
            entry.gateway,
            entry.internal,
            loop.time(),
            transport=entry.transport,
            config=PcpConfig(delete_timeout=timeout),
            nonce=bytes.fromhex(entry.nonce),
            previous_external=entry.external,
            start=False,
        )
    else:
        client = PmpClient(
            entry.gateway,
            entry.internal,
            loop.time(),
            transport=entry.transport,
            previous_external=entry.external,
            start=False,
        )
    session = MappingSession(client, loop)
    try:
        await session.runner.attach(sockets)
        deleted = await session.delete(timeout + 1.0)
    except TimeoutError:
        return ReleaseOutcome(entry, False, "gateway did not answer")
    finally:
        session.runner.close()
        for sock in sockets:
            sock.close()
    if deleted.confirmed:
        return ReleaseOutcome(entry, True, "deleted")
    return ReleaseOutcome(entry, False, f"gateway refused (result {deleted.result_code})")


async def _delete_upnp(entry: JournalEntry, timeout: float) -> ReleaseOutcome:
    if entry.location is None:
        return ReleaseOutcome(entry, False, "journal entry has no description URL")
    config = UpnpConfig(call_timeout=timeout)
    try:
        session, _ = await UpnpSession.connect(entry.location, config)
        ports: list[tuple[int, TransportProtocol]] = []
        if entry.external is not None:
            found = await session.entry(entry.external.port, entry.transport)
            if found is not None and found[0] == entry.internal:
                ports.append((entry.external.port, entry.transport))
        else:
            for external, proto, internal, text in await session.entries():
                if internal == entry.internal and text == entry.description:
                    ports.append((external, TransportProtocol[proto.upper()]))
        for port, transport in ports:
            await session.delete(port, transport)
    except (UpnpError, TimeoutError, NatkitError, KeyError) as exc:
        return ReleaseOutcome(entry, False, str(exc) or type(exc).__name__)
    detail = "deleted" if ports else "not at the gateway any more"
    return ReleaseOutcome(entry, True, detail)


async def release_entry(entry: JournalEntry, timeout: float = 3.0) -> ReleaseOutcome:
    """Delete the mapping ``entry`` describes (see the module docstring)."""
    if entry.protocol is MappingProtocol.UPNP_IGD:
        return await _delete_upnp(entry, timeout)
    return await _delete_lease(entry, timeout)


async def release_orphans(journal: LeaseJournal, timeout: float = 3.0) -> list[ReleaseOutcome]:
    """Release every lease whose owner process is gone, in parallel; drop
    the journal entries of those released."""
    orphans = journal.orphans()
    outcomes = await asyncio.gather(*(release_entry(e, timeout) for e in orphans))
    for outcome in outcomes:
        if outcome.released:
            journal.remove(outcome.entry.id)
    return list(outcomes)
