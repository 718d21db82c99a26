"""The benchmarks run end to end (``--smoke``) and produce every table; no timing is checked."""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `benchmarks` is a top-level package beside `src`, not installed
    sys.path.insert(0, str(ROOT))

from benchmarks.__main__ import BENCHMARKS  # noqa: E402  # needs the path above
from benchmarks._fixtures import BlogLoader  # noqa: E402
from benchmarks._harness import interleave  # noqa: E402

TITLES = {
    "overhead": "### 1. Per-step overhead",
    "boundary": "### 2. Pass-boundary throughput",
    "sampler_memory": "### 3. Sampler memory",
    "sampler_throughput": "### 4. Sampler throughput",
    "resume": "### 5. Resume latency",
    "seeding": "### 6. Keyed randomness",
    "mixture": "### 7. Mixtures",
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--smoke",
            "--out",
            str(out / "results.md"),
            "--plots",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, out


def test_every_benchmark_is_listed() -> None:
    assert set(BENCHMARKS) == set(TITLES)


@pytest.mark.parametrize("name", sorted(TITLES))
def test_smoke_run_prints_and_writes_each_table(smoke: tuple[str, Path], name: str) -> None:
    stdout, out = smoke
    written = (out / "results.md").read_text()
    for text in (stdout, written):
        section = text.split(TITLES[name], 1)
        assert len(section) == 2, f"no table for {name}"
        body = section[1].split("\n### ", 1)[0]
        rows = [line for line in body.splitlines() if line.startswith("| ")]
        assert len(rows) >= 3, f"the {name} table has no rows:\n{body}"


def test_smoke_overhead_measures_the_wrappers_alone_over_both_sources(
    smoke: tuple[str, Path],
) -> None:
    _, out = smoke
    table = (out / "results.md").read_text().split("#### the wrappers alone", 1)[1]
    header = table.split("\n")[2]
    assert "over a list: per step" in header
    assert "over a Python iterator: per step" in header
    for name in ("direct", "blog wrapper", "ours"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {name} |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 5
        assert all(cell.endswith(" ns") for cell in cells[1:]), row


def test_smoke_run_writes_goals_machine_and_plots(smoke: tuple[str, Path]) -> None:
    _, out = smoke
    written = (out / "results.md").read_text()
    assert "## Goals" in written
    assert "CPU: " in written
    assert "torch " in written
    for plot in ("resume_latency.png", "sampler_memory.png"):
        assert (out / plot).read_bytes().startswith(b"\x89PNG")


def test_blog_wrapper_reproduces_the_posts_examples() -> None:
    dataset: Any = [(0, 0), (1, 1)]  # the post's two-sample dataset
    one = [[x.tolist() for x in batch] for batch in BlogLoader(DataLoader(dataset), 1)]
    assert one == [[[0], [0]]]
    four = [[x.tolist() for x in batch] for batch in BlogLoader(DataLoader(dataset), 4)]
    assert four == [[[0], [0]], [[1], [1]], [[0], [0]], [[1], [1]]]


def test_interleave_rotates_the_order_and_drops_warmup() -> None:
    calls: list[str] = []

    def contender(name: str) -> float:
        calls.append(name)
        return 1.0

    times = interleave({name: partial(contender, name) for name in "abc"}, 3, warmup=1)
    assert calls == list("abcbcacababc")
    assert times == {name: [1.0] * 3 for name in "abc"}


def test_embed_replaces_only_the_marked_block(tmp_path: Path) -> None:
    from benchmarks.__main__ import END, START, embed

    page = tmp_path / "performance.md"
    page.write_text(f"intro\n{START}\nold\n{END}\noutro\n")
    assert embed("# Title\n## Goals\n| a |\n", page)
    assert page.read_text() == f"intro\n{START}\n### Goals\n| a |\n{END}\noutro\n"
    assert not embed("# Title\n", tmp_path / "missing.md")
