"""natkit's pytest plugin (``natkit.pytest_plugin``, entry point ``pytest11``).

Each test runs pytest on a small test file of its own in a fresh directory,
the way a project using natkit would, through the installed entry point:

* a run whose tests use no natkit fixture loads the plugin but not the lab;
* as a user without root, ``natkit_lab`` skips with the reason, and fails
  under ``CI=true`` (the project's rule, now every user's). "Without root"
  is the process's effective uid as the plugin reads it (``os.geteuid``),
  set to nobody's in the child pytest: running it as the real nobody would
  depend on nobody being allowed to read this checkout's virtualenv, which a
  clone in a root-only directory (as CI makes) does not allow.

* as root, a lab ``natkit_lab`` built is torn down also when the test fails.

The plugin building a lab from an installed wheel is proven in
``tests/lab/test_wheel_plugin_lab.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from natkit.pytest_plugin import lab_unavailable_reason, require_lab

NOBODY = 65534

#: Runs pytest with ``os.geteuid()`` answering ``NOBODY``'s uid.
AS_NOBODY = (
    "import os, sys, pytest; os.geteuid = lambda: {uid}; sys.exit(pytest.main(sys.argv[1:]))"
)

UNUSED = """
import sys


def test_plugin_loaded_but_lab_not_imported(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("natkit")
    assert "natkit.lab" not in sys.modules
    assert "natkit" not in sys.modules or "natkit.aio" not in sys.modules
"""

FAILS_IN_A_LAB = """
from pathlib import Path


def test_fails_in_a_lab(natkit_lab):
    lab = natkit_lab("no-nat", servers=())
    Path("run_id").write_text(lab.run_id)
    assert False, "failing on purpose"
"""

USES_LAB = """
def test_builds_a_lab(natkit_lab):
    natkit_lab("eim-apdf")
"""


@pytest.fixture
def project() -> Iterator[Path]:
    """An empty directory for one pytest run."""
    directory = Path(tempfile.mkdtemp(prefix="nk-plugin-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def run_pytest(
    project: Path, test: str, *, env: dict[str, str], user: int | None = None
) -> subprocess.CompletedProcess[str]:
    (project / "test_it.py").write_text(test)
    (project / "test_it.py").chmod(0o644)
    options = ["-p", "no:cacheprovider", "-rsf", "-q"]
    argv = [sys.executable, "-m", "pytest", *options]
    if user is not None:
        argv = [sys.executable, "-c", AS_NOBODY.format(uid=user), *options]
    return subprocess.run(
        argv, cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI", "PYTEST_"))}
    return {**env, "HOME": "/tmp", **extra}


def test_a_run_without_natkit_fixtures_loads_no_lab(project: Path) -> None:
    result = run_pytest(project, UNUSED, env=clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_without_root_natkit_lab_skips_with_the_reason(project: Path) -> None:
    result = run_pytest(project, USES_LAB, env=clean_env(), user=NOBODY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "the NAT lab needs root" in result.stdout


def test_without_root_under_ci_natkit_lab_fails(project: Path) -> None:
    result = run_pytest(project, USES_LAB, env=clean_env(CI="true"), user=NOBODY)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout  # the fixture's setup failed
    assert "CI=true and the NAT lab needs root" in result.stdout


@pytest.mark.lab
@pytest.mark.xdist_group("plugin")
def test_a_failing_test_still_has_its_lab_torn_down(project: Path) -> None:
    require_lab()
    result = run_pytest(project, FAILS_IN_A_LAB, env=clean_env())
    assert result.returncode == 1, result.stdout + result.stderr
    assert "failing on purpose" in result.stdout
    run_id = (project / "run_id").read_text()
    namespaces = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert run_id
    assert f"nk-{run_id}" not in namespaces


def test_a_missing_tool_is_named_with_its_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "miniupnpd" else "/bin/x")
    assert lab_unavailable_reason() == (
        "the NAT lab needs 'miniupnpd' (Debian package 'miniupnpd-nftables')"
    )
    assert lab_unavailable_reason(["ip", "nft"]) is None
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert lab_unavailable_reason(()) == "the NAT lab needs root to create network namespaces"
