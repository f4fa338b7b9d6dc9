"""The one-command jobs against the built-in lab, as a new user runs them.

``natkit classify --lab`` (the README's Quick start) and ``natkit connect
--lab`` each build their own lab, do the job inside it and tear it down:
run as commands, they exit 0 with the expected answer, print no traceback
and leave none of their namespaces behind.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def natkit(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "natkit.cli", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def namespaces_of(stderr: str) -> list[str]:
    """The namespaces of the lab the command said it built (``natkit lab: ID ...``)."""
    match = re.search(r"^natkit lab: (\w+) ", stderr, re.MULTILINE)
    assert match is not None, stderr
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in listed.stdout.splitlines() if f"nk-{match[1]}-" in line]


@pytest.mark.lab
def test_classify_lab_answers_and_cleans_up(lab_host: None) -> None:
    done = natkit("classify", "--lab", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["mapping"], report["filtering"]) == ("EIM", "APDF")
    assert "Traceback" not in done.stderr
    assert namespaces_of(done.stderr) == []


@pytest.mark.lab
def test_connect_lab_upgrades_from_the_relay_to_direct_and_cleans_up(lab_host: None) -> None:
    # connect-cgnat: relayed at once, then direct once the checks confirm it;
    # --settle keeps the command until the path is final.
    done = natkit("connect", "--lab", "--json-line")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    paths = [line for line in lines if line["event"] == "path_selected"]
    assert paths, done.stderr
    assert paths[-1]["kind"] != "relay"
    assert paths[-1]["direct"] is True
    assert lines[-1]["event"] == "stopped"
    assert lines[-1]["status"] == 0
    assert "Traceback" not in done.stderr
    assert namespaces_of(done.stderr) == []


@pytest.mark.lab
def test_lab_up_directory_prints_commands_that_connect_through_knot(lab_host: None) -> None:
    # The DNS directory section as a new user follows it: lab up --directory,
    # then the two printed commands (signalling through knot, no rendezvous).
    up = natkit("lab", "up", "connect-eim", "--directory", "--json")
    assert up.returncode == 0, up.stderr
    summary = json.loads(up.stdout)
    try:
        directory = summary["directory"]
        assert directory["zone"] == "dir.natkit.test."
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        finish = ["--once", "--settle", "--timeout", "30", "--json-line"]
        nodes = [
            subprocess.Popen(
                [*shlex.split(command), *finish],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for command in directory["connect_commands"]
        ]
        outputs = [node.communicate(timeout=60) for node in nodes]
        for node, (out, err) in zip(nodes, outputs, strict=True):
            assert node.returncode == 0, err
            assert "--rendezvous" not in node.args
            paths = [
                line
                for line in map(json.loads, out.splitlines())
                if line["event"] == "path_selected"
            ]
            assert paths[-1]["kind"] == "srflx"
    finally:
        down = natkit("lab", "down", summary["id"])
    assert down.returncode == 0, down.stderr
