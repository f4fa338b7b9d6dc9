"""Core packages stay sans-IO (issue 10): no event loop, socket, thread,
process, clock or file I/O, and nothing from ``natkit.aio``, in a core
package or in anything natkit-internal it imports.

The walk reads source (``ast``), so it sees imports inside functions too
(a lazy import is still an import), and follows every ``natkit.*`` import,
including the packages ``__init__`` a dotted import runs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

#: Standard-library modules a core must not import.
FORBIDDEN_MODULES = frozenset(
    {
        "asyncio",
        "socket",
        "selectors",
        "threading",
        "subprocess",
        "time",
        "multiprocessing",
        "concurrent",
        "shutil",
        "tempfile",
        "fcntl",
        "mmap",
        "select",
        "ssl",
    }
)
#: natkit packages a core must not import.
FORBIDDEN_NATKIT = ("natkit.aio", "natkit.lab")
#: Calls that read or write files (``open(...)``, ``path.read_text()``, ``os.remove(...)``).
FILE_CALLS = frozenset(
    {
        "open",
        "read_text",
        "write_text",
        "read_bytes",
        "write_bytes",
        "mkdir",
        "unlink",
        "rmdir",
        "remove",
        "replace",
        "rename",
        "touch",
        "chmod",
        "fsync",
    }
)
#: ``os.<name>(...)`` calls that move bytes through a descriptor.
OS_IO_CALLS = frozenset({"read", "write", "open", "fdopen", "pipe", "sendfile"})
#: Receivers of those names that are not files (``str.replace``, ``dataclasses.replace``).
NOT_FILES = frozenset({"dataclasses", "text", "s", "str", "name", "value", "line"})

CORE_PACKAGES = [
    "natkit.stun",
    "natkit.probe",
    "natkit.gather",
    "natkit.birthday",
    "natkit.portmap",
    "natkit.ice",
    "natkit.turn",
    "natkit.signal",
    "natkit.directory",
    "natkit.wireguard",
]


@dataclass(frozen=True, slots=True)
class Finding:
    module: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.what}"


def module_file(name: str) -> Path | None:
    """The source file of natkit module ``name`` (a package's ``__init__``)."""
    base = ROOT.joinpath(*name.split("."))
    if base.is_dir() and (base / "__init__.py").exists():
        return base / "__init__.py"
    candidate = base.with_suffix(".py")
    return candidate if candidate.exists() else None


def package_modules(package: str) -> list[str]:
    directory = ROOT.joinpath(*package.split("."))
    names = []
    for path in sorted(directory.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


#: Modules whose ``if TYPE_CHECKING:`` imports are not followed: natkit's
#: root package names its public API's types there, and imports them only
#: when a caller first asks for one (a core never does). Everywhere else a
#: type-only import of natkit.aio counts as one.
TYPE_ONLY_EXEMPT = frozenset({"natkit"})


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """The ids of the nodes inside ``if TYPE_CHECKING:`` blocks."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            inside.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return inside


def _imports(module: str, tree: ast.Module) -> Iterator[tuple[int, str]]:
    package = (
        module
        if module_file(module) and module_file(module).name == "__init__.py"
        else module.rpartition(".")[0]
    )  # type: ignore[union-attr]
    skipped = _type_checking_nodes(tree) if module in TYPE_ONLY_EXEMPT else set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            yield node.lineno, prefix
            for alias in node.names:  # ``from natkit.x import y``: y may be a module
                yield node.lineno, f"{prefix}.{alias.name}"


def _file_calls(module: str, tree: ast.Module) -> Iterator[Finding]:
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "open":
            yield Finding(module, node.lineno, "open()")
        elif (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "os"
            and func.attr in OS_IO_CALLS
        ):
            yield Finding(module, node.lineno, f"os.{func.attr}()")
        elif isinstance(func, ast.Attribute) and func.attr in FILE_CALLS:
            receiver = func.value
            name = receiver.id if isinstance(receiver, ast.Name) else None
            if name in NOT_FILES or isinstance(receiver, ast.Constant):
                continue
            if func.attr in {"replace", "remove"} and name != "os":
                continue  # str.replace / list.remove / dataclasses.replace
            yield Finding(module, node.lineno, f".{func.attr}()")


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def walk(package: str) -> list[Finding]:
    """Everything forbidden that ``package`` imports or does, transitively."""
    findings: dict[tuple[str, int], Finding] = {}  # one per line: the first reason
    seen: set[str] = set()
    pending = [*package_modules(package)]
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_file(module)
        if path is None:
            continue
        tree = ast.parse(path.read_text(), str(path))
        found = list(_file_calls(module, tree))
        for line, imported in _imports(module, tree):
            top = imported.split(".")[0]
            if top in FORBIDDEN_MODULES or imported.startswith(FORBIDDEN_NATKIT):
                found.append(Finding(module, line, f"imports {imported}"))
            elif top == "natkit" and module_file(imported) is not None:
                pending.extend([*_parents(imported), imported])
        for finding in found:
            findings.setdefault((finding.module, finding.line), finding)
    return sorted(findings.values(), key=lambda f: (f.module, f.line))


@pytest.mark.parametrize("package", CORE_PACKAGES)
def test_core_package_is_sans_io(package: str) -> None:
    findings = walk(package)
    assert not findings, "\n".join(str(f) for f in findings)


def test_the_walk_sees_what_it_must() -> None:
    """The walker itself can fail: natkit.aio is caught by every rule."""
    findings = [str(f) for f in walk("natkit.aio")]
    assert any("imports asyncio" in f for f in findings)
    assert any("imports socket" in f for f in findings)
    assert any("imports natkit.aio" in f for f in findings)
    assert any("imports ssl" in f for f in findings)
    assert any("imports select" in f for f in findings)
    assert any("os.read()" in f for f in findings)
    assert any("os.write()" in f for f in findings)
