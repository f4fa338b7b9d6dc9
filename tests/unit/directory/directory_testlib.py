"""Helpers for the DNS directory's tests: a stand-in node key and an
in-memory zone that answers updates and queries as a primary would.

The stand-in key has what the directory relies on from
``natkit.identity.PublicKey`` (hashable, ``str()`` is the base64 of 32 raw
bytes, built from the raw bytes), so these tests do not depend on the
identity package.
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

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

from natkit.directory.tsig import TsigAlgorithm, TsigKey
from natkit.endpoint import Endpoint

PRIMARY = Endpoint.parse("203.0.113.53:53")
SECONDARY = Endpoint.parse("203.0.113.54:53")
UPDATE_KEY = TsigKey("natkit-update.", TsigAlgorithm.HMAC_SHA256, bytes(range(32)))


@dataclass(frozen=True, slots=True)
class NodeKey:
    """A stand-in public key: 32 raw bytes, ``str()`` in base64."""

    raw: bytes

    def __str__(self) -> str:
        return base64.b64encode(self.raw).decode()


def node_key(name: str) -> NodeKey:
    """A deterministic key per name."""
    return NodeKey(hashlib.sha256(name.encode()).digest())


Rrsets = dict[tuple[dns.name.Name, dns.rdatatype.RdataType], dns.rdataset.Rdataset]


@dataclass
class FakeZone:
    """One zone held in memory, with the TSIG rules of a primary.

    ``update`` checks the key as knot does (no key → NOTAUTH; unknown name →
    ``PeerBadKey`` raised, as dnspython does on a BADKEY answer; wrong secret →
    ``PeerBadSignature``) and applies the RFC 2136 §2.5 operations; answers go
    through the wire format, so parsing is the real one. ``fail_next`` makes
    the next exchanges raise the given exceptions (a server that is down).
    """

    origin: dns.name.Name
    keys: dict[str, TsigKey] = field(default_factory=lambda: {UPDATE_KEY.name: UPDATE_KEY})
    rrsets: Rrsets = field(default_factory=dict)
    fail_next: list[BaseException] = field(default_factory=list)
    servfail_next: int = 0
    updates: list[dns.update.UpdateMessage] = field(default_factory=list)
    queries: list[tuple[dns.message.Message, Endpoint]] = field(default_factory=list)
    served: dict[Endpoint, int] = field(default_factory=lambda: defaultdict(int))

    # -- the DnsTransport protocol

    async def update(
        self, message: dns.message.Message, server: Endpoint, timeout: float
    ) -> dns.message.Message:
        self._maybe_fail()
        assert isinstance(message, dns.update.UpdateMessage)
        self.updates.append(message)
        if message.keyring is None:
            return self._answer(message, dns.rcode.NOTAUTH)
        assert isinstance(message.keyring, dns.tsig.Key)
        known = self.keys.get(message.keyring.name.to_text())
        if known is None:
            raise dns.tsig.PeerBadKey
        if known.secret != message.keyring.secret:
            raise dns.tsig.PeerBadSignature
        if self.servfail_next:
            self.servfail_next -= 1
            return self._answer(message, dns.rcode.SERVFAIL)
        for rrset in message.update:
            self._apply(rrset)
        return self._answer(message, dns.rcode.NOERROR)

    async def query(
        self, message: dns.message.Message, server: Endpoint, timeout: float
    ) -> dns.message.Message:
        self._maybe_fail()
        self.queries.append((message, server))
        self.served[server] += 1
        question = message.question[0]
        response = dns.message.make_response(message)
        found = self.rrsets.get((question.name, question.rdtype))
        if found is not None:
            rrset = dns.rrset.RRset(question.name, dns.rdataclass.IN, question.rdtype)
            rrset.update(found)
            response.answer.append(rrset)
        elif not any(name == question.name for name, _ in self.rrsets):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return dns.message.from_wire(response.to_wire())

    # -- test knobs

    def put_txt(self, name: dns.name.Name, *records: tuple[bytes, ...]) -> None:
        """Replace the TXT set at ``name`` with ``records`` (hostile content)."""
        rdataset = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.TXT)
        for strings in records:
            rdataset.add(dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings))
        self.rrsets[(name, dns.rdatatype.TXT)] = rdataset

    def txt(self, name: dns.name.Name) -> list[tuple[bytes, ...]]:
        found = self.rrsets.get((name, dns.rdatatype.TXT))
        return [] if found is None else [tuple(r.strings) for r in found]  # type: ignore[attr-defined]

    def names(self) -> set[dns.name.Name]:
        return {name for name, _ in self.rrsets}

    # -- internals

    def _maybe_fail(self) -> None:
        if self.fail_next:
            raise self.fail_next.pop(0)

    def _answer(self, message: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
        response = dns.message.make_response(message)
        response.set_rcode(rcode)
        return response

    def _apply(self, rrset: dns.rrset.RRset) -> None:
        """RFC 2136 §2.5: add; delete an RRset; delete all at a name; delete records."""
        key = (rrset.name, rrset.rdtype)
        if rrset.deleting is None:
            existing = self.rrsets.setdefault(
                key, dns.rdataset.Rdataset(rrset.rdclass, rrset.rdtype)
            )
            existing.update_ttl(rrset.ttl)
            for rdata in rrset:
                existing.add(rdata)
        elif rrset.deleting == dns.rdataclass.ANY:
            if rrset.rdtype == dns.rdatatype.ANY:
                for name, rdtype in list(self.rrsets):
                    if name == rrset.name:
                        del self.rrsets[(name, rdtype)]
            else:
                self.rrsets.pop(key, None)
        elif rrset.deleting == dns.rdataclass.NONE:
            existing_set = self.rrsets.get(key)
            if existing_set is not None:
                for rdata in rrset:
                    existing_set.discard(rdata)
                if not existing_set:
                    del self.rrsets[key]
