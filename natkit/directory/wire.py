"""DNS messages of the directory: RFC 2136 updates, queries, and reading the
answers. Pure: dnspython's message objects are built and read here, and
sent elsewhere (:mod:`natkit.aio.dns_directory`).

An update is atomic (RFC 2136 §3.4: all or nothing), so replacing a
recipient's window is one "delete the RRset, add these records" pair in one
message: a reader sees the old window or the new one, never a mix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset
import dns.tsig
import dns.update

from natkit.directory.errors import RecordError, RecordProblem, RefusalReason
from natkit.directory.names import (
    instance_name,
    message_name,
    node_of_instance,
    service_name,
)
from natkit.directory.records import (
    MessageRecord,
    check_window,
    instance_strings,
    message_strings,
    parse_message_strings,
)
from natkit.directory.tsig import TsigKey
from natkit.endpoint import Endpoint

IN = dns.rdataclass.IN
TXT, SRV, PTR = dns.rdatatype.TXT, dns.rdatatype.SRV, dns.rdatatype.PTR
A, AAAA = dns.rdatatype.A, dns.rdatatype.AAAA

#: Update answers that mean "not with this configuration": raised, not retried.
_REFUSALS: dict[dns.rcode.Rcode, RefusalReason] = {
    dns.rcode.NOTAUTH: RefusalReason.NOT_AUTHORIZED,
    dns.rcode.REFUSED: RefusalReason.REFUSED,
    dns.rcode.NOTZONE: RefusalReason.NOT_ZONE,
    dns.rcode.FORMERR: RefusalReason.OTHER,
    dns.rcode.NOTIMP: RefusalReason.OTHER,
    dns.rcode.YXDOMAIN: RefusalReason.OTHER,
    dns.rcode.YXRRSET: RefusalReason.OTHER,
    dns.rcode.NXRRSET: RefusalReason.OTHER,
}


@dataclass(frozen=True, slots=True)
class Presence:
    """A node's own records: its key, and the endpoint it advertises, if any
    (its SRV, e.g. WireGuard's listen port on a public address)."""

    key: bytes
    endpoint: Endpoint | None = None


def tsig_key(key: TsigKey) -> dns.tsig.Key:
    """dnspython's form of a parsed key (a keyring of one)."""
    return dns.tsig.Key(key.name, key.secret, key.algorithm.value)


def build_update(
    zone: dns.name.Name,
    own: bytes,
    *,
    ttl: int,
    windows: Mapping[bytes, Sequence[MessageRecord]] | None = None,
    presence: Presence | None = None,
    key: TsigKey | None = None,
) -> dns.update.UpdateMessage:
    """One UPDATE: ``own``'s window to each recipient in ``windows`` (raw key
    → records; an empty window removes the set) and, with ``presence``, the
    node's instance records. Everything in it is at or below the node's
    instance name, so a server can confine a per-node key to that subtree
    (knot's ``update-owner: key``); the PTR, at the shared service name, goes
    in its own update (:func:`build_advertise`)."""
    update = _new_update(zone, key)
    if presence is not None:
        instance = instance_name(zone, own)
        update.replace(instance, _rdataset(ttl, TXT, [_txt(instance_strings(own))]))
        endpoint = presence.endpoint
        if endpoint is None:
            for rdtype in (SRV, A, AAAA):
                update.delete(instance, rdtype)
        else:
            srv = dns.rdata.from_text(IN, SRV, f"0 0 {endpoint.port} {instance}")
            update.replace(instance, _rdataset(ttl, SRV, [srv]))
            if endpoint.address.version == 4:
                update.replace(
                    instance, _rdataset(ttl, A, [dns.rdata.from_text(IN, A, str(endpoint.address))])
                )
                update.delete(instance, AAAA)
            else:
                aaaa = dns.rdata.from_text(IN, AAAA, str(endpoint.address))
                update.replace(instance, _rdataset(ttl, AAAA, [aaaa]))
                update.delete(instance, A)
    for recipient, window in (windows or {}).items():
        name = message_name(zone, own, recipient)
        if window:
            records = [_txt(message_strings(r)) for r in window]
            update.replace(name, _rdataset(ttl, TXT, records))
        else:
            update.delete(name, TXT)
    return update


def build_advertise(
    zone: dns.name.Name, own: bytes, *, ttl: int, key: TsigKey | None = None
) -> dns.update.UpdateMessage:
    """One UPDATE adding ``own``'s PTR to the service (RFC 2136 §3.4.2.2: an
    add of a record that exists changes nothing, so repeating it is safe)."""
    update = _new_update(zone, key)
    ptr = dns.rdata.from_text(IN, PTR, instance_name(zone, own).to_text())
    update.add(service_name(zone), _rdataset(ttl, PTR, [ptr]))
    return update


def build_withdraw(
    zone: dns.name.Name, own: bytes, recipients: Iterable[bytes], key: TsigKey | None = None
) -> dns.update.UpdateMessage:
    """One UPDATE removing ``own``'s PTR, instance records and its windows to
    ``recipients`` (DNS has no "delete this subtree"; windows to recipients
    this run never wrote to stay until overwritten)."""
    update = _new_update(zone, key)
    instance = instance_name(zone, own)
    update.delete(
        service_name(zone), _rdataset(0, PTR, [dns.rdata.from_text(IN, PTR, instance.to_text())])
    )
    update.delete(instance)
    for recipient in recipients:
        update.delete(message_name(zone, own, recipient))
    return update


def update_refusal(response: dns.message.Message) -> RefusalReason | None:
    """Why an update answer is a refusal, or ``None`` (success, or a
    transient SERVFAIL to retry: :func:`update_succeeded` tells which)."""
    return _REFUSALS.get(response.rcode())


def update_succeeded(response: dns.message.Message) -> bool:
    return response.rcode() == dns.rcode.NOERROR


def build_read(zone: dns.name.Name, sender: bytes, recipient: bytes) -> dns.message.QueryMessage:
    """The query for ``sender``'s window to ``recipient``."""
    return dns.message.make_query(message_name(zone, sender, recipient), TXT)


@dataclass(frozen=True, slots=True)
class ReadResult:
    """One read of a window, checked."""

    #: The valid records, as :func:`~natkit.directory.records.check_window` returns them.
    window: tuple[MessageRecord, ...] = ()
    #: Problems of the records (or the set) that were dropped.
    dropped: tuple[RecordProblem, ...] = ()
    #: The server's error code when the read failed (``None``: it worked).
    failure: str | None = None


def read_window(response: dns.message.Message, qname: dns.name.Name) -> ReadResult:
    """The window in an answer to :func:`build_read`.

    NXDOMAIN and an empty answer are an empty window (the peer has not
    written to us yet). Records that do not parse are dropped one by one;
    a set that cannot be one window is dropped whole. Records at other
    names (a CNAME chain, additional data) are not looked at.
    """
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return ReadResult()
    if rcode != dns.rcode.NOERROR:
        return ReadResult(failure=dns.rcode.to_text(rcode))
    rrset = _answer(response, qname, TXT)
    if rrset is None:
        return ReadResult()
    records: list[MessageRecord] = []
    dropped: list[RecordProblem] = []
    for rdata in rrset:
        try:
            records.append(parse_message_strings(rdata.strings))
        except RecordError as exc:
            dropped.append(exc.problem)
    try:
        window = check_window(records)
    except RecordError as exc:
        return ReadResult((), (*dropped, exc.problem))
    return ReadResult(window, tuple(dropped))


def build_browse(zone: dns.name.Name) -> dns.message.QueryMessage:
    """The query for the zone's PTR set: every node that published itself."""
    return dns.message.make_query(service_name(zone), PTR)


@dataclass(frozen=True, slots=True)
class BrowseResult:
    """The nodes named by the PTR set."""

    nodes: tuple[bytes, ...] = ()
    dropped: tuple[RecordProblem, ...] = ()
    failure: str | None = None


def read_nodes(response: dns.message.Message, zone: dns.name.Name) -> BrowseResult:
    """The node keys of an answer to :func:`build_browse` (bad targets dropped)."""
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return BrowseResult()
    if rcode != dns.rcode.NOERROR:
        return BrowseResult(failure=dns.rcode.to_text(rcode))
    rrset = _answer(response, service_name(zone), PTR)
    if rrset is None:
        return BrowseResult()
    nodes: list[bytes] = []
    dropped: list[RecordProblem] = []
    for rdata in rrset:
        node = node_of_instance(zone, rdata.target)
        if node is None:
            dropped.append(RecordProblem.NAME)
        elif node not in nodes:
            nodes.append(node)
    return BrowseResult(tuple(nodes), tuple(dropped))


# -- helpers


def _new_update(zone: dns.name.Name, key: TsigKey | None) -> dns.update.UpdateMessage:
    if key is None:
        return dns.update.UpdateMessage(zone)
    keyring = tsig_key(key)
    return dns.update.UpdateMessage(zone, keyring=keyring, keyname=keyring.name)


def _txt(strings: Sequence[bytes]) -> dns.rdtypes.ANY.TXT.TXT:
    return dns.rdtypes.ANY.TXT.TXT(IN, TXT, strings)


def _rdataset(
    ttl: int, rdtype: dns.rdatatype.RdataType, rdatas: Sequence[dns.rdata.Rdata]
) -> dns.rdataset.Rdataset:
    rdataset = dns.rdataset.Rdataset(IN, rdtype)
    rdataset.update_ttl(ttl)
    for rdata in rdatas:
        rdataset.add(rdata)
    return rdataset


def _answer(
    response: dns.message.Message, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> dns.rrset.RRset | None:
    try:
        return response.find_rrset(response.answer, name, IN, rdtype)
    except KeyError:
        return None
