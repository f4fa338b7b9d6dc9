"""``natkit.portmap`` is a sans-IO core: no module it imports, directly or
through other natkit modules, may touch asyncio, sockets, threads,
processes, the clock or files, nor import ``natkit.aio``.

Read from the source (``ast``), not by importing, so a forbidden import
inside a function or under ``TYPE_CHECKING`` counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import natkit

ROOT = Path(natkit.__file__).parent
CORE = "natkit.portmap"
#: Modules whose import means I/O, threads, or a clock.
FORBIDDEN = frozenset(
    {
        "asyncio",
        "socket",
        "selectors",
        "threading",
        "subprocess",
        "time",
        "multiprocessing",
        "concurrent",
        "fcntl",
        "os",
        "pathlib",
        "shutil",
        "tempfile",
        "io",
        "signal",
        "urllib.request",
        "http",
        "natkit.aio",
        "natkit.statefile",
        "natkit.lab",
    }
)
#: Calls that do file I/O without an import.
FORBIDDEN_CALLS = frozenset({"open", "read_text", "write_text", "read_bytes", "write_bytes"})


def module_path(name: str) -> Path | None:
    relative = Path(*name.split(".")[1:])
    for candidate in (ROOT / relative / "__init__.py", (ROOT / relative).with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def imports_of(name: str, tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = name.rsplit(".", node.level)[0]
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def forbidden(module: str) -> bool:
    return any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN)


def walk(start: str) -> dict[str, list[str]]:
    """Every natkit module reachable from ``start`` -> its offences."""
    offences: dict[str, list[str]] = {}
    todo, seen = [start], set()
    for path in sorted((ROOT / "portmap").glob("*.py")):
        todo.append(f"{CORE}.{path.stem}" if path.stem != "__init__" else CORE)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_path(name)
        if path is None:
            continue  # an attribute imported from a module, not a module
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found = offences.setdefault(name, [])
        for module in sorted(imports_of(name, tree)):
            if forbidden(module):
                found.append(f"imports {module}")
            elif module.startswith("natkit."):
                todo.append(module)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if called in FORBIDDEN_CALLS:
                    found.append(f"calls {called}() at line {node.lineno}")
    return {name: found for name, found in offences.items() if found}


def test_portmap_core_imports_no_io() -> None:
    assert walk(CORE) == {}


def test_the_walk_finds_what_it_forbids(tmp_path: Path) -> None:
    """The check itself can fail: a module with each kind of offence is caught."""
    source = "import asyncio\nfrom natkit.aio.driver import CoreRunner\nopen('x')\n"
    tree = ast.parse(source)
    modules = imports_of("natkit.portmap.x", tree)
    assert {m for m in modules if forbidden(m)} == {
        "asyncio",
        "natkit.aio.driver",
        "natkit.aio.driver.CoreRunner",
    }
    assert not forbidden("natkit.portmap.lease")
    assert not forbidden("asyncio_like")
