"""The lab's knot configuration, checked by knot itself (``knotc conf-check``)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from natkit.directory.tsig import TsigAlgorithm, TsigKey
from natkit.endpoint import Endpoint
from natkit.lab.knot import (
    KnotPlan,
    render_primary_config,
    render_secondary_config,
    render_zone,
)

PLAN = KnotPlan(
    zone="dir.natkit.test.",
    primary=Endpoint.parse("203.0.113.53:53"),
    secondary=Endpoint.parse("203.0.113.54:53"),
    update_key=TsigKey("natkit-update.", TsigAlgorithm.HMAC_SHA256, bytes(32)),
    transfer_key=TsigKey("natkit-transfer.", TsigAlgorithm.HMAC_SHA256, bytes(range(32))),
)
NODE = TsigKey("n1._wireguard._udp.dir.natkit.test.", TsigAlgorithm.HMAC_SHA256, b"n" * 32)
WITH_NODE = dataclasses.replace(PLAN, node_keys=(NODE,))


def test_primary_allows_updates_of_natkit_types_and_transfers_to_the_secondary() -> None:
    conf = render_primary_config(PLAN, Path("/tmp/x"))
    assert "action: update\n    update-type: [TXT, SRV, PTR, A, AAAA]" in conf
    assert "address: 203.0.113.54\n    key: natkit-transfer\n    action: transfer" in conf
    assert "notify: secondary\n    acl: [update, transfer]" in conf
    assert "update-owner" not in conf


def test_node_keys_are_confined_to_their_names() -> None:
    conf = render_primary_config(WITH_NODE, Path("/x"))
    assert "update-owner: key\n    update-owner-match: sub-or-equal" in conf
    assert (
        "update-type: PTR\n    update-owner: name\n    update-owner-name: _wireguard._udp" in conf
    )
    assert "acl: [update, transfer, node-own, node-ptr]" in conf
    assert "  - id: n1._wireguard._udp.dir.natkit.test\n" in conf


def test_zone_has_short_ttls_and_both_servers() -> None:
    zone = render_zone(PLAN)
    assert "$TTL 5" in zone
    assert "@    SOA ns1 hostmaster 1 60 10 3600 5" in zone
    assert "ns2  A   203.0.113.54" in zone


@pytest.mark.skipif(shutil.which("knotc") is None, reason="knot is not installed")
@pytest.mark.parametrize("which", ["primary", "secondary", "primary-with-nodes"])
def test_knot_accepts_the_configuration(tmp_path: Path, which: str) -> None:
    plan = WITH_NODE if which == "primary-with-nodes" else PLAN
    render = render_secondary_config if which == "secondary" else render_primary_config
    conf = tmp_path / "knot.conf"
    conf.write_text(render(plan, tmp_path))
    result = subprocess.run(
        ["knotc", "-c", str(conf), "conf-check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
