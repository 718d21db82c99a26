"""Lightning 2.x: a ``VirtualDataLoader`` from ``train_dataloader()``, resumed exactly.

The recipe is ``examples/integrations/lightning_recipe.py`` (docs/integrations.md); these tests
run it with the real Lightning, in this process and on two ranks under torchrun.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import TQDMProgressBar

from _helpers import run_command
from virtual_epochs import InfiniteSampler

RECIPE = Path(__file__).resolve().parents[1] / "examples" / "integrations" / "lightning_recipe.py"
# The recipe's defaults: 3 epochs of 5 steps, batches of 3 from 23 samples, seed 1.
EPOCHS, STEPS_PER_EPOCH, BATCH_SIZE, NUM_SAMPLES, SEED = 3, 5, 3, 23, 1
TOTAL = EPOCHS * STEPS_PER_EPOCH

# A resumed run writes its checkpoints to a directory of its own, which Lightning remarks on.
pytestmark = pytest.mark.filterwarnings("ignore:The dirpath has changed:UserWarning")


@pytest.fixture(scope="module")
def recipe() -> Iterator[ModuleType]:
    """The recipe script, imported as a module (its ``main`` does not run)."""
    spec = importlib.util.spec_from_file_location("lightning_recipe", RECIPE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Lightning looks the module's classes up by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


class BarTotals(pl.Callback):
    """Records, after every training batch, the epoch and the progress bar's total."""

    def __init__(self) -> None:
        self.totals: list[tuple[int, Any]] = []

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        del args
        bar = trainer.progress_bar_callback
        assert isinstance(bar, TQDMProgressBar)
        self.totals.append((trainer.current_epoch, bar.train_progress_bar.total))


class Run:
    """One Lightning run of the recipe's module: the trainer, what it saw, its bar totals."""

    def __init__(
        self,
        recipe: ModuleType,
        run_dir: Path,
        *,
        sampler: str = "infinite",
        module_class: type[pl.LightningModule] | None = None,
        ckpt_path: Path | None = None,
    ) -> None:
        self.sampler = sampler
        self.module = (module_class or recipe.VirtualEpochModule)(sampler=sampler, seed=SEED)
        self.bar = BarTotals()
        self.trainer: pl.Trainer = recipe.fit(
            self.module,
            run_dir,
            epochs=EPOCHS,
            checkpoint_every=2,
            ckpt_path=ckpt_path,
            callbacks=[self.bar],
        )
        self.run_dir = run_dir

    @property
    def seen(self) -> list[list[Any]]:
        """Per step: ``[epoch, batch_idx, global_step, sample indices]``."""
        return cast("list[list[Any]]", self.module.seen)

    def weights(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.module.parameters()]


@pytest.fixture(scope="module", params=["infinite", "distributed"])
def reference(
    request: pytest.FixtureRequest, recipe: ModuleType, tmp_path_factory: pytest.TempPathFactory
) -> Run:
    """The uninterrupted run, with a checkpoint every 2 steps, for each kind of sampler."""
    sampler: str = request.param
    return Run(recipe, tmp_path_factory.mktemp(f"reference-{sampler}"), sampler=sampler)


def expected_batches(sampler: str, steps: int) -> list[list[int]]:
    """The sample indices of the first ``steps`` batches of a run in one process."""
    if sampler == "infinite":
        order = list(itertools.islice(InfiniteSampler(NUM_SAMPLES, seed=SEED), steps * BATCH_SIZE))
        return [order[i : i + BATCH_SIZE] for i in range(0, len(order), BATCH_SIZE)]
    # DistributedSampler(shuffle=True, seed) on one rank: pass p is randperm seeded seed + p.
    batches: list[list[int]] = []
    for pass_index in itertools.count():
        generator = torch.Generator().manual_seed(SEED + pass_index)
        order = torch.randperm(NUM_SAMPLES, generator=generator).tolist()
        batches.extend(order[i : i + BATCH_SIZE] for i in range(0, NUM_SAMPLES, BATCH_SIZE))
        if len(batches) >= steps:
            return batches[:steps]
    raise AssertionError("unreachable: itertools.count() never ends")


