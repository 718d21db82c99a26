"""Datasets with random augmentations for the keyed-randomness tests.

In a module of its own so that DataLoader workers started with ``spawn`` (and spawned gloo
ranks) can import them.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from virtual_epochs import InfiniteSampler, KeyedDataset, KeyedSampler, VirtualDataLoader


def augment(index: int) -> torch.Tensor:
    """Sample ``index`` plus draws from every global generator that ``KeyedDataset`` seeds."""
    parts = [
        torch.tensor([float(index)], dtype=torch.float64),
        torch.rand(2, dtype=torch.float64),
        torch.randn(1, dtype=torch.float64),  # (a normal sample: torch caches its pair)
        torch.randint(0, 1 << 30, (1,)).double(),
        torch.randperm(5).double(),
        torch.tensor([random.random(), random.gauss(0, 1)], dtype=torch.float64),
        torch.tensor([np.random.rand(), np.random.normal()], dtype=torch.float64),
    ]
    return torch.cat(parts)


WIDTH = 14  # the length of one augmented sample
CONTINUOUS = [1, 2, 3, 4, 10, 11, 12, 13]  # its draws that two streams share by chance never


class Augmented(Dataset[torch.Tensor]):
    """``n`` samples; sample ``i`` is ``augment(i)``: random draws from the global generators."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> torch.Tensor:
        if not isinstance(index, int):
            raise TypeError(f"index must be an int (got {index!r})")
        return augment(index)


class BatchedAugmented(Augmented):
    """``Augmented`` with a batched fetch (``__getitems__``), as the DataLoader calls it."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.calls: list[list[int]] = []

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        self.calls.append(list(indices))
        return [augment(index) for index in indices]


class WorkerTagged(Augmented):
    """``Augmented`` whose samples end with ``tag``, which a ``worker_init_fn`` sets."""

    tag = -1.0

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.cat([augment(index), torch.tensor([self.tag], dtype=torch.float64)])


def tag_worker(worker_id: int) -> None:
    """A ``worker_init_fn``: tags the worker's copy of the dataset, and reseeds the globals."""
    info = get_worker_info()
    assert info is not None
    info.dataset.dataset.tag = 100.0 + worker_id  # type: ignore[attr-defined]  # KeyedDataset
    random.seed(worker_id)
    torch.manual_seed(worker_id)


def keyed_loader(
    n: int,
    batch: int,
    steps_per_epoch: int,
    *,
    seed: int = 0,
    keyed_seed: int = 1,
    rank: int | None = None,
    world_size: int | None = None,
    dataset: Dataset[Any] | None = None,
    **loader_args: Any,
) -> VirtualDataLoader[Any]:
    """A ``VirtualDataLoader`` over a keyed ``Augmented`` pipeline."""
    sampler = KeyedSampler(
        InfiniteSampler(n, seed=seed, rank=rank, world_size=world_size), seed=keyed_seed
    )
    data = KeyedDataset(dataset if dataset is not None else Augmented(n))
    loader = DataLoader(
        data,
        batch_size=batch,
        sampler=sampler,
        generator=torch.Generator().manual_seed(0),  # iter() leaves the global RNG alone
        **loader_args,
    )
    return VirtualDataLoader(loader, steps_per_epoch)


def take(vl: VirtualDataLoader[Any], steps: int) -> torch.Tensor:
    """The next ``steps`` batches of ``vl``, stacked (epochs roll over as needed)."""
    out: list[torch.Tensor] = []
    while len(out) < steps:
        for batch in vl:
            out.append(batch)
            if len(out) == steps:
                break
    return torch.stack(out)
