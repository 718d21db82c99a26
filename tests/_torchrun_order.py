"""Run by ``torchrun`` in ``test_example_distributed.py``: the order of set-up and
``init_process_group`` must not change which samples a rank gets.

Each rank, before the process group exists, tries to iterate a sampler left to find its rank
(it must refuse: torchrun says there are several ranks), then builds a loader whose sampler
takes its rank from the process group; it initialises the group, builds a second loader the
usual way, iterates both, and prints one JSON line with what it saw.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta

import torch.distributed as dist
from torch.utils.data import DataLoader

from virtual_epochs import InfiniteSampler, VirtualDataLoader

N, BATCH, STEPS = 20, 2, 6


def batches(vl: VirtualDataLoader[object]) -> list[list[int]]:
    return [batch.tolist() for batch in vl]  # type: ignore[attr-defined]


def main() -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    refused = ""
    try:
        iter(InfiniteSampler(N, seed=1))
    except RuntimeError as error:
        refused = str(error)
    early = VirtualDataLoader(
        DataLoader(range(N), batch_size=BATCH, sampler=InfiniteSampler(N, seed=1)), STEPS
    )
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    late = VirtualDataLoader(
        DataLoader(range(N), batch_size=BATCH, sampler=InfiniteSampler(N, seed=1)), STEPS
    )
    report = {"refused": refused, "early": batches(early), "late": batches(late)}
    reports: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(reports, report)
    if dist.get_rank() == 0:
        print("REPORT " + json.dumps(reports), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
