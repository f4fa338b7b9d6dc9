"""Guards for the whole suite.

No test may touch the machine's lease journal (``/var/lib/natkit/portmap.json``
as root): a run once left a lab client's lease there, and every later
``natkit portmap`` on the machine failed to release it. So every test gets
its own default journal in this run's temporary directory (subprocesses
inherit it through ``$NATKIT_PORTMAP_JOURNAL``), and a test that leaves a
lease in it fails: whatever a test maps, it must release.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from natkit.aio.portmap import LeaseJournal
from natkit.portmap.journal import JOURNAL_ENV


@pytest.fixture(autouse=True)
def own_lease_journal(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    name = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
    path = tmp_path_factory.getbasetemp() / "lease-journals" / f"{name}.json"
    monkeypatch.setenv(JOURNAL_ENV, str(path))
    yield
    if path.exists():
        left = LeaseJournal(path).entries()
        assert not left, f"the test left leases in its lease journal: {left}"
