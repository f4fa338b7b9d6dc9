"""Fixtures the port-mapping tests share."""

from __future__ import annotations

import random

import pytest


@pytest.fixture
def gateway_address() -> str:
    """A loopback address for a fake gateway (any 127/8 address is loopback
    on Linux), so the machine's real gateway is never asked."""
    return f"127.0.0.{random.randint(2, 250)}"
