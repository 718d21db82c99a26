"""A griffe extension for the API reference: show the docstrings' doctests as code.

The package's docstrings carry their runnable examples as bare doctest blocks (``>>>`` lines
and their expected output, ended by a blank line), which pytest runs with the suite. Markdown
would read ``>>>`` as nested block quotes and ``[[10, 20]]`` as a link; this extension wraps
each such block in a ``pycon`` code fence before mkdocstrings renders the docstring. Blocks
inside a Google ``Examples:`` section are left to griffe, which parses them itself.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

SECTION = re.compile(r"^(\s*)Examples?:\s*$")


def fence_doctests(text: str) -> str:
    """Return ``text`` with every bare doctest block wrapped in a ``pycon`` code fence."""
    out: list[str] = []
    lines = text.splitlines()
    examples_indent: int | None = None  # inside an ``Examples:`` section at this indent
    i = 0
    while i < len(lines):
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        if examples_indent is not None and line.strip() and indent <= examples_indent:
            examples_indent = None
        header = SECTION.match(line)
        if header:
            examples_indent = len(header.group(1))
        if examples_indent is None and line.lstrip().startswith(">>>"):
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i])
                i += 1
            prefix = line[:indent]
            out += [f"{prefix}```pycon", *block, f"{prefix}```"]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    """Wrap bare doctest blocks of every docstring in code fences (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:  # noqa: ARG002
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(obj.docstring.value)
