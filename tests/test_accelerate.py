"""HF Accelerate: ``save_state``/``load_state`` resume a ``VirtualDataLoader`` exactly.

The recipe is ``examples/integrations/accelerate_recipe.py`` (docs/integrations.md): an
``InfiniteSampler`` sharded by Accelerate's process index, a ``VirtualDataLoader`` around the
``DataLoader`` that ``prepare()`` passes through unchanged, registered for checkpointing. These
tests run it with the real Accelerate in one process and in two under torchrun, and pin what
happens to a ``DataLoader`` that ``prepare()`` rebuilds.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from accelerate.data_loader import prepare_data_loader
from torch.utils.data import DataLoader

from _helpers import IndexDataset, assert_resumes_exactly, run_command, run_epochs
from virtual_epochs import InfiniteSampler, VirtualDataLoader

RECIPE = Path(__file__).resolve().parents[1] / "examples" / "integrations" / "accelerate_recipe.py"
# The recipe's defaults: 3 epochs of 5 steps, batches of 3 from 23 samples, seed 1, resumed
# from the save_state of step 8.
EPOCHS, STEPS_PER_EPOCH, BATCH_SIZE, NUM_SAMPLES, SEED, RESUME = 3, 5, 3, 23, 1, 8
TOTAL = EPOCHS * STEPS_PER_EPOCH


def one_cycle_rates() -> list[float]:
    """The rate OneCycleLR(total_steps=TOTAL) gives each step, and after the last one."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=TOTAL)
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(TOTAL):
        optimizer.step()
        schedule.step()
        rates.append(optimizer.param_groups[0]["lr"])
    return rates


def check_report(report: dict[str, Any], rank: int, world_size: int) -> list[list[int]]:
    """Check one process's report of the recipe; return its batches' sample indices."""
    assert (report["rank"], report["world_size"]) == (rank, world_size)
    reference, resumed = report["reference"], report["resumed"]
    assert report["identical"]
    assert reference["strategy"] == "seek"  # the O(1) resume: nothing replayed
    assert resumed["batches"] == reference["batches"][RESUME:]
    assert [epoch for epoch, _ in reference["batches"]] == [
        step // STEPS_PER_EPOCH for step in range(TOTAL)
    ]
    assert resumed["weights"] == reference["weights"]
    # Accelerator(step_scheduler_with_optimizer=False): one scheduler step per call, on any
    # number of processes: the one-process schedule, to its last step, which then raises.
    rates = one_cycle_rates()
    assert reference["lrs"] == pytest.approx(rates[:TOTAL], rel=1e-12)
    assert resumed["lrs"] == reference["lrs"][RESUME:]
    assert reference["schedule_complete"]
    assert resumed["schedule_complete"]
    # Accelerate's default steps the scheduler num_processes times per call: on W processes
    # step k runs at rate k * W, and once past total_steps it stops stepping without a word.
    default = report["default_scheduler"]
    assert default["lrs"] == pytest.approx(
        [rates[min(step * world_size, TOTAL)] for step in range(TOTAL)], rel=1e-12
    )
    assert not default["schedule_complete"]  # the step past the end is swallowed
    return [indices for _, indices in reference["batches"]]


@pytest.mark.timeout(120)
def test_accelerate_recipe_in_one_process_resumes_exactly(tmp_path: Path) -> None:
    command = [sys.executable, str(RECIPE), "--cpu", "--default-scheduler", f"--run-dir={tmp_path}"]
    output = run_command(command, timeout=100)
    assert "rank 0: resumed from step 8: IDENTICAL" in output, output
    batches = check_report(json.loads((tmp_path / "rank0.json").read_text()), 0, 1)
    order = list(itertools.islice(InfiniteSampler(NUM_SAMPLES, seed=SEED), TOTAL * BATCH_SIZE))
    assert [i for batch in batches for i in batch] == order


