"""``natkit.classify()`` gives the report ``natkit classify`` prints (issue 10).

The library call and the command run back to back in the client namespace
of a real NAT, and their JSON documents must agree on every verdict, on the
NAT64 discovery (``nat64``: a real tayga NAT64 with unbound's DNS64) and on
the path the hop probe found (``cgnat``: the carrier NAT on the way), and
both must be what the lab is (so that they cannot agree on nothing).

Routers rate-limit their ICMP errors (see ``test_path_lab.py``): a run with
a silent hop is repeated once the budget has refilled.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest

from natkit.cli.classify import VERDICT_KEYS
from natkit.lab import Lab

pytestmark = pytest.mark.lab

LIBRARY = """
import asyncio, json, sys

import natkit
from natkit.probe.report import report_to_dict

server, dns = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
print(json.dumps(report_to_dict(asyncio.run(natkit.classify(server, dns_server=dns)))))
"""
TRIES = 3
ICMP_REFILL_S = 1.1


def run(lab: Lab, argv: list[str]) -> dict[str, Any]:
    """One classification whose every hop answered, as a JSON document."""
    for attempt in range(TRIES):
        if attempt:
            time.sleep(ICMP_REFILL_S)
        lab.reset_state()
        result = lab.client_exec(argv, timeout=60)
        assert result.returncode == 0, result.stderr
        document: dict[str, Any] = json.loads(result.stdout)
        if all(hop["reply"] != "none" for hop in document["path"] or ()):
            return document
    raise AssertionError(f"a hop stayed silent in {TRIES} runs: {document['path']}")


def comparable(document: dict[str, Any]) -> dict[str, Any]:
    """What must not differ between two runs of one classification."""
    nat64 = document["nat64"]
    return {
        **{key: document[key] for key in VERDICT_KEYS},
        "nat64": (nat64["status"], nat64["prefixes"], nat64["dns_server"]),
        "path": [(h["ttl"], h["address"], h["kind"], h["reply"]) for h in document["path"]],
        "reasons": sorted(document["reasons"]),
    }


@pytest.mark.scenarios("nat64", "cgnat")
def test_library_classify_is_the_commands_report(lab: Lab) -> None:
    if lab.nat64_prefix is not None:
        if "coturn" not in lab.stun_servers:
            pytest.skip("needs coturn's IPv6 address")
        server, dns = str(lab.stun_servers["coturn"].ipv6), [str(lab.dns_server)]
    else:
        kind = "natkit" if "natkit" in lab.stun_servers else next(iter(lab.stun_servers))
        server, dns = str(lab.stun_servers[kind].primary), []
    command = run(
        lab,
        [sys.executable, "-m", "natkit.cli", "classify", "-s", server, "--json"]
        + [flag for address in dns for flag in ("--dns", address)],
    )
    time.sleep(ICMP_REFILL_S)  # the command's hop probe spent the routers' ICMP budget
    library = run(lab, [sys.executable, "-c", LIBRARY, server, *dns])
    assert comparable(library) == comparable(command)
    assert library["path"], "the library ran no hop probe"
    if lab.nat64_prefix is not None:
        assert library["nat64"]["status"] == "found"
        assert library["nat64"]["prefixes"] == [str(lab.nat64_prefix)]
    else:
        assert library["cgnat"] is True
        assert [hop["address"] for hop in library["path"]][:2] == ["192.168.1.1", "100.64.0.1"]
        assert lab.scenario.expected.mismatches(library) == []
