"""``natkit birthday``: the plan printout, argument errors, and a two-process
probe run on loopback."""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from natkit.cli import birthday

ROOT = Path(__file__).resolve().parents[3]
KEY = "000102030405060708090a0b0c0d0e0f"
#: ``natkit birthday ...`` until cli/main.py lists the command.
LAUNCHER = (
    "import argparse, sys\n"
    "from natkit.cli import birthday\n"
    "parser = argparse.ArgumentParser(prog='natkit birthday')\n"
    "birthday.register(parser)\n"
    "args = parser.parse_args(sys.argv[1:])\n"
    "sys.exit(args.run(args))\n"
)


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="natkit birthday")
    birthday.register(parser)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


def test_plan_prints_the_estimate(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["plan", "--ports", "256", "--probes", "2048"]) == 0
    out = capsys.readouterr().out
    assert "one hard side with 256 mappings in ports 1-65535" in out
    assert "success probability   99.9709 %" in out
    assert "for 50 %              177 probes, 1.77 s" in out


def test_plan_json_for_both_hard_sides(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["plan", "-k", "256", "--seconds", "1700", "--both-hard", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["schema"], document["schema_version"]) == ("natkit.birthday.plan", 1)
    assert document["inputs"]["mode"] == "both-hard"
    assert document["inputs"]["probes"] == 170_000
    assert document["success_probability"] == pytest.approx(0.9988, abs=1e-4)
    assert document["probes_for_50"] == 54_562
    assert document["seconds_for_99_9"] == pytest.approx(1722.4)
    assert document["expected_seconds"] == pytest.approx(579.3, abs=0.1)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["plan", "-k", "8", "-n", "10", "--range", "5-1"], "bad port range 5-1"),
        (["plan", "-k", "8", "-n", "10", "--range", "lots"], "port range must be LO-HI"),
        (["plan", "-k", "0", "-n", "10"], "at least one port"),
        (["plan", "-k", "8", "-n", "10", "--rate", "-1"], "rate must be positive"),
        (["probe", "--role", "easy", "--peer", "127.0.0.1", "--key", "xyz"], "hexadecimal"),
        (["probe", "--role", "easy", "--peer", "127.0.0.1", "--key", "00"], "at least 16 bytes"),
        (["probe", "--role", "hard", "--peer", "127.0.0.1", "--key", KEY], "no port"),
        (
            ["probe", "--role", "easy", "--peer", "127.0.0.1", "--key", KEY, "--ports", "0"],
            "positive",
        ),
    ],
)
def test_bad_command_lines_exit_64(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(argv) == 64
    assert message in capsys.readouterr().err


def test_probe_exits_1_when_the_budget_is_spent(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["probe", "--role", "easy", "--peer", "127.0.0.1", "--key", KEY, "--budget", "5"]
    argv += ["--range", "9-13", "--rate", "500", "--start-delay", "0", "--answer-timeout", "0.2"]
    assert run([*argv, "--local-address", "127.0.0.1"]) == 1
    assert "no hit: budget spent" in capsys.readouterr().out


def test_two_processes_meet_on_loopback() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        easy_port = sock.getsockname()[1]
    common = ["--key", KEY, "--local-address", "127.0.0.1", "--ports", "16", "--rate", "500"]
    # The two processes start in either order: re-opening every 0.2 s means an
    # opener lost before the easy side was bound is soon sent again.
    common += ["--budget", "300", "--keepalive", "0.2", "--json"]
    easy_argv = ["probe", "--role", "easy", "--peer", "127.0.0.1", "--local-port", str(easy_port)]
    hard_argv = ["probe", "--role", "hard", "--peer", f"127.0.0.1:{easy_port}"]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, *argv, *common],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for argv in (easy_argv, hard_argv)
    ]
    outputs = [p.communicate(timeout=30)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0]
    easy, hard = (json.loads(out) for out in outputs)
    assert easy["outcome"] == hard["outcome"] == "hit"
    assert easy["schema"] == hard["schema"] == "natkit.birthday.probe"
    assert easy["pair"]["local"] == hard["pair"]["remote"] == f"127.0.0.1:{easy_port}"
    assert hard["pair"]["local"] == easy["pair"]["remote"]
