"""The README's library examples run, as printed (issue 10).

Every ```python block under the README's ``## Library`` heading carries a
marker on the line before it, an HTML comment the rendered page hides:

* ``<!-- test: run; prints "TEXT" -->``: the block runs verbatim in the
  client namespace of the ``upnp`` lab (the addresses in the examples are
  that lab's), must exit 0, and must print ``TEXT``;
* ``<!-- test: skip: REASON -->``: the block is not run, for ``REASON``.

A block without a marker fails :func:`test_every_library_block_is_marked`
(no root needed), so no example can slip in untested.
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
MARKER = re.compile(r'<!-- test: (?:run; prints "(?P<prints>[^"]+)"|skip: (?P<reason>.+?)) -->')


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


def library_blocks(text: str) -> list[Block]:
    """The ```python blocks between ``## Library`` and the next ``## `` heading."""
    lines = text.splitlines()
    start = lines.index("## Library")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
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


BLOCKS = library_blocks(README.read_text())
RUN = [b for b in BLOCKS if b.marker and (m := MARKER.fullmatch(b.marker)) and m["prints"]]


def test_every_library_block_is_marked() -> None:
    assert len(BLOCKS) >= 6
    for block in BLOCKS:
        assert block.marker is not None, f"README.md:{block.line}: no test marker"
        assert MARKER.fullmatch(block.marker), f"README.md:{block.line}: {block.marker}"
    names = {block.name.split("-")[0] for block in RUN}
    # Every entry point has an example that runs.
    assert {"classify", "gather_candidates", "map_port", "serve_stun", "probe_birthday"} <= names


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
