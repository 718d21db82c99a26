"""mkdocs hooks: the README, the changelog and the files the README links to, as site pages.

The README and CHANGELOG.md live at the repository root, where GitHub shows them; the site
takes them as they are, rewriting only the README's links into ``docs/`` (``docs/faults.md``
becomes ``faults.md``, since the README becomes the site's ``index.md`` beside those pages).
The benchmark results and the example script the README links to are published beside it, so
that every link of the README resolves in the site too (mkdocs checks them in strict mode).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files, InclusionLevel

ROOT = Path(__file__).resolve().parent.parent
DOCS_LINK = re.compile(r"\]\(docs/")


def on_files(files: Files, config: Any) -> Files:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "index.md", content=DOCS_LINK.sub("](", readme)))
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "changelog.md", content=changelog))
    linked = [
        *sorted(ROOT.glob("benchmarks/results*.md")),
        ROOT / "examples/distributed_training.py",
    ]
    for path in linked:
        uri = path.relative_to(ROOT).as_posix()
        files.append(
            File.generated(config, uri, abs_src_path=str(path), inclusion=InclusionLevel.NOT_IN_NAV)
        )
    return files
