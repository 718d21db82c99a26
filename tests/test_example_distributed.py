"""The README's torchrun recipe: the example runs on 2 ranks, then resumes on 1."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from _helpers import run_command

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "distributed_training.py"


@pytest.mark.timeout(180)
def test_torchrun_two_ranks_then_resume_on_one(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    common = ["--steps-per-epoch", "5", "--batch-size", "8", "--checkpoint", str(checkpoint)]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    first = run_command([*launch, str(SCRIPT), "--epochs", "3", *common], timeout=150)
    assert "epoch 3/3: mean loss" in first
    assert "on 2 ranks" in first
    assert "done: 15 steps, global sample position 240" in first  # 15 steps * 8 * 2 ranks
    resume = ["--epochs", "5", "--resume", str(checkpoint)]
    second = run_command([sys.executable, str(SCRIPT), *resume, *common], timeout=120)
    assert "resumed at epoch 3, step 15, global sample 240" in second
    assert "epoch 4/5: mean loss" in second
    assert "done: 25 steps, global sample position 320" in second  # + 10 steps * 8 * 1 rank


@pytest.mark.timeout(180)
def test_a_sampler_built_before_init_process_group_still_shards_under_torchrun() -> None:
    script = Path(__file__).resolve().parent / "_torchrun_order.py"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    output = run_command([*launch, str(script)], timeout=150)
    line = next(line for line in output.splitlines() if line.startswith("REPORT "))
    reports = json.loads(line.removeprefix("REPORT "))
    # Iterating before the group exists is refused: it would run as rank 0 of 1 on every rank.
    for report in reports:
        assert "no torch.distributed process group is initialised" in report["refused"]
        assert "WORLD_SIZE=2" in report["refused"]
    # Built before or after init_process_group, the ranks get the same, disjoint shards.
    assert reports[0]["early"] == reports[0]["late"]
    assert reports[1]["early"] == reports[1]["late"]
    rows = zip(*(report["early"] for report in reports), strict=True)
    window = [i for step in rows for batch in zip(*step, strict=True) for i in batch][:20]
    assert sorted(window) == list(range(20))  # the first pass (N = 20), covered once by the ranks
