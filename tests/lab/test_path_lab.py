"""``natkit classify``'s hop probe against real Linux routers.

The lab's routers answer hop-limited datagrams with ICMP Time Exceeded from
their LAN address (``icmp_errors_use_inbound_ifaddr=0`` picks the address of
the interface the error leaves by), so the client sees 192.168.1.1 at TTL 1
and, in ``cgnat``, the carrier NAT's 100.64.0.1 at TTL 2.

Linux routers send a host at most 6 ICMP errors in a burst, then one a
second (``net.ipv4.icmp_ratelimit``), and other tests on the same pooled lab
(and the classifier's own hairpinning test) spend that budget. A run with a
gap is therefore repeated once a second has refilled it; a gap is never
read as an answer (the unit tests check that).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest

from natkit.lab import Lab

pytestmark = pytest.mark.lab

#: Runs before giving up on a path without gaps, and the pause between them.
TRIES = 3
ICMP_REFILL_S = 1.1


def classify(lab: Lab, *extra: str) -> dict[str, Any]:
    """``natkit classify --json`` in the client namespace, against one server."""
    server = "natkit" if "natkit" in lab.stun_servers else next(iter(lab.stun_servers))
    primary = lab.stun_servers[server].primary
    argv = [
        sys.executable,
        "-m",
        "natkit.cli",
        "classify",
        "--server",
        str(primary),
        "--json",
        *extra,
    ]
    lab.reset_state()
    result = lab.client_exec(argv, timeout=30)
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def classify_whole_path(lab: Lab) -> dict[str, Any]:
    """A run whose every hop answered (see the module doc on rate limits)."""
    for attempt in range(TRIES):
        if attempt:
            time.sleep(ICMP_REFILL_S)
        document = classify(lab)
        if all(hop["reply"] != "none" for hop in document["path"]):
            return document
    raise AssertionError(f"a hop stayed silent in {TRIES} runs: {document['path']}")


@pytest.mark.scenarios("cgnat")
def test_carrier_grade_nat_is_seen_on_the_path(lab: Lab) -> None:
    document = classify_whole_path(lab)
    assert [(h["ttl"], h["address"], h["kind"], h["reply"]) for h in document["path"]] == [
        (1, "192.168.1.1", "private", "time-exceeded"),
        (2, "100.64.0.1", "shared", "time-exceeded"),
        (3, document["servers"][0]["address"].split(":")[0], "public", "destination"),
    ]
    assert document["cgnat"] is True
    assert "100.64.0.1" in document["reasons"]["cgnat"]
    assert document["double_nat"] is True
    assert document["schema_version"] == 1
    # The hop probe left the RFC 5780 verdicts alone.
    assert lab.scenario.expected.mismatches(document) == []


@pytest.mark.scenarios("eim-apdf")
def test_one_nat_is_the_only_router_on_the_path(lab: Lab) -> None:
    document = classify_whole_path(lab)
    path = document["path"]
    assert (path[0]["address"], path[0]["kind"]) == ("192.168.1.1", "private")
    assert [h["reply"] for h in path] == ["time-exceeded", "destination"]
    assert document["cgnat"] is False
    assert document["double_nat"] is False
    assert "192.168.1.1" in document["reasons"]["cgnat"]


@pytest.mark.scenarios("no-nat")
def test_without_a_nat_nothing_private_is_on_the_path(lab: Lab) -> None:
    document = classify(lab)
    assert [h["reply"] for h in document["path"]] == ["destination"]
    assert all(h["kind"] == "public" for h in document["path"])
    assert (document["cgnat"], document["double_nat"]) == (False, False)


@pytest.mark.scenarios("cgnat")
def test_no_path_skips_the_probe(lab: Lab) -> None:
    document = classify(lab, "--no-path")
    assert document["path"] is None
    assert document["reasons"]["path"] == "not probed"
    assert document["cgnat"] is None  # nothing else on this path tells
