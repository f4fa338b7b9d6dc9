"""Birthday hole punching through real kernel NAT (scenarios ``birthday-*``).

Site A (the lab's client) is behind ``masquerade fully-random`` (APDM);
site B (``client-b``) behind plain masquerade (EIM, port-preserving) in
``birthday-one-hard``, or both behind ``masquerade to :40000-40999
fully-random`` in ``birthday-both-hard``. natkit's asyncio driver runs both
sides in-process, each on a thread inside its site's namespace
(``birthday_runs``), many times over with NAT state reset between runs, and
the real ``natkit birthday probe`` command connects the sites once.

What is checked:

* the hit rate agrees with the exact model (``natkit.birthday``): an exact
  two-sided binomial test at :data:`ALPHA`, not a fixed count; and, run by
  run, the model's premise: the hard NAT holds k mappings in its range and
  the search ends at the first probe to land on one (read from conntrack);
* every hit is an authenticated PROBE one way and its ACK back, naming the
  other site's public address (the easy side's mapped endpoint learnt by
  natkit's STUN client, in one-hard mode);
* no side ever sends more probes than its budget, or more paced packets in
  any one-second window than its rate, counted from the cores' own send
  times; each router's nftables counter of packets toward the other site
  equals what that side's core sent, to the packet.

Time to punch (a sprayer's first probe to its hit, against 1.2 x probes /
rate) is a speed target: ``benchmarks/birthday_lab.py`` measures it, with
the CPUs to itself; here, beside other lab tests, it would only be noise.

Rates are 250/s here (the default stays 100/s). Each paced send wakes a
little late and the no-burst pacing never wins that back, so the harness
runs each side as a host of its own would (``birthday_runs``): a
SCHED_FIFO thread on a ``select()`` loop with microsecond timers, so that
the rate cap is what limits the pace; ``benchmarks/birthday_lab.py`` shows
the other settings. The file takes under a minute with ``-n 4``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import select
import subprocess
import sys
import time

import pytest
from birthday_runs import (
    Run,
    Setup,
    binomial_p_value,
    mapped_ports,
    problems,
    run_once,
    stun_server,
)

from natkit.aio.birthday import learn_mapped_endpoint
from natkit.birthday import Mode
from natkit.endpoint import Endpoint
from natkit.lab import Lab, get_scenario
from natkit.lab.plan import PEER_ADDRESSES
from natkit.lab.scenarios import BOTH_HARD_PORTS

pytestmark = pytest.mark.lab

_HARD_PORTS = get_scenario("birthday-one-hard").nats[0].udp_ports
assert _HARD_PORTS is not None  # fully random: the kernel's 1024-65535

#: k = 256 mappings, 300 probes: P(hit) = 69.7 %, so the binomial test can
#: see a shift either way. The hard side opens at 1,000/s (its own cap), the
#: easy side sprays at 250/s: ~1.3 s per run.
ONE_HARD = Setup(
    Mode.ONE_HARD, ports=256, budget=300, rate=250.0, port_range=_HARD_PORTS, open_rate=1000.0
)
ONE_HARD_RUNS = 24
#: 10^6 port pairs, 1,520 probes per side: P(hit) = 90.1 %; ~3.4 s per run.
BOTH_HARD = Setup(Mode.BOTH_HARD, ports=8, budget=1520, rate=250.0, port_range=BOTH_HARD_PORTS)
BOTH_HARD_RUNS = 6
#: Two-sided significance of the binomial tests: one false alarm in 1,000 CI
#: runs per test (at 0.01 the suite's two tests failed about one run in 50,
#: seen at p = 0.006). A model off by half still fails: 24 one-hard runs at
#: 35 % instead of 69.7 % give p < 0.001 about half the time.
ALPHA = 0.001

CLI = [sys.executable, "-m", "natkit.cli", "birthday", "probe"]


def run_many(lab: Lab, setup: Setup, runs: int) -> tuple[list[Run], list[str]]:
    """``runs`` searches on a clean lab each; the runs and every broken rule."""
    results: list[Run] = []
    broken: list[str] = []
    for index in range(runs):
        lab.reset_state()
        run = run_once(lab, setup, seed=index)
        results.append(run)
        broken += [f"run {index}: {line}" for line in problems(run, lab)]
    return results, broken


def assert_agrees_with_model(runs: list[Run], setup: Setup) -> None:
    hits = sum(run.hit for run in runs)
    model = setup.success_probability
    p_value = binomial_p_value(hits, len(runs), model)
    assert p_value >= ALPHA, (
        f"{hits}/{len(runs)} hits, the model says {model:.3f}"
        f" (two-sided binomial p = {p_value:.4f} < {ALPHA})"
    )


# ----------------------------------------------------------- the two sites


def in_site(lab: Lab, role: str, server: Endpoint, local: Endpoint) -> tuple[Endpoint, Endpoint]:
    """natkit's STUN client in ``role``'s namespace: (bound, mapped)."""
    return lab.call_in(role, lambda: asyncio.run(learn_mapped_endpoint(server, local)))


@pytest.mark.scenarios("birthday-one-hard", "birthday-both-hard")
def test_each_site_nats_as_specified(lab: Lab) -> None:
    """Site B maps like its spec, site A hands out random ports in its range
    per destination, and unsolicited packets leave no conntrack entry."""
    server = next(iter(lab.stun_servers.values()))
    site_a, site_b = lab.site(), lab.site("b")
    spec_a, spec_b = lab.scenario.nats[0], lab.scenario.sites[0].nats[0]
    ports = spec_a.udp_ports
    assert ports is not None

    # One inside endpoint, the server's four endpoints: what they saw tells the mapping.
    for site, spec in ((site_a, spec_a), (site_b, spec_b)):
        bound, _ = in_site(lab, site.client_role, server.primary, Endpoint.of("0.0.0.0", 0))
        seen = [in_site(lab, site.client_role, dest, bound)[1] for dest in server.all()]
        assert {m.address for m in seen} == {site.public_address}
        if spec.udp_ports is None:  # port-preserving EIM
            assert set(seen) == {Endpoint(site.public_address, bound.port)}
        else:
            # APDM: a random port of the range per destination. A small range
            # may repeat one (1 in 1,000 per pair); all four alike, never.
            assert len({m.port for m in seen}) > 1, seen
            assert all(m.port in spec.udp_ports for m in seen), seen

    mapped = [
        in_site(lab, site_a.client_role, server.primary, Endpoint.of("0.0.0.0", 0))[1].port
        for _ in range(16)
    ]
    assert len(set(mapped)) == len(mapped)
    assert all(port in ports for port in mapped), mapped

    # Unsolicited packets are dropped before conntrack confirms them: the
    # birthday search depends on it (natkit.lab.nat, rule 4).
    stranger = str(PEER_ADDRESSES[0])
    with lab.socket("peer") as sock:
        sock.bind((stranger, 0))
        for site in (site_a, site_b):
            for port in (40500, 50500):
                sock.sendto(b"unsolicited", (str(site.public_address), port))
    time.sleep(0.05)
    for site in (site_a, site_b):
        listing = lab.exec(site.router_roles[0], ["conntrack", "-L", "-s", stranger])
        assert f"src={stranger}" not in listing.stdout, listing.stdout


# ------------------------------------------------------- repeated searches


@pytest.mark.scenarios("birthday-one-hard")
def test_one_hard_hit_rate_budget_and_rate(lab: Lab) -> None:
    runs, broken = run_many(lab, ONE_HARD, ONE_HARD_RUNS)
    assert not broken, "\n".join(broken)
    assert_agrees_with_model(runs, ONE_HARD)


@pytest.mark.scenarios("birthday-one-hard")
def test_one_hard_hits_at_the_first_probe_to_a_mapped_port(lab: Lab) -> None:
    """The model's premise, run by run: the hard NAT holds k distinct
    mappings inside its port range, and the search ends at the first probe
    that lands on one of them, not a probe sooner or later."""
    for seed in range(4):
        lab.reset_state()
        run = run_once(lab, ONE_HARD, seed=100 + seed)
        mapped = mapped_ports(lab)
        assert len(mapped) == ONE_HARD.ports
        assert all(port in ONE_HARD.port_range for port in mapped)
        ports = [probe.remote.port for probe in run.b.probes]
        first = next((n for n, port in enumerate(ports, start=1) if port in mapped), None)
        found = run.b.found
        if first is None:
            assert found is None, seed
            continue
        assert found is not None, seed
        # The hit is that very probe's port: no earlier probe got through and
        # no later one won. The prober may have sent a probe or two more while
        # the answer was on its way (paced sends go on until it arrives, more
        # so on a loaded machine), never fewer than ``first``.
        assert found.pair.remote.port == ports[first - 1], seed
        assert first <= found.stats.probes_sent <= first + 3, seed


@pytest.mark.scenarios("birthday-both-hard")
def test_both_hard_hit_rate_budget_and_rate(lab: Lab) -> None:
    runs, broken = run_many(lab, BOTH_HARD, BOTH_HARD_RUNS)
    assert not broken, "\n".join(broken)
    assert_agrees_with_model(runs, BOTH_HARD)


# ------------------------------------------------------------- the command


def read_mapped(process: subprocess.Popen[str], timeout: float) -> Endpoint:
    """The ``mapped endpoint IP:PORT`` line the easy side prints to stderr."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    seen = []
    while (remaining := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([process.stderr], [], [], remaining)
        if not readable:
            break
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if "mapped endpoint" in line:
            return Endpoint.parse(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no mapped endpoint from the easy side: {''.join(seen)!r}")


@pytest.mark.scenarios("birthday-one-hard")
def test_natkit_birthday_probe_connects_the_sites(lab: Lab) -> None:
    """The real command, one process per site: the easy side learns its
    mapping by STUN and prints it; the hard side aims at it."""
    site_a = lab.site()
    # 256 mappings, 1,200 probes: P(hit) = 99.2 %.
    common = ["--key", secrets.token_hex(32), "--session", secrets.token_hex(8)]
    common += ["--ports", "256", "--rate", "500", "--budget", "1200", "--json"]
    common += ["--answer-timeout", "0.5"]
    easy_argv = [*CLI, "--role", "easy", "--peer", str(site_a.public_address)]
    # Two seconds: time for the hard process to start and open its mappings.
    easy_argv += ["--stun", str(stun_server(lab)), "--start-delay", "2", "--seed", "7"]
    processes: list[subprocess.Popen[str]] = []
    try:
        easy = lab.popen("client-b", [*easy_argv, *common], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
        processes.append(easy)
        mapped = read_mapped(easy, timeout=15)
        hard_argv = [*CLI, "--role", "hard", "--peer", str(mapped), "--duration", "8"]
        hard = lab.popen("client", [*hard_argv, *common], stdout=subprocess.PIPE, text=True)
        processes.append(hard)
        outputs = [p.communicate(timeout=30)[0] for p in (easy, hard)]
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=10)
    assert [easy.returncode, hard.returncode] == [0, 0], outputs
    easy_doc, hard_doc = (json.loads(out) for out in outputs)
    assert easy_doc["outcome"] == hard_doc["outcome"] == "hit"
    assert (easy_doc["via"], hard_doc["via"]) == ("ack", "probe")
    assert easy_doc["mapped"] == str(mapped)
    assert mapped.address == lab.site("b").public_address
    assert hard_doc["pair"]["remote"] == str(mapped)
    assert Endpoint.parse(easy_doc["pair"]["local"]).port == mapped.port  # preserved
    winner = Endpoint.parse(easy_doc["pair"]["remote"])
    assert winner.address == site_a.public_address
    assert winner.port in ONE_HARD.port_range
    assert easy_doc["stats"]["probes_sent"] <= 1200
    assert hard_doc["stats"]["opens_sent"] == 256
    assert hard_doc["stats"]["probes_sent"] == 0


def test_binomial_p_value() -> None:
    # Exact values: 10 fair coins, and the tails the tests use.
    assert binomial_p_value(5, 10, 0.5) == pytest.approx(1.0)
    assert binomial_p_value(0, 10, 0.5) == pytest.approx(2 / 1024)
    assert binomial_p_value(2, 10, 0.5) == pytest.approx(112 / 1024)
    assert binomial_p_value(6, 6, 0.9) == pytest.approx(1.0)
    assert binomial_p_value(1, 6, 0.9) < ALPHA < binomial_p_value(2, 6, 0.9)