def test_lightning_epochs_are_virtual_epochs(reference: Run) -> None:
    trainer = reference.trainer
    assert trainer.num_training_batches == STEPS_PER_EPOCH
    assert trainer.estimated_stepping_batches == TOTAL
    assert trainer.current_epoch == EPOCHS
    assert trainer.global_step == TOTAL
    # Each Lightning epoch is one virtual epoch of 5 batches; the bar's total is 5 in each.
    assert [(epoch, idx, step) for epoch, idx, step, _ in reference.seen] == [
        (step // STEPS_PER_EPOCH, step % STEPS_PER_EPOCH, step) for step in range(TOTAL)
    ]
    assert reference.bar.totals == [(step // STEPS_PER_EPOCH, 5) for step in range(TOTAL)]
    # The data stream runs on across epochs and passes, each pass a new shuffle (the
    # DistributedSampler's from VirtualDataLoader's set_epoch(pass)).
    indices = [batch for *_, batch in reference.seen]
    assert indices == expected_batches(reference.sampler, TOTAL)
    checkpoints = sorted(p.name for p in reference.run_dir.glob("*.ckpt"))
    assert checkpoints == sorted(f"step={step}.ckpt" for step in range(2, TOTAL + 1, 2))


@pytest.mark.parametrize("accumulate", [1, 2, 3])
def test_lightning_total_steps_known_without_the_data_equals_its_estimate(
    recipe: ModuleType, accumulate: int, tmp_path: Path
) -> None:
    # The workaround for #20550 must size the schedule as Lightning steps it: the run ends
    # exactly at OneCycleLR's last step (one optimizer step more would raise).
    module = recipe.VirtualEpochModule(seed=SEED)
    trainer = recipe.fit(
        module,
        tmp_path,
        epochs=EPOCHS,
        checkpoint_every=100,
        accumulate_grad_batches=accumulate,
        enable_progress_bar=False,
    )
    assert module.total_steps() == trainer.estimated_stepping_batches == trainer.global_step
    schedule = trainer.lr_scheduler_configs[0].scheduler
    with pytest.raises(ValueError, match="Tried to step"):
        schedule.step()


@pytest.mark.parametrize(
    "step",
    [
        4,  # mid-epoch 0
        8,  # mid-epoch 1, and the end of the DistributedSampler's first pass (8 batches)
        10,  # the end of epoch 1
    ],
)
def test_lightning_resumes_a_checkpoint_exactly(
    recipe: ModuleType, reference: Run, step: int, tmp_path: Path
) -> None:
    checkpoint = reference.run_dir / f"step={step}.ckpt"
    saved = torch.load(checkpoint, weights_only=True)["loops"]["fit_loop"]["state_dict"]
    assert saved["combined_loader"][0]["steps"] == step  # our state_dict, saved by Lightning
    resumed = Run(recipe, tmp_path, sampler=reference.sampler, ckpt_path=checkpoint)
    assert resumed.seen == reference.seen[step:]
    assert all(map(torch.equal, resumed.weights(), reference.weights()))
    assert resumed.trainer.num_training_batches == STEPS_PER_EPOCH
    # Lightning 2.6 skips on_train_epoch_start for the epoch it resumes in (also when the
    # checkpoint came after an epoch's last batch), so that epoch's bar keeps the total of the
    # bar made at on_train_start: None ("4/?"). Every later epoch shows 5 again.
    first_epoch = resumed.seen[0][0]
    assert resumed.bar.totals == [
        (epoch, None if epoch == first_epoch else STEPS_PER_EPOCH) for epoch, *_ in resumed.seen
    ]


@pytest.fixture(scope="module")
def trap_classes(recipe: ModuleType) -> tuple[type[pl.LightningModule], type[pl.LightningModule]]:
    """The trap of Lightning #20550, and the workaround that keeps reading the estimate."""

    # (mypy cannot see the base class: the recipe module is loaded at run time.)
    class ReadsEstimate(recipe.VirtualEpochModule):  # type: ignore[misc,name-defined]
        """Sizes the schedule from trainer.estimated_stepping_batches: Lightning #20550."""

        def total_steps(self) -> int:
            return int(self.trainer.estimated_stepping_batches)

    class RestoresItself(ReadsEstimate):
        """Keeps the loader state of the checkpoint and loads it into its own loader."""

        def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            loops = checkpoint["loops"]["fit_loop"]["state_dict"]
            self.loader_states = loops.get("combined_loader")

        def train_dataloader(self) -> Any:
            loader = super().train_dataloader()
            if getattr(self, "loader_states", None):
                loader.load_state_dict(self.loader_states[0])
                self.loader_states = None
            return loader

    return ReadsEstimate, RestoresItself


def test_lightning_20550_reading_the_estimate_loses_the_data_position(
    recipe: ModuleType,
    trap_classes: tuple[type[pl.LightningModule], type[pl.LightningModule]],
    tmp_path: Path,
) -> None:
    # When this fails, Lightning fixed #20550: update docs/integrations.md.
    reads_estimate, _ = trap_classes
    original = Run(recipe, tmp_path / "reference", module_class=reads_estimate)
    step = 8
    resumed = Run(
        recipe,
        tmp_path / "resumed",
        module_class=reads_estimate,
        ckpt_path=original.run_dir / f"step={step}.ckpt",
    )
    # Lightning resumes its own counters (epoch 1, batch 3, step 8) but never restores the
    # loader: the data stream silently starts again from its first batch.
    assert [row[:3] for row in resumed.seen] == [row[:3] for row in original.seen[step:]]
    assert [row[3] for row in resumed.seen] == expected_batches("infinite", TOTAL - step)
    assert [row[3] for row in resumed.seen] != [row[3] for row in original.seen[step:]]


def test_lightning_20550_workaround_restoring_the_loader_in_train_dataloader(
    recipe: ModuleType,
    trap_classes: tuple[type[pl.LightningModule], type[pl.LightningModule]],
    tmp_path: Path,
) -> None:
    _, restores_itself = trap_classes
    original = Run(recipe, tmp_path / "reference", module_class=restores_itself)
    for step in (4, 8):
        resumed = Run(
            recipe,
            tmp_path / f"resumed-{step}",
            module_class=restores_itself,
            ckpt_path=original.run_dir / f"step={step}.ckpt",
        )
        assert resumed.seen == original.seen[step:]
        assert all(map(torch.equal, resumed.weights(), original.weights()))


def torchrun(script: Path, nproc: int, args: list[str], timeout: float) -> str:
    """Run ``script`` on ``nproc`` local CPU ranks."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return run_command([*command, f"--nproc_per_node={nproc}", str(script), *args], timeout)


@pytest.mark.timeout(150)
def test_lightning_ddp_on_two_ranks_shards_and_resumes_exactly(tmp_path: Path) -> None:
    args = ["--devices=2", f"--run-dir={tmp_path}", "--sampler", "infinite", "distributed"]
    output = torchrun(RECIPE, 2, args, timeout=120)
    assert output.count("IDENTICAL batches") == 4, output
    for sampler in ("infinite", "distributed"):
        ranks = [json.loads((tmp_path / sampler / f"rank{r}.json").read_text()) for r in (0, 1)]
        per_rank = []
        for rank, report in enumerate(ranks):
            assert (report["rank"], report["world_size"]) == (rank, 2)
            assert report["num_training_batches"] == STEPS_PER_EPOCH
            assert report["estimated_stepping_batches"] == TOTAL
            assert report["identical"]
            assert report["resumed"] == report["reference"][8:]
            per_rank.append([batch for *_, batch in report["reference"]])
        if sampler == "infinite":
            # Rank r's j-th sample of step s sits at global position (s * 3 + j) * 2 + r, and
            # the global order is the one-process order: sharding is exact and W-independent.
            merged = [
                sample
                for step in zip(*per_rank, strict=True)
                for row in zip(*step, strict=True)  # one sample from each rank, in rank order
                for sample in row
            ]
            assert merged == list(
                itertools.islice(InfiniteSampler(NUM_SAMPLES, seed=SEED), len(merged))
            )
        else:
            # DistributedSampler: 12 samples (4 batches) per rank and pass; together a pass
            # covers the dataset (23 samples, one repeated as padding).
            for pass_index in range(TOTAL // 4):
                window = slice(4 * pass_index, 4 * pass_index + 4)
                samples = [i for rank in per_rank for batch in rank[window] for i in batch]
                assert sorted(set(samples)) == list(range(NUM_SAMPLES)), pass_index
