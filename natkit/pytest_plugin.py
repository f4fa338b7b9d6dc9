"""natkit's pytest plugin: the real-NAT lab as fixtures for your own tests.

pytest loads it wherever natkit is installed (entry point ``pytest11``,
name ``natkit``; ``-p no:natkit`` turns it off). It imports nothing of the
lab until a test asks for one of its fixtures, so runs that use none pay
nothing.

* ``natkit_lab``: a factory. ``natkit_lab("apdm-apdf")`` builds that
  scenario of :mod:`natkit.lab` (network namespaces, a Linux kernel NAT
  written in nftables, STUN servers on a simulated internet) and returns
  the running :class:`natkit.lab.Lab`: ``lab.client_exec(argv)`` runs a
  program behind the NAT, ``lab.stun_servers`` says where the servers
  listen, ``lab.namespaces`` names every namespace, and
  ``lab.scenario.expected`` is what a classifier should find. Keywords go
  to :meth:`natkit.lab.Lab.up` (``servers=``, ``loss_percent=``,
  ``turn=``). Every lab it built is torn down after the test, also when
  the test fails.
* ``natkit_lab_pool``: one lab per scenario for the whole session
  (``natkit_lab_pool.get("eim-apdf")``), torn down at the end, when the
  session also fails if a port mapping was left on any router.

The lab needs root and its tools (iproute2, nftables, conntrack, and coturn
for its default servers: Debian packages). Without them a test asking for
a lab is skipped with the reason, unless the environment says ``CI=true``:
there it fails, so that a CI job that cannot build its lab does not pass by
skipping. natkit's own lab tests (``tests/lab/conftest.py``) use this very
code.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from natkit.lab import Lab, Scenario

#: The programs every scenario of natkit's lab needs between them (natkit's
#: own lab tests ask for all; :mod:`natkit.lab.netns` knows their packages).
LAB_TOOLS: tuple[str, ...] = (
    "ip", "nft", "conntrack", "turnserver", "turnutils_natdiscovery", "miniupnpd", "upnpc",
    "tayga", "unbound", "openssl", "wireguard-go", "wg", "unshare", "nsenter",
)  # fmt: skip


def in_ci() -> bool:
    """Whether the environment says this is a CI run (``CI=true``)."""
    return os.environ.get("CI", "").lower() == "true"


def lab_unavailable_reason(tools: Iterable[str] = LAB_TOOLS) -> str | None:
    """Why labs cannot be built here (no root, or one of ``tools`` missing),
    or ``None`` when they can."""
    if os.geteuid() != 0:
        return "the NAT lab needs root to create network namespaces"
    missing = next((tool for tool in tools if shutil.which(tool) is None), None)
    if missing is None:
        return None
    from natkit.lab.netns import TOOL_PACKAGES  # noqa: PLC0415 (the lab: only when asked)

    return f"the NAT lab needs {missing!r} (Debian package {TOOL_PACKAGES.get(missing, missing)!r})"


def lab_unavailable(reason: str) -> NoReturn:
    """Skip the current test because of ``reason``; with ``CI=true``, fail it."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def require_lab(tools: Iterable[str] = LAB_TOOLS) -> None:
    """Skip (or, with ``CI=true``, fail) the current test unless labs can be
    built here with ``tools``."""
    reason = lab_unavailable_reason(tools)
    if reason is not None:
        lab_unavailable(reason)


def build_lab(scenario: str | Scenario, **kwargs: Any) -> Lab:
    """:meth:`natkit.lab.Lab.up`, with a tool or a permission the host lacks
    turned into a skip (a failure with ``CI=true``)."""
    from natkit.lab import Lab, LabPermissionError, MissingToolError  # noqa: PLC0415

    try:
        return Lab.up(scenario, **kwargs)
    except (LabPermissionError, MissingToolError) as exc:
        lab_unavailable(str(exc))


def default_pool_servers() -> tuple[str, ...]:
    """The STUN servers pooled labs run: ``NATKIT_LAB_SERVERS``
    (comma-separated, may be empty) or else natkit's own (when importable)
    and coturn."""
    override = os.environ.get("NATKIT_LAB_SERVERS")
    if override is not None:
        return tuple(s.strip() for s in override.split(",") if s.strip())
    from natkit.lab.servers import ServerKind, natkit_server_available  # noqa: PLC0415

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
        """The running lab of ``scenario`` (built now if it is not yet)."""
        lab = self._labs.get(scenario)
        if lab is None:
            lab = build_lab(scenario, servers=self.servers)
            self._labs[scenario] = lab
        return lab

    def close(self) -> None:
        """Tear every lab down; raise the first problem (a leaked port
        mapping, a failed teardown) once all are down."""
        errors: list[BaseException] = []
        for lab in self._labs.values():
            try:
                # What a session maps, it must release.
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
def natkit_lab_pool() -> Iterator[LabPool]:
    """One lab per scenario for the session: ``natkit_lab_pool.get(name)``."""
    require_lab(())
    pool = LabPool(default_pool_servers())
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def natkit_lab() -> Iterator[Callable[..., Lab]]:
    """``natkit_lab(scenario, **Lab.up keywords)``: a running lab of its
    own, torn down after the test (also when it fails)."""
    require_lab(())
    made: list[Lab] = []

    def factory(scenario: str | Scenario, **kwargs: Any) -> Lab:
        lab = build_lab(scenario, **kwargs)
        made.append(lab)
        return lab

    try:
        yield factory
    finally:
        errors: list[BaseException] = []
        for lab in made:
            try:
                lab.down()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
