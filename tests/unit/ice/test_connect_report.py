"""The traversal report: built from natkit's reports, its strict codec, hostile bytes."""

from __future__ import annotations

import dataclasses
import random
import struct

import pytest
from connect_testlib import connected_to_fake

from natkit.birthday.ports import PortRange
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.ice import ConnectAgent
from natkit.ice.report import (
    MAX_RELAYS,
    MAX_REPORT,
    BirthdayCapability,
    RelayInUse,
    ReportDecodeError,
    ReportFailure,
    TraversalReport,
    decode_report,
    encode_report,
)
from natkit.portmap.mapping import MappingProtocol
from natkit.probe.report import FilteringBehavior, MappingBehavior, PortAllocation, RunStatus
from natkit.simulations.classification import simulate_classification
from natkit.simulations.traversal import NatType
from natkit.turn.config import TurnTransport

FULL = TraversalReport(
    mapping=MappingBehavior.APDM,
    filtering=FilteringBehavior.APDF,
    port_allocation=PortAllocation.SEQUENTIAL,
    port_delta=-2,
    port_range=PortRange(40000, 40999),
    udp_blocked=False,
    behind_nat=True,
    cgnat=True,
    double_nat=False,
    public_address=Endpoint.parse("203.0.113.5:1").address,
    port_mapping=MappingProtocol.UPNP_IGD,
    mapped=Endpoint.parse("203.0.113.5:41000"),
    relays=(
        RelayInUse("turn:192.0.2.30:3478?transport=udp", TurnTransport.UDP),
        RelayInUse("turns:relay.example.org:5349", TurnTransport.TLS),
    ),
    birthday=BirthdayCapability(256, 2048, 100),
    binding_lifetime=42.5,
)


def test_every_field_survives_the_round_trip() -> None:
    data = encode_report(FULL)
    assert decode_report(data) == FULL
    assert decode_report(encode_report(TraversalReport())) == TraversalReport()
    assert len(data) < 200  # small enough for a DNS TXT record (part 3)


def test_an_ipv6_public_address_and_mapped_candidate_round_trip() -> None:
    report = TraversalReport(
        public_address=Endpoint.parse("[2001:db8::5]:1").address,
        mapped=Endpoint.parse("[2001:db8::5]:4000"),
    )
    assert decode_report(encode_report(report)) == report


def test_built_from_the_classifier_and_the_gatherer() -> None:
    classification = simulate_classification(NatType.SYMMETRIC.config).report
    report = TraversalReport.from_reports(
        classification,
        relays=(RelayInUse("turn:x", TurnTransport.TCP),),
        birthday=BirthdayCapability(8, 100, 10),
    )
    assert (report.mapping, report.filtering) == (MappingBehavior.APDM, FilteringBehavior.APDF)
    assert report.port_allocation is PortAllocation.RANDOM
    assert report.hard
    assert report.udp_blocked is False
    assert report.behind_nat is True
    assert report.public_address is not None
    assert report.relays[0].transport is TurnTransport.TCP
    easy = TraversalReport.from_reports(simulate_classification(NatType.FULL_CONE.config).report)
    assert not easy.hard
    assert TraversalReport.from_reports() == TraversalReport()


def test_udp_blocked_only_when_tcp_reached_the_server() -> None:
    # A dead STUN server (nothing answered, UDP nor TCP) says nothing about
    # UDP: the report must not tell the peer "UDP blocked at this site".
    base = simulate_classification(NatType.FULL_CONE.config).report
    dead = dataclasses.replace(base, status=RunStatus.UNREACHABLE, udp_blocked=True)
    assert TraversalReport.from_reports(dead).udp_blocked is None
    blocked = dataclasses.replace(base, status=RunStatus.UDP_BLOCKED, udp_blocked=True)
    assert TraversalReport.from_reports(blocked).udp_blocked is True
    assert TraversalReport.from_reports(base).udp_blocked is False


def _field(tag: int, value: bytes) -> bytes:
    return struct.pack("!BH", tag, len(value)) + value


HEADER = b"NKr\x01"


