"""Randomness inside a sample, keyed by its global sample position: augmentations that resume.

DataLoader workers seed ``torch``, ``random`` and ``numpy`` once per ``iter()``, and each
worker's generators then advance with whichever samples it happens to load: the draws depend
on ``num_workers``, on the rank layout and on where a run was resumed. Here they depend on the
sample's global position (and a seed) only:

- ``KeyedSampler`` wraps a ``SeekableSampler`` (``InfiniteSampler``) and yields, for each index,
  a ``SampleKey``: the index, its global sample position and the seed. It is itself a
  ``SeekableSampler``, so ``VirtualDataLoader`` resumes it in O(1).
- ``KeyedDataset`` wraps a map-style dataset: before each sample it seeds torch's CPU generator,
  Python's ``random`` and numpy's legacy global generator from the key, then loads the plain
  index. In the main process (``num_workers=0``) it restores the three global states afterwards.
- ``SampleKey.torch_generator()`` and ``SampleKey.numpy_generator()`` give explicit per-sample
  generators, for a dataset that takes the key itself.

See ``docs/randomness.md`` for what is covered, what is not, and why.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Sized
from typing import Any, TypeVar, cast

import torch
from torch.utils.data import Dataset, IterableDataset, Sampler, get_worker_info

from . import _permutation, _sample_seeds, _state
from ._checks import check_seed, describe
from ._protocols import SeekableSampler, is_seekable

T_co = TypeVar("T_co", covariant=True)

_USE_INSTEAD = (
    "give the DataLoader sampler=KeyedSampler(InfiniteSampler(dataset, seed=...)); plain "
    "samplers (shuffle=True, RandomSampler, DistributedSampler, a bare InfiniteSampler) carry "
    "no sample positions"
)


class SampleKey:
    """One sample's identity in the stream: its dataset ``index``, global ``position``, ``seed``.

    ``KeyedSampler`` yields one per sample. Deliberately not a tuple and not an int: a dataset
    that does not expect a key fails on it instead of indexing with it.

    Args:
        index: the dataset index.
        position: the global sample position (world-size independent).
        seed: the seed of the run's per-sample randomness.

    >>> key = SampleKey(index=3, position=17, seed=0)
    >>> key
    SampleKey(index=3, position=17, seed=0)
    >>> a = torch.rand(2, generator=key.torch_generator())
    >>> torch.equal(a, torch.rand(2, generator=SampleKey(5, 17, 0).torch_generator()))
    True
    """

    __slots__ = ("index", "position", "seed")

    def __init__(self, index: int, position: int, seed: int) -> None:
        self.index = index
        self.position = position
        self.seed = seed

    def __repr__(self) -> str:
        return f"SampleKey(index={self.index}, position={self.position}, seed={self.seed})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not SampleKey:
            return NotImplemented
        return (self.index, self.position, self.seed) == (other.index, other.position, other.seed)

    def __hash__(self) -> int:
        return hash((self.index, self.position, self.seed))

    def __reduce__(self) -> tuple[type[SampleKey], tuple[int, int, int]]:
        return SampleKey, (self.index, self.position, self.seed)

    def torch_generator(self) -> torch.Generator:
        """Return a new CPU ``torch.Generator`` seeded from ``(seed, position)``.

        Its stream is independent of the global one ``KeyedDataset`` seeds for the same key.
        Only the ``position`` matters, not the ``index``.
        """
        return _sample_seeds.torch_generator(self.seed, self.position)

    def numpy_generator(self) -> Any:
        """Return a new ``numpy.random.Generator`` (Philox) keyed by ``(seed, position)``.

        >>> key = SampleKey(0, position=5, seed=1)
        >>> key.numpy_generator().random() == key.numpy_generator().random()
        True

        Raises:
            ModuleNotFoundError: numpy is not installed.
        """
        return _sample_seeds.numpy_generator(self.seed, self.position)

    @staticmethod
    def check(value: Any) -> SampleKey:
        """Return ``value`` if it is a ``SampleKey``; for a dataset that takes keys itself.

        >>> SampleKey.check(3)
        Traceback (most recent call last):
        ...
        TypeError: expected a SampleKey from a KeyedSampler (got 3 of type int): give the ...

        Raises:
            TypeError: ``value`` is something else, a plain index for one.
        """
        if type(value) is not SampleKey:
            raise TypeError(
                f"expected a SampleKey from a KeyedSampler (got {describe(value)}): {_USE_INSTEAD}"
            )
        return value


class _Stream:
    """One iteration of a ``KeyedSampler``: where it started and how many keys it yielded."""

    __slots__ = ("done", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.done = 0


class KeyedSampler(Sampler[SampleKey]):
    """Wraps a ``SeekableSampler``: each index comes with its global position, as a ``SampleKey``.

    Rank ``r`` of ``W`` yields positions ``start + r``, ``start + r + W``, ... (the protocol's
    layout), so a position, and the randomness keyed by it, does not depend on the number of
    ranks. ``rank``, ``world_size`` and ``start`` are read from the wrapped sampler at each
    ``iter()``. A ``KeyedSampler`` is itself a ``SeekableSampler``: ``VirtualDataLoader`` resumes
    it by ``seek``, in O(1). Its fingerprint is the wrapped sampler's plus ``keyed_seed``, so a
    checkpoint resumed with another seed is refused.

    Use it with ``KeyedDataset`` (or a dataset that takes ``SampleKey`` itself).

    Args:
        sampler: an endless sampler with a ``rank``, such as ``InfiniteSampler``.
        seed: the seed of the per-sample randomness, ``0 <= seed < 2**64``; the same on every
            rank. Another seed, other draws; the sample order stays the wrapped sampler's.

    >>> import itertools
    >>> from virtual_epochs import InfiniteSampler
    >>> sampler = KeyedSampler(InfiniteSampler(3, shuffle=False, world_size=2, rank=1), seed=7)
    >>> list(itertools.islice(sampler, 3))
    [SampleKey(index=1, position=1, seed=7), SampleKey(index=0, position=3, seed=7),
     SampleKey(index=2, position=5, seed=7)]
    """

    def __init__(self, sampler: SeekableSampler, *, seed: int = 0) -> None:
        if isinstance(sampler, KeyedSampler):
            raise TypeError(
                "'sampler' is already a KeyedSampler; wrap the InfiniteSampler once, with the "
                "seed you want"
            )
        # Looked up statically: evaluating 'rank' or 'world_size' here could resolve them from
        # torch.distributed before the process group exists; they are read at iter() instead.
        ranked = inspect.getattr_static(sampler, "rank", None) is not None
        if not (is_seekable(sampler) and ranked and callable(getattr(sampler, "__iter__", None))):
            raise TypeError(
                "'sampler' must be an endless SeekableSampler with a 'rank', such as "
                f"InfiniteSampler(dataset, seed=...) (got {describe(sampler)}): only a sampler "
                "whose order is a function of the global sample position can give positions; "
                "for DataLoader(shuffle=True) use InfiniteSampler(dataset, seed=...) instead"
            )
        check_seed("seed", seed)
        self._sampler = sampler
        self._seed = seed
        self._live: _Stream | None = None

    @property
    def sampler(self) -> SeekableSampler:
        """The wrapped sampler: it decides the order."""
        return self._sampler

    @property
    def seed(self) -> int:
        """The seed of the per-sample randomness."""
        return self._seed

    @property
    def rank(self) -> int:
        """This process's rank, the wrapped sampler's."""
        rank: int = self._sampler.rank  # type: ignore[attr-defined]  # checked in __init__
        return rank

    @property
    def world_size(self) -> int:
        """The number of ranks, the wrapped sampler's."""
        return self._sampler.world_size

    @property
    def start(self) -> int:
        """The global sample position at which the next ``iter()`` starts."""
        return self._sampler.start

    @property
    def num_samples(self) -> int | None:
        """The number of samples the wrapped sampler draws from, if it says."""
        n = getattr(self._sampler, "num_samples", None)
        return n if isinstance(n, int) else None

    @property
    def max_start(self) -> int | None:
        """The largest start position the wrapped sampler declares, if it declares one."""
        limit = getattr(self._sampler, "max_start", None)
        return limit if isinstance(limit, int) else None

    def seek(self, position: int) -> None:
        """Make the next ``iter()`` start at global sample ``position``."""
        self._sampler.seek(position)
        self._live = None

    def fingerprint(self) -> dict[str, Any]:
        """Return the wrapped sampler's fingerprint and ``keyed_seed``."""
        return {**self._sampler.fingerprint(), "keyed_seed": self._seed}

    def __iter__(self) -> Iterator[SampleKey]:
        start, rank, world_size = self.start, self.rank, self.world_size
        stream = _Stream(start)
        self._live = stream
        indices = iter(cast("Iterable[int]", self._sampler))  # checked in __init__
        return _keys(indices, start + rank, world_size, self._seed, stream)

    def __len__(self) -> int:
        raise TypeError(
            "KeyedSampler is endless and has no length; wrap the DataLoader in "
            "VirtualDataLoader(loader, steps_per_epoch=...) for epochs of a fixed length"
        )

    def state_dict(self) -> dict[str, Any]:
        """Return where the latest iterator stands, as a fresh plain dict, in O(1).

        ``start`` is the global position of the next row of ``world_size`` positions, as for
        ``InfiniteSampler.state_dict()``; torchdata's ``StatefulDataLoader`` saves it by itself.
        """
        live = self._live
        start = self.start if live is None else live.start + self.world_size * live.done
        return _state.sampler_state(start, self.fingerprint())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a ``state_dict()`` of any rank and world size.

        Raises:
            ValueError: the state was saved with other settings, or is malformed.
            TypeError: a value has the wrong type.
        """
        start = _state.parse_sampler_state(
            state_dict,
            owner="KeyedSampler",
            fingerprint=self.fingerprint(),
            max_start=_permutation.MAX_POSITION if self.max_start is None else self.max_start,
        )
        self.seek(start)


def _keys(
    indices: Iterable[int], position: int, step: int, seed: int, stream: _Stream
) -> Iterator[SampleKey]:
    for index in indices:
        stream.done += 1  # before the yield: the consumer holds the key while we are suspended
        yield SampleKey(index, position, seed)
        position += step


class KeyedDataset(Dataset[T_co]):
    """Wraps a map-style dataset: every sample's global random draws are keyed by its position.

    It takes a ``SampleKey`` (from a ``KeyedSampler``), seeds torch's CPU generator, Python's
    ``random`` and numpy's legacy ``numpy.random`` from ``(key.seed, key.position)``, and loads
    ``dataset[key.index]``. So ``torch.rand``, ``torch.randint``, ``torch.randperm`` (and the
    torchvision v2 transforms built on them), ``random.random`` and ``numpy.random.rand`` draw
    the same values for the same position, whatever process loads it and whenever.

    In the main process (``num_workers=0``) the three global states are saved before and
    restored after the samples (once per batch through ``__getitems__``), so the model's own
    randomness never sees the pipeline's draws. Workers are left seeded.

    A wrapped dataset with ``__getitems__`` (batched fetch) is called one sample at a time,
    ``dataset.__getitems__([index])``: randomness drawn for a whole batch at once could not be
    keyed by each sample's position.

    Args:
        dataset: a map-style dataset whose ``__getitem__`` takes a plain index.
        generators: the global generators to seed, any of ``"torch"``, ``"random"`` and
            ``"numpy"`` (all three by default). Leave out only those that nothing in the
            pipeline draws from (torchvision draws from torch; albumentations from ``random``
            and numpy): one left out but used draws unkeyed, worker-seeded values again. Each
            costs time per sample: about 1 us for torch, 5 for ``random``, 2 for numpy (warm), and
            in the main process their save and restore (once per batch) about 1, 13 and 80.

    >>> from torch.utils.data import DataLoader
    >>> from virtual_epochs import InfiniteSampler
    >>> class Noisy(Dataset):
    ...     def __getitem__(self, index):
    ...         return index + torch.rand(()).item()
    ...     def __len__(self):
    ...         return 4
    >>> def first_batch(**kwargs):
    ...     sampler = KeyedSampler(InfiniteSampler(4, seed=0), seed=1)
    ...     loader = DataLoader(KeyedDataset(Noisy()), batch_size=4, sampler=sampler, **kwargs)
    ...     return next(iter(loader))
    >>> torch.equal(first_batch(), first_batch(num_workers=1))
    True
    >>> KeyedDataset(Noisy())[2]
    Traceback (most recent call last):
    ...
    TypeError: expected a SampleKey from a KeyedSampler (got 2 of type int): give the ...
    """

    def __init__(
        self, dataset: Dataset[T_co], *, generators: Iterable[str] = _sample_seeds.GENERATORS
    ) -> None:
        if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__getitem__"):
            raise TypeError(
                "'dataset' must be a map-style dataset, with __getitem__ (got "
                f"{describe(dataset)}): an iterable dataset has no indices, and so no sample "
                "positions to key its randomness by"
            )
        if isinstance(dataset, KeyedDataset):
            raise TypeError("'dataset' is already a KeyedDataset; wrap the dataset once")
        self._dataset = dataset
        self._batched = callable(getattr(dataset, "__getitems__", None))
        self._which = _which(generators)

    @property
    def dataset(self) -> Dataset[T_co]:
        """The wrapped dataset."""
        return self._dataset

    @property
    def generators(self) -> tuple[str, ...]:
        """The global generators seeded for each sample."""
        names = zip(_sample_seeds.GENERATORS, self._which, strict=True)
        return tuple(name for name, seeded in names if seeded)

    def __len__(self) -> int:
        if not isinstance(self._dataset, Sized):
            raise TypeError(f"the wrapped dataset {describe(self._dataset)} has no length")
        return len(self._dataset)

    def __getitem__(self, key: SampleKey) -> T_co:
        key = SampleKey.check(key)
        if get_worker_info() is not None:
            _sample_seeds.seed_globals(key.seed, key.position, self._which)
            return self._load(key.index)
        saved = _sample_seeds.GlobalStates(self._which)
        try:
            _sample_seeds.seed_globals(key.seed, key.position, self._which)
            return self._load(key.index)
        finally:
            saved.restore()

    def __getitems__(self, keys: list[SampleKey]) -> list[T_co]:
        """Load a batch: one sample at a time, each seeded from its own key."""
        checked = [SampleKey.check(key) for key in keys]
        which = self._which
        saved = None if get_worker_info() is not None else _sample_seeds.GlobalStates(which)
        try:
            out = []
            for key in checked:
                _sample_seeds.seed_globals(key.seed, key.position, which)
                out.append(self._load(key.index))
            return out
        finally:
            if saved is not None:
                saved.restore()

    def _load(self, index: int) -> T_co:
        if not self._batched:
            return self._dataset[index]
        batch = self._dataset.__getitems__([index])  # type: ignore[attr-defined]  # found above
        if not isinstance(batch, (list, tuple)) or len(batch) != 1:
            raise TypeError(
                f"{type(self._dataset).__name__}.__getitems__([{index}]) must return a list of "
                f"one sample (got {describe(batch)}); KeyedDataset fetches one sample at a time"
            )
        sample: T_co = batch[0]
        return sample


def _which(generators: Iterable[str]) -> _sample_seeds.Which:
    """Check the ``generators`` argument of ``KeyedDataset``."""
    known = _sample_seeds.GENERATORS
    if isinstance(generators, str) or not isinstance(generators, Iterable):
        raise TypeError(
            f"'generators' must be a tuple of names from {known} (got {describe(generators)})"
        )
    names = tuple(generators)
    for name in names:
        if name not in known:
            raise ValueError(
                f"'generators' must hold names from {known} (got {name!r} in {names!r})"
            )
    if not names:
        raise ValueError(
            f"'generators' must name at least one of {known} (got {names!r}); with none, use "
            "the dataset without KeyedDataset"
        )
    return _sample_seeds.Which(*(name in names for name in known))
