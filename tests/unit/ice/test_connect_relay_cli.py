"""``natkit connect``'s relay flags and lines, ``--traffic``, report JSON and ``natkit explain``.

The contract issue 12 adds to the command (README): the flags and what they
refuse, the ``relay``, ``escalation``, ``birthday``, ``report``,
``peer_report``, ``why_relayed``, ``data`` and ``traffic`` lines, and
``natkit explain`` over two reports. The lab runs the same lines through
real NATs (``tests/lab/test_relay_lab.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from natkit.aio.connect import LocalReportChanged
from natkit.cli.connect_relay import WhyRelayed
from natkit.cli.connect_render import event_to_dict, event_to_text
from natkit.cli.connect_traffic import MAGIC, Traffic
from natkit.cli.main import main
from natkit.endpoint import Endpoint
from natkit.errors import LocalProtocolError
from natkit.ice.candidates import CandidateKind
from natkit.ice.events import (
    BirthdayFinished,
    BirthdayStarted,
    EscalationDecided,
    PathSelected,
    PeerReportReceived,
    RelayAllocated,
    RelayFailed,
)
from natkit.ice.explain import Explanation, Outcome, explain
from natkit.ice.ladder import Action, Decision, Expect, Step
from natkit.ice.report import BirthdayCapability, RelayInUse, TraversalReport, encode_report
from natkit.ice.report_json import report_from_document, report_to_dict
from natkit.ice.signals import BirthdayRole
from natkit.identity import PrivateKey
from natkit.identity.keyfile import save_private_key
from natkit.probe.report import FilteringBehavior, MappingBehavior, PortAllocation
from natkit.turn.config import TurnTransport
from natkit.turn.events import TurnFailure

APDM = TraversalReport(
    MappingBehavior.APDM,
    FilteringBehavior.APDF,
    PortAllocation.RANDOM,
    udp_blocked=False,
    behind_nat=True,
    relays=(RelayInUse("turns:203.0.113.30", TurnTransport.TLS),),
    birthday=BirthdayCapability(64, 2048, 100),
)


# -- report JSON -------------------------------------------------------------------------


def test_a_report_round_trips_through_its_json() -> None:
    report = TraversalReport(
        MappingBehavior.EIM,
        FilteringBehavior.ADF,
        PortAllocation.PRESERVING,
        port_delta=2,
        udp_blocked=True,
        mapped=Endpoint.parse("198.51.100.1:41000"),
        relays=APDM.relays,
        birthday=APDM.birthday,
        binding_lifetime=30.0,
    )
    document = json.loads(json.dumps(report_to_dict(report)))
    assert report_from_document(document) == report
    assert report_from_document({"event": "report", "report": document}) == report


def test_a_classify_document_becomes_a_report() -> None:
    document = {
        "schema": "natkit.classify",
        "mapping": "APDM",
        "filtering": "APDF",
        "port_allocation": "random",
        "port_allocation_delta": None,
        "udp_blocked": False,
        "behind_nat": True,
        "mapped_address": "198.51.100.1:40000",
        "cgnat": False,
        "binding_lifetime": 30,
        "observations": [{"test": "whatever"}],
    }
    report = report_from_document(document)
    assert (report.mapping, report.filtering) == (MappingBehavior.APDM, FilteringBehavior.APDF)
    assert str(report.public_address) == "198.51.100.1"
    assert report.binding_lifetime == 30.0
    assert report.relays == ()
    assert report.birthday is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"mapping": "EIMX"}, "unknown value 'EIMX'"),
        ({"udp_blocked": 1}, "is not a bool"),
        ({"port_delta": True}, "is not a int"),
        ({"relays": [{"name": "x"}]}, "name and a transport"),
        ({"birthday": {"ports": 1}}, "needs ports, probes and rate"),
        ({"mapped": "nope"}, "report key 'mapped'"),
        ({}, "not a report"),
        ({"hello": 1}, "not a report"),
        ([], "a JSON object"),
    ],
)
def test_bad_report_json_is_refused_naming_the_key(document: Any, message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        report_from_document(document)


# -- natkit explain ------------------------------------------------------------------------


def write(path: Path, document: object) -> str:
    path.write_text(json.dumps(document))
    return str(path)


def test_explain_predicts_from_two_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write(tmp_path / "a.json", report_to_dict(APDM))
    b = write(tmp_path / "b.json", {"event": "report", "report": report_to_dict(APDM)})
    assert main(["explain", a, b, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["schema"] == "natkit.explain"
    assert document["outcome"] == "relay"
    assert document["predicted"] == "relay"
    assert document["reason"] == explain(APDM, APDM).sentence
    assert document["reason"].startswith("both sides APDM with random ports")
    assert document["reason"].endswith("relayed over TLS")
    # Without relays: no path (exit 1), said in words.
    bare = write(tmp_path / "c.json", {"schema": "natkit.classify", "mapping": "APDM",
                                      "filtering": "APDF", "behind_nat": True})  # fmt: skip
    assert main(["explain", bare, bare]) == 1
    out = capsys.readouterr().out
    assert out.startswith("none: both sides APDM")
    assert "relay         skip" in out
    # --relay and --port-range give a classification what it lacks.
    assert main(["explain", bare, bare, "--relay", "turn:203.0.113.30?transport=tcp"]) == 0
    assert capsys.readouterr().out.startswith("relay: both sides APDM")
    assert main(["explain", bare, bare, "--birthday", "--port-range-a", "40000-40999",
                 "--port-range-b", "40000-40999", "--json"]) == 0  # fmt: skip
    ladder = json.loads(capsys.readouterr().out)["ladder"]
    assert ladder[2]["step"] == "birthday"
    assert ladder[2]["birthday"]["port_range"] == "40000-40999"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file"),
        ("{not json", "not JSON"),
        ('{"mapping": 3}', "is not a str"),
    ],
)
def test_explain_refuses_bad_files_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    good = write(tmp_path / "good.json", report_to_dict(APDM))
    assert main(["explain", str(path), good]) == 64
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


# -- natkit connect's flags ---------------------------------------------------------------------


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    path = tmp_path / "a.key"
    save_private_key(path, PrivateKey.generate())
    return str(path)


def test_a_gateway_that_is_no_address_is_a_usage_error(
    key_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # It was taken, and port mapping skipped without a word.
    peer = str(PrivateKey.generate().public_key)
    argv = ["connect", "--rendezvous", "127.0.0.1:7000", "--key", key_file, "--peer", peer]
    with pytest.raises(SystemExit) as caught:
        main([*argv, "--gateway", "nope"])
    assert caught.value.code == 64
    err = capsys.readouterr().err
    assert err.endswith(
        "natkit connect: error: argument --gateway: 'nope' is not an IP address"
        " (see natkit connect --help)\n"
    )


def test_a_tls_ca_without_a_certificate_is_refused_at_start(
    key_file: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It was loaded on the first turns: connection, in a task nobody awaited.
    junk = tmp_path / "ca.pem"
    junk.write_text("junk\n")
    peer = str(PrivateKey.generate().public_key)
    argv = ["connect", "--rendezvous", "127.0.0.1:7000", "--key", key_file, "--peer", peer]
    assert (
        main([*argv, "--relay", "turns:127.0.0.1:9", "--relay-secret", "s", "--tls-ca", str(junk)])
        == 64
    )
    err = capsys.readouterr().err
    assert err == (
        f"natkit connect: --tls-ca {junk}: no CA certificate could be loaded"
        " (NO_CERTIFICATE_OR_CRL_FOUND); PEM expected\n"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--relay", "turn:203.0.113.30"], "--relay needs credentials"),
        (["--relay", "turns:x?transport=udp", "--relay-secret", "s"], "DTLS"),
        (["--relay-user", "u"], "needs a password"),
        (["--relay-user", "u", "--relay-password", "p", "--relay-secret", "s"], "not both"),
        (["--tls-ca", "/nonexistent/ca.pem"], "--tls-ca /nonexistent/ca.pem"),
        (["--port-range", "9-3"], "bad port range"),
        (["--port-range", "x"], "LO-HI"),
        (["--birthday-rate", "0"], "birthday rate out of range"),
        (["--traffic", "0"], "--traffic must be positive"),
    ],
)
def test_bad_relay_flags_exit_64_saying_why(
    key_file: str, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    peer = str(PrivateKey.generate().public_key)
    argv = ["connect", "--rendezvous", "127.0.0.1:7000", "--key", key_file, "--peer", peer]
    assert main([*argv, *extra]) == 64
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


# -- the new lines ------------------------------------------------------------------------------


def test_relay_ladder_birthday_and_report_lines() -> None:
    relayed = Endpoint.parse("203.0.113.30:50000")
    decision = Decision(Step.RELAY, Action.TRY, Expect.WORKS, "relayed over TLS",
                        relay="turns:x", transport=TurnTransport.TLS)  # fmt: skip
    events: list[object] = [
        RelayAllocated("turns:x", relayed, TurnTransport.TLS, 0.0021, None),
        RelayFailed(
            "turns:x",
            TurnFailure.QUOTA_REACHED,
            486,
            "Allocation Quota Reached",
            lost=False,
            retry_in=1.5,
        ),
        RelayFailed("turns:x", TurnFailure.SERVER_UNREACHABLE, None, "ICMP", lost=True, retry_in=2),
        EscalationDecided("p", decision),
        BirthdayStarted("p", 1, BirthdayRole.BOTH, relayed, 16, 3000, 500.0),
        BirthdayFinished("p", 1, True, 271, relayed, "hit via PROBE"),
        LocalReportChanged(APDM, None),
        PeerReportReceived("p", encode_report(APDM)),
        PeerReportReceived("p", b"junk"),
    ]
    documents = [event_to_dict(e) for e in events]  # type: ignore[arg-type]
    allocated, refused, lost, escalation, started, finished, report, peer, junk = documents
    assert allocated == {"event": "relay", "state": "allocated", "relay": "turns:x",
                         "relayed": "203.0.113.30:50000", "transport": "tls", "rtt_ms": 2.1,
                         "mapped": None}  # fmt: skip
    assert refused is not None
    assert (refused["state"], refused["failure"], refused["code"]) == (
        "failed",
        "quota-reached",
        486,
    )
    assert lost is not None
    assert (lost["state"], lost["retry_in_s"]) == ("lost", 2)
    assert escalation == {"event": "escalation", "peer": "p", "step": "relay", "action": "try",
                          "expect": "works", "reason": "relayed over TLS", "relay": "turns:x",
                          "transport": "tls"}  # fmt: skip
    assert started is not None
    assert (started["state"], started["role"], started["ports"]) == ("started", "both", 16)
    assert finished is not None
    assert (finished["found"], finished["remote"]) == (True, "203.0.113.30:50000")
    assert report is not None
    assert report["report"] == report_to_dict(APDM)
    assert peer is not None
    assert peer["report"] == report_to_dict(APDM)
    assert junk is not None
    assert (junk["report"], junk["error"]) == (None, "not a natkit traversal report")
    for event in events:
        text = event_to_text(event)  # type: ignore[arg-type]
        assert text is not None
        assert text[1] is False  # notes go to stderr


def test_a_relayed_path_selected_carries_its_reason() -> None:
    local, remote = Endpoint.parse("198.51.100.1:4000"), Endpoint.parse("203.0.113.30:50000")
    relay = CandidateKind.RELAY
    event = PathSelected("p", local, remote, relay, 0.002, None, CandidateKind.SRFLX, relay,
                         0, "turns:x", "UDP blocked at this site; relayed over TLS")  # fmt: skip
    document = event_to_dict(event)
    assert document is not None
    assert (document["kind"], document["relay"]) == ("relay", "turns:x")
    assert document["reason"] == "UDP blocked at this site; relayed over TLS"
    text = event_to_text(event)
    assert text is not None
    assert "via turns:x" in text[0]


class FakeConnection:
    """What WhyRelayed and Traffic ask of a Connection."""

    started = True
    peers = ("p",)

    def __init__(self, sentence: str) -> None:
        self.sentence = sentence
        self.sent: list[bytes] = []
        self.path = True

    def explain(self, peer: object) -> Explanation:
        ladder = explain(APDM, APDM).ladder
        return Explanation(self.sentence, Outcome.RELAY, True, ladder)

    def send(self, peer: object, data: bytes) -> bool:
        self.sent.append(data)
        return self.path

    def pairs(self, peer: object) -> tuple[()]:
        return ()


def test_why_relayed_follows_every_relayed_path_and_every_new_cause() -> None:
    printed: list[dict[str, Any] | None] = []
    why = WhyRelayed(lambda document, text: printed.append(document))
    connection = FakeConnection("direct checks still running; relayed over TLS")
    local, remote = Endpoint.parse("198.51.100.1:4000"), Endpoint.parse("203.0.113.30:50000")
    relayed = PathSelected("p", local, remote, CandidateKind.RELAY, 0.002, None,
                           CandidateKind.SRFLX, CandidateKind.RELAY, 0, "turns:x")  # fmt: skip
    why.on_event(connection, relayed)  # type: ignore[arg-type]
    assert [d["reason"] for d in printed if d] == ["direct checks still running; relayed over TLS"]
    # The same cause again: not repeated; a new one (the report arrived): said.
    report = PeerReportReceived("p", encode_report(APDM))
    why.on_event(connection, report)  # type: ignore[arg-type]
    assert len(printed) == 1
    connection.sentence = "UDP blocked at the peer's site; relayed over TLS"
    why.on_event(connection, report)  # type: ignore[arg-type]
    assert printed[-1] is not None
    assert printed[-1]["event"] == "why_relayed"
    assert printed[-1]["reason"] == "UDP blocked at the peer's site; relayed over TLS"
    # A relayed path selected again is always explained.
    why.on_event(connection, relayed)  # type: ignore[arg-type]
    assert len(printed) == 3


def packet(seq: int) -> bytes:
    return MAGIC + seq.to_bytes(8, "big")


def test_traffic_counts_what_went_missing_and_what_came_late() -> None:
    printed: list[dict[str, Any] | None] = []
    connection = FakeConnection("")
    traffic = Traffic(connection, 50.0, lambda document, text: printed.append(document))  # type: ignore[arg-type]
    for seq in (3, 4, 7, 5, 5, 9):
        traffic.on_data("p", packet(seq), seq > 6)
    traffic.on_data("p", b"not ours", False)
    traffic.report()
    first, line = printed[0], printed[-1]
    assert first == {"event": "data", "peer": "p", "seq": 3, "relayed": False, "first": True,
                     "pending_direct": 0}  # fmt: skip
    assert line is not None
    assert (line["received"], line["relayed"], line["last_seq"]) == (5, 2, 9)
    assert line["missing"] == 2  # 6 and 8; 5 came late
    assert line["duplicates"] == 1
    assert traffic.other == 1
    # A send without a path still uses a number (it is lost, and counted as unsent).
    connection.path = False
    traffic._send("p")
    connection.path = True
    traffic._send("p")
    traffic.report()
    assert printed[-1] is not None
    assert (printed[-1]["sent"], printed[-1]["unsent"]) == (1, 1)
    assert connection.sent == [packet(0), packet(1)]


def test_a_classify_run_that_reached_nothing_says_nothing_of_udp() -> None:
    document = {"schema": "natkit.classify", "status": "unreachable", "udp_blocked": True}
    assert report_from_document(document).udp_blocked is None
    blocked = {"schema": "natkit.classify", "status": "udp_blocked", "udp_blocked": True}
    assert report_from_document(blocked).udp_blocked is True
