"""What ``natkit lab up`` adds beside its commands (no lab is built here)."""

from __future__ import annotations

from typing import Any

import pytest

from natkit.cli import lab as cli_lab


def test_the_commands_name_the_natkit_to_use_when_it_is_not_on_the_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def which(name: str, path: Any = None) -> str | None:
        return None if path is None else f"{path}/{name}"

    monkeypatch.setattr(cli_lab.shutil, "which", which)
    note = cli_lab._path_note()
    assert note is not None
    assert note.startswith("note: natkit is not on the PATH here: use /")
    assert note.endswith("/natkit in these commands")
    monkeypatch.setattr(cli_lab.shutil, "which", lambda name, path=None: "/usr/bin/natkit")
    assert cli_lab._path_note() is None
