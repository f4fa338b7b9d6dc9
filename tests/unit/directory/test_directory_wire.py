"""The UPDATE and query messages, and reading answers strictly."""

from __future__ import annotations

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.update
from directory_testlib import UPDATE_KEY

from natkit.directory.errors import RecordProblem
from natkit.directory.names import instance_name, message_name, service_name
from natkit.directory.records import MessageRecord, message_strings
from natkit.directory.wire import (
    Presence,
    build_advertise,
    build_browse,
    build_read,
    build_update,
    build_withdraw,
    read_nodes,
    read_window,
)
from natkit.endpoint import Endpoint

ZONE = dns.name.from_text("natkit.test.")
A, B = bytes(range(32)), bytes(range(1, 33))
STREAM = "0123456789abcdef"


def _section(update: dns.update.UpdateMessage) -> list[str]:
    return sorted(rrset.to_text() for rrset in update.update)


def test_a_send_replaces_one_window_and_presence_stays_under_the_instance_name() -> None:
    window = [MessageRecord(STREAM, 1, b"hello"), MessageRecord(STREAM, 2, b"again")]
    update = build_update(
        ZONE, A, ttl=5, windows={B: window}, presence=Presence(A, Endpoint.parse("192.0.2.7:51820"))
    )
    instance = instance_name(ZONE, A)
    message = message_name(ZONE, A, B)
    texts = _section(update)
    # replace = delete the RRset (class ANY) then add the records.
    assert f"{message} ANY TXT" in texts
    assert f"{instance} ANY SRV" in texts
    assert f"{instance} 5 IN SRV 0 0 51820 {instance}" in texts
    assert f"{instance} 5 IN A 192.0.2.7" in texts
    assert f"{instance} ANY AAAA" in texts
    # The PTR, at the shared name, is an update of its own.
    assert not any(r.name == service_name(ZONE) for r in update.update)
    assert _section(build_advertise(ZONE, A, ttl=5)) == [
        f"{service_name(ZONE)} 5 IN PTR {instance}"
    ]
    assert all(r.name.is_subdomain(instance) for r in update.update)
    added = [
        tuple(rdata.strings)
        for rrset in update.update
        if rrset.name == message and rrset.deleting is None
        for rdata in rrset
    ]
    assert sorted(added) == sorted(message_strings(m) for m in window)
    assert all(r.ttl == 5 for r in update.update if r.deleting is None)


def test_no_advertised_endpoint_removes_srv_and_addresses() -> None:
    update = build_update(ZONE, A, ttl=5, presence=Presence(A))
    instance = instance_name(ZONE, A)
    texts = _section(update)
    for rdtype in ("SRV", "A", "AAAA"):
        assert f"{instance} ANY {rdtype}" in texts
    assert not any(" IN SRV " in t for t in texts)


def test_an_empty_window_deletes_the_set_and_updates_are_signed() -> None:
    update = build_update(ZONE, A, ttl=5, windows={B: ()}, key=UPDATE_KEY)
    assert _section(update) == [f"{message_name(ZONE, A, B)} ANY TXT"]
    assert update.keyname == dns.name.from_text("natkit-update.")
    wire = update.to_wire()
    assert dns.message.from_wire(wire, keyring={update.keyname: update.keyring}).had_tsig


def test_withdraw_removes_ptr_instance_and_windows() -> None:
    update = build_withdraw(ZONE, A, [B], UPDATE_KEY)
    instance = instance_name(ZONE, A)
    assert _section(update) == sorted(
        [
            f"{service_name(ZONE)} 0 NONE PTR {instance}",
            f"{instance} ANY ANY",
            f"{message_name(ZONE, A, B)} ANY ANY",
        ]
    )


def _answer(
    query: dns.message.Message, *records: tuple[bytes, ...], rcode: int = 0
) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.Rcode(rcode))
    name = query.question[0].name
    if records:
        rrset = dns.rrset.from_text_list(
            name,
            5,
            "IN",
            "TXT",
            [
                " ".join('"' + s.decode("latin-1").replace('"', '\\"') + '"' for s in r)
                for r in records
            ],
        )
        response.answer.append(rrset)
    return dns.message.from_wire(response.to_wire())


def test_read_window_parses_and_checks() -> None:
    query = build_read(ZONE, B, A)
    qname = message_name(ZONE, B, A)
    assert query.question[0].name == qname
    good = [MessageRecord(STREAM, s, b"m%d" % s) for s in (2, 1)]
    result = read_window(_answer(query, *(message_strings(m) for m in good)), qname)
    assert [r.seq for r in result.window] == [1, 2]
    assert result.dropped == ()
    assert result.failure is None


def test_read_window_drops_garbage_one_by_one_and_bad_sets_whole() -> None:
    query = build_read(ZONE, B, A)
    qname = message_name(ZONE, B, A)
    good = message_strings(MessageRecord(STREAM, 1, b"m"))
    result = read_window(_answer(query, good, (b"txtvers=1", b"junk"), (b"v=spf1 -all",)), qname)
    assert [r.seq for r in result.window] == [1]
    assert sorted(p.value for p in result.dropped) == ["stream", "version"]
    other_stream = message_strings(MessageRecord("fedcba9876543210", 2, b"m"))
    mixed = read_window(_answer(query, good, other_stream), qname)
    assert mixed.window == ()
    assert mixed.dropped == (RecordProblem.WINDOW,)


def test_read_window_empty_and_failed_answers() -> None:
    query = build_read(ZONE, B, A)
    qname = message_name(ZONE, B, A)
    assert read_window(_answer(query, rcode=dns.rcode.NXDOMAIN), qname).window == ()
    assert read_window(_answer(query), qname).failure is None
    assert read_window(_answer(query, rcode=dns.rcode.SERVFAIL), qname).failure == "SERVFAIL"
    # Records for another name (a CNAME target, say) are not ours to read.
    other = message_name(ZONE, A, B)
    stray = _answer(query, message_strings(MessageRecord(STREAM, 1, b"m")))
    assert read_window(stray, other).window == ()


def test_read_nodes_keeps_only_instance_names_of_the_zone() -> None:
    query = build_browse(ZONE)
    response = dns.message.make_response(query)
    targets = [
        instance_name(ZONE, A),
        instance_name(ZONE, B),
        instance_name(ZONE, A),
        dns.name.from_text("printer._ipp._tcp.natkit.test."),
        instance_name(dns.name.from_text("example."), A),
    ]
    response.answer.append(
        dns.rrset.from_text_list(service_name(ZONE), 5, "IN", "PTR", [t.to_text() for t in targets])
    )
    result = read_nodes(dns.message.from_wire(response.to_wire()), ZONE)
    assert sorted(result.nodes) == [A, B]
    assert result.dropped == (RecordProblem.NAME, RecordProblem.NAME)
