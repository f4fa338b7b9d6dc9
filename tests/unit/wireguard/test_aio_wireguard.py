"""WireGuardControl runs ``wg`` and types its failures.

A stand-in ``wg`` (a Python script reached through ``command_prefix``)
answers from a script of behaviours, so every failure path runs without
root; the lab test drives the real ``wg`` against wireguard-go.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from wireguard_testlib import DUMP, PEER_V4, PRIVATE, PUBLIC

from natkit.aio.wireguard import WireGuardControl
from natkit.endpoint import Endpoint
from natkit.wireguard.commands import PeerConfig
from natkit.wireguard.errors import (
    NoSuchInterfaceError,
    WgCommandError,
    WgNotInstalledError,
    WgOutputError,
)
from natkit.wireguard.keys import WireGuardKey

FAKE_WG = textwrap.dedent(
    """
    import os, sys, time
    args = sys.argv[1:]
    assert args[0] == "wg", args
    mode = os.environ.get("FAKE_WG_MODE", "ok")
    with open(os.environ["FAKE_WG_LOG"], "a") as log:
        log.write(" ".join(args) + "\\n")
    if mode == "missing":
        sys.stderr.write("Unable to access interface: Protocol not supported\\n")
        sys.exit(1)
    if mode == "hang":
        time.sleep(30)
    if mode == "junk":
        sys.stdout.write("garbage\\n")
        sys.exit(0)
    if mode == "binary":
        sys.stdout.buffer.write(b"\\xff\\xfe\\n")
        sys.exit(0)
    if mode == "other":
        sys.stderr.write("Key is not the correct length or format\\n")
        sys.exit(1)
    if args[1:] == ["show", "wg0", "dump"]:
        sys.stdout.write(os.environ["FAKE_WG_DUMP"])
    elif args[1:] == ["show", "wg0", "latest-handshakes"]:
        sys.stdout.write(os.environ["FAKE_WG_HANDSHAKES"])
    elif args[1:] == ["show", "wg0", "private-key"]:
        sys.stdout.write(os.environ["FAKE_WG_PRIVATE"] + "\\n")
    """
)


@pytest.fixture
def fake_wg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[tuple[str, ...], Path]:
    script = tmp_path / "fake_wg.py"
    script.write_text(FAKE_WG)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("FAKE_WG_LOG", str(log))
    monkeypatch.setenv("FAKE_WG_DUMP", DUMP)
    monkeypatch.setenv("FAKE_WG_HANDSHAKES", f"{PEER_V4}\t1733352000\n")
    monkeypatch.setenv("FAKE_WG_PRIVATE", PRIVATE)
    return (sys.executable, str(script)), log


async def test_status_handshakes_and_set_endpoint(
    fake_wg: tuple[tuple[str, ...], Path],
) -> None:
    prefix, log = fake_wg
    control = WireGuardControl("wg0", command_prefix=prefix)
    status = await control.status()
    assert status.listen_port == 51820
    assert len(status.peers) == 2
    key = WireGuardKey.parse(PEER_V4)
    assert await control.latest_handshakes() == {key: 1733352000}
    await control.set_endpoint(key, Endpoint.parse("198.51.100.2:51820"))
    assert log.read_text().splitlines() == [
        "wg show wg0 dump",
        "wg show wg0 latest-handshakes",
        f"wg set wg0 peer {PEER_V4} endpoint 198.51.100.2:51820",
    ]


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("missing", NoSuchInterfaceError),
        ("other", WgCommandError),
        ("junk", WgOutputError),
        ("binary", WgCommandError),
    ],
)
async def test_failures_are_typed(
    fake_wg: tuple[tuple[str, ...], Path],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    error: type[Exception],
) -> None:
    monkeypatch.setenv("FAKE_WG_MODE", mode)
    control = WireGuardControl("wg0", command_prefix=fake_wg[0])
    with pytest.raises(error):
        await control.status()


async def test_a_hung_wg_is_killed(
    fake_wg: tuple[tuple[str, ...], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_WG_MODE", "hang")
    control = WireGuardControl("wg0", command_prefix=fake_wg[0], timeout=0.5)
    with pytest.raises(WgCommandError, match="timed out") as caught:
        await control.latest_handshakes()
    assert caught.value.returncode is None


async def test_missing_program() -> None:
    control = WireGuardControl("wg0", command_prefix=("/nonexistent/nsenter",))
    with pytest.raises(WgNotInstalledError, match="nsenter"):
        await control.status()


async def test_the_private_key_and_a_peer_set(
    fake_wg: tuple[tuple[str, ...], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix, log = fake_wg
    control = WireGuardControl("wg0", command_prefix=prefix)
    key = await control.private_key()
    assert str(key.public_key) == PUBLIC
    assert PRIVATE not in repr(key)
    peer = WireGuardKey.parse(PEER_V4)
    await control.set_peer(PeerConfig(peer, persistent_keepalive=0))
    assert log.read_text().splitlines()[-1] == f"wg set wg0 peer {PEER_V4} persistent-keepalive off"
    for text, problem in (("(none)", "the interface has no private key"), ("junk", "not a key")):
        monkeypatch.setenv("FAKE_WG_PRIVATE", text)
        with pytest.raises(WgOutputError) as caught:
            await control.private_key()
        assert caught.value.reason == problem
