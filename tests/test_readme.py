"""The README's Python examples run, in order, in one namespace, as a reader would run them."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 3
    namespace: dict[str, object] = {"__name__": "readme"}
    for number, block in enumerate(blocks):
        code = compile(block, f"README.md python block {number}", "exec")
        exec(code, namespace)  # the README is ours: executing it is the test
