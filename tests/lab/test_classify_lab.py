"""``natkit classify`` against real kernel NAT, the issue's acceptance test.

Every lab scenario is classified by the ``natkit`` command run inside the
client namespace, against natkit's own RFC 5780 server and against coturn's,
at 0 % and at 20 % loss each way, several times each, with NAT state reset
between runs. A single wrong or wavering verdict fails the test. coturn's
own RFC 5780 client must agree when pointed at natkit's server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import pytest
from peer_tools import natdiscovery, parse_verdicts

from natkit.aio.classify import classify as aio_classify
from natkit.endpoint import Endpoint
from natkit.lab import Lab
from natkit.probe.report import ClassificationReport, ProbeOutcome, report_to_dict

pytestmark = pytest.mark.lab

#: Runs per (scenario, server) at 0 % and at 20 % loss each way.
CLEAN_RUNS = 3
LOSSY_RUNS = 5
LOSS_PERCENT = 20.0


def classify(lab: Lab, server: str, *extra: str) -> dict[str, Any]:
    """Run ``natkit classify --json`` in the client namespace."""
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
    result = lab.client_exec(argv, timeout=30)
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


@pytest.mark.parametrize("server", ["natkit", "coturn"])
def test_classify_is_right_every_time_with_and_without_loss(lab: Lab, server: str) -> None:
    if server not in lab.stun_servers:
        pytest.skip(f"pooled labs run without {server} (NATKIT_LAB_SERVERS)")
    expected = lab.scenario.expected
    failures: list[str] = []
    try:
        for loss, runs in ((0.0, CLEAN_RUNS), (LOSS_PERCENT, LOSSY_RUNS)):
            lab.set_loss(loss)
            for run in range(runs):
                lab.reset_state()
                document = classify(lab, server)
                failures += [
                    f"loss {loss:g}% run {run}: {problem} ({document['reasons']})"
                    for problem in expected.mismatches(document)
                ]
    finally:
        lab.set_loss(0.0)
    assert not failures, "\n".join(failures)


def test_expect_turns_classify_into_a_ci_check(lab: Lab) -> None:
    """Exit 0 when expectations hold, 1 when they do not (2 is for undetermined)."""
    server = next(iter(lab.stun_servers))
    primary = str(lab.stun_servers[server].primary)
    expected = lab.scenario.expected.as_json()
    holds = ",".join(f"{k}={json.dumps(v).strip(chr(34))}" for k, v in expected.items())
    base = [sys.executable, "-m", "natkit.cli", "classify", "--server", primary]
    assert lab.client_exec([*base, "--expect", holds], timeout=30).returncode == 0
    lab.reset_state()
    wrong = "udp_blocked=false" if expected["udp_blocked"] else "udp_blocked=true"
    assert lab.client_exec([*base, "--expect", wrong], timeout=30).returncode == 1


def test_coturn_client_agrees_against_natkit_server(lab: Lab) -> None:
    """turnutils_natdiscovery -m -f, pointed at natkit's server, finds the
    scenario's mapping and filtering (it has no verdict when UDP is blocked)."""
    if "natkit" not in lab.stun_servers:
        pytest.skip("pooled labs run without natkit's server (NATKIT_LAB_SERVERS)")
    lab.reset_state()
    output = natdiscovery(lab, lab.stun_servers["natkit"].primary, "-m", "-f")
    expected = lab.scenario.expected
    if expected.udp_blocked:
        assert parse_verdicts(output) == {}, output
    else:
        want = {"Mapping": expected.mapping.value, "Filtering": expected.filtering.value}
        assert parse_verdicts(output) == want, output


@pytest.mark.scenarios("eim-apdf-hairpin", "eim-apdf")
def test_coturn_client_hairpin_against_natkit_server(lab: Lab) -> None:
    lab.reset_state()
    output = natdiscovery(lab, lab.stun_servers["natkit"].primary, "-H")
    assert ("successful hairpinning" in output) is lab.scenario.expected.hairpin, output


