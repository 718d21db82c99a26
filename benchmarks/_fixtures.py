"""What the benchmarks run on: toy datasets, the blog post's wrapper, a bare endless sampler."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

import torch
from torch.utils.data import Dataset, Sampler

T = TypeVar("T")


class Indices(Dataset[int]):
    """A dataset of ``n`` samples whose sample ``i`` is ``i``: loading costs nothing."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


class Slow(Indices):
    """``Indices`` where loading a sample sleeps ``seconds`` (I/O-bound loading)."""

    def __init__(self, n: int, seconds: float) -> None:
        super().__init__(n)
        self.seconds = seconds

    def __getitem__(self, index: int) -> int:
        time.sleep(self.seconds)
        return index


class Sized(Dataset[int]):
    """Only a length: what a sampler needs from a dataset, with no memory behind it."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


class BlogLoader(Generic[T]):
    """The baseline: the wrapper the blog post describes, rewritten from its description.

    It counts the steps of the current epoch, stops the epoch after ``steps_per_epoch`` of them,
    and when the wrapped loader's iterator runs out, starts a new one and takes its first batch.
    No length, no ``set_epoch``, no state, and the iterator is created in the constructor.
    """

    def __init__(self, loader: Iterable[T], steps_per_epoch: int) -> None:
        self.loader = loader
        self.steps_per_epoch = steps_per_epoch
        self.step = 0
        self.iterator = iter(loader)

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self.step >= self.steps_per_epoch:
            self.step = 0
            raise StopIteration
        self.step += 1
        try:
            return next(self.iterator)
        except StopIteration:
            self.iterator = iter(self.loader)
            return next(self.iterator)


class Countdown:
    """An iterator of ``n`` ``None``s with a Python-level ``__next__``, as a DataLoader's has."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Countdown:
        return self

    def __next__(self) -> None:
        if not self.n:
            raise StopIteration
        self.n -= 1


class Countdowns:
    """A re-iterable whose every pass is a ``Countdown`` of ``n``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Countdown:
        return Countdown(self.n)


class EndlessPermutations(Sampler[int]):
    """A plain endless index generator: a fresh ``randperm`` per pass, forever, no state."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n = n
        self.seed = seed

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed)
        while True:
            yield from torch.randperm(self.n, generator=generator).tolist()
