"""Real multi-process runs (gloo on CPU): equal steps, disjoint shards, identical states, and
resume on a different number of ranks. Few tests, each with a hard timeout."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import torch

import _distributed_worker
from _helpers import spawn_ranks
from _keyed_data import keyed_loader, take
from virtual_epochs import InfiniteSampler

N, BATCH, SPE, SEED = 23, 3, 4, 7  # 23 samples: shards and batches are uneven


def launch(world_size: int, tmp_path: Path, name: str, **config: Any) -> list[dict[str, Any]]:
    """Run one scenario on ``world_size`` spawned ranks; return each rank's report."""
    defaults = {"n": N, "batch": BATCH, "spe": SPE, "seed": SEED}
    return spawn_ranks(world_size, tmp_path, name, {**defaults, **config})


def global_stream(start: int, count: int) -> list[int]:
    """The world-size-independent sample stream of the InfiniteSampler used by the workers."""
    return list(itertools.islice(InfiniteSampler(N, seed=SEED, start=start), count))


def check_windows(reports: list[dict[str, Any]], start: int) -> int:
    """Check that each global step's batches are one contiguous window of the global stream.

    Returns the global sample position after the last step.
    """
    world_size = len(reports)
    steps = {len(report["batches"]) for report in reports}
    assert len(steps) == 1, f"ranks took different numbers of steps: {steps}"
    position = start
    for step in range(steps.pop()):
        # Rank r holds global positions position + r, position + r + W, ... of this window.
        rows = zip(*(report["batches"][step] for report in reports), strict=True)
        window = [index for row in rows for index in row]
        assert window == global_stream(position, BATCH * world_size), f"step {step}"
        position += BATCH * world_size
    return position


@pytest.mark.timeout(120)
def test_distributed_sampler_gets_a_new_shuffle_every_pass_and_ranks_stay_disjoint(
    tmp_path: Path,
) -> None:
    reports = launch(2, tmp_path, "ds", sampler="distributed", epochs=5)
    assert all(r["states_agree"] for r in reports)
    assert [r["steps"] for r in reports] == [5 * SPE] * 2
    # DistributedSampler pads 23 to 24: 12 indices, 4 batches of 3, per rank and pass.
    per_pass = 4
    passes = []
    for p in range(5 * SPE // per_pass):
        shards = [
            [i for batch in r["batches"][p * per_pass : (p + 1) * per_pass] for i in batch]
            for r in reports
        ]
        assert set(shards[0]) | set(shards[1]) == set(range(N))
        assert len(set(shards[0]) & set(shards[1])) <= 1  # the one padding duplicate
        passes.append(shards[0])
    assert len({tuple(p) for p in passes}) == len(passes)  # a new shuffle every pass
    assert reports[0]["sampler_epoch"] == len(passes) - 1  # set_epoch(pass), not the epoch


@pytest.mark.timeout(240)
def test_equal_steps_contiguous_windows_and_resume_on_2_3_2_1_ranks(tmp_path: Path) -> None:
    # (ranks, run until epoch, save at global step): every checkpoint is mid-epoch.
    plan = [(2, 6, 9), (3, 8, 26), (2, 10, 37)]
    position, load = 0, None
    for world_size, epochs, save_at in plan:
        name = f"w{world_size}"
        reports = launch(
            world_size,
            tmp_path,
            name,
            sampler="infinite",
            epochs=epochs,
            save_at=save_at,
            load=load,
        )
        assert all(r["states_agree"] for r in reports), "state_dict() differs between ranks"
        assert [r["epoch"] for r in reports] == [epochs] * world_size
        assert [r["steps"] for r in reports] == [epochs * SPE] * world_size
        # Each run continues the global stream where the checkpoint left it: nothing lost,
        # nothing repeated, whatever the number of ranks.
        end = check_windows(reports, start=position)
        if load is None:  # the first run: more than 4 passes, each covering every sample once
            flat = global_stream(0, end)
            passes = [sorted(flat[i : i + N]) for i in range(0, end - N + 1, N)]
            assert len(passes) >= 4
            assert passes == [list(range(N))] * len(passes)
        saved = reports[0]["saved"]
        assert saved["steps"] == save_at
        position = saved["resume"]["seek"]["position"]
        load_file = tmp_path / f"{name}.state.json"
        load_file.write_text(json.dumps(saved))
        load = str(load_file)
    # And on one rank, without any process group: a plain single-process run.
    vl = _distributed_worker.loader(
        {"n": N, "batch": BATCH, "spe": SPE, "seed": SEED, "sampler": "infinite"}
    )
    vl.load_state_dict(json.loads(Path(load).read_text()))
    single = [[batch.tolist()] for _ in range(vl.epoch, 12) for batch in vl]
    check_windows([{"batches": [b[0] for b in single]}], start=position)
    assert vl.steps == 12 * SPE


@pytest.mark.timeout(120)
def test_keyed_augmentations_on_2_ranks_equal_1_rank_with_the_same_global_batch(
    tmp_path: Path,
) -> None:
    reports = launch(2, tmp_path, "keyed", sampler="keyed", epochs=3, save_at=5)
    assert all(r["states_agree"] for r in reports)
    single = take(keyed_loader(N, 2 * BATCH, SPE, seed=SEED), 3 * SPE)
    # Rank r holds positions start + r, start + r + 2, ...: interleave the ranks' rows.
    ranks = torch.tensor([r["batches"] for r in reports], dtype=torch.float64)
    assert torch.equal(ranks.permute(1, 2, 0, 3).reshape(single.shape), single)
    # The 2-rank checkpoint resumes on 1 rank with the same augmentations.
    resumed = keyed_loader(N, 2 * BATCH, SPE, seed=SEED)
    resumed.load_state_dict(reports[0]["saved"])
    assert torch.equal(take(resumed, 3 * SPE - 5), single[5:])
