"""``natkit keygen``, ``natkit pubkey`` and ``natkit rendezvous`` as commands."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from natkit.aio.rendezvous_client import RendezvousChannel
from natkit.identity import PrivateKey, seal
from natkit.identity.keyfile import load_private_key
from natkit.signal import ChannelState
from natkit.signal.backoff import Backoff

ROOT = Path(__file__).resolve().parents[3]
LIVENESS = 10.0


def natkit(
    *argv: str, stdin: bytes | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[bytes]:
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.run(
        [sys.executable, "-m", "natkit.cli", *argv],
        input=stdin,
        cwd=ROOT,
        timeout=30,
        check=False,
        **kwargs,
    )


def test_keygen_into_a_shell_redirect_makes_the_file_private(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    # What `natkit keygen > node.key` does under umask 022: a 0644 file as stdout.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    os.fchmod(fd, 0o644)
    try:
        result = natkit("keygen", stdout=fd)
    finally:
        os.close(fd)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = load_private_key(path)
    public = natkit("pubkey", stdin=path.read_bytes())
    assert public.returncode == 0
    assert public.stdout.decode() == f"{key.public_key}\n"


def test_keygen_output_file(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    assert natkit("keygen", "-o", str(path)).returncode == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = natkit("keygen", "-o", str(path))
    assert again.returncode == 1
    assert b"already exists" in again.stderr
    assert b"Traceback" not in again.stderr


def test_keygen_to_a_full_disk_says_so_without_a_traceback() -> None:
    with open("/dev/full", "wb") as full:
        result = natkit("keygen", stdout=full)
    assert result.returncode == 1
    assert result.stderr == b"natkit keygen: cannot write the key: No space left on device\n"


def test_keygen_output_into_a_missing_directory_cannot_be_written(tmp_path: Path) -> None:
    path = tmp_path / "nonexistent" / "node.key"
    result = natkit("keygen", "-o", str(path))
    assert result.returncode == 1
    assert (
        result.stderr
        == f"natkit keygen: {path}: cannot write: No such file or directory\n".encode()
    )


def test_keygen_to_a_pipe_prints_one_line() -> None:
    result = natkit("keygen")
    assert result.returncode == 0
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 1
    assert len(base64.b64decode(lines[0], validate=True)) == 32


@pytest.mark.parametrize("junk", [b"", b"hello\n", b"\xff" * 44, b"A" * 1000])
def test_pubkey_refuses_junk_without_a_traceback(junk: bytes) -> None:
    result = natkit("pubkey", stdin=junk)
    assert result.returncode == 1
    assert result.stderr.startswith(b"natkit pubkey: standard input: ")
    assert b"Traceback" not in result.stderr
    assert result.stdout == b""


@pytest.mark.parametrize(
    "argv",
    [
        ["rendezvous"],
        ["rendezvous", "--listen", "nonsense"],
        ["rendezvous", "--listen", "127.0.0.1:99999"],
        ["rendezvous", "--listen", "127.0.0.1:0", "--rate", "0"],
        ["rendezvous", "--listen", "127.0.0.1:0", "--queue-bytes", "10"],
        ["keygen", "--bogus"],
    ],
)
def test_bad_usage_exits_64(argv: list[str]) -> None:
    result = natkit(*argv)
    assert result.returncode == 64, result.stderr
    assert b"Traceback" not in result.stderr


def test_a_port_in_use_exits_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = natkit("rendezvous", "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert b"cannot listen" in result.stderr
    assert b"Traceback" not in result.stderr


def test_help_lists_the_commands() -> None:
    out = natkit("--help").stdout.decode()
    for name in ("keygen", "pubkey", "rendezvous"):
        assert name in out


class RendezvousProcess:
    """``natkit rendezvous --json-line`` as a child process."""

    def __init__(self, listen: str) -> None:
        self.listen = listen
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[dict[str, Any]] = []

    async def start(self) -> int:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "natkit.cli",
            "rendezvous",
            "--listen",
            self.listen,
            "--json-line",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        first = await self.read_line()
        assert first["event"] == "listening"
        return int(first["listen"].rsplit(":", 1)[1])

    async def read_line(self) -> dict[str, Any]:
        assert self.process is not None
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), LIVENESS)
        assert raw, "the server ended"
        line: dict[str, Any] = json.loads(raw)
        self.lines.append(line)
        return line

    async def read_until(self, event: str, count: int = 1) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        while len(seen) < count:
            line = await self.read_line()
            if line["event"] == event:
                seen.append(line)
        return seen

    async def stop(self, signum: int) -> tuple[int, bytes]:
        assert self.process is not None
        self.process.send_signal(signum)
        out, err = await asyncio.wait_for(self.process.communicate(), LIVENESS)
        for raw in out.splitlines():
            self.lines.append(json.loads(raw))
        assert self.process.returncode is not None
        return self.process.returncode, err

    def kill_quietly(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()


async def exchange(
    sender: RendezvousChannel,
    key: PrivateKey,
    receiver: RendezvousChannel,
    recipient: PrivateKey,
    plaintext: bytes,
) -> bytes:
    sealed = seal(key, recipient.public_key, plaintext)
    await sender.send(recipient.public_key, sealed)

    async def first() -> bytes:
        async for envelope in receiver.receive():
            return envelope.sealed
        raise AssertionError("receive() ended")

    assert await asyncio.wait_for(first(), LIVENESS) == sealed
    return sealed


async def test_rendezvous_command_json_lines_and_a_kill_restart() -> None:
    alice_key, bob_key = PrivateKey.generate(), PrivateKey.generate()
    first = RendezvousProcess("127.0.0.1:0")
    second: RendezvousProcess | None = None
    fast = Backoff(initial=0.05, cap=0.2)
    try:
        port = await first.start()
        alice = RendezvousChannel("127.0.0.1", port, alice_key, backoff=fast)
        bob = RendezvousChannel("127.0.0.1", port, bob_key, backoff=fast)
        async with alice, bob:
            await asyncio.wait_for(asyncio.gather(alice.wait_up(), bob.wait_up()), LIVENESS)
            connected = await first.read_until("connected", 2)
            assert {line["key"] for line in connected} == {
                str(alice_key.public_key),
                str(bob_key.public_key),
            }
            secret = b"ufrag=secret-ufrag pwd=secret-password"
            sealed = await exchange(alice, alice_key, bob, bob_key, secret)
            # The server dies without a word (SIGKILL), then comes back on the same port.
            assert first.process is not None
            first.process.kill()
            await first.process.wait()
            await asyncio.wait_for(_until(lambda: alice.state is ChannelState.CONNECTING), LIVENESS)
            second = RendezvousProcess(f"127.0.0.1:{port}")
            assert await second.start() == port
            await asyncio.wait_for(asyncio.gather(alice.wait_up(), bob.wait_up()), LIVENESS)
            await second.read_until("connected", 2)  # both proved their keys again
            await exchange(bob, bob_key, alice, alice_key, secret)
        await second.read_until("disconnected", 2)
        code, err = await second.stop(signal.SIGTERM)
        assert code == 0
        assert b"Traceback" not in err
    finally:
        first.kill_quietly()
        if second is not None:
            second.kill_quietly()
    lines = first.lines + second.lines
    for line in lines:
        assert line["schema"] == "natkit.rendezvous"
        assert line["schema_version"] == 1
        assert line["time"].endswith("Z")
    stopped = second.lines[-1]
    assert stopped["event"] == "stopped"
    assert stopped["signal"] == "SIGTERM"
    assert stopped["counters"]["relayed"] == 1
    disconnected = [line for line in second.lines if line["event"] == "disconnected"]
    assert {line["reason"] for line in disconnected} == {"closed"}
    assert set(disconnected[0]) >= {
        "key",
        "remote",
        "relayed",
        "delivered",
        "dropped",
        "duration_s",
    }
    # Never message contents, in any encoding.
    text = "\n".join(json.dumps(line) for line in lines)
    for needle in (secret.decode(), base64.b64encode(sealed).decode(), sealed.hex()):
        assert needle not in text


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.01)
