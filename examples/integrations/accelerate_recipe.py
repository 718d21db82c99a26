"""Accelerate with virtual epochs: ``save_state``/``load_state`` resume exactly, on any number of
processes.

The recipe (docs/integrations.md explains each line):

- the ``DataLoader`` draws from an ``InfiniteSampler`` that shards by itself, with
  ``rank=accelerator.process_index`` and ``world_size=accelerator.num_processes``;
- ``VirtualDataLoader`` wraps that ``DataLoader``; ``accelerator.prepare`` returns the wrapper
  unchanged (it is not a ``DataLoader``), so Accelerate does not shard the batches a second time;
  batches are moved to ``accelerator.device`` in the loop;
- ``accelerator.register_for_checkpointing(loader)``: ``save_state`` writes the position,
  ``load_state`` restores it, and the next epoch yields exactly the rest of the saved one;
- ``Accelerator(step_scheduler_with_optimizer=False)``: a prepared LR scheduler then steps once
  per ``scheduler.step()``, so ``OneCycleLR(total_steps=epochs * len(loader))`` ends exactly at
  the last step, on any number of processes (by default Accelerate steps it ``num_processes``
  times per call: see ``--default-scheduler``).

Run it in one process, or on two CPU processes with torchrun::

    python examples/integrations/accelerate_recipe.py --run-dir /tmp/vl-accelerate
    torchrun --standalone --nproc_per_node=2 examples/integrations/accelerate_recipe.py \\
        --run-dir /tmp/vl-accelerate-2

It trains ``--epochs`` virtual epochs with ``save_state`` every ``--checkpoint-every`` steps,
then rebuilds everything, ``load_state``s the checkpoint of step ``--resume-step`` (mid-epoch)
and continues: batches, learning rates and final weights must equal the uninterrupted run's.
Each process writes what it saw to ``<run-dir>/rank<r>.json``; the exit status is 0 only if
the runs agree.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from torch.utils.data import DataLoader, Dataset

from virtual_epochs import InfiniteSampler, VirtualDataLoader

NUM_SAMPLES = 23
FEATURES = 4
BATCH_SIZE = 3  # per process


class IndexedData(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Sample ``i`` is ``(i, features of i)``: the index travels with the batch."""

    def __len__(self) -> int:
        return NUM_SAMPLES

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.linspace(-1.0, 1.0, FEATURES) * (index + 1) / NUM_SAMPLES
        return torch.tensor(index), features


@dataclass
class Run:
    """What one process saw: per step the epoch and sample indices, and the learning rate."""

    batches: list[list[Any]] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    schedule_complete: bool = False  # one more scheduler.step() raises: total_steps was exact
    strategy: str = ""


def build(
    accelerator: Accelerator, *, epochs: int, steps_per_epoch: int, seed: int
) -> tuple[Any, Any, Any, VirtualDataLoader[Any]]:
    """Model, optimizer, LR scheduler and training data, prepared by ``accelerator``."""
    torch.manual_seed(0)  # the same initial weights in every process
    model = torch.nn.Linear(FEATURES, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    dataset = IndexedData()
    sampler = InfiniteSampler(
        dataset,
        seed=seed,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
    )
    loader = VirtualDataLoader(
        DataLoader(dataset, batch_size=BATCH_SIZE, sampler=sampler), steps_per_epoch
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.1, total_steps=epochs * len(loader)
    )
    model, optimizer, scheduler, prepared = accelerator.prepare(model, optimizer, scheduler, loader)
    assert prepared is loader  # not a DataLoader: Accelerate leaves it alone
    accelerator.register_for_checkpointing(loader)
    return model, optimizer, scheduler, loader


def train(
    run_dir: Path,
    *,
    epochs: int,
    steps_per_epoch: int,
    checkpoint_every: int | None = None,
    resume_step: int | None = None,
    default_scheduler: bool = False,
    cpu: bool = False,
    seed: int = 1,
) -> Run:
    """Train to the end, with ``save_state`` every ``checkpoint_every`` steps, or resume from
    the checkpoint of step ``resume_step``."""
    accelerator = Accelerator(cpu=cpu, step_scheduler_with_optimizer=default_scheduler)
    model, optimizer, scheduler, loader = build(
        accelerator, epochs=epochs, steps_per_epoch=steps_per_epoch, seed=seed
    )
    if resume_step is not None:
        accelerator.load_state(run_dir / f"step-{resume_step}")
    run = Run(strategy=loader.strategy)
    for epoch in range(loader.epoch, epochs):
        for indices, features in loader:
            loss = model(features.to(accelerator.device)).pow(2).mean()
            accelerator.backward(loss)
            run.batches.append([epoch, indices.tolist()])
            run.lrs.append(optimizer.param_groups[0]["lr"])  # the rate this step uses
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            if checkpoint_every and loader.steps % checkpoint_every == 0:
                accelerator.save_state(run_dir / f"step-{loader.steps}")
    try:
        scheduler.step()
    except ValueError:  # OneCycleLR: "Tried to step 16 times. The specified number of total ..."
        run.schedule_complete = True
    run.weights = [value for p in model.parameters() for value in p.detach().flatten().tolist()]
    accelerator.wait_for_everyone()
    return run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="run on CPU; without it Accelerate runs torchrun's CPU processes as separate rank-0s",
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=5)
    parser.add_argument("--checkpoint-every", type=int, default=4)
    parser.add_argument("--resume-step", type=int, default=8, help="mid-epoch by default")
    parser.add_argument(
        "--default-scheduler",
        action="store_true",
        help="also measure Accelerate's default scheduler stepping (num_processes per call)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = {"epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch, "cpu": args.cpu}
    reference = train(args.run_dir, checkpoint_every=args.checkpoint_every, **settings)
    resumed = train(args.run_dir, resume_step=args.resume_step, **settings)
    step = args.resume_step
    identical = (
        resumed.batches == reference.batches[step:]
        and resumed.lrs == reference.lrs[step:]
        and resumed.weights == reference.weights
        and resumed.schedule_complete
    )
    state = PartialState(cpu=args.cpu)
    report: dict[str, Any] = {
        "rank": state.process_index,
        "world_size": state.num_processes,
        "reference": vars(reference),
        "resumed": vars(resumed),
        "identical": identical,
    }
    if args.default_scheduler:
        report["default_scheduler"] = vars(train(args.run_dir, default_scheduler=True, **settings))
    (args.run_dir / f"rank{state.process_index}.json").write_text(json.dumps(report))
    verdict = "IDENTICAL" if identical else "DIFFERENT"
    print(f"rank {state.process_index}: resumed from step {step}: {verdict} batches, LRs, weights")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
