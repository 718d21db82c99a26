"""Lightning with virtual epochs: a mid-epoch checkpoint resumed exactly, on one or more ranks.

The recipe (docs/integrations.md explains each line):

- ``train_dataloader()`` returns a ``VirtualDataLoader``: Lightning's epochs are virtual epochs
  of ``steps_per_epoch`` steps, and its progress bar and ``estimated_stepping_batches`` agree;
- an ``InfiniteSampler`` inside shards by rank (Lightning never looks inside the wrapper, so it
  injects no ``DistributedSampler``); a ``DistributedSampler`` of your own works too;
- Lightning saves ``VirtualDataLoader.state_dict()`` in every checkpoint and restores it before
  the first batch of ``Trainer.fit(ckpt_path=...)``;
- ``configure_optimizers`` sizes the LR schedule as ``max_epochs * steps_per_epoch`` and never
  reads ``trainer.estimated_stepping_batches``, which would silently lose the data position on
  resume (Lightning issue #20550).

Run it in one process, or on two CPU ranks with torchrun::

    python examples/integrations/lightning_recipe.py --run-dir /tmp/vl-lightning
    torchrun --standalone --nproc_per_node=2 examples/integrations/lightning_recipe.py \\
        --devices 2 --run-dir /tmp/vl-lightning-ddp

It trains ``--epochs`` virtual epochs with a checkpoint every ``--checkpoint-every`` steps, then
a fresh ``Trainer`` resumes from the mid-epoch checkpoint of step ``--resume-step`` and must see
exactly the batches (sample indices) of the uninterrupted run from there on. Each rank writes
what it saw to ``<run-dir>/rank<r>.json``; the exit status is 0 only if the runs agree.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from virtual_epochs import InfiniteSampler, VirtualDataLoader

NUM_SAMPLES = 23  # a pass is not a whole number of batches, nor of epochs
FEATURES = 4

Record = list[Any]  # [epoch, batch_idx, global_step, sample indices]


class IndexedData(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Sample ``i`` is ``(i, features of i)``: the index travels with the batch."""

    def __len__(self) -> int:
        return NUM_SAMPLES

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.linspace(-1.0, 1.0, FEATURES) * (index + 1) / NUM_SAMPLES
        return torch.tensor(index), features


class VirtualEpochModule(pl.LightningModule):
    """A tiny regression model whose training data comes in virtual epochs.

    Args:
        steps_per_epoch: batches in every Lightning epoch.
        batch_size: samples per batch, on each rank.
        sampler: ``"infinite"`` (``InfiniteSampler``) or ``"distributed"`` (``DistributedSampler``).
        seed: the sample order's seed, the same on every rank.
    """

    def __init__(
        self,
        steps_per_epoch: int = 5,
        batch_size: int = 3,
        sampler: str = "infinite",
        seed: int = 1,
    ) -> None:
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.batch_size = batch_size
        self.sampler_kind = sampler
        self.seed = seed
        self.layer = torch.nn.Linear(FEATURES, 1)
        self.seen: list[Record] = []  # what training_step received, in order

    def train_dataloader(self) -> VirtualDataLoader[Any]:
        dataset = IndexedData()
        rank, world_size = self.trainer.global_rank, self.trainer.world_size
        sampler: InfiniteSampler | DistributedSampler[Any]
        if self.sampler_kind == "infinite":
            sampler = InfiniteSampler(dataset, seed=self.seed, rank=rank, world_size=world_size)
        else:
            # VirtualDataLoader calls set_epoch(pass) on it: every pass is a new shuffle.
            sampler = DistributedSampler(
                dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=self.seed
            )
        loader = DataLoader(dataset, batch_size=self.batch_size, sampler=sampler)
        return VirtualDataLoader(loader, steps_per_epoch=self.steps_per_epoch)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        indices, features = batch
        self.seen.append([self.current_epoch, batch_idx, self.global_step, indices.tolist()])
        loss: torch.Tensor = self.layer(features).pow(2).mean()
        return loss

    def total_steps(self) -> int:
        """The whole run's optimizer steps, known without touching the data (Lightning #20550)."""
        max_epochs = self.trainer.max_epochs
        if max_epochs is None or max_epochs < 1:
            raise ValueError(f"set Trainer(max_epochs=...) to a positive int (got {max_epochs})")
        # Lightning also steps the optimizer after an epoch's last, incomplete accumulation.
        per_epoch = -(-self.steps_per_epoch // self.trainer.accumulate_grad_batches)
        return max_epochs * per_epoch

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.01)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=0.1, total_steps=self.total_steps()
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def fit(
    module: VirtualEpochModule,
    run_dir: Path,
    *,
    epochs: int,
    checkpoint_every: int,
    devices: int = 1,
    ckpt_path: Path | None = None,
    callbacks: Sequence[pl.Callback] = (),
    **trainer_kwargs: Any,
) -> pl.Trainer:
    """Train ``module`` for ``epochs`` virtual epochs, checkpointing every few steps."""
    checkpoints = ModelCheckpoint(
        dirpath=run_dir,
        filename="{step}",
        every_n_train_steps=checkpoint_every,
        save_top_k=-1,  # keep them all: any of them can be resumed from
    )
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        use_distributed_sampler=False,  # the sampler inside shards by itself
        callbacks=[checkpoints, *callbacks],
        default_root_dir=run_dir,
        logger=False,
        enable_model_summary=False,
        **trainer_kwargs,
    )
    trainer.fit(module, ckpt_path=ckpt_path)
    return trainer


def checkpoint_of_step(run_dir: Path, step: int) -> Path:
    """The checkpoint that ``fit`` wrote after global step ``step``."""
    return run_dir / f"step={step}.ckpt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--devices", type=int, default=1, help="ranks (launch with torchrun)")
    parser.add_argument(
        "--sampler",
        choices=["infinite", "distributed"],
        nargs="+",
        default=["infinite"],
        help="one run (and resume) per sampler, in the same processes",
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=5)
    parser.add_argument("--checkpoint-every", type=int, default=4)
    parser.add_argument("--resume-step", type=int, default=8, help="mid-epoch by default")
    return parser.parse_args(argv)


def train_and_resume(args: argparse.Namespace, sampler: str) -> bool:
    """Train uninterrupted, resume from a mid-epoch checkpoint, report; True if they agree."""
    run_dir = args.run_dir / sampler
    common = {"epochs": args.epochs, "checkpoint_every": args.checkpoint_every}

    reference = VirtualEpochModule(steps_per_epoch=args.steps_per_epoch, sampler=sampler)
    trainer = fit(reference, run_dir / "reference", devices=args.devices, **common)

    resumed = VirtualEpochModule(steps_per_epoch=args.steps_per_epoch, sampler=sampler)
    checkpoint = checkpoint_of_step(run_dir / "reference", args.resume_step)
    fit(resumed, run_dir / "resumed", devices=args.devices, ckpt_path=checkpoint, **common)

    identical = resumed.seen == reference.seen[args.resume_step :]
    report = {
        "rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "num_training_batches": trainer.num_training_batches,
        "estimated_stepping_batches": trainer.estimated_stepping_batches,
        "reference": reference.seen,
        "resumed": resumed.seen,
        "identical": identical,
    }
    (run_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))
    verdict = "IDENTICAL" if identical else "DIFFERENT"
    print(f"rank {trainer.global_rank}, {sampler} sampler: resumed from step {args.resume_step}:")
    print(f"  {verdict} batches to the uninterrupted run's")
    return identical


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = [train_and_resume(args, sampler) for sampler in args.sampler]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
