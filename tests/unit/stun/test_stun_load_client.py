"""The benchmark's load client (``benchmarks/stun_load.c``) decides what
counts as an answer: it must count natkit's answers as valid and reject
answers with the wrong transaction ID, type or mapped port. Built with gcc
here as the benchmark builds it; skipped without gcc."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from natkit.aio.stun_server import AsyncStunServer
from natkit.stun.server import ServerConfig

SOURCE = Path(__file__).resolve().parents[3] / "benchmarks" / "stun_load.c"

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="recvmmsg/sendmmsg: Linux"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the load client"),
]


@pytest.fixture(scope="module")
def load_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    binary = tmp_path_factory.mktemp("load") / "stun_load"
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-Werror", "-o", str(binary), str(SOURCE)], check=True, timeout=120
    )
    return binary


def _run(binary: Path, port: int) -> dict[str, float]:
    result = subprocess.run(
        [str(binary), "--server", f"127.0.0.1:{port}", "--sockets", "4", "--window", "2",
         "--duration", "0.3", "--warmup", "0.1", "--loss-ms", "50"],
        capture_output=True, check=True, timeout=30, text=True,
    )  # fmt: skip
    counts: dict[str, float] = json.loads(result.stdout)
    return counts


async def test_counts_natkit_answers_as_valid(load_client: Path) -> None:
    server = AsyncStunServer(ServerConfig.basic("127.0.0.1", 0), tcp=False)
    await server.start()
    try:
        port = server.endpoints[0].port
        process = await asyncio.create_subprocess_exec(
            str(load_client), "--server", f"127.0.0.1:{port}", "--sockets", "4",
            "--window", "2", "--duration", "0.3", "--warmup", "0.1",
            stdout=subprocess.PIPE,
        )  # fmt: skip
        out, _ = await process.communicate()
    finally:
        await server.close()
    counts = json.loads(out)
    assert counts["valid"] > 0
    assert counts["invalid"] == 0


@contextlib.contextmanager
def _responder(rewrite: Callable[[bytes, tuple[str, int]], bytes]) -> Iterator[int]:
    """A hand-made UDP responder on loopback answering with ``rewrite``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(2048)
            except TimeoutError:
                continue
            sock.sendto(rewrite(data, peer), peer)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        sock.close()


def _success(data: bytes, peer: tuple[str, int], *, kind: bytes = b"\x01\x01") -> bytes:
    port = (peer[1] ^ 0x2112).to_bytes(2, "big")
    address = bytes(a ^ b for a, b in zip(socket.inet_aton(peer[0]), data[4:8], strict=True))
    return kind + b"\x00\x0c" + data[4:20] + b"\x00\x20\x00\x08\x00\x01" + port + address


@pytest.mark.parametrize(
    "rewrite",
    [
        lambda data, peer: _success(data[:8] + bytes(12) + data[20:], peer),
        lambda data, peer: _success(data, peer, kind=b"\x01\x11"),
        lambda data, peer: _success(data, (peer[0], peer[1] ^ 1)),
        lambda data, peer: _success(data, peer)[:-4],
    ],
    ids=["other-transaction", "error-response", "wrong-port", "short"],
)
def test_rejects_wrong_answers(
    load_client: Path, rewrite: Callable[[bytes, tuple[str, int]], bytes]
) -> None:
    with _responder(rewrite) as port:
        counts = _run(load_client, port)
    assert counts["valid"] == 0
    assert counts["invalid"] > 0


def test_counts_a_right_answer(load_client: Path) -> None:
    """The same hand-made responder, answering right: the control case."""
    with _responder(_success) as port:
        counts = _run(load_client, port)
    assert counts["valid"] > 0
    assert counts["invalid"] == 0
