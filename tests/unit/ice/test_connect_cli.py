"""``natkit connect`` as a command, on loopback: the public contract of issue 11.

Real processes: a ``natkit rendezvous`` on 127.0.0.1 and two ``natkit
connect`` nodes bound to 127.0.0.1 (no port mapping, no NAT64 discovery, so
nothing leaves loopback). The lab tests run the same command through real
NATs.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from natkit.cli.main import main
from natkit.identity import PrivateKey
from natkit.identity.keyfile import save_private_key

ROOT = Path(__file__).resolve().parents[3]
LOOPBACK = ["--local-address", "127.0.0.1", "--include-loopback", "--no-portmap", "--no-nat64"]
PATH_KEYS = {"event", "peer", "kind", "local", "remote", "rtt_ms", "reason", "detail", "previous"}


def command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "natkit.cli", *argv]


@pytest.fixture
def keys(tmp_path: Path) -> list[tuple[Path, str]]:
    found = []
    for name in ("a", "b"):
        key = PrivateKey.generate()
        path = tmp_path / f"{name}.key"
        save_private_key(path, key)
        found.append((path, str(key.public_key)))
    return found


@pytest.fixture
def rendezvous() -> Iterator[str]:
    process = subprocess.Popen(
        command("rendezvous", "--listen", "127.0.0.1:0", "--json-line"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        listening = json.loads(process.stdout.readline())
        yield listening["listen"]
    finally:
        process.terminate()
        process.wait(timeout=10)


def lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines()]


def test_once_on_both_sides_exits_0_with_the_same_path(
    keys: list[tuple[Path, str]], rendezvous: str
) -> None:
    (a_key, a_pub), (b_key, b_pub) = keys
    common = ["connect", "--rendezvous", rendezvous, "--once", "--timeout", "20", "--json-line"]
    a = subprocess.Popen(
        command(*common, "--key", str(a_key), "--peer", b_pub, "--stats", *LOOPBACK),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    b = subprocess.run(
        command(*common, "--key", str(b_key), "--peer", a_pub, *LOOPBACK),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    a_out, a_err = a.communicate(timeout=30)
    assert (a.returncode, b.returncode) == (0, 0), (a_err, b.stderr)
    a_lines, b_lines = lines(a_out), lines(b.stdout)
    for line in a_lines + b_lines:
        assert line["schema"] == "natkit.connect"
        assert line["schema_version"] == 1
        assert line["time"].endswith("Z")
    assert [x["event"] for x in a_lines][:1] == ["started"]
    assert a_lines[0]["key"] == a_pub
    (a_path,) = [x for x in a_lines if x["event"] == "path_selected"]
    (b_path,) = [x for x in b_lines if x["event"] == "path_selected"]
    assert set(a_path) >= PATH_KEYS
    assert (a_path["peer"], b_path["peer"]) == (b_pub, a_pub)
    assert a_path["kind"] == "host"
    assert (a_path["local"], a_path["remote"]) == (b_path["remote"], b_path["local"])
    assert a_path["rtt_ms"] > 0
    (stats,) = [x for x in a_lines if x["event"] == "stats"]
    assert stats["checks"]["bad_integrity"] == 0
    assert a_lines[-1] == {**a_lines[-1], "event": "stopped", "status": 0}


def test_an_unreachable_rendezvous_exits_2_saying_why(keys: list[tuple[Path, str]]) -> None:
    (a_key, _), (_, b_pub) = keys
    result = subprocess.run(
        command(
            "connect", "--rendezvous", "127.0.0.1:9", "--key", str(a_key), "--peer", b_pub,
            "--signal-timeout", "1", *LOOPBACK,
        ),
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "signalling never came up: rendezvous 127.0.0.1:9 unreachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_rendezvous_that_never_says_hello_is_named_at_the_signal_timeout(
    keys: list[tuple[Path, str]],
) -> None:
    (a_key, _), (_, b_pub) = keys
    with socket.socket() as mute:  # the kernel accepts; nothing is ever said
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        where = f"127.0.0.1:{mute.getsockname()[1]}"
        result = subprocess.run(
            command(
                "connect", "--rendezvous", where, "--key", str(a_key), "--peer", b_pub,
                "--signal-timeout", "1", "--json-line", *LOOPBACK,
            ),
            cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert (
        f"signalling never came up: rendezvous {where} connected, but has not said hello in"
        in result.stderr
    )
    stopped = lines(result.stdout)[-1]
    assert stopped["event"] == "stopped"
    assert stopped["signalling"] == {**stopped["signalling"], "state": "connecting"}
    assert stopped["signalling"]["phase"] == "hello"
    assert stopped["signalling"]["phase_s"] >= 0.9


def test_a_silent_peer_makes_once_exit_1_at_the_timeout(
    keys: list[tuple[Path, str]], rendezvous: str
) -> None:
    (a_key, _), (_, b_pub) = keys
    started = time.monotonic()
    result = subprocess.run(
        command(
            "connect", "--rendezvous", rendezvous, "--key", str(a_key), "--peer", b_pub,
            "--once", "--timeout", "1.5", "--json-line", *LOOPBACK,
        ),
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started >= 1.5
    stopped = lines(result.stdout)[-1]
    assert stopped["event"] == "stopped"
    assert stopped["reason"] == f"no path to {b_pub} within 1.5 s"


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_it_cleanly(
    keys: list[tuple[Path, str]], rendezvous: str, signum: signal.Signals, status: int
) -> None:
    (a_key, _), (_, b_pub) = keys
    process = subprocess.Popen(
        command(
            "connect", "--rendezvous", rendezvous, "--key", str(a_key), "--peer", b_pub,
            "--json-line", "--stats", *LOOPBACK,
        ),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    while json.loads(process.stdout.readline())["event"] != "signalling":
        pass
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert process.returncode == status, err
    assert "Traceback" not in err
    events = [x["event"] for x in lines(out)]
    assert events[-2:] == ["stats", "stopped"]


def test_a_closed_output_stops_it_in_order(keys: list[tuple[Path, str]], rendezvous: str) -> None:
    """``natkit connect --json-line ... | grep -m1 path_selected``: grep exits
    after its line, and the node must follow (it used to run on for ever)."""
    (a_key, a_pub), (b_key, b_pub) = keys
    common = ["connect", "--rendezvous", rendezvous, "--json-line", *LOOPBACK]
    b = subprocess.Popen(
        command(*common, "--key", str(b_key), "--peer", a_pub),
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    a = subprocess.Popen(
        command(*common, "--key", str(a_key), "--peer", b_pub),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert a.stdout is not None
        assert a.stderr is not None
        while json.loads(a.stdout.readline())["event"] != "path_selected":
            pass
        a.stdout.close()  # grep -m1 has its line
        status = a.wait(timeout=30)
        err = a.stderr.read()
        assert status == 0, err
        assert err == ""  # no traceback, no "Exception ignored" at exit
    finally:
        for process in (a, b):
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--peer", "abc"], "--peer 'abc'"),
        (["--rendezvous", "127.0.0.1"], "needs a port"),
        (["--rendezvous", "not a host:1"], "bad address"),
        (["--stun", "stun:"], "bad server"),
        (["--key", "/nonexistent/node.key"], "no such file"),
        (["--timeout", "0"], "--timeout must be positive"),
        (["--port", "70000"], "port must be 0-65535"),
        (["--local-address", "nowhere"], "bad endpoint"),
        (["--static", "1.2.3.4"], "no port"),
        (["--self"], "own key"),
        # A low-order X25519 key parses, but nothing can be sealed to it.
        (["--peer", "A" * 43 + "="], "low-order (weak) public key"),
    ],
)
def test_bad_command_lines_exit_64_without_a_traceback(
    keys: list[tuple[Path, str]],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    (a_key, a_pub), (_, b_pub) = keys
    values = {"--rendezvous": "127.0.0.1:7000", "--key": str(a_key), "--peer": b_pub}
    extra: list[str] = []
    if argv == ["--self"]:
        values["--peer"] = a_pub
    else:
        flag, value = argv
        if flag in values:
            values[flag] = value
        else:
            extra = argv
    args = [item for pair in values.items() for item in pair]
    assert main(["connect", *args, *extra]) == 64
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_every_path_event_carries_the_same_keys() -> None:
    from natkit.cli.connect_render import event_to_dict  # noqa: PLC0415
    from natkit.endpoint import Endpoint  # noqa: PLC0415
    from natkit.ice import (  # noqa: PLC0415
        LossReason,
        PathLost,
        PathSelected,
        PeerUnreachable,
        UnreachableReason,
    )
    from natkit.ice.candidates import CandidateKind  # noqa: PLC0415

    local, remote = Endpoint.parse("198.51.100.1:4000"), Endpoint.parse("198.51.100.2:5000")
    srflx = CandidateKind.SRFLX
    events = [
        PathSelected("p", local, remote, srflx, 0.0012, None, srflx, srflx, 0),
        PathLost("p", local, remote, srflx, LossReason.KEEPALIVE_TIMEOUT, "gone", 0),
        PeerUnreachable("p", UnreachableReason.CHECKS_FAILED, "no direct path", 3, 5.0),
    ]
    sockets = [Endpoint.parse("0.0.0.0:4000")]
    documents = [event_to_dict(event, sockets) for event in events]
    assert [d["event"] for d in documents if d] == [
        "path_selected",
        "path_lost",
        "peer_unreachable",
    ]
    for document in documents:
        assert document is not None
        assert set(document) >= PATH_KEYS
    selected, lost, unreachable = documents
    assert selected is not None
    assert lost is not None
    assert unreachable is not None
    assert selected["rtt_ms"] == 1.2
    assert selected["base"] == "0.0.0.0:4000"
    assert (lost["reason"], lost["rtt_ms"]) == ("keepalive_timeout", None)
    assert (unreachable["kind"], unreachable["direct"]) == (None, False)


def test_stun_server_problems_have_a_line_in_both_formats() -> None:
    from natkit.aio.connect import (  # noqa: PLC0415
        StunFailure,
        StunServerAnswered,
        StunServerFailed,
    )
    from natkit.cli.connect_render import event_to_dict, event_to_text  # noqa: PLC0415
    from natkit.endpoint import Endpoint  # noqa: PLC0415

    server, local = Endpoint.parse("203.0.113.10:3478"), Endpoint.parse("0.0.0.0:4000")
    failed = StunServerFailed(
        "203.0.113.10", StunFailure.CUT_OFF, "no answer within 3 s", server, local
    )
    assert event_to_dict(failed) == {
        "event": "stun_server",
        "server": "203.0.113.10",
        "state": "failed",
        "reason": "cut_off",
        "detail": "no answer within 3 s",
        "address": "203.0.113.10:3478",
        "local": "0.0.0.0:4000",
    }
    assert event_to_text(failed) == (
        "stun server 203.0.113.10 at 203.0.113.10:3478: no answer (no answer within 3 s);"
        " no server-reflexive candidate from it (the node goes on)",
        False,
    )
    unresolved = StunServerFailed("stun.example.org", StunFailure.UNRESOLVED, "cannot resolve")
    document = event_to_dict(unresolved)
    assert document is not None
    assert (document["reason"], document["address"]) == ("unresolved", None)
    answered = event_to_dict(StunServerAnswered("203.0.113.10", server, local))
    assert answered is not None
    assert (answered["state"], answered["reason"]) == ("answered", None)


def test_settle_goes_with_once_and_lab_refuses_what_the_lab_gives(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["connect", "--settle", "--rendezvous", "127.0.0.1:7000"]) == 64
    assert "--settle goes with --once" in capsys.readouterr().err
    # Refused before any lab is built (no root needed to see it).
    assert main(["connect", "--lab", "--peer", "x"]) == 64
    assert "--peer does not go with --lab" in capsys.readouterr().err


class _SettlingConnection:
    """What --once --settle asks of a Connection: paths and explanations."""

    peers = ("p",)

    def __init__(self) -> None:
        self.pending = True

    def selected(self, peer: object) -> object:
        return object()

    def explain(self, peer: object) -> Any:
        return type("E", (), {"pending": self.pending})()


async def test_once_with_settle_waits_for_a_final_path() -> None:
    import argparse  # noqa: PLC0415

    from natkit.cli import connect as cli_connect  # noqa: PLC0415

    connection = _SettlingConnection()
    args = argparse.Namespace(once=True, settle=True)
    run = cli_connect._Run(args, None, connection=connection)  # type: ignore[arg-type]
    run.once_done()
    assert not run.finishing  # relayed while direct checks run: not final
    connection.pending = False
    run.once_done()
    assert run.finishing
    plain = cli_connect._Run(argparse.Namespace(once=True, settle=False), None)  # type: ignore[arg-type]
    plain.connection = _SettlingConnection()  # type: ignore[assignment]
    plain.once_done()
    assert plain.finishing  # --once alone: the relayed path is enough


def test_the_readme_lists_every_counter_of_the_stats_line() -> None:
    # The stats line is asdict() of these: a counter added must be documented.
    import dataclasses  # noqa: PLC0415

    from natkit.aio.connect import NodeCounters  # noqa: PLC0415
    from natkit.ice.counters import ConnectCounters, ConnectStats  # noqa: PLC0415

    readme = (ROOT / "README.md").read_text()
    (row,) = [line for line in readme.splitlines() if line.startswith("| `stats` |")]
    for counters in (ConnectCounters, ConnectStats, NodeCounters):
        for name in (f.name for f in dataclasses.fields(counters)):
            assert f"`{name}`" in row, (counters.__name__, name)


def test_a_replaced_connection_asks_whether_natkit_runs_twice() -> None:
    from natkit.cli.connect_render import event_to_text  # noqa: PLC0415
    from natkit.signal.channel import ChannelState, DownReason, StateChanged  # noqa: PLC0415

    replaced = StateChanged(
        ChannelState.CONNECTING, ChannelState.UP, DownReason.REPLACED, "replaced", 0.8
    )
    text, _ = event_to_text(replaced)  # type: ignore[misc]
    assert text.endswith("another node connected with this key: is natkit running twice?")
    refused = StateChanged(ChannelState.CONNECTING, ChannelState.UP, DownReason.REFUSED, "full")
    assert "running twice" not in event_to_text(refused)[0]  # type: ignore[index]


def test_human_report_lines_are_not_repeated_word_for_word() -> None:
    import argparse  # noqa: PLC0415

    from natkit.cli import connect as cli_connect  # noqa: PLC0415

    run = cli_connect._Run(argparse.Namespace(json_line=False), None)  # type: ignore[arg-type]
    report = {"event": "report"}
    assert not run.said_before(report, "report: unknown NAT")
    assert run.said_before(report, "report: unknown NAT")
    assert not run.said_before(report, "report: EIM (APDF)")
    why = {"event": "why_relayed", "peer": "p"}
    assert not run.said_before(why, "why relayed (p): direct checks still running")
    assert run.said_before(why, "why relayed (p): direct checks still running")
    # A new path is explained again, even in the same words.
    assert not run.said_before({"event": "path_selected", "peer": "p"}, "path to p: relay")
    assert not run.said_before(why, "why relayed (p): direct checks still running")
    assert not run.said_before({"event": "path_selected", "peer": "p"}, "path to p: relay")
    assert not run.said_before({"event": "path_selected", "peer": "p"}, "path to p: relay")
