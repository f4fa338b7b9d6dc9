"""UPnP: SSDP parsing and selection, description checks, SOAP errors by
name, and miniupnpc driven against a fake IGD on loopback (never SSDP
multicast: discovery here is unicast to the fake)."""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import AsyncIterator

import pytest
from fake_igd import FakeIgd, description

from natkit.aio.portmap.session import MappingSession, run_client
from natkit.aio.portmap.upnp import UpnpEngine, fetch_description
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.portmap.events import FailureReason, MappingFailed
from natkit.portmap.igd import (
    DescriptionError,
    DescriptionFailure,
    MiniupnpcFailure,
    UpnpError,
    UpnpErrorCode,
    error_from_miniupnpc,
    parse_description,
)
from natkit.portmap.ssdp import (
    IGD_V1,
    IGD_V2,
    SsdpDecodeError,
    SsdpFailure,
    SsdpResponse,
    build_msearch,
    parse_response,
    select_gateway,
)
from natkit.portmap.upnp_calls import UpnpAction, UpnpCall, UpnpConfig
from natkit.portmap.upnp_client import UpnpClient

SOURCE = Endpoint.parse("192.168.1.1:1900")


def answer(location: str = "http://192.168.1.1:5000/rootDesc.xml", st: str = IGD_V2) -> bytes:
    return (
        "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\n"
        f"ST: {st}\r\nUSN: uuid:1::{st}\r\nLOCATION: {location}\r\n"
        "SERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\nBOOTID.UPNP.ORG: 7\r\n\r\n"
    ).encode()


def test_msearch_bytes() -> None:
    assert build_msearch(IGD_V2, mx=2) == (
        b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n"
        b'MAN: "ssdp:discover"\r\nMX: 2\r\n'
        b"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:2\r\n\r\n"
    )


def test_ssdp_answer_parses() -> None:
    response = parse_response(answer(), SOURCE)
    assert response.location == "http://192.168.1.1:5000/rootDesc.xml"
    assert (response.igd_version, response.boot_id) == (2, 7)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (answer(location="http://192.168.1.9:5000/x.xml"), SsdpFailure.FOREIGN_LOCATION),
        (answer(location="http://router.example:5000/x.xml"), SsdpFailure.BAD_LOCATION),
        (answer(location="file:///etc/passwd"), SsdpFailure.BAD_LOCATION),
        (answer(st="urn:schemas-upnp-org:device:MediaServer:1"), SsdpFailure.NOT_AN_IGD),
        (b"HTTP/1.1 404 Not Found\r\n\r\n", SsdpFailure.NOT_OK),
        (b"NOTIFY * HTTP/1.1\r\n\r\n", SsdpFailure.NOT_HTTP),
        (b"HTTP/1.1 200 OK\r\nST: " + IGD_V2.encode() + b"\r\n\r\n", SsdpFailure.NO_LOCATION),
        (answer() + b"x" * 5000, SsdpFailure.TOO_LONG),
    ],
)
def test_ssdp_answers_refused(data: bytes, reason: SsdpFailure) -> None:
    with pytest.raises(SsdpDecodeError) as info:
        parse_response(data, SOURCE)
    assert info.value.reason is reason


def test_select_prefers_gateway_then_igd2_then_first() -> None:
    other = Endpoint.parse("192.168.1.7:1900")
    v1_gateway = SsdpResponse(SOURCE, "http://192.168.1.1/a", IGD_V1)
    v2_other = SsdpResponse(other, "http://192.168.1.7/b", IGD_V2)
    v1_other = SsdpResponse(other, "http://192.168.1.7/c", IGD_V1)
    assert select_gateway([v2_other, v1_gateway], SOURCE.address) is v1_gateway
    assert select_gateway([v1_other, v2_other]) is v2_other
    assert select_gateway([]) is None
    # The user named the gateway: its answer or none, never another device's.
    assert select_gateway([v2_other, v1_gateway], SOURCE.address, only=True) is v1_gateway
    assert select_gateway([v2_other, v1_other], SOURCE.address, only=True) is None
    with pytest.raises(LocalProtocolError):
        select_gateway([v1_gateway], only=True)


def test_description_parses_v1_and_v2() -> None:
    v2 = parse_description(description(2), "http://127.0.0.1:5000/rootDesc.xml")
    assert (v2.igd_version, v2.has_add_any_port_mapping) == (2, True)
    assert v2.control_url == "http://127.0.0.1:5000/ctl/IPConn"
    v1 = parse_description(description(1), "http://127.0.0.1:5000/rootDesc.xml")
    assert (v1.igd_version, v1.has_add_any_port_mapping) == (1, False)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<root>" + b"x" * 70000 + b"</root>", DescriptionFailure.TOO_LARGE),
        (b"<root><device>", DescriptionFailure.MALFORMED),
        (b"\xff\xfe garbage", DescriptionFailure.MALFORMED),
        (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><root>&a;</root>',
            DescriptionFailure.DTD_FORBIDDEN,
        ),
        (
            b"<root><device><deviceType>x</deviceType></device></root>",
            DescriptionFailure.NOT_AN_IGD,
        ),
    ],
)
def test_description_refused(data: bytes, reason: DescriptionFailure) -> None:
    with pytest.raises(DescriptionError) as info:
        parse_description(data, "http://127.0.0.1/")
    assert info.value.reason is reason


