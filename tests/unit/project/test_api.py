"""natkit's top-level API (issue 10): the names ``import natkit`` offers.

* the lazy table, the ``TYPE_CHECKING`` imports (what type checkers see) and
  the run-time objects agree, and each has a docstring;
* ``import natkit`` imports nothing but the exception tree (``natkit
  classify`` start-up pays for it);
* no exported name is also a module of natkit's (``import natkit.gather.x``
  would replace the function ``natkit.gather`` with the package);
* the exceptions form one tree under ``NatkitError``;
* the entry points work end to end on loopback (``serve_stun`` and
  ``classify``; the rest run against the real lab in
  ``tests/lab/test_readme_lab.py``).
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import natkit
from natkit.probe.report import RunStatus
from natkit.stun.codec import binding_request, encode_message, parse_message

ROOT = Path(__file__).resolve().parents[3]
ENTRY_POINTS = ("classify", "gather_candidates", "map_port", "serve_stun", "probe_birthday")
ROOT_ERRORS = ("NatkitError", "LocalProtocolError", "RemoteProtocolError", "NatkitTimeout")


def _type_checking_imports() -> dict[str, str]:
    """name -> module, from the ``if TYPE_CHECKING:`` block of natkit/__init__.py."""
    tree = ast.parse((ROOT / "natkit" / "__init__.py").read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name):
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom)
                assert stmt.module is not None
                for alias in stmt.names:
                    # ``import X as X``: the explicit re-export mypy wants.
                    assert alias.asname == alias.name, ast.unparse(stmt)
                    found[alias.name] = stmt.module
    return found


def test_the_table_and_the_type_checking_imports_agree() -> None:
    assert _type_checking_imports() == natkit._EXPORTS


@pytest.mark.parametrize("name", sorted(natkit._EXPORTS))
def test_every_export_is_its_modules_object_and_documented(name: str) -> None:
    module = importlib.import_module(natkit._EXPORTS[name])
    value = getattr(natkit, name)
    assert value is getattr(module, name)
    assert name in natkit.__all__
    assert name in dir(natkit)
    assert inspect.getdoc(value), f"natkit.{name} has no docstring"


def test_the_entry_points_are_there_and_async() -> None:
    for name in ENTRY_POINTS:
        function = getattr(natkit, name)
        # A coroutine function, or an ``async with`` context manager factory.
        assert inspect.iscoroutinefunction(function) or hasattr(function, "__wrapped__"), name
        assert inspect.getdoc(function)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'clasify'"):
        natkit.clasify  # noqa: B018


def test_import_natkit_loads_only_the_errors() -> None:
    code = "import sys, natkit; print(sorted(m for m in sys.modules if m.startswith('natkit')))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "['natkit', 'natkit.errors']"


def _natkit_module_names() -> set[str]:
    return {info.name for info in pkgutil.iter_modules(natkit.__path__)}


def test_no_export_is_also_a_submodule() -> None:
    """An export cannot share its name with a package (as ``natkit.gather``):
    importing ``natkit.gather.plan`` sets the attribute ``natkit.gather`` to
    the package, over the function. (That is why the connect core is
    ``natkit.ice`` and ``natkit.connect`` the entry point.)"""
    clashes = sorted(set(natkit._EXPORTS) & _natkit_module_names())
    assert not clashes, f"exports named like natkit's own modules: {clashes}"


def test_the_clash_check_sees_a_package() -> None:
    assert {"gather", "ice", "cli", "simulations"} <= _natkit_module_names()


def test_one_exception_tree() -> None:
    for name in ROOT_ERRORS[1:]:
        assert issubclass(getattr(natkit, name), natkit.NatkitError)
    assert issubclass(natkit.NatkitTimeout, TimeoutError)
    exported = [
        value
        for name in natkit.__all__
        if isinstance(value := getattr(natkit, name), type) and issubclass(value, BaseException)
    ]
    assert len(exported) >= len(ROOT_ERRORS) + 2
    for error in exported:
        assert issubclass(error, natkit.NatkitError), error
        assert inspect.getdoc(error)
    assert issubclass(natkit.StunUnansweredError, natkit.NatkitTimeout)
    assert issubclass(natkit.InvalidEndpoint, natkit.LocalProtocolError)


async def test_serve_stun_on_a_free_port_answers_from_the_port_it_bound() -> None:
    async with natkit.serve_stun("127.0.0.1", port=0) as server:
        (endpoint,) = server.endpoints
        assert endpoint.port != 0
        loop = asyncio.get_running_loop()
        answers: asyncio.Queue[bytes] = asyncio.Queue()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                answers.put_nowait(data)

        transport, _ = await loop.create_datagram_endpoint(
            Client, remote_addr=(str(endpoint.address), endpoint.port)
        )
        try:
            transport.sendto(encode_message(binding_request(bytes(12))))
            answer = parse_message(await asyncio.wait_for(answers.get(), 5))
        finally:
            transport.close()
        assert answer.response_origin == endpoint  # not port 0
        # TCP listens on the very port UDP bound.
        _, writer = await asyncio.open_connection(str(endpoint.address), endpoint.port)
        writer.close()
        await writer.wait_closed()


async def test_classify_against_serve_stun_on_loopback() -> None:
    # nat64=False: discovery would ask the system's resolver, off this host.
    async with natkit.serve_stun("127.0.0.1", port=0) as server:
        config = natkit.ClassifierConfig(timeout=3.0)
        report = await natkit.classify(str(server.endpoints[0]), config=config, nat64=False)
    assert report.status is RunStatus.OK
    assert report.behind_nat is False
    assert report.nat64 is None
    assert report.path is not None  # the hop probe ran: a hop limit is the default


async def test_classify_without_a_hop_probe_has_no_path() -> None:
    async with natkit.serve_stun("127.0.0.1", port=0) as server:
        config = natkit.ClassifierConfig(timeout=2.0, hop_limit=0)
        report = await natkit.classify(server.endpoints, config=config, nat64=False)
    assert report.status is RunStatus.OK
    assert report.path is None


async def test_classify_names_a_bad_dns_server_before_any_traffic() -> None:
    with pytest.raises(natkit.LocalProtocolError, match="bad DNS server"):
        await natkit.classify("127.0.0.1:9", dns_server="not-an-ip")


async def test_classify_names_a_tls_server() -> None:
    with pytest.raises(natkit.LocalProtocolError, match="not TLS"):
        await natkit.classify("stuns:127.0.0.1:5349", nat64=False)
