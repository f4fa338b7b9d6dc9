"""``natkit``'s entry point: what every command shares (cli/main.py)."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from natkit.cli import main as cli_main


def test_ctrl_c_while_a_command_is_imported_exits_130_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The lab's and the connect node's imports take a while: Ctrl-C then
    # printed a traceback from build_parser.
    def interrupted(name: str, package: str | None = None) -> ModuleType:
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib, "import_module", interrupted)
    try:
        code = cli_main.main(["lab", "list"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped main() (a traceback for the user)")
    assert code == 130
    assert capsys.readouterr() == ("", "")
