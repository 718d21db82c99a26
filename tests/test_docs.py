"""The documentation site builds in strict mode: a broken link or a docstring warning fails.

``make docs`` runs the same build (``mkdocs build --strict``). The site is the README, the
``docs/`` pages, the changelog and an API reference rendered from the docstrings.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import virtual_epochs

pytest.importorskip("mkdocs", reason="the docs tools come with requirements-dev.txt")
yaml = pytest.importorskip("yaml", reason="PyYAML comes with mkdocs")

ROOT = Path(__file__).resolve().parent.parent


def load_script(name: str) -> Any:
    """Import ``scripts/<name>.py`` (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """Run ``mkdocs build --strict`` on ``config`` from the repository root."""
    command = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    command += ["--config-file", str(config), "--site-dir", str(site)]
    return subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = build(ROOT / "mkdocs.yml", out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def variant(tmp_path: Path, page: str, module: str | None = None) -> Path:
    """Write a copy of the site's config whose API page is ``page``, with ``module`` on its path.

    The copy keeps every other page and setting, so its build fails only for what is added.
    """
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    (docs / "api.md").write_text(page)
    config: dict[str, Any] = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config["docs_dir"] = str(docs)
    config["hooks"] = [str(ROOT / hook) for hook in config["hooks"]]
    python = config["plugins"][1]["mkdocstrings"]["handlers"]["python"]
    python["paths"] = [str(ROOT / "src")]
    extensions = python["options"]["extensions"]
    python["options"]["extensions"] = [str(ROOT / extension) for extension in extensions]
    if module is not None:
        (tmp_path / "extra").mkdir()
        (tmp_path / "extra" / "broken_docs.py").write_text(module)
        python["paths"].append(str(tmp_path / "extra"))
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_site_has_every_page(site: Path) -> None:
    for page in ("index", "api", "integrations", "faults", "shuffle-quality", "performance"):
        assert (site / f"{page}.html").is_file(), page
    index = (site / "index.html").read_text()
    assert 'href="faults.html"' in index  # the README's docs/ links point at the site's pages
    assert "Changelog" in (site / "changelog.html").read_text()


def test_the_api_reference_documents_every_public_name(site: Path) -> None:
    api = (site / "api.html").read_text()
    for name in virtual_epochs.__all__:
        assert f'id="virtual_epochs.{name}"' in api, name
    # The doctests read as code, not as nested block quotes.
    assert '<span class="gp">&gt;&gt;&gt; </span>' in api  # a highlighted prompt
    assert '<span class="go">[[10, 20], [30, 10], [20, 30]]</span>' in api  # and its output
    assert "<blockquote>" not in api


def test_the_variant_config_builds_as_it_is(tmp_path: Path) -> None:
    # The control for the two tests below: the copy fails only for what they add.
    config = variant(tmp_path, (ROOT / "docs" / "api.md").read_text(), '"""A module."""\n')
    result = build(config, tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    config = variant(tmp_path, "# API\n\nSee [the missing page](missing.md).\n")
    result = build(config, tmp_path / "site")
    assert result.returncode != 0
    assert "missing.md" in result.stdout + result.stderr


def test_a_docstring_warning_fails_the_build(tmp_path: Path) -> None:
    module = '''
def scale(value: float) -> float:
    """Scale a value.

    Args:
        valeu: the value.
    """
    return value
'''
    config = variant(tmp_path, "# API\n\n::: broken_docs\n", module)
    result = build(config, tmp_path / "site")
    assert result.returncode != 0
    assert "valeu" in result.stdout + result.stderr


def test_bare_doctest_blocks_are_fenced_and_examples_sections_left_alone() -> None:
    text = "Summary.\n\n>>> 1 + 1\n2\n\nAfter.\n\nExamples:\n    >>> 3\n    3\n"
    assert load_script("griffe_doctests").fence_doctests(text) == (
        "Summary.\n\n```pycon\n>>> 1 + 1\n2\n```\n\nAfter.\n\nExamples:\n    >>> 3\n    3"
    )
