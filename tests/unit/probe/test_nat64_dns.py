"""RFC 7050 discovery through dnspython against a fake DNS64 on 127.0.0.1.

The fake answers with dnspython message objects (``make_response`` plus an
rrset), so every bogus answer is a well-formed DNS message carrying the
wrong thing, except where the point is bytes that are not DNS at all.
Whatever it does, discovery ends in a :class:`Nat64Discovery` with a
reason; nothing raises.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from natkit.aio.dns import discover_nat64, dns_lookup, make_resolver, probe_nat64, server_specs
from natkit.errors import LocalProtocolError
from natkit.gather.host import InterfaceAddress
from natkit.nat64 import Nat64Status
from natkit.stun.uri import parse_server as parse

Net6 = ipaddress.IPv6Network
#: A DNS message -> the reply bytes (``None``: stay silent).
Behaviour = Callable[[dns.message.Message], bytes | None]


def aaaa(*addresses: str) -> Behaviour:
    """Answer AAAA questions with ``addresses`` (none: NOERROR without data)."""

    def reply(query: dns.message.Message) -> bytes:
        response = dns.message.make_response(query)
        question = query.question[0]
        if addresses and question.rdtype == dns.rdatatype.AAAA:
            response.answer.append(
                dns.rrset.from_text_list(question.name, 60, "IN", "AAAA", list(addresses))
            )
        return response.to_wire()

    return reply


def rcode(code: dns.rcode.Rcode) -> Behaviour:
    def reply(query: dns.message.Message) -> bytes:
        response = dns.message.make_response(query)
        response.set_rcode(code)
        return response.to_wire()

    return reply


def silent(query: dns.message.Message) -> None:
    return None


@dataclass
class FakeDns(asyncio.DatagramProtocol):
    """A DNS server on 127.0.0.1 that does whatever ``behaviour`` says."""

    behaviour: Behaviour
    queries: list[tuple[str, str]] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        self.queries.append((question.name.to_text(), dns.rdatatype.to_text(question.rdtype)))
        reply = self.behaviour(query)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    @property
    def address(self) -> str:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return f"{host}:{port}"


@pytest.fixture
async def fake_dns() -> AsyncIterator[Callable[[Behaviour], Any]]:
    transports: list[asyncio.DatagramTransport] = []

    async def start(behaviour: Behaviour) -> FakeDns:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: FakeDns(behaviour), local_addr=("127.0.0.1", 0)
        )
        transports.append(transport)
        return protocol

    yield start
    for transport in transports:
        transport.close()


async def test_prefix_found_through_a_dns64(fake_dns: Any) -> None:
    server = await fake_dns(aaaa("2001:db8:64::c000:aa", "2001:db8:64::c000:ab"))
    found = await discover_nat64(dns_server=server.address, timeout=1.0)
    assert found.status is Nat64Status.FOUND
    assert found.prefixes == (Net6("2001:db8:64::/96"),)
    assert found.rtt is not None
    assert found.dns_server is not None
    assert "127.0.0.1" in found.dns_server
    assert server.queries == [("ipv4only.arpa.", "AAAA")]


@pytest.mark.parametrize(
    "answers",
    [
        ("2001:db8:1200:c000:0:aa00::", "2001:db8:1200:c000:0:ab00::"),  # /48
        ("2001:db8:122:344:c0:0:aa00:0", "2001:db8:122:344:c0:0:ab00:0"),  # /64
    ],
)
async def test_other_lengths_through_dns(fake_dns: Any, answers: tuple[str, str]) -> None:
    server = await fake_dns(aaaa(*answers))
    found = await discover_nat64(dns_server=server.address, timeout=1.0)
    assert found.status is Nat64Status.FOUND, found.reason


async def test_no_aaaa_is_no_nat64(fake_dns: Any) -> None:
    server = await fake_dns(aaaa())
    found = await discover_nat64(dns_server=server.address, timeout=1.0)
    assert found.status is Nat64Status.ABSENT
    assert found.reason == "no AAAA record for ipv4only.arpa: the resolver does not do DNS64"


async def test_wrong_embedded_bytes_are_no_nat64(fake_dns: Any) -> None:
    server = await fake_dns(aaaa("2001:db8:64::c000:1", "2001:db8:64::c000:2"))
    found = await discover_nat64(dns_server=server.address, timeout=1.0)
    assert found.status is Nat64Status.INVALID
    assert "embed neither 192.0.0.170 nor 192.0.0.171" in found.reason
    assert found.prefixes == ()


async def test_inconsistent_prefixes_are_no_nat64(fake_dns: Any) -> None:
    server = await fake_dns(aaaa("2001:db8:64::c000:aa", "2001:db8:6400:c0:0:ab::"))
    found = await discover_nat64(dns_server=server.address, timeout=1.0)
    assert found.status is Nat64Status.INVALID
    assert found.reason.startswith("inconsistent prefixes")


async def test_timeout_is_no_nat64(fake_dns: Any) -> None:
    server = await fake_dns(silent)
    loop = asyncio.get_running_loop()
    started = loop.time()
    found = await discover_nat64(dns_server=server.address, timeout=0.3)
    assert loop.time() - started < 1.5
    assert found.status is Nat64Status.FAILED
    assert found.reason.startswith("no answer from ")
    assert found.reason.endswith("within 0.3 s")


async def test_nxdomain_is_no_nat64(fake_dns: Any) -> None:
    server = await fake_dns(rcode(dns.rcode.NXDOMAIN))
    found = await discover_nat64(dns_server=server.address, timeout=1.0)
    assert found.status is Nat64Status.ABSENT
    assert "does not exist" in found.reason


async def test_servfail_is_no_nat64(fake_dns: Any) -> None:
    server = await fake_dns(rcode(dns.rcode.SERVFAIL))
    found = await discover_nat64(dns_server=server.address, timeout=0.5)
    assert found.status is Nat64Status.FAILED
    assert found.prefixes == ()


async def test_garbage_bytes_are_no_nat64(fake_dns: Any) -> None:
    server = await fake_dns(lambda query: b"\x00\x01garbage")
    found = await discover_nat64(dns_server=server.address, timeout=0.3)
    assert found.status is Nat64Status.FAILED


async def test_a_records_in_the_answer_section_are_not_aaaa(fake_dns: Any) -> None:
    def wrong_type(query: dns.message.Message) -> bytes:
        response = dns.message.make_response(query)
        name = query.question[0].name
        response.answer.append(dns.rrset.from_text_list(name, 60, "IN", "A", ["192.0.0.170"]))
        return response.to_wire()

    server = await fake_dns(wrong_type)
    found = await discover_nat64(dns_server=server.address, timeout=0.5)
    assert found.status in (Nat64Status.ABSENT, Nat64Status.FAILED)
    assert found.prefixes == ()


async def test_probe_does_not_ask_without_ipv6(fake_dns: Any) -> None:
    server = await fake_dns(aaaa("2001:db8:64::c000:aa", "2001:db8:64::c000:ab"))
    ipv4_only = [InterfaceAddress("eth0", ipaddress.ip_address("192.168.1.2"), 24)]
    found = await probe_nat64(dns_server=server.address, interfaces=ipv4_only)
    assert found.status is Nat64Status.NOT_APPLICABLE
    assert server.queries == []
    with_v6 = [*ipv4_only, InterfaceAddress("eth0", ipaddress.ip_address("2001:db8:2::2"), 64)]
    found = await probe_nat64(dns_server=server.address, interfaces=with_v6)
    assert found.status is Nat64Status.FOUND


async def test_server_names_come_from_the_given_resolver(fake_dns: Any) -> None:
    def records(query: dns.message.Message) -> bytes:
        response = dns.message.make_response(query)
        question = query.question[0]
        if question.rdtype == dns.rdatatype.A:
            response.answer.append(
                dns.rrset.from_text_list(question.name, 60, "IN", "A", ["203.0.113.10"])
            )
        else:
            response.answer.append(
                dns.rrset.from_text_list(
                    question.name, 60, "IN", "AAAA", ["2001:db8:64::cb00:710a"]
                )
            )
        return response.to_wire()

    server = await fake_dns(records)
    resolver = make_resolver(server.address, 1.0)
    specs, problem = await server_specs(parse("stun.lab.test:3478"), dns_lookup(resolver))
    assert problem is None
    assert [str(s.address) for s in specs] == ["203.0.113.10:3478", "[2001:db8:64::cb00:710a]:3478"]
    assert all(s.server_name == "stun.lab.test" for s in specs)

    nothing = await fake_dns(aaaa())
    specs, problem = await server_specs(
        parse("nowhere.test"), dns_lookup(make_resolver(nothing.address, 1.0))
    )
    assert specs == []
    assert problem == "nowhere.test: cannot resolve 'nowhere.test' (no A or AAAA record)"


def test_dns_server_must_be_an_address() -> None:
    with pytest.raises(LocalProtocolError, match="bad DNS server"):
        make_resolver("dns.example")
    resolver = make_resolver("[::1]:5353")
    assert "::1" in str(resolver.nameservers[0])
