"""``natkit connect --wireguard``: the flags it replaces are refused, exit 64 with why."""

from __future__ import annotations

import pytest

from natkit.cli.main import main


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--key", "k.key"], "--key does not go with --wireguard"),
        (["--traffic", "10"], "--traffic does not go with --wireguard"),
        (["--port", "51820"], "--port and --local-address do not go with --wireguard"),
    ],
)
def test_flags_wireguard_replaces_are_refused(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["connect", "--wireguard", "wg0", "--rendezvous", "127.0.0.1:7000", *extra]
    assert main(argv) == 64
    assert message in capsys.readouterr().err
