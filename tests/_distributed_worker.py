"""What each rank runs in the multi-process tests (spawned, with a real gloo process group).

Every rank trains for a few virtual epochs, records the dataset indices of its batches, joins
one collective per step (as DDP's gradient all-reduce would: an uneven rank would hang it), and
gathers ``state_dict()`` from all ranks at every step. Rank 0 writes a JSON report that the test
checks: batches per rank and step, whether the states agreed, and the state after ``save_at``.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from _keyed_data import keyed_loader
from virtual_epochs import InfiniteSampler, MixtureSampler, VirtualDataLoader

# Older torch now and then hangs for good in destroy_process_group() of a gloo group, in one rank
# after the others have exited, with a file or a TCP store, with or without a barrier first:
# seen on 2.2.2, 2.4.1, 2.5.1 and 2.6.0; not on 2.13.0 (12 launches in a row), nor in the matrix
# runs of 2.14.1 and 2.15.0; versions in between are not measured. Nor can such a rank leave the
# group to interpreter exit, which now and then aborts (SIGABRT, seen on 2.6.0): on torch before
# 2.13 a rank that is done leaves at once with os._exit(0), after its report is written.
DESTROY_HANGS = tuple(int(part) for part in torch.__version__.split(".")[:2]) < (2, 13)


def run(rank: int, world_size: int, config: dict[str, Any]) -> None:
    """Entry point for ``torch.multiprocessing.spawn``: one rank of one scenario."""
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    # A loader built before the process group exists, as users do, takes its rank and world
    # size from the group when it first iterates.
    early = loader(config) if config.get("build_before_init") else None
    dist.init_process_group(
        "gloo",
        init_method=f"file://{config['rendezvous']}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=30),
    )
    try:
        report = _train(rank, world_size, config, early)
        reports: list[Any] = [None] * world_size
        dist.all_gather_object(reports, report)
        if rank == 0:
            Path(config["report"]).write_text(json.dumps(reports))
    finally:
        if not DESTROY_HANGS:
            dist.destroy_process_group()
    if DESTROY_HANGS:  # the group is still alive: leave before interpreter exit tears it down
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def loader(config: dict[str, Any]) -> VirtualDataLoader[Any]:
    n, batch, spe, seed = config.get("n", 0), config["batch"], config["spe"], config["seed"]
    if config["sampler"] == "keyed":  # augmented samples, randomness keyed by position
        return keyed_loader(n, batch, config["spe"], seed=config["seed"])
    if config["sampler"] == "mixture":  # weighted sources, with phases
        sizes = config["sizes"]
        mixture = MixtureSampler(sizes, config["weights"], phases=config["phases"], seed=seed)
        dataset = range(sum(sizes))
        return VirtualDataLoader(DataLoader(dataset, batch_size=batch, sampler=mixture), spe)
    if config["sampler"] == "infinite":
        sampler: Any = InfiniteSampler(n, seed=config["seed"])  # rank, world size from dist
    else:
        sampler = DistributedSampler(range(n), shuffle=True, seed=config["seed"])
    return VirtualDataLoader(DataLoader(range(n), batch_size=batch, sampler=sampler), config["spe"])


def _train(
    rank: int, world_size: int, config: dict[str, Any], early: VirtualDataLoader[Any] | None
) -> dict[str, Any]:
    vl = early if early is not None else loader(config)
    if config.get("load"):
        vl.load_state_dict(json.loads(Path(config["load"]).read_text()))
    batches: list[list[int]] = []
    states_agree = True
    saved = None
    for _ in range(vl.epoch, config["epochs"]):
        for batch in vl:
            batches.append(batch.tolist())
            step = torch.ones(())
            dist.all_reduce(step)  # a collective every step: a rank that ran out would hang it
            assert int(step) == world_size
            states: list[Any] = [None] * world_size
            dist.all_gather_object(states, vl.state_dict())
            states_agree = states_agree and all(state == states[0] for state in states)
            if vl.steps == config.get("save_at"):
                saved = vl.state_dict()
    return {
        "rank": rank,
        "batches": batches,
        "states_agree": states_agree,
        "saved": saved,
        "steps": vl.steps,
        "epoch": vl.epoch,
        "sampler_epoch": getattr(vl.loader.sampler, "epoch", None),  # type: ignore[attr-defined]
        "sampler_world_size": getattr(vl.loader.sampler, "world_size", None),  # type: ignore[attr-defined]
    }