@pytest.mark.scenarios("eim-apdf")
def test_classify_human_output_names_the_verdicts(lab: Lab) -> None:
    primary = str(lab.stun_servers["natkit"].primary)
    result = lab.client_exec(
        [sys.executable, "-m", "natkit.cli", "classify", "-s", primary], timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "port-restricted cone" in result.stdout
    assert "APDF" in result.stdout


def _plain_servers(lab: Lab, port: int) -> list[subprocess.Popen[str]]:
    """Two plain RFC 5389 natkit servers (one address each) in the STUN host."""
    servers = []
    for address in (lab.stun_servers["natkit"].primary, lab.stun_servers["natkit"].alternate):
        argv = [sys.executable, "-m", "natkit.cli", "stun-server", "--bind", str(address.address)]
        process = lab.popen(
            "stun", [*argv, "--port", str(port), "--no-tcp"], stdout=subprocess.PIPE, text=True
        )
        servers.append(process)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
    return servers


@pytest.mark.scenarios("eim-apdf", "apdm-apdf")
def test_plain_rfc5389_servers_give_mapping_and_say_filtering_is_unknown(lab: Lab) -> None:
    """Without OTHER-ADDRESS: mapping from two servers' views, filtering unknown."""
    port = 3490
    servers = _plain_servers(lab, port)
    try:
        lab.reset_state()
        natkit = lab.stun_servers["natkit"]
        argv = [sys.executable, "-m", "natkit.cli", "classify", "--json"]
        argv += [
            "-s",
            f"{natkit.primary.address}:{port}",
            "-s",
            f"{natkit.alternate.address}:{port}",
        ]
        result = lab.client_exec(argv, timeout=30)
        document = json.loads(result.stdout)
    finally:
        for process in servers:
            process.terminate()
            process.wait(timeout=10)
    assert document["filtering"] == "unknown"
    assert document["servers"][0]["rfc5780"] is False
    if lab.scenario.name == "eim-apdf":
        assert document["mapping"] == "EIM"
    else:
        assert document["mapping"] == "unknown"  # dependent, but ADM or APDM needs RFC 5780
        assert "ADM from APDM" in document["reasons"]["mapping"]
    assert document["port_allocation"] == lab.scenario.expected.port_allocation.value


CLASSIC_VERDICTS = {
    "eim-eif": "Independent Mapping, Independent Filter",
    "eim-apdf": "Independent Mapping, Port Dependent Filter",
    "apdm-apdf": "Dependent Mapping, random port",
}


@pytest.mark.scenarios(*CLASSIC_VERDICTS)
def test_debian_rfc3489_client_is_answered_correctly_by_natkit_server(lab: Lab) -> None:
    """Debian's ``stun`` (RFC 3489, no magic cookie) gets CHANGED-ADDRESS and
    honoured CHANGE-REQUESTs from natkit's server, so its verdict is right."""
    lab.reset_state()
    server = lab.stun_servers["natkit"].primary
    output = lab.client_exec(["stun", f"{server.address}:{server.port}"], timeout=30).stdout
    assert CLASSIC_VERDICTS[lab.scenario.name] in output, output


#: Issue 9, item 3: runs after a conntrack flush at 20 % loss each way...
STALLED_RUNS = 20
#: ...each with the event loop blocked this long just after the first burst
#: goes out (the answers wait in the kernel's socket buffers, as they did
#: while the command imported dnspython beside the run).
STALL_SECONDS = 1.0


async def _classify_with_a_stall(server: Endpoint) -> ClassificationReport:
    loop = asyncio.get_running_loop()
    loop.call_later(0.003, time.sleep, STALL_SECONDS)
    return await aio_classify([server])


@pytest.mark.scenarios("eim-apdf")
def test_a_start_up_stall_costs_no_verdict(lab: Lab) -> None:
    """Before the fix, 3 runs in 4 here ran the whole 5 s and said
    ``filtering: unknown`` with a false-negative probability of 1e-6."""
    server = lab.stun_servers["natkit" if "natkit" in lab.stun_servers else "coturn"].primary
    expected = lab.scenario.expected
    failures: list[str] = []
    inconclusive = 0
    try:
        lab.set_loss(LOSS_PERCENT)
        for run in range(STALLED_RUNS):
            lab.reset_state()
            report = lab.call_in("client", lambda: asyncio.run(_classify_with_a_stall(server)))
            document = report_to_dict(report)
            failures += [f"run {run}: {problem}" for problem in expected.mismatches(document)]
            inconclusive += sum(o.outcome is ProbeOutcome.INCONCLUSIVE for o in report.observations)
    finally:
        lab.set_loss(0.0)
    assert not failures, "\n".join(failures)
    assert inconclusive == 0
