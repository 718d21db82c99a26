"""The README's torchrun recipe: the example runs on 2 ranks, then resumes on 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "distributed_training.py"


@pytest.mark.timeout(180)
def test_torchrun_two_ranks_then_resume_on_one(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    common = ["--steps-per-epoch", "5", "--batch-size", "8", "--checkpoint", str(checkpoint)]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    first = subprocess.run(
        [*launch, str(SCRIPT), "--epochs", "3", *common],
        capture_output=True,
        text=True,
        timeout=150,
        env=env,
        check=False,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "epoch 3/3: mean loss" in first.stdout
    assert "on 2 ranks" in first.stdout
    assert "done: 15 steps, global sample position 240" in first.stdout  # 15 steps * 8 * 2
    second = subprocess.run(
        [sys.executable, str(SCRIPT), "--epochs", "5", "--resume", str(checkpoint), *common],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resumed at epoch 3, step 15, global sample 240" in second.stdout
    assert "epoch 4/5: mean loss" in second.stdout
    assert "done: 25 steps, global sample position 320" in second.stdout  # + 10 steps * 8 * 1
