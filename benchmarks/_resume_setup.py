"""The loaders that the resume benchmarks build, and how one resume is timed."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader  # type: ignore[import-untyped]  # no stubs

from virtual_epochs import InfiniteSampler, VirtualDataLoader

from ._fixtures import Indices
from ._harness import Measure, quiet_gc

BATCH = 16
OURS = "ours (seek, InfiniteSampler)"


def first_batch(make: Callable[[], Any], load: Callable[[Any], Iterable[Any]]) -> Measure:
    """Time ``load(make())`` and its first batch; ``make`` and the shutdown are untimed."""

    def once() -> float:
        loader = make()
        with quiet_gc():
            start = time.perf_counter()
            iterator = iter(load(loader))
            next(iterator)
            seconds = time.perf_counter() - start
        del iterator, loader
        gc.collect()  # shut workers down before the next measurement
        return seconds

    return once


def loaded(state: dict[str, Any]) -> Callable[[Any], Iterable[Any]]:
    def load(loader: Any) -> Iterable[Any]:
        loader.load_state_dict(state)
        loaded: Iterable[Any] = loader
        return loaded

    return load


def replay(batches: int) -> Callable[[Any], Iterable[Any]]:
    def load(loader: Any) -> Iterable[Any]:
        iterator: Iterator[Any] = iter(loader)
        for _ in range(batches):
            next(iterator)
        return iterator

    return load


class Setup:
    """The loaders of one dataset size and number of workers."""

    def __init__(self, n: int, workers: int, steps_per_epoch: int) -> None:
        self.n, self.workers, self.steps_per_epoch = n, workers, steps_per_epoch
        self.dataset = Indices(n)

    def plain(self, **kwargs: Any) -> DataLoader[Any]:
        return DataLoader(self.dataset, batch_size=BATCH, num_workers=self.workers, **kwargs)

    def ours(self) -> VirtualDataLoader[Any]:
        return VirtualDataLoader(
            self.plain(sampler=InfiniteSampler(self.n, seed=0)), self.steps_per_epoch
        )

    def ours_skip(self) -> VirtualDataLoader[Any]:
        return VirtualDataLoader(self.plain(shuffle=True), self.steps_per_epoch)

    def stateful(self) -> StatefulDataLoader[Any]:
        return StatefulDataLoader(
            self.dataset, batch_size=BATCH, shuffle=True, num_workers=self.workers
        )
