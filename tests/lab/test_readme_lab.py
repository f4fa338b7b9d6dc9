"""The README's library examples run, as printed (issue 10).

Every ```python block under the README's ``## Library`` heading carries a
marker on the line before it, an HTML comment the rendered page hides:

* ``<!-- test: run; prints "TEXT" -->``: the block runs verbatim in the
  client namespace of the ``upnp`` lab (the addresses in the examples are
  that lab's), must exit 0, and must print ``TEXT``;
* ``<!-- test: skip: REASON -->``: the block is not run, for ``REASON``.

A block without a marker fails :func:`test_every_library_block_is_marked`
(no root needed), so no example can slip in untested.

Blocks elsewhere in the README opt in with a marker of their own, which may
name the scenario to run in: ``<!-- test: run in connect-eim; prints
"TEXT" -->`` runs the block in the client namespace of a ``connect-eim``
lab (its rendezvous listens on 192.0.2.10:7000), in a fresh directory
holding a ``node.key`` (as ``natkit keygen > node.key`` writes it).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from natkit.lab import Lab

README = Path(__file__).resolve().parents[2] / "README.md"
#: The scenario whose addresses the examples use (a pooled, generic one).
SCENARIO = "upnp"
#: The scenario of the examples that need a rendezvous (``run in connect-eim``).
RENDEZVOUS_SCENARIO = "connect-eim"
MARKER = re.compile(
    r'<!-- test: (?:run(?: in (?P<scenario>[a-z0-9-]+))?; prints "(?P<prints>[^"]+)"'
    r"|skip: (?P<reason>.+?)) -->"
)


@dataclass(frozen=True, slots=True)
class Block:
    """One ```python block of the Library section."""

    line: int
    code: str
    #: The marker comment before it (``None``: none).
    marker: str | None

    @property
    def name(self) -> str:
        """The first ``natkit.<call>`` the block makes (the test id)."""
        found = re.search(r"natkit\.([a-z_]+)\(", self.code)
        return f"{found.group(1) if found else 'block'}-line{self.line}"


def _blocks(lines: list[str], start: int, end: int) -> list[Block]:
    blocks: list[Block] = []
    i = start
    while i < end:
        if lines[i] == "```python":
            close = lines.index("```", i + 1)
            previous = lines[i - 1] if lines[i - 1].startswith("<!--") else None
            blocks.append(Block(i + 1, "\n".join(lines[i + 1 : close]) + "\n", previous))
            i = close
        i += 1
    return blocks


def _library(lines: list[str]) -> tuple[int, int]:
    start = lines.index("## Library")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return start, end


def library_blocks(text: str) -> list[Block]:
    """The ```python blocks between ``## Library`` and the next ``## `` heading."""
    lines = text.splitlines()
    return _blocks(lines, *_library(lines))


def marked_blocks_elsewhere(text: str) -> list[Block]:
    """The ```python blocks outside the Library section with a test marker."""
    lines = text.splitlines()
    start, end = _library(lines)
    outside = _blocks(lines, 0, start) + _blocks(lines, end, len(lines))
    return [b for b in outside if b.marker is not None and MARKER.fullmatch(b.marker)]


def _runs(block: Block) -> re.Match[str] | None:
    match = MARKER.fullmatch(block.marker or "")
    return match if match is not None and match["prints"] else None


BLOCKS = library_blocks(README.read_text())
ELSEWHERE = marked_blocks_elsewhere(README.read_text())
RUN = [b for b in BLOCKS + ELSEWHERE if (m := _runs(b)) and m["scenario"] is None]
RUN_IN_RENDEZVOUS = [
    b for b in BLOCKS + ELSEWHERE if (m := _runs(b)) and m["scenario"] == RENDEZVOUS_SCENARIO
]


def test_every_library_block_is_marked() -> None:
    assert len(BLOCKS) >= 6
    for block in BLOCKS:
        assert block.marker is not None, f"README.md:{block.line}: no test marker"
        assert MARKER.fullmatch(block.marker), f"README.md:{block.line}: {block.marker}"
    names = {block.name.split("-")[0] for block in RUN}
    # Every entry point has an example that runs.
    assert {"classify", "gather_candidates", "map_port", "serve_stun", "probe_birthday"} <= names
    # A block may only name a scenario a test below runs it in.
    for block in BLOCKS + ELSEWHERE:
        match = _runs(block)
        assert match is None or match["scenario"] in (None, RENDEZVOUS_SCENARIO), block.marker
    # The rendezvous client example of "natkit rendezvous" runs (issue: it
    # once imported load_private_key from where it no longer was).
    assert any("RendezvousChannel" in block.code for block in RUN_IN_RENDEZVOUS)


def test_the_extraction_sees_what_it_must() -> None:
    text = "intro\n## Library\n<!-- test: skip: x -->\n```python\nnatkit.f()\n```\n## Next\n"
    text += "```python\nnot this\n```\n"
    (block,) = library_blocks(text)
    assert (block.code, block.marker, block.name) == (
        "natkit.f()\n",
        "<!-- test: skip: x -->",
        "f-line4",
    )


@pytest.mark.scenarios(SCENARIO)
@pytest.mark.parametrize("block", RUN, ids=[b.name for b in RUN])
def test_readme_library_block(lab: Lab, block: Block) -> None:
    if "natkit" not in lab.stun_servers:
        pytest.skip("the examples use natkit's STUN server (NATKIT_LAB_SERVERS leaves it out)")
    match = MARKER.fullmatch(block.marker or "")
    assert match is not None
    result = lab.client_exec([sys.executable, "-c", block.code], timeout=120)
    assert result.returncode == 0, f"README.md:{block.line}:\n{result.stdout}\n{result.stderr}"
    assert match["prints"] in result.stdout, result.stdout
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.scenarios(RENDEZVOUS_SCENARIO)
@pytest.mark.parametrize("block", RUN_IN_RENDEZVOUS, ids=[b.name for b in RUN_IN_RENDEZVOUS])
def test_readme_block_with_a_rendezvous(lab: Lab, block: Block, tmp_path: Path) -> None:
    from natkit.identity import PrivateKey  # noqa: PLC0415
    from natkit.identity.keyfile import save_private_key  # noqa: PLC0415

    match = _runs(block)
    assert match is not None
    if lab.rendezvous is None:  # another test stopped it
        lab.start_rendezvous()
    save_private_key(tmp_path / "node.key", PrivateKey.generate())
    code = f"import os\nos.chdir({str(tmp_path)!r})\n{block.code}"
    result = lab.client_exec([sys.executable, "-c", code], timeout=60)
    assert result.returncode == 0, f"README.md:{block.line}:\n{result.stdout}\n{result.stderr}"
    assert match["prints"] in result.stdout, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