def test_miniupnpc_texts_become_codes() -> None:
    error = error_from_miniupnpc("AddPortMapping", Exception("ConflictInMappingEntry"))
    assert (error.code, error.failure) == (UpnpErrorCode.CONFLICT_IN_MAPPING_ENTRY, None)
    assert str(error) == "UPnP AddPortMapping: CONFLICT_IN_MAPPING_ENTRY (718)"
    unknown = error_from_miniupnpc("AddPortMapping", Exception("UnknownError"))
    assert (unknown.code, unknown.failure) == (None, MiniupnpcFailure.UNKNOWN_CODE)


# --- against the fake IGD ------------------------------------------------------------


@pytest.fixture
async def igd() -> AsyncIterator[FakeIgd]:
    fake = FakeIgd()
    server = await fake.start()
    try:
        yield fake
    finally:
        server.close()


async def lease_on(fake: FakeIgd, **kwargs: object) -> MappingSession:
    """A UPnP client on the real miniupnpc (the aio driver), mapping at once."""
    config = UpnpConfig(call_timeout=5.0, conflict_attempts=4)
    now = asyncio.get_running_loop().time()
    client = UpnpClient(fake.location, Endpoint.parse("127.0.0.1:51820"), now, config=config,
                        **kwargs)  # type: ignore[arg-type]  # fmt: skip
    return await run_client(client, [])


async def test_add_any_then_lease_shortened(igd: FakeIgd) -> None:
    lease = await lease_on(igd)
    mapping = await lease.wait_for_mapping(10)
    assert mapping.external == Endpoint.parse("203.0.113.7:40123")
    # miniupnpc asks AddAnyPortMapping for a permanent lease; natkit re-adds
    # the granted port with its own lease at once.
    assert igd.counts["AddAnyPortMapping"] == 1
    assert igd.added == [(40123, 7200)]
    deleted = await lease.delete(5)
    assert deleted.confirmed
    assert igd.counts["DeletePortMapping"] == 1
    lease.close()


async def test_igd1_conflict_718_moves_to_another_port(igd: FakeIgd) -> None:
    igd.version = 1
    igd.faults["AddPortMapping"] = deque([718, 718, 0])
    lease = await lease_on(igd)
    mapping = await lease.wait_for_mapping(10)
    assert igd.counts["AddAnyPortMapping"] == 0
    assert igd.counts["AddPortMapping"] == 3
    assert mapping.external.port == igd.added[-1][0] != 51820
    await lease.aclose()


async def test_725_only_permanent_leases(igd: FakeIgd) -> None:
    igd.version = 1
    igd.faults["AddPortMapping"] = deque([725, 0])
    lease = await lease_on(igd)
    mapping = await lease.wait_for_mapping(10)
    assert igd.counts["AddPortMapping"] == 2  # 7200 refused with 725, then 0
    assert igd.added == [(51820, 0)]
    assert mapping.granted_lifetime == 0
    await lease.aclose()


@pytest.mark.parametrize(
    ("code", "reason"),
    [(606, FailureReason.NOT_AUTHORIZED), (728, FailureReason.NO_RESOURCES),
     (501, FailureReason.UNKNOWN_RESULT), (899, FailureReason.UNKNOWN_RESULT)],
)  # fmt: skip
async def test_soap_faults_end_in_typed_failures(
    igd: FakeIgd, code: int, reason: FailureReason
) -> None:
    igd.faults["AddAnyPortMapping"] = deque([code])
    lease = await lease_on(igd)
    event = await lease.next_event(10)
    assert isinstance(event, MappingFailed)
    assert event.terminal
    assert event.reason is reason
    await lease.aclose()


@pytest.mark.parametrize("body", [b"<root><device>", b"\x00" * 100, b"<root/>"])
async def test_bad_description_is_a_typed_error(igd: FakeIgd, body: bytes) -> None:
    igd.description_body = body
    lease = await lease_on(igd, start=False, probe=True)
    event = await lease.next_event(10)
    assert isinstance(event, MappingFailed)
    assert (event.reason, event.terminal) == (FailureReason.INVALID_DESCRIPTION, True)
    assert event.detail.startswith("description ")
    assert igd.counts["description"] == 1  # miniupnpc never asked for it
    await lease.aclose()


async def test_streamed_huge_description_is_cut_off(igd: FakeIgd) -> None:
    igd.stream_description = 50 * 1024 * 1024
    with pytest.raises(DescriptionError) as info:
        async with asyncio.timeout(10):
            await fetch_description(igd.location, limit=64 * 1024)
    assert info.value.reason is DescriptionFailure.TOO_LARGE


async def test_unreachable_device_is_a_typed_error() -> None:
    call = UpnpCall(1, UpnpAction.FETCH_DESCRIPTION, "http://127.0.0.1:1/rootDesc.xml", 2.0)
    answer = await UpnpEngine().call(call)
    assert isinstance(answer.error, UpnpError)
    assert answer.error.failure is MiniupnpcFailure.HTTP_ERROR


@pytest.mark.parametrize(
    "body",
    [b"<root><device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1",
     b"<" * 5000, b"<a>" * 3000, b"\x00\xff" * 2000, b"<root>" + b"&amp;" * 4000],
)  # fmt: skip
async def test_miniupnpc_own_parser_survives_broken_descriptions(igd: FakeIgd, body: bytes) -> None:
    """Bypassing natkit's checks: miniupnpc's C parser itself must not crash
    (run in a child process, so a crash would show as a signal)."""
    igd.description_body = body
    script = (
        "import miniupnpc\n"
        "u = miniupnpc.UPnP()\n"
        f"try: u.selectigd({igd.location!r})\n"
        "except Exception as e: print(type(e).__name__)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
