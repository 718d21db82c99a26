"""The README's torchrun recipe: the example runs on 2 ranks, then resumes on 1."""

from __future__ import annotations

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
