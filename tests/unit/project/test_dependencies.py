"""The declared dependencies say what natkit's code imports, and where.

Runtime ``dependencies`` must be exactly the third-party distributions that
natkit's installed code (``natkit``; ``natkit.cli`` and ``natkit.simulations`` live in the
``cli/`` and ``simulations/`` folders) imports; a
distribution only the tests import belongs in the ``test`` extra.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: Optional extras whose imports are guarded (plots need matplotlib only
#: then; the pytest plugin is only ever imported by pytest).
OPTIONAL = {"sim", "pytest"}


def _top_level_imports(folders: list[str]) -> set[str]:
    names: set[str] = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names


def _local_modules() -> set[str]:
    """natkit's packages and the helper modules its tests import by bare name."""
    names = {"natkit", "cli", "simulations", "tests", "benchmarks"}
    for folder in ("tests", "benchmarks"):
        names.update(path.stem for path in (ROOT / folder).rglob("*.py"))
    return names


def _distributions(modules: set[str]) -> set[str]:
    """Third-party distributions providing ``modules`` (stdlib and natkit's own dropped)."""
    mapping = packages_distributions()
    own = _local_modules()
    found: set[str] = set()
    for module in modules - own:
        if module in sys.stdlib_module_names:
            continue
        found.update(dist.lower() for dist in mapping.get(module, [module]))
    return found


def _names(requirements: list[str]) -> set[str]:
    # PEP 508: the name is the leading run of letters, digits, ".", "-", "_".
    return {re.split(r"[^A-Za-z0-9._-]", r, maxsplit=1)[0].lower() for r in requirements}


def _extras(name: str) -> set[str]:
    return _names(
        [r for r in PYPROJECT["project"]["optional-dependencies"][name] if "natkit" not in r]
    )


def test_runtime_dependencies_are_exactly_what_natkit_imports() -> None:
    imported = _distributions(_top_level_imports(["natkit", "cli", "simulations"]))
    optional = set().union(*(_extras(name) for name in OPTIONAL))
    declared = _names(PYPROJECT["project"]["dependencies"])
    assert imported - optional == declared


@pytest.mark.parametrize("folder", ["tests"])
def test_what_only_tests_import_is_in_the_test_extra(folder: str) -> None:
    runtime = _names(PYPROJECT["project"]["dependencies"]) | _extras("sim")
    imported = _distributions(_top_level_imports([folder, "benchmarks"]))
    assert imported - runtime <= _extras("test")
