"""The one table of loader shapes the tests run: name -> (strategy, factory).

Every test file that needs "a loader of each shape" takes it from ``SHAPES``; the contract test
(``test_strategy_contract.py``) runs every entry through the same cases. Adding a strategy, or a
shape of wrapped loader, means one entry here.

One set of sizes for all: ``N`` samples in batches of ``BATCH`` make passes of 7 batches (6 with
``drop_last``), epochs are ``STEPS_PER_EPOCH`` = 5 steps: passes, epochs and batches never line
up, an epoch ends inside the first pass (step 5) before that pass ends (step 7), and ``EPOCHS``
epochs (25 steps) cross a pass boundary in every shape (the one without batching: 20 batches).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, SequentialSampler
from torchdata.stateful_dataloader import StatefulDataLoader

from _helpers import CountingStream, IndexDataset, round_trip
from virtual_epochs import InfiniteSampler, VirtualDataLoader

N = 20  # samples
BATCH = 3  # so a pass is 7 batches (3 * 6 + 2), 6 with drop_last
STEPS_PER_EPOCH = 5  # so an epoch ends inside a pass
EPOCHS = 5  # 25 steps: into the fourth pass of 7 batches
SEED = 1  # every seed of the table (sampler, generator)
PASS_BATCHES = 7  # batches in a pass of N samples in batches of BATCH


def _seeded() -> torch.Generator:
    return torch.Generator().manual_seed(SEED)


def _plan(n: int) -> list[list[int]]:
    """The batches of indices of a sequential pass over ``n`` samples."""
    return [list(range(start, min(n, start + BATCH))) for start in range(0, n, BATCH)]


class VariableBatches:
    """A custom batch sampler: batches of sizes 1, 2, 3, 1, 2, 3, ... in order."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[list[int]]:
        start, size = 0, 1
        while start < self.n:
            yield list(range(start, min(self.n, start + size)))
            start += size
            size = size % 3 + 1

    def __len__(self) -> int:
        return sum(1 for _ in self)


class LazyBatches:
    """A user's re-iterable of batches without a length; each batch is loaded when drawn."""

    def __init__(self, dataset: Dataset[int]) -> None:
        self.dataset = dataset

    def __iter__(self) -> Iterator[list[int]]:
        for batch in _plan(len(self.dataset)):  # type: ignore[arg-type]
            yield [self.dataset[i] for i in batch]


Build = Callable[..., Iterable[Any]]
"""``build(dataset, **loader_kwargs)``: the loader to wrap, over ``dataset``."""


@dataclass(frozen=True)
class Shape:
    """One shape of wrapped loader, and the strategy ``VirtualDataLoader`` must choose for it."""

    strategy: str
    build: Build
    loader_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Defaults passed to ``build``: ``num_workers`` and the like."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``VirtualDataLoader`` (``verify_replay``)."""
    workers: bool = False
    """Whether ``build`` takes ``DataLoader`` arguments (``num_workers``, ``batch_size``...)."""
    loads: bool = True
    """Whether batches are loaded from the dataset while iterating (not a list of ready ones)."""

    @property
    def num_workers(self) -> int:
        workers: int = self.loader_kwargs.get("num_workers", 0)
        return workers

    def loader(self, dataset: Dataset[int] | None = None, **loader_kwargs: Any) -> Iterable[Any]:
        """A fresh loader of this shape over ``dataset`` (default ``IndexDataset(N)``)."""
        if loader_kwargs and not self.workers:
            raise TypeError(f"this shape takes no loader arguments (got {sorted(loader_kwargs)})")
        dataset = IndexDataset(N) if dataset is None else dataset
        return self.build(dataset, **{**self.loader_kwargs, **loader_kwargs})

    def make(
        self,
        dataset: Dataset[int] | None = None,
        *,
        steps_per_epoch: int = STEPS_PER_EPOCH,
        **loader_kwargs: Any,
    ) -> VirtualDataLoader[Any]:
        """A fresh ``VirtualDataLoader`` over a fresh loader of this shape."""
        return VirtualDataLoader(
            self.loader(dataset, **loader_kwargs), steps_per_epoch, **self.options
        )


def _infinite(dataset: Dataset[int], **kwargs: Any) -> DataLoader[Any]:
    sampler = InfiniteSampler(len(dataset), seed=SEED)  # type: ignore[arg-type]
    return DataLoader(dataset, **{"batch_size": BATCH, "sampler": sampler, **kwargs})


def _data_loader(**preset: Any) -> Build:
    def build(dataset: Dataset[int], **kwargs: Any) -> DataLoader[Any]:
        return DataLoader(dataset, **{"batch_size": BATCH, **preset, **kwargs})

    return build


def _shuffled(dataset: Dataset[int], **kwargs: Any) -> DataLoader[Any]:
    return DataLoader(
        dataset, **{"batch_size": BATCH, "shuffle": True, "generator": _seeded(), **kwargs}
    )


