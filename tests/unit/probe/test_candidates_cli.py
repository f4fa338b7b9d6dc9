"""``natkit candidates`` and the keys ``natkit classify`` gained, as commands.

The commands run as subprocesses against STUN servers on loopback in this
process. NAT64 discovery and port mapping are switched off: no DNS server
and no gateway of this machine is ever asked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_testlib import run, stun_server

from natkit.endpoint import Endpoint

__all__ = ["stun_server"]  # a fixture, used by name

QUIET = ["--no-nat64", "--no-portmap"]


async def test_json_contract(stun_server: Endpoint) -> None:
    code, out, err = await run(
        "-m",
        "natkit.cli.candidates",
        "--server",
        str(stun_server),
        "--include-loopback",
        "--json",
        "--static",
        "198.51.100.7:5000",
        *QUIET,
    )
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    assert document["schema"] == "natkit.candidates"
    assert document["schema_version"] == 1
    kinds = {item["kind"] for item in document["candidates"]}
    assert {"host", "static"} <= kinds
    for item in document["candidates"]:
        assert {"kind", "address", "port", "family", "base", "source", "rtt_ms"} <= set(item)
    assert document["nat64"] == {
        "status": "not_tested",
        "prefixes": [],
        "reason": "switched off",
        "dns_server": None,
        "answers": [],
        "rtt_ms": None,
        "clat": document["nat64"]["clat"],
    }
    udp = [s for s in document["servers"] if s["transport"] == "udp"]
    assert udp[0]["outcome"] == "answered"
    assert udp[0]["mapped_address"].startswith("127.0.0.1:")
    assert document["udp_blocked"] is False
    assert document["port_mapping"]["status"] == "not_tested"


async def test_human_output(stun_server: Endpoint) -> None:
    code, out, err = await run(
        "-m", "natkit.cli.candidates", "-s", str(stun_server), "--include-loopback", *QUIET
    )
    assert code == 0, err
    assert out.startswith("natkit candidates: ")
    assert "\n  host  udp  127.0.0.1:" in out
    assert "\nNAT64       not_tested: switched off" in out


async def test_no_answer_exits_2() -> None:
    code, out, _ = await run(
        "-m", "natkit.cli.candidates", "-s", "127.0.0.1:9", "--json", "--timeout", "0.5", *QUIET
    )
    assert code == 2
    assert json.loads(out)["udp_blocked"] is None


@pytest.mark.parametrize(
    "argv",
    [
        ["--server", "not a server"],
        ["--dns", "resolver.example"],
        ["--timeout", "0"],
        ["--static", "198.51.100.7"],
        ["--bogus"],
        ["--gateway", "nope"],
    ],
)
async def test_bad_command_lines_exit_64(argv: list[str]) -> None:
    code, _, err = await run("-m", "natkit.cli.candidates", *argv, *QUIET)
    assert code == 64, err


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "No such file or directory"),
        ("junk\n", "no CA certificate could be loaded (NO_CERTIFICATE_OR_CRL_FOUND); PEM expected"),
    ],
)
async def test_a_bad_tls_ca_is_a_usage_error_at_start(
    tmp_path: Path, content: str | None, why: str
) -> None:
    # Loaded while the flags are checked, not on the first stuns: request
    # (where it was an unretrieved task exception and the run went on).
    cafile = tmp_path / "ca.pem"
    if content is not None:
        cafile.write_text(content)
    code, out, err = await run(
        "-m", "natkit.cli.candidates", "-s", "stuns:127.0.0.1:9", "--tls-ca", str(cafile), *QUIET
    )
    assert (code, out) == (64, "")
    assert err == f"natkit candidates: --tls-ca {cafile}: {why}\n"


async def test_classify_reports_cgnat_and_nat64_keys(stun_server: Endpoint) -> None:
    code, out, err = await run(
        "-m",
        "natkit.cli",
        "classify",
        "-s",
        str(stun_server),
        "--json",
        "--no-hairpin",
        "--allocation-sockets",
        "0",
        "--no-nat64",
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["schema_version"] == 1
    assert document["cgnat"] is False
    assert document["double_nat"] is False
    assert document["nat64"]["status"] == "not_tested"
    assert document["nat64"]["prefixes"] == []
    assert "no NAT" in document["reasons"]["cgnat"]
    code, _, _ = await run(
        "-m",
        "natkit.cli",
        "classify",
        "-s",
        str(stun_server),
        "--expect",
        "cgnat=false,double_nat=false",
        "--no-nat64",
        "--no-hairpin",
        "--allocation-sockets",
        "0",
    )
    assert code == 0
