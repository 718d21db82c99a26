"""How ``VirtualDataLoader`` chooses the way it resumes a wrapped loader.

One strategy per shape of wrapped loader, each in its own module behind the contract of
``_strategy``, chosen once by ``choose``, fastest exact one first:

- ``seek`` (``_seek``): a ``DataLoader`` over a ``SeekableSampler`` (``InfiniteSampler``).
- ``delegate`` (``_delegate``): a loader (torchdata's ``StatefulDataLoader``) or, without
  workers, an ``IterableDataset`` that saves its own state.
- ``skip`` (``_skip``): a plain ``DataLoader`` over a map-style dataset.
- ``replay`` (``_replay``): anything else.

What each costs and allows is in the README's strategy table. What is recognised in a loader,
and how, is in ``_shapes``. Adding a strategy means one module, one line here, and one entry in
the tests' table of loader shapes (``tests/_shapes_table.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch.utils.data import DataLoader, IterableDataset

from ._checks import short
from ._delegate import Delegate
from ._protocols import SeekableSampler, Stateful, is_seekable
from ._replay import Replay
from ._seek import Seek
from ._shapes import (
    accelerate_shard,
    is_plain_batch_sampler,
    saves_own_state,
    set_epoch_misses_workers,
    sized,
)
from ._skip import Skip
from ._strategy import Strategy
from ._warnings import warn


def choose(loader: Iterable[Any], *, verify_replay: bool = False) -> Strategy:
    """Return the fastest exact strategy for ``loader``.

    Raises:
        TypeError: a ``SeekableSampler`` is the loader's ``batch_sampler``: it yields single
            indices, not batches.
        ValueError: ``verify_replay`` is set, but the loader is not resumed by replaying.
    """
    strategy = _choose(loader, verify_replay=verify_replay)
    if verify_replay and strategy.name != Replay.name:
        raise ValueError(
            f"'verify_replay' applies to loaders resumed by replaying their batches, but "
            f"{short(loader)} is resumed by {strategy.name!r}, which replays nothing; "
            "leave verify_replay=False"
        )
    if strategy.name != Seek.name and set_epoch_misses_workers(loader):
        warn(
            f"the dataset of {short(loader)} has set_epoch(), which VirtualDataLoader calls "
            "with the pass index in the main process, but persistent_workers=True keeps the "
            "workers' copies of the dataset from the first pass: whatever the dataset derives "
            "from set_epoch (an augmentation seed, a shard) stays at pass 0 in the workers. Use "
            "persistent_workers=False, or key the randomness by the sample position instead: "
            "KeyedDataset(dataset) with KeyedSampler(InfiniteSampler(dataset))"
        )
    return strategy


def _choose(loader: Iterable[Any], *, verify_replay: bool) -> Strategy:
    if isinstance(loader, DataLoader):
        if is_seekable(loader.batch_sampler):
            raise TypeError(
                f"'loader' has {short(loader.batch_sampler)} as its batch_sampler, but it "
                "yields single indices, not batches of them; pass it as the sampler: "
                "DataLoader(dataset, sampler=InfiniteSampler(dataset), batch_size=...)"
            )
        if (found := _seekable(loader)) is not None:
            _check_sampler_size(loader, found[0])
            return Seek(loader, *found)  # (one endless pass: set_epoch is never called)
    if isinstance(loader, Stateful) and saves_own_state(loader):
        return Delegate(loader, loader)
    if type(loader) is DataLoader:
        dataset = loader.dataset
        if isinstance(dataset, IterableDataset):
            if isinstance(dataset, Stateful) and loader.num_workers == 0:
                return Delegate(loader, dataset)
            return Replay(loader, verify=verify_replay)
        return Skip(loader)
    return Replay(loader, verify=verify_replay)


def _check_sampler_size(loader: DataLoader[Any], sampler: object) -> None:
    """Refuse a sampler that says it draws from another number of samples than the dataset has.

    ``InfiniteSampler(100)`` over a dataset of 1,000 samples would train on a tenth of it, and
    over one of 10 fail at the 11th index: both are mistakes, caught here.
    """
    drawn = getattr(sampler, "num_samples", None)
    size = sized(loader.dataset)
    if isinstance(drawn, int) and size is not None and drawn != size:
        raise ValueError(
            f"the sampler {short(sampler)} of 'loader' draws indices from {drawn} samples, but "
            f"the loader's dataset has {size}; build the sampler from the dataset itself "
            "(InfiniteSampler(dataset), MixtureSampler(ConcatDataset(parts), ...)), or give the "
            "DataLoader a Subset of the dataset to train on part of it"
        )


def _seekable(loader: DataLoader[Any]) -> tuple[SeekableSampler, int] | None:
    """Return the loader's ``SeekableSampler`` and its samples per step (all ranks), if any."""
    batch_sampler: Any = loader.batch_sampler
    if batch_sampler is None:
        found: tuple[Any, int] | None = (loader.sampler, 1)
    elif is_plain_batch_sampler(batch_sampler):
        found = (batch_sampler.sampler, batch_sampler.batch_size)
    else:
        found = accelerate_shard(batch_sampler)
    if found is None or not is_seekable(found[0]):
        return None
    return found