def _distributed(dataset: Dataset[int], **kwargs: Any) -> DataLoader[Any]:
    # Rank 1 of 3: 7 of the 20 samples (one padded), in batches of 3, 3 and 1.
    sampler = DistributedSampler(range(len(dataset)), num_replicas=3, rank=1, seed=SEED)  # type: ignore[arg-type]
    return DataLoader(dataset, **{"batch_size": BATCH, "sampler": sampler, **kwargs})


def _custom_batches(dataset: Dataset[int], **kwargs: Any) -> DataLoader[Any]:
    batches = VariableBatches(len(dataset))  # type: ignore[arg-type]
    return DataLoader(dataset, **{"batch_sampler": batches, **kwargs})


def _unbatched(dataset: Dataset[int], **kwargs: Any) -> DataLoader[Any]:
    sampler = SequentialSampler(range(len(dataset)))  # type: ignore[arg-type]
    return DataLoader(dataset, **{"batch_size": None, "sampler": sampler, **kwargs})


def _ready_batches(dataset: Dataset[int]) -> list[list[int]]:
    return [[dataset[i] for i in batch] for batch in _plan(len(dataset))]  # type: ignore[arg-type]


def _stateful(*, seeded: bool) -> Build:
    def build(dataset: Dataset[int], **kwargs: Any) -> StatefulDataLoader:
        generator = _seeded() if seeded else None  # (a fresh one per loader)
        return StatefulDataLoader(
            dataset, **{"batch_size": BATCH, "shuffle": True, "generator": generator, **kwargs}
        )

    return build


def _stream(dataset: Dataset[int]) -> DataLoader[Any]:
    return DataLoader(CountingStream(len(dataset), source=dataset), batch_size=BATCH)  # type: ignore[arg-type]


SHAPES: dict[str, Shape] = {
    # seek: a DataLoader over a SeekableSampler
    "infinite-sampler": Shape("seek", _infinite, workers=True),
    "infinite-sampler-workers": Shape("seek", _infinite, {"num_workers": 2}, workers=True),
    # skip: a plain DataLoader over a map-style dataset
    "sequential": Shape("skip", _data_loader(), workers=True),
    "sequential-drop-last": Shape("skip", _data_loader(drop_last=True), workers=True),
    "shuffle-with-generator": Shape("skip", _shuffled, workers=True),
    "shuffle-without-generator": Shape("skip", _data_loader(shuffle=True), workers=True),
    "distributed-sampler": Shape("skip", _distributed, workers=True),
    "custom-batch-sampler": Shape("skip", _custom_batches, workers=True),
    "no-batching": Shape("skip", _unbatched, workers=True),
    # replay: anything else
    "list-of-batches": Shape("replay", _ready_batches, loads=False),
    "re-iterable-without-length": Shape("replay", LazyBatches),
    "re-iterable-verified": Shape("replay", LazyBatches, options={"verify_replay": True}),
    # delegate: a loader, or an iterable dataset without workers, that saves its own state
    "stateful-dataloader": Shape("delegate", _stateful(seeded=True), workers=True),
    "stateful-dataloader-without-generator": Shape(
        "delegate", _stateful(seeded=False), workers=True
    ),
    "iterable-dataset-with-state": Shape("delegate", _stream),
}
"""Every shape of wrapped loader the tests know, by name."""

NAMES = sorted(SHAPES)
IN_PROCESS = [name for name in NAMES if SHAPES[name].num_workers == 0]
"""The shapes that load in this process (what a dataset records is seen by the test)."""


def maker(name: str, dataset: Dataset[int] | None = None) -> Callable[[], VirtualDataLoader[Any]]:
    """A factory of fresh loaders of shape ``name`` (over a fresh ``IndexDataset`` by default).

    The global RNG is seeded first: the shape without a generator adopts its seed from it, and
    a run must be the same however many loaders were built before.
    """

    def make() -> VirtualDataLoader[Any]:
        torch.manual_seed(0)
        return SHAPES[name].make(IndexDataset(N) if dataset is None else dataset)

    return make


def advance(vl: VirtualDataLoader[Any], steps: int) -> VirtualDataLoader[Any]:
    """Hand out batches up to step ``steps``, as a training loop would (epochs complete when
    full; a partial one is abandoned, as after a ``break``)."""
    while vl.steps < steps:
        for _ in zip(range(steps - vl.steps), vl, strict=False):
            pass
    return vl


@functools.cache
def _saved(name: str, steps: int) -> dict[str, Any]:
    return round_trip(advance(maker(name)(), steps).state_dict())


def saved(name: str, steps: int) -> dict[str, Any]:
    """The state of a run of shape ``name`` after ``steps`` steps (through JSON; a new copy)."""
    return copy.deepcopy(_saved(name, steps))
