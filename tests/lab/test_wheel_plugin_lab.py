"""A project outside this repository installs natkit's wheel and uses the
pytest plugin's lab in its own test (issue 10).

1. The wheel is built from a copy of this tree (``pip wheel --no-deps
   --no-build-isolation``: offline, with the setuptools of natkit's test
   extra) and must hold the ``natkit`` package only: ``natkit.cli`` and
   ``natkit.simulations`` inside it (through the symlinks), no top-level
   ``cli`` or ``simulations``; its entry points are the ``natkit`` command
   and the ``pytest11`` plugin.
2. A fresh virtual environment in a temporary directory gets the wheel by
   ``pip install --no-index`` (natkit's files come from the wheel alone,
   and this checkout is not on its path). natkit's dependencies and pytest
   are offered to it from this checkout's environment through a ``.pth``
   line, so nothing is downloaded.
3. The project's test file is the README's pytest-plugin example, verbatim:
   it builds ``eim-apdf`` with ``natkit_lab`` and runs ``natkit classify``
   (the wheel's) in the client namespace; that pytest run must pass.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: What a copy of the tree for the build leaves out (caches, environments, outputs).
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
    "out", "results",
)  # fmt: skip

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("wheel-plugin")]


def plugin_example() -> str:
    """The ```python block of the README's ``## pytest plugin`` section."""
    text = README.read_text()
    section = text[text.index("## pytest plugin\n") :]
    section = section[: section.index("\n## ", 1)]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "README.md: the pytest plugin section has no example"
    return found.group(1)


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
    return result


def build_wheel(work: Path) -> Path:
    source = work / "src"
    shutil.copytree(ROOT, source, symlinks=True, ignore=NOT_SOURCES)
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(work / "dist"), str(source)]
    )  # fmt: skip
    (wheel,) = (work / "dist").glob("natkit-*.whl")
    return wheel


def check_wheel(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top = {name.split("/")[0] for name in names}
        dist_info = next(t for t in top if t.endswith(".dist-info"))
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    assert top == {"natkit", dist_info}, f"top-level entries besides natkit: {top}"
    for path in ("natkit/cli/main.py", "natkit/simulations/__init__.py",
                 "natkit/pytest_plugin.py", "natkit/py.typed"):  # fmt: skip
        assert path in names, f"{path} is not in the wheel"
    assert "natkit = natkit.cli.main:main" in entry_points
    assert "[pytest11]\nnatkit = natkit.pytest_plugin" in entry_points


def make_venv(work: Path, wheel: Path) -> Path:
    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "-q", str(wheel)]
    )  # fmt: skip
    # Dependencies (and pytest) from this environment, after the venv's own
    # site-packages: a plain path line, so this checkout's editable-install
    # .pth there is not read and natkit comes from the wheel alone.
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(run([str(python), "-c", purelib]).stdout.strip())
    (site / "deps-from-natkit-checkout.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv


@pytest.mark.usefixtures("lab_host")
def test_a_project_installs_the_wheel_and_uses_the_lab_fixture(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    check_wheel(wheel)
    venv = make_venv(tmp_path, wheel)
    python = str(venv / "bin" / "python")
    where = run([python, "-c", "import natkit, natkit.cli; print(natkit.__file__)"], cwd=tmp_path)
    assert where.stdout.startswith(str(venv)), where.stdout
    version = run([str(venv / "bin" / "natkit"), "--version"], cwd=tmp_path)
    assert version.stdout.startswith("natkit ")

    project = tmp_path / "project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_behind_nat.py").write_text(plugin_example())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        [python, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-rA", "-q"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
