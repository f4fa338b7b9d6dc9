"""Shared by the command tests: run ``python -m ...`` and a loopback STUN server."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

from natkit.aio.stun_server import AsyncStunServer
from natkit.endpoint import Endpoint
from natkit.stun.server import ServerConfig


async def run(*argv: str) -> tuple[int, str, str]:
    """``python *argv`` as a subprocess: exit status, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 30)
    except TimeoutError:
        process.kill()  # a command that never ends must not outlive its test
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def stun_server() -> AsyncIterator[Endpoint]:
    """natkit's plain RFC 5389 server on 127.0.0.1, any port."""
    server = AsyncStunServer(ServerConfig.basic("127.0.0.1", 0))
    await server.start()
    try:
        yield server.endpoints[0]
    finally:
        await server.close()
