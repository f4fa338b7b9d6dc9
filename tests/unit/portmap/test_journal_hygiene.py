"""The lease journal touches no machine-wide state unless asked, keeps
nothing for requests a gateway never answered, and drops entries from
another network once (issue 9 item 5). Gateways here are loopback fakes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_mapper import pcp_reply, serve

from natkit.aio.portmap import LeaseJournal, PortMapper, release_orphans
from natkit.endpoint import Endpoint
from natkit.portmap.journal import JOURNAL_ENV, JournalEntry
from natkit.portmap.mapper import PortMapperConfig
from natkit.portmap.mapping import MappingProtocol, TransportProtocol
from natkit.portmap.pcp_client import PcpConfig
from natkit.portmap.timing import PcpRetransmission

DEAD_OWNER = 999_999_999  # no such pid


def config(*protocols: MappingProtocol) -> PortMapperConfig:
    return PortMapperConfig(
        protocols=protocols,
        probe_timeout=0.4,
        pcp=PcpConfig(retransmission=PcpRetransmission(irt=0.1)),
        listen_announcements=False,
        release_timeout=1.0,
    )


def orphan(internal: str, protocol: MappingProtocol = MappingProtocol.PCP) -> JournalEntry:
    return JournalEntry("orphan", protocol, TransportProtocol.UDP,
                        Endpoint.parse("127.0.0.1:9"), Endpoint.parse(internal),
                        nonce="00" * 12, owner_pid=DEAD_OWNER)  # fmt: skip


async def test_a_library_port_mapper_keeps_no_journal_and_releases_nobody(
    gateway_address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``journal=``, no file is written (not even the default one's
    directory) and another process's leftover lease is left alone."""
    machine = tmp_path / "machine" / "portmap.json"
    monkeypatch.setenv(JOURNAL_ENV, str(machine))
    leftover = LeaseJournal(machine)
    leftover.add(orphan("127.0.0.1:40000"))
    before = sorted(p.name for p in machine.parent.iterdir())
    transport, server = await serve(pcp_reply(), gateway_address)
    try:
        port = transport.get_extra_info("sockname")[1]
        async with PortMapper(51820, gateway=Endpoint.parse(f"{gateway_address}:{port}"),
                              local_address="127.0.0.1",
                              config=config(MappingProtocol.PCP)) as mapper:  # fmt: skip
            assert mapper.mapping is not None
            assert mapper.result is not None
            assert mapper.result.released == ()
            assert sorted(p.name for p in machine.parent.iterdir()) == before
    finally:
        transport.close()
    assert [e.id for e in leftover.entries()] == ["orphan"]
    assert sorted(p.name for p in machine.parent.iterdir()) == before
    assert len(server.requests) == 2  # the MAP and its deletion; no release attempt


async def test_a_request_never_answered_leaves_nothing_in_the_journal(
    gateway_address: str, tmp_path: Path
) -> None:
    journal = LeaseJournal(tmp_path / "portmap.json")
    transport, server = await serve(lambda data: [], gateway_address)  # silent
    try:
        port = transport.get_extra_info("sockname")[1]
        mapper = PortMapper(51820, gateway=Endpoint.parse(f"{gateway_address}:{port}"),
                            local_address="127.0.0.1", journal=journal,
                            config=config(MappingProtocol.PCP))  # fmt: skip
        result = await mapper.start()
        assert result.mapping is None
        await mapper.close()
    finally:
        transport.close()
    assert server.requests  # it was asked...
    assert journal.entries() == []  # ...and never answered: nothing to release later
    assert not journal.path.exists()


async def test_an_entry_from_another_network_is_reported_once_and_dropped(
    tmp_path: Path,
) -> None:
    journal = LeaseJournal(tmp_path / "portmap.json")
    journal.add(orphan("192.0.2.55:51820"))  # not an address of this host
    [outcome] = await release_orphans(journal, timeout=0.5)
    assert outcome.stale
    assert not outcome.released
    assert outcome.detail == (
        "stale: 192.0.2.55 is not an address of this host (a lease from another network); dropped"
    )
    assert journal.entries() == []
    assert await release_orphans(journal, timeout=0.5) == []


def test_the_command_reports_a_stale_entry_and_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "portmap.json"
    LeaseJournal(path).add(orphan("192.0.2.55:51820", MappingProtocol.NAT_PMP))
    argv = [
        sys.executable,
        "-m",
        "natkit.cli.portmap",
        "--release",
        "--journal",
        str(path),
        "--json",
    ]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert first.returncode == 0, first.stderr
    [item] = json.loads(first.stdout)["released"]
    assert (item["protocol"], item["released"], item["stale"]) == ("nat-pmp", False, True)
    again = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert json.loads(again.stdout) == {"released": [], "corrupt_journal": None}


def test_release_says_a_corrupt_journal_is_corrupt_and_keeps_it(tmp_path: Path) -> None:
    # It read as empty: "no leases of killed runs", exit 0, and the next
    # write replaced it, forgetting leases that may still be at a gateway.
    path = tmp_path / "portmap.json"
    path.write_text('{"leases": [{"id": ', encoding="utf-8")
    argv = [sys.executable, "-m", "natkit.cli.portmap", "--release", "--journal", str(path)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"natkit portmap: lease journal {path} is corrupt (not JSON: Expecting value:"
        f" line 1 column 20 (char 19)); kept as {path}.corrupt\n"
    )
    assert Path(f"{path}.corrupt").read_text(encoding="utf-8") == '{"leases": [{"id": '
    assert not path.exists()
    path.write_text("[]", encoding="utf-8")  # another one: the first copy is kept
    result = subprocess.run([*argv, "--json"], capture_output=True, text=True, timeout=30,
                            check=False)  # fmt: skip
    assert result.returncode == 1
    assert json.loads(result.stdout)["corrupt_journal"] == {
        "path": str(path),
        "problem": "not a lease journal: no list of leases",
        "kept_at": f"{path}.corrupt.1",
    }


def test_the_entries_of_a_corrupt_journal_that_parse_carry_on(tmp_path: Path) -> None:
    path = tmp_path / "portmap.json"
    good = orphan("192.0.2.55:51820").to_dict()
    text = json.dumps({"version": 1, "leases": [good, {"id": "x"}]})
    path.write_text(text, encoding="utf-8")
    journal = LeaseJournal(path)
    assert [e.id for e in journal.entries()] == ["orphan"]
    assert journal.corrupt is not None
    assert journal.corrupt.problem == "1 of 2 leases do not parse (lease 2: KeyError 'protocol')"
    assert Path(f"{path}.corrupt").read_text(encoding="utf-8") == text
    assert [e.id for e in LeaseJournal(path).entries()] == ["orphan"]  # a journal again
