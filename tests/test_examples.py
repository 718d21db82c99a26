"""examples/: the ``make demo`` script trains, is killed, resumes, and proves it bitwise."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

DEMO = Path(__file__).resolve().parents[1] / "examples" / "train_digits.py"


@pytest.fixture(scope="module")
def demo() -> ModuleType:
    """The demo script, imported as a module (its ``main`` does not run)."""
    spec = importlib.util.spec_from_file_location("train_digits", DEMO)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.mark.timeout(120)
def test_quick_demo_is_killed_resumed_and_bitwise_identical(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(DEMO), "--quick", "--kill-seed=3", f"--run-dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Verdict: IDENTICAL" in result.stdout, output
    assert "SIGKILL sent when the child reported step" in result.stdout, output
    assert "last checkpoint on disk: step" in result.stdout, output
    # Killed with 2 workers, resumed with 1: the augmentations do not depend on the workers.
    assert "in a child process with 2 DataLoader workers, to be killed" in result.stdout, output
    assert "in a fresh process with 1 DataLoader worker: it resumes" in result.stdout, output
    # The checkpoint that the restart resumed from is plain data: the loader's part is JSON-safe.
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    json.dumps(checkpoint["loader"])
    assert checkpoint["loader"]["steps"] == 4 * 5  # the restarted run checkpointed to the end


def test_compare_weights_passes_equal_tensors(demo: ModuleType) -> None:
    weights = {"w": torch.randn(3, 4), "b": torch.zeros(3)}
    copy = {name: tensor.clone() for name, tensor in weights.items()}
    assert demo.compare_weights(weights, copy) == []


def test_compare_weights_flags_a_one_ulp_difference(demo: ModuleType) -> None:
    weights = {"w": torch.randn(3, 4), "b": torch.zeros(3)}
    other = {name: tensor.clone() for name, tensor in weights.items()}
    other["w"][1, 2] = torch.nextafter(other["w"][1, 2], torch.tensor(float("inf")))
    problems = demo.compare_weights(weights, other)
    assert len(problems) == 1
    assert problems[0].startswith("w: differs")


def test_compare_weights_flags_missing_and_reshaped_tensors(demo: ModuleType) -> None:
    weights = {"w": torch.zeros(3, 4), "b": torch.zeros(3)}
    other = {"w": torch.zeros(4, 3), "extra": torch.zeros(1)}
    problems = demo.compare_weights(weights, other)
    assert problems == [
        "b: missing",
        "extra: missing",
        "w: torch.float32[3, 4] vs torch.float32[4, 3]",
    ]


def test_verdict_fails_on_different_weights(
    demo: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    history = [(0, 0.5, 0.9)]
    reference = demo.Outcome({"w": torch.zeros(2)}, history, 10)
    resumed = demo.Outcome({"w": torch.tensor([0.0, 1e-30])}, history, 10)
    assert demo.verdict(reference, resumed) is False
    assert "Verdict: DIFFERENT: 1 of 1 tensors" in capsys.readouterr().out


def test_verdict_fails_on_a_different_validation_history(
    demo: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = demo.Outcome({"w": torch.zeros(2)}, [(0, 0.5, 0.9)], 10)
    resumed = demo.Outcome({"w": torch.zeros(2)}, [(0, 0.5, 0.8)], 10)
    assert demo.verdict(reference, resumed) is False
    assert "Verdict: DIFFERENT: equal weights" in capsys.readouterr().out


def test_kill_step_falls_after_the_first_checkpoint_and_before_the_last_epoch(
    demo: ModuleType,
) -> None:
    cfg = demo.Config(epochs=4, steps_per_epoch=5, batch_size=32, checkpoint_every=3, seed=0)
    steps = {demo.draw_kill_step(cfg, seed) for seed in range(200)}
    assert steps == set(range(4, 16))


def test_kill_at_must_be_inside_the_run(demo: ModuleType) -> None:
    with pytest.raises(SystemExit):
        demo.parse_args(["--quick", "--kill-at=20"])
    assert demo.parse_args(["--quick", "--kill-at=19"]).kill_at == 19


@pytest.mark.timeout(60)
def test_demo_batches_are_augmented_and_the_same_with_workers(demo: ModuleType) -> None:
    train_ds, _ = demo.load_data(0)
    cfg = demo.Config(epochs=2, steps_per_epoch=3, batch_size=8, checkpoint_every=2, seed=0)

    def batches(num_workers: int) -> list[torch.Tensor]:
        loader = demo.build_trainer(cfg, train_ds, num_workers).loader
        return [x for x, _ in loader]

    plain = batches(0)
    assert torch.equal(torch.stack(plain), torch.stack(batches(2)))
    # Augmented: not the stored images, and a new draw each time an image comes back.
    images, _ = train_ds.tensors
    sampler = demo.build_trainer(cfg, train_ds).loader.loader.sampler
    first = next(iter(sampler))
    assert not torch.equal(plain[0][0], images[first.index])
    assert (plain[0][0] - images[first.index]).abs().max() < 1.5  # a shift and a little noise
