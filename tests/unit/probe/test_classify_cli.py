"""``natkit classify --every``: repeated runs, as a command.

The command runs as a subprocess against natkit's STUN server on loopback
in this process; NAT64 discovery, the hop probe and the hairpinning test
are off, so nothing but that server is ever asked.
"""

from __future__ import annotations

import json

import pytest
from cli_testlib import run, stun_server

from natkit.cli.classify import max_allocation_sockets, verdict_changes
from natkit.endpoint import Endpoint

__all__ = ["stun_server"]  # a fixture, used by name

QUIET = ["--no-nat64", "--no-path", "--no-hairpin", "--allocation-sockets", "0"]


def classify(server: Endpoint, *argv: str) -> tuple[str, ...]:
    return ("-m", "natkit.cli", "classify", "-s", str(server), *QUIET, *argv)


async def test_every_with_count_prints_one_document_per_run(stun_server: Endpoint) -> None:
    code, out, err = await run(
        *classify(stun_server, "--every", "1", "--count", "3", "--json-line")
    )
    assert code == 0, err
    documents = [json.loads(line) for line in out.splitlines()]
    assert len(documents) == 3
    assert {d["schema"] for d in documents} == {"natkit.classify"}
    assert {d["behind_nat"] for d in documents} == {False}
    assert "changed" not in err  # the same loopback path every time


async def test_every_human_output_numbers_the_runs(stun_server: Endpoint) -> None:
    code, out, err = await run(*classify(stun_server, "--every", "1", "--count", "2"))
    assert code == 0, err
    headers = [line.split(" at ")[0] for line in out.splitlines() if line.startswith("run ")]
    assert headers == ["run 1", "run 2"]


async def test_exit_status_is_the_worst_run(stun_server: Endpoint) -> None:
    code, out, err = await run(
        *classify(stun_server, "--every", "1", "--count", "2", "--json-line"),
        "--expect",
        "behind_nat=true",
    )
    assert code == 1
    assert len(out.splitlines()) == 2
    assert err.count("expectation failed: behind_nat=true (got false)") == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["--count", "2"],  # --count needs --every
        ["--every", "1", "--count", "0"],
        ["--every", "-1"],
        ["--every", "0"],  # back-to-back runs: a flood
        ["--every", "0.5"],
        ["--every", "nan"],
    ],
)
async def test_bad_repetition_flags_exit_64(stun_server: Endpoint, argv: list[str]) -> None:
    code, out, err = await run(*classify(stun_server, *argv))
    assert code == 64
    assert out == ""
    assert err.startswith("natkit classify: ")
    if "--every" in argv and "--count" not in argv:
        assert err == (
            "natkit classify: --every must be at least 1 s (a shorter period floods the servers)\n"
        )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lifetime-max", "-1"], "--lifetime-max must be positive"),
        (["--timeout", "nan"], "--timeout must be positive"),
        # It opened them: EMFILE, as a bare errno.
        (
            ["--allocation-sockets", "100000"],
            f"--allocation-sockets is 0 to {max_allocation_sockets()} (at most 256, and the"
            " open-file limit,"
            " ulimit -n, must leave room for the others)",  # the same limit as this process
        ),
        # Not on this host (a documentation address): "[Errno 99] Cannot assign ...".
        (["--local-address", "198.51.100.77"], "198.51.100.77 is not an address of this host"),
    ],
)
async def test_bad_flags_exit_64_naming_the_problem(
    stun_server: Endpoint, argv: list[str], message: str
) -> None:
    code, out, err = await run(*classify(stun_server, *argv))
    assert (code, out) == (64, "")
    assert err == f"natkit classify: {message}\n"


def test_verdict_changes_name_each_changed_verdict_and_skip_addresses() -> None:
    before = {"mapping": "EIM", "hairpin": False, "cgnat": None, "mapped_address": "1.2.3.4:5"}
    after = {"mapping": "APDM", "hairpin": True, "cgnat": None, "mapped_address": "1.2.3.4:6"}
    assert verdict_changes(before, after) == "mapping EIM -> APDM, hairpin false -> true"
    assert verdict_changes(before, before) == ""
