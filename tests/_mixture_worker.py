"""What each rank runs in ``test_mixture_distributed.py`` (spawned, real gloo process group).

Every rank builds its ``MixtureSampler`` without a rank or world size (both come from
``torch.distributed`` when first read), trains a few virtual epochs, records its batches, joins
one collective per step, and checks that ``state_dict()`` agrees across ranks. Rank 0 writes a
JSON report; the state at ``save_at`` goes into it.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from virtual_epochs import MixtureSampler, VirtualDataLoader


def mixture(config: dict[str, Any], **kwargs: Any) -> MixtureSampler:
    return MixtureSampler(
        config["sizes"], config["weights"], phases=config["phases"], seed=config["seed"], **kwargs
    )


def run(rank: int, world_size: int, config: dict[str, Any]) -> None:
    """Entry point for ``torch.multiprocessing.spawn``: one rank of one scenario."""
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    sampler = mixture(config)  # built before the process group exists, as users do
    dist.init_process_group(
        "gloo",
        init_method=f"file://{config['rendezvous']}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=30),
    )
    try:
        report = _train(sampler, config)
        reports: list[Any] = [None] * world_size
        dist.all_gather_object(reports, report)
        if rank == 0:
            Path(config["report"]).write_text(json.dumps(reports))
    finally:
        dist.destroy_process_group()


def _train(sampler: MixtureSampler, config: dict[str, Any]) -> dict[str, Any]:
    dataset = range(sum(config["sizes"]))
    vl = VirtualDataLoader(DataLoader(dataset, sampler=sampler, batch_size=config["batch"]), 4)
    if config.get("load"):
        vl.load_state_dict(json.loads(Path(config["load"]).read_text()))
    batches: list[list[int]] = []
    agree = True
    saved = None
    for _ in range(vl.epoch, config["epochs"]):
        for batch in vl:
            batches.append(batch.tolist())
            step = torch.ones(())
            dist.all_reduce(step)
            states: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(states, vl.state_dict())
            agree = agree and all(state == states[0] for state in states)
            if vl.steps == config.get("save_at"):
                saved = vl.state_dict()
    return {"batches": batches, "agree": agree, "saved": saved, "world": sampler.world_size}
