"""``cli/`` and ``simulations/`` are ``natkit.cli`` and ``natkit.simulations``.

The folders stay at the top of the repository, and ``natkit/cli`` and
``natkit/simulations`` link to them, so the wheel installs them inside the
``natkit`` package, never as top-level packages that would collide with
other distributions' (issue 10). In a checkout ``import cli`` still works
(the repository root is on the path), so this test keeps every reference
on the ``natkit.`` names: code, tests, benchmarks, docs and ``-m`` command
lines.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
FOLDERS = ("cli", "simulations")
SOURCES = ("natkit", "cli", "simulations", "tests", "benchmarks")
#: ``-m cli``, ``"-m", "simulations.plots"``, ``find_spec("cli...")``.
TEXT_PATTERNS = (
    re.compile(r"-m\s+(?:cli|simulations)\b(?![/\w-])"),
    re.compile(r"""["']-m["'],\s*["'](?:cli|simulations)\b"""),
    re.compile(r"""find_spec\(\s*["'](?:cli|simulations)\b"""),
)


def _python_files() -> list[Path]:
    return [path for folder in SOURCES for path in sorted((ROOT / folder).rglob("*.py"))]


def test_natkit_links_to_the_folders() -> None:
    for folder in FOLDERS:
        link = ROOT / "natkit" / folder
        assert link.is_symlink(), f"natkit/{folder} is not a symlink"
        assert link.readlink() == Path("..") / folder


def test_no_code_imports_the_folders_as_top_level_packages() -> None:
    found = []
    for path in _python_files():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            if any(name.split(".")[0] in FOLDERS for name in names):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"import cli/simulations; want natkit.cli/natkit.simulations: {found}"


def test_no_command_line_runs_the_folders_as_top_level_packages() -> None:
    docs = [ROOT / "README.md", *ROOT.glob("docs/*.md")]
    docs += [path for folder in SOURCES for path in sorted((ROOT / folder).rglob("*.md"))]
    files = [*_python_files(), *docs, ROOT / "scripts" / "install"]
    found = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in files
        if path != Path(__file__).resolve()
        for pattern in TEXT_PATTERNS
        for match in pattern.finditer(path.read_text())
    ]
    assert not found, f"-m cli/simulations; want -m natkit.cli/natkit.simulations: {found}"


def test_the_checks_see_what_they_must() -> None:
    samples = ['[sys.executable, "-m", "cli", "classify"]', "python -m simulations.plots --out"]
    samples.append('importlib.util.find_spec("cli.stun_server")')
    assert all(any(p.search(s) for p in TEXT_PATTERNS) for s in samples)
    assert not any(p.search("python -m natkit.simulations.plots") for p in TEXT_PATTERNS)
    assert not any(p.search("--no-cli --no-dtls") for p in TEXT_PATTERNS)
