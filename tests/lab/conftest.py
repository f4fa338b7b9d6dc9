"""Fixtures for tests that run on the real-kernel NAT lab.

* ``lab``: the lab of one scenario, clean (conntrack flushed, dynamic NAT
  state emptied, no loss, on every site). A test asking for it is
  parametrized over every single-site scenario, or over those named by
  ``@pytest.mark.scenarios(...)``, and is marked ``lab`` and
  ``xdist_group(<scenario>)`` so that ``pytest -n 4 --dist loadgroup`` keeps
  one scenario's tests (and its lab) in one worker. Scenarios with extra
  sites (``birthday-*``) run only the tests that name them: they exist for
  two-site tests, their client's NAT has a single-site twin (``apdm-apdf``),
  and a symmetric NAT with 1,000 ports gives one socket the same external
  port toward two destinations about once in 1,000 pairs, which would make
  the generic single-socket mapping checks waver. IPv6 scenarios
  (``dual-stack``, ``nat64*``) likewise run only the tests that name them:
  an IPv6-only client cannot be classified against IPv4 servers, and the
  dual-stack client's IPv4 NAT is ``eim-apdf``'s (``Scenario.generic``).
* ``lab_pool``: builds one lab per scenario lazily, shares it for the whole
  session, and tears all of them down at the end, also on failure.
* ``make_lab``: a private lab for a test that needs its own (torn down after
  the test); ``lab_host``: just the root/tools check, for tests that manage
  labs themselves.

The pool, the private labs and the checks are natkit's pytest plugin
(:mod:`natkit.pytest_plugin`, the fixtures ``natkit_lab_pool`` and
``natkit_lab`` that natkit's users get): one implementation for both.
Without root (or without any of the lab's tools) lab tests are skipped,
unless ``CI=true``: there a lab that cannot be built is a failure.
``NATKIT_LAB_SERVERS`` (comma-separated, may be empty) overrides which STUN
servers the pooled labs run; by default natkit's own server (when the
checkout has it) and coturn.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from natkit.lab import SCENARIOS, Lab
from natkit.pytest_plugin import LabPool, require_lab

__all__ = ["LabPool"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "scenarios(*names): run a test taking `lab` only for these scenarios"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "lab" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("scenarios")
    names = marker.args if marker else tuple(n for n, s in SCENARIOS.items() if s.generic)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: unknown scenarios {unknown}")
    metafunc.parametrize(
        "lab_scenario",
        [
            pytest.param(name, id=name, marks=[pytest.mark.lab, pytest.mark.xdist_group(name)])
            for name in names
        ],
    )


@pytest.fixture(scope="session")
def lab_pool(natkit_lab_pool: LabPool) -> LabPool:
    """The plugin's session pool, once every tool of the lab is here."""
    require_lab()
    return natkit_lab_pool


@pytest.fixture
def lab_scenario() -> str:
    """Overridden by parametrization (see ``pytest_generate_tests``)."""
    raise pytest.UsageError("lab_scenario is set by parametrizing tests that use `lab`")


@pytest.fixture
def lab(lab_pool: LabPool, lab_scenario: str) -> Lab:
    """The pooled lab of ``lab_scenario``, with NAT state reset and no loss."""
    instance = lab_pool.get(lab_scenario)
    if instance.loss_percent:
        instance.set_loss(0)
    instance.reset_state()
    return instance


@pytest.fixture
def lab_host() -> None:
    """Only the precondition check: for tests that build and remove labs themselves."""
    require_lab()


@pytest.fixture
def make_lab(lab_host: None, natkit_lab: Callable[..., Lab]) -> Callable[..., Lab]:
    """``make_lab(scenario, **Lab.up keywords)``: the plugin's ``natkit_lab``
    (a private lab, down after the test), once every tool of the lab is here."""
    return natkit_lab