@pytest.mark.parametrize(
    ("data", "reason", "detail"),
    [
        (b"NKr", ReportFailure.TRUNCATED, "3 bytes"),
        (b"XXr\x01", ReportFailure.BAD_MAGIC, ""),
        (b"NKr\x02", ReportFailure.UNSUPPORTED_VERSION, "2"),
        (HEADER + b"\x01\x00", ReportFailure.TRUNCATED, "field header at 4"),
        (HEADER + b"\x01\x00\x05\x01", ReportFailure.TRUNCATED, "field 1 of 5 bytes"),
        (HEADER + _field(1, b"\x01\x02"), ReportFailure.BAD_FIELD, "field 1 of 2 bytes, want 1"),
        (HEADER + _field(1, b"\x09"), ReportFailure.BAD_FIELD, "unknown mapping code 9"),
        (HEADER + _field(1, b"\x01") * 2, ReportFailure.DUPLICATE_FIELD, "1"),
        (HEADER + _field(6, b"\x02"), ReportFailure.BAD_FIELD, "flag 6 = 2"),
        (HEADER + _field(5, b"\x00\x05\x00\x01"), ReportFailure.BAD_FIELD, "port range 5-1"),
        (HEADER + _field(10, b"\x03" + bytes(4)), ReportFailure.BAD_FIELD, "family 03"),
        (HEADER + _field(12, b"\x01\x00\x00" + bytes(4)), ReportFailure.BAD_FIELD, "port 0"),
        (HEADER + _field(13, b"\x01"), ReportFailure.BAD_FIELD, "relay of 1 bytes"),
        (HEADER + _field(13, b"\x01evil\x1b[2Jname"), ReportFailure.BAD_FIELD, "printable"),
        (HEADER + _field(13, b"\x01\xff\xfe"), ReportFailure.BAD_FIELD, "not UTF-8"),
        (HEADER + _field(13, b"\x09name"), ReportFailure.BAD_FIELD, "relay transport code 9"),
        (
            HEADER + _field(14, struct.pack("!HIH", 0, 1, 1)),
            ReportFailure.BAD_FIELD,
            "birthday ports",
        ),
        (HEADER + _field(11, b"\x00"), ReportFailure.BAD_FIELD, "port-mapping protocol code 0"),
        (HEADER + bytes(MAX_REPORT), ReportFailure.TOO_LONG, ""),
    ],
)
def test_hostile_bytes_are_refused_with_a_reason(
    data: bytes, reason: ReportFailure, detail: str
) -> None:
    with pytest.raises(ReportDecodeError) as caught:
        decode_report(data)
    assert caught.value.reason is reason
    assert detail in caught.value.detail


def test_too_many_relays_are_refused_both_ways() -> None:
    relay = _field(13, b"\x01turn:x")
    with pytest.raises(ReportDecodeError, match="more than 8 relays"):
        decode_report(HEADER + relay * (MAX_RELAYS + 1))
    with pytest.raises(LocalProtocolError):
        TraversalReport(relays=(RelayInUse("turn:x", TurnTransport.UDP),) * (MAX_RELAYS + 1))
    with pytest.raises(LocalProtocolError):
        RelayInUse("bad\nname", TurnTransport.UDP)


def test_unknown_tags_of_a_later_revision_are_skipped() -> None:
    data = encode_report(FULL) + _field(200, b"whatever a later natkit sends")
    assert decode_report(data) == FULL


def test_random_damage_only_ever_raises_the_decode_error() -> None:
    rng = random.Random(12)
    good = encode_report(FULL)
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            action = rng.random()
            if action < 0.5 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif action < 0.75 and data:
                del data[rng.randrange(len(data)) :]
            else:
                data[rng.randrange(len(data) + 1) : 0] = rng.randbytes(rng.randint(1, 8))
        try:
            decoded = decode_report(bytes(data))
        except ReportDecodeError:
            continue
        assert isinstance(decoded, TraversalReport)
        assert decode_report(encode_report(decoded)) == decoded


def test_a_peers_junk_report_is_counted_and_treated_as_unknown() -> None:
    harness, fake = connected_to_fake()
    agent: ConnectAgent = harness.agent
    announcement = fake.announcement(agent, "b", generation=43, report=b"NKr\x01\x01\x00\x01\x09")
    harness.call(lambda now: agent.receive_signal("b", announcement, now))
    assert agent.counters.bad_reports == 1
    ladder = agent.ladder("b")
    assert (
        ladder.decisions[0].reason == "the NATs at this site and the peer's site are not classified"
    )
