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

Without root (or without the lab's tools) lab tests are skipped, unless
``CI=true``: there a lab that cannot be built is a failure.
``NATKIT_LAB_SERVERS`` (comma-separated, may be empty) overrides which STUN
servers the pooled labs run; by default natkit's own server (when the
checkout has it) and coturn.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from natkit.lab import SCENARIOS, Lab, ServerKind
from natkit.lab.servers import natkit_server_available

IN_CI = os.environ.get("CI", "").lower() == "true"

#: Programs lab tests need, with the Debian package that provides them.
LAB_TOOLS = {
    "ip": "iproute2",
    "nft": "nftables",
    "conntrack": "conntrack",
    "turnserver": "coturn",
    "turnutils_natdiscovery": "coturn",
    "miniupnpd": "miniupnpd-nftables",
    "upnpc": "miniupnpc",
    "tayga": "tayga",
    "unbound": "unbound",
    "openssl": "openssl",
    "wireguard-go": "wireguard-go",
    "wg": "wireguard-tools",
    "unshare": "util-linux",
    "nsenter": "util-linux",
}


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


def lab_unavailable_reason() -> str | None:
    """Why labs cannot be built here, or ``None`` if they can."""
    if os.geteuid() != 0:
        return "the NAT lab needs root to create network namespaces"
    for tool, package in LAB_TOOLS.items():
        if shutil.which(tool) is None:
            return f"the NAT lab needs {tool!r} (Debian package {package!r})"
    return None


def require_lab() -> None:
    """Skip (or, with CI=true, fail) the current test when labs cannot be built."""
    reason = lab_unavailable_reason()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def pool_servers() -> tuple[str, ...]:
    override = os.environ.get("NATKIT_LAB_SERVERS")
    if override is not None:
        return tuple(s.strip() for s in override.split(",") if s.strip())
    servers = [ServerKind.COTURN.value]
    if natkit_server_available():
        servers.insert(0, ServerKind.NATKIT.value)
    return tuple(servers)


class LabPool:
    """One lab per scenario, built on first use, all torn down by :meth:`close`."""

    def __init__(self, servers: tuple[str, ...]) -> None:
        self.servers = servers
        self._labs: dict[str, Lab] = {}

    def get(self, scenario: str) -> Lab:
        lab = self._labs.get(scenario)
        if lab is None:
            lab = Lab.up(scenario, servers=self.servers)
            self._labs[scenario] = lab
        return lab

    def close(self) -> None:
        errors: list[BaseException] = []
        for lab in self._labs.values():
            try:
                # The whole suite must leave no port mapping on any router.
                for role in lab.gateways:
                    if lab.port_mapping_rule_count(role):
                        errors.append(
                            AssertionError(
                                f"port mappings leaked on {lab.scenario.name}/{role}:\n"
                                + lab.port_mapping_ruleset(role)
                            )
                        )
            except Exception as exc:
                errors.append(exc)
            try:
                lab.down()
            except Exception as exc:
                errors.append(exc)
        self._labs.clear()
        if errors:
            raise errors[0]


@pytest.fixture(scope="session")
def lab_pool() -> Iterator[LabPool]:
    require_lab()
    pool = LabPool(pool_servers())
    try:
        yield pool
    finally:
        pool.close()


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
def make_lab() -> Iterator[Callable[..., Lab]]:
    """``make_lab(scenario, **Lab.up keywords)``: a private lab, down after the test."""
    require_lab()
    made: list[Lab] = []

    def factory(scenario: Any, **kwargs: Any) -> Lab:
        instance = Lab.up(scenario, **kwargs)
        made.append(instance)
        return instance

    try:
        yield factory
    finally:
        for instance in made:
            instance.down()