@pytest.mark.timeout(150)
def test_accelerate_recipe_on_two_processes_shards_and_resumes_exactly(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", str(RECIPE), "--cpu", "--default-scheduler"]
    output = run_command([*command, f"--run-dir={tmp_path}"], timeout=120)
    assert output.count("IDENTICAL batches, LRs, weights") == 2, output
    per_rank = [
        check_report(json.loads((tmp_path / f"rank{rank}.json").read_text()), rank, 2)
        for rank in (0, 1)
    ]
    # Rank r's j-th sample of step s is global position (s * 3 + j) * 2 + r, and the global
    # order is the one-process order: no sample lost or repeated, whatever the world size.
    merged = [
        sample
        for step in zip(*per_rank, strict=True)
        for row in zip(*step, strict=True)  # one sample from each rank, in rank order
        for sample in row
    ]
    assert merged == list(itertools.islice(InfiniteSampler(NUM_SAMPLES, seed=SEED), len(merged)))


# ------------------------------------------------------- a DataLoader rebuilt by prepare()
# prepare_data_loader() is what Accelerator.prepare() does to a DataLoader; with explicit
# num_processes and process_index it builds each rank's loader here, without a process group.


def prepared(dataset_size: int, num_processes: int, rank: int, **loader: Any) -> Any:
    return prepare_data_loader(
        DataLoader(IndexDataset(dataset_size), batch_size=3, **loader),
        num_processes=num_processes,
        process_index=rank,
        put_on_device=False,
    )


@pytest.mark.parametrize(("num_processes", "rank"), [(1, 0), (2, 0), (2, 1)])
def test_a_prepared_dataloader_is_saved_and_resumed(num_processes: int, rank: int) -> None:
    # Accelerate's DataLoaderShard has state_dict() whatever it wraps; over a plain DataLoader
    # it cannot work, so the prepared loader is replayed (exactly: its passes are seeded).
    def make() -> VirtualDataLoader[Any]:
        return VirtualDataLoader(prepared(11, num_processes, rank), 3)

    assert make().strategy == "replay"

    assert_resumes_exactly(make, epochs=4, save_at=[0, 2, 4, 5, 9])


@pytest.mark.parametrize("rank", [0, 1])
def test_an_infinite_sampler_sharded_by_prepare_is_resumed_by_seeking(rank: int) -> None:
    def make() -> VirtualDataLoader[Any]:
        sampler = InfiniteSampler(11, seed=1, rank=0, world_size=1)  # Accelerate shards
        return VirtualDataLoader(prepared(11, 2, rank, sampler=sampler), 3)

    assert make().strategy == "seek"
    assert_resumes_exactly(make, epochs=4, save_at=[0, 2, 3, 7, 12])


@pytest.mark.parametrize("rank", [0, 1])
def test_split_batches_consume_one_batch_of_the_global_stream_per_step(rank: int) -> None:
    def make() -> VirtualDataLoader[Any]:
        sampler = InfiniteSampler(11, seed=1, rank=0, world_size=1)
        loader = DataLoader(IndexDataset(11), batch_size=4, sampler=sampler)
        split = prepare_data_loader(
            loader, num_processes=2, process_index=rank, split_batches=True, put_on_device=False
        )
        return VirtualDataLoader(split, 3)

    vl = make()
    assert vl.strategy == "seek"
    run_epochs(vl, 2)
    assert vl.state_dict()["resume"]["seek"]["position"] == 6 * 4  # 6 steps of one 4-sample batch
    assert_resumes_exactly(make, epochs=4, save_at=[0, 2, 3, 7])


def test_prepare_shards_an_infinite_sampler_by_whole_batches() -> None:
    # Why seeking through it is exact: Accelerate's BatchSamplerShard gives rank r
    # every r-th batch of the global stream, a correct split of the InfiniteSampler's order.
    sampler = InfiniteSampler(11, seed=1, rank=0, world_size=1)
    ranks = [iter(prepared(11, 2, rank, sampler=sampler)) for rank in (0, 1)]
    merged = [sample for _ in range(6) for loader in ranks for sample in next(loader).tolist()]
    assert merged == list(itertools.islice(InfiniteSampler(11, seed=1), 36))
