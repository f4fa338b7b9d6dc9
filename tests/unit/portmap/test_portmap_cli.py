"""``natkit portmap`` options that fail before any packet is sent."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from natkit.cli.portmap import _print_result
from natkit.portmap.mapping import MappingProtocol
from natkit.portmap.report import PortMapResult, ProbeStatus, ProtocolResult


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "natkit.cli.portmap", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_hold_on_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    """Issue 9 item 1: a port another program owns is never a traceback;
    ``--hold`` says why it cannot hold it, and how to map it anyway."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as service:
        service.bind(("127.0.0.1", 0))
        port = service.getsockname()[1]
        result = run("--hold", "--port", str(port), "--local-address", "127.0.0.1",
                     "--gateway", "127.0.0.1", "--journal", str(tmp_path / "j.json"))  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr == (
        f"natkit portmap: UDP port {port} is in use by another program;"
        " without --hold natkit maps it without binding it\n"
    )
    assert result.stdout == ""
    assert not (tmp_path / "j.json").exists()


def test_a_bad_gateway_is_a_usage_error() -> None:
    result = run("--port", "5000", "--gateway", "not-an-address")
    assert result.returncode == 64
    assert result.stderr.startswith("natkit portmap: gateway 'not-an-address': ")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("gateway", "status", "line"),
    [
        ("192.0.2.1", ProbeStatus.NO_ANSWER, "  no mapping: gateway 192.0.2.1 did not answer"),
        (None, ProbeStatus.NO_ANSWER, "  no mapping"),
        ("192.0.2.1", ProbeStatus.REFUSED, "  no mapping"),  # it answered
    ],
)
def test_a_named_gateway_that_never_answered_is_named(
    capsys: pytest.CaptureFixture[str], gateway: str | None, status: ProbeStatus, line: str
) -> None:
    protocols = tuple(ProtocolResult(p, status) for p in MappingProtocol)
    _print_result(PortMapResult(None, protocols), False, gateway)
    assert capsys.readouterr().out.splitlines()[-1] == line
