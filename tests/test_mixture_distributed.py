"""``MixtureSampler`` in a real gloo process group: a checkpoint of 2 ranks resumes on 3.

One scenario, two launches (a spawned rank costs about 5 s here), with hard timeouts.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from _helpers import spawn_ranks
from virtual_epochs import MixtureSampler

CONFIG = {
    "sampler": "mixture",
    "build_before_init": True,  # rank and world size come from the group when first read
    "spe": 4,
    "sizes": [5, 40, 10**6],
    "weights": [1, 2, 3],
    "phases": [[30, [0, 1, 1]], [70, [4, 1, 1]]],  # JSON turns the pairs into lists
    "seed": 9,
    "batch": 3,
}


def launch(world_size: int, tmp_path: Path, name: str, **config: Any) -> list[dict[str, Any]]:
    """Run one scenario on ``world_size`` spawned ranks (``_distributed_worker``)."""
    return spawn_ranks(world_size, tmp_path, name, {**CONFIG, **config})


def global_stream(start: int, count: int) -> list[int]:
    """The world-size-independent stream, from a sampler in this process (no process group)."""
    sampler = MixtureSampler(
        CONFIG["sizes"],
        CONFIG["weights"],
        phases=CONFIG["phases"],
        seed=CONFIG["seed"],
        start=start,
    )
    return list(itertools.islice(sampler, count))


def windows(reports: list[dict[str, Any]]) -> list[int]:
    """Return the global stream the ranks consumed together, window by window."""
    steps = {len(report["batches"]) for report in reports}
    assert len(steps) == 1, f"ranks took different numbers of steps: {steps}"
    out = []
    for step in range(steps.pop()):
        rows = zip(*(report["batches"][step] for report in reports), strict=True)
        out.extend(index for row in rows for index in row)
    return out


@pytest.mark.timeout(240)
def test_a_checkpoint_of_two_ranks_resumes_on_three_across_phase_changes(tmp_path: Path) -> None:
    first = launch(2, tmp_path, "two", epochs=4, save_at=7)  # 16 steps of 6 positions
    assert [r["sampler_world_size"] for r in first] == [
        2,
        2,
    ]  # read from torch.distributed, not given
    assert all(r["states_agree"] for r in first)
    assert windows(first) == global_stream(0, 16 * 6)
    saved = first[0]["saved"]
    assert saved["steps"] == 7  # 7 steps of 2 ranks x 3 samples: position 42
    state = tmp_path / "state.json"
    state.write_text(json.dumps(saved))
    second = launch(3, tmp_path, "three", epochs=6, load=str(state))  # steps 7 .. 23
    assert [r["sampler_world_size"] for r in second] == [3, 3, 3]
    assert all(r["states_agree"] for r in second)
    # Nothing lost or repeated: the stream goes on at position 42 in windows of 9.
    assert windows(second) == global_stream(42, (24 - 7) * 9)
