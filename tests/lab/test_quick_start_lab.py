"""The one-command jobs against the built-in lab, as a new user runs them.

``natkit classify --lab`` (the README's Quick start) and ``natkit connect
--lab`` each build their own lab, do the job inside it and tear it down:
run as commands, they exit 0 with the expected answer, print no traceback
and leave none of their namespaces behind.
"""

from __future__ import annotations

import json
import re
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
