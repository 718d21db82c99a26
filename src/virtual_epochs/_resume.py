"""How ``VirtualDataLoader`` starts each pass of the wrapped loader, and resumes inside one.

One strategy per shape of wrapped loader, chosen once by ``choose``, fastest exact one first:

- ``seek``: a ``DataLoader`` over a ``SeekableSampler`` (``InfiniteSampler``). The position is a
  global sample position; resuming seeks the sampler: O(1), nothing replayed, and the batch
  size and the number of ranks may change.
- ``delegate``: a loader (torchdata's ``StatefulDataLoader``) or, without workers, an
  ``IterableDataset`` that saves its own state. Its ``state_dict()`` is nested in ours.
- ``skip``: a plain ``DataLoader`` over a map-style dataset. Resuming rebuilds the pass's order
  and skips the consumed part at the index level, in a one-off ``DataLoader`` for the rest of
  that pass: no skipped sample is loaded. With a ``BatchSampler`` the position is counted in
  samples, so the batch size may change.
- ``replay``: anything else. Resuming iterates the pass again and throws the consumed batches
  away, with one warning that says what it costs.

``skip`` and ``delegate`` make the samplers driven by a ``torch.Generator`` (``RandomSampler``
and kin) reproducible pass by pass: see ``_pass_seeds``. What is recognised in a loader, and
how, is in ``_shapes``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from torch.utils.data import BatchSampler, DataLoader, IterableDataset

from . import _permutation
from ._pass_seeds import PassSeeds
from ._protocols import SeekableSampler, Stateful, is_seekable
from ._shapes import (
    accelerate_shard,
    is_plain_batch_sampler,
    saves_own_state,
    set_epoch,
    set_epoch_misses_workers,
    short_repr,
    sized,
)
from ._state import Saved, decode, encode, require, require_count
from ._warnings import warn


def _check_pass_length(saved: Saved, length: int | None) -> None:
    """Check that the saved position fits in a pass of ``length`` batches (if known)."""
    if length is not None and saved.batches_in_pass > length:
        raise ValueError(
            f"state['batches_in_pass'] is {saved.batches_in_pass}, more than the {length} "
            "batches in a pass of this loader: the checkpoint comes from another loader"
        )


class Strategy:
    """How passes of one wrapped loader are started and resumed."""

    name: ClassVar[str]

    def __init__(self, loader: Iterable[Any]) -> None:
        self.loader = loader

    def fingerprint(self) -> dict[str, Any]:
        """Return the settings that decide the order of samples."""
        out: dict[str, Any] = {"loader": type(self.loader).__qualname__}
        dataset_size = sized(getattr(self.loader, "dataset", None))
        if dataset_size is not None:
            out["dataset_size"] = dataset_size
        return out

    def save(self, batches_in_pass: int) -> dict[str, Any]:
        """Return the strategy's own keys for the position ``batches_in_pass`` into the pass."""
        del batches_in_pass
        return {}

    def save_after_error(self, batches_in_pass: int) -> dict[str, Any]:
        """Like ``save``, where a batch failed and the open iterator is about to be dropped."""
        return self.save(batches_in_pass)

    def pass_start(self) -> dict[str, Any]:
        """Return the strategy's own keys for the start of a pass not opened yet."""
        return self.save(0)

    def check(self, saved: Saved) -> None:
        """Validate what the strategy reads of a saved state; raise on anything wrong."""
        del saved

    def adopt(self, saved: Mapping[str, Any]) -> None:
        """Take over what a validated state decides and this loader did not (after ``check``)."""
        del saved

    def open(
        self, pass_index: int, batches_in_pass: int, saved: Mapping[str, Any] | None
    ) -> Iterator[Any]:
        """Return an iterator over pass ``pass_index``.

        Args:
            pass_index: the pass to start.
            batches_in_pass: batches of it already handed out (0 for a new pass).
            saved: ``save()``'s keys for that position, or ``None`` at the start of a pass.
        """
        raise NotImplementedError

    def finished(self, batches_in_pass: int) -> bool:
        """Whether ``batches_in_pass`` batches are all the current pass has (if known)."""
        del batches_in_pass
        return False


class Seek(Strategy):
    """O(1) resume: seek a ``SeekableSampler`` to a global sample position."""

    name = "seek"

    def __init__(self, loader: DataLoader[Any], sampler: SeekableSampler, batch: int) -> None:
        super().__init__(loader)
        self._sampler = sampler
        self._batch = batch
        # The world size is read when a pass opens, not here: a sampler may take it from a
        # process group that is initialised after the loader is built.
        self._samples_per_step = batch
        self._base: int | None = None  # global position at the last open, None before it
        self._base_batches = 0

    def fingerprint(self) -> dict[str, Any]:
        return dict(self._sampler.fingerprint())

    def pass_start(self) -> dict[str, Any]:
        return {"position": self._sampler.start}

    def save(self, batches_in_pass: int) -> dict[str, Any]:
        assert self._base is not None  # the VDL asks for pass_start() before the first open
        return {
            "position": self._base + (batches_in_pass - self._base_batches) * self._samples_per_step
        }

    def check(self, saved: Saved) -> None:
        position = require_count(saved.position, "position", "state['resume']")
        if position > _permutation.MAX_START:
            raise ValueError(
                f"state['resume']['position'] must be at most 2**62 (got {position}): no run "
                "gets that far, the state is corrupt"
            )
        if saved.pass_index != 0:
            raise ValueError(
                f"state['pass'] is {saved.pass_index}, but a loader over an endless "
                "SeekableSampler has a single pass, 0: the state is corrupt"
            )

    def open(
        self, pass_index: int, batches_in_pass: int, saved: Mapping[str, Any] | None
    ) -> Iterator[Any]:
        if pass_index > 0:
            raise RuntimeError(
                f"the sampler {short_repr(self._sampler)} ran out, but a SeekableSampler must be "
                "endless; make its __iter__ never stop"
            )
        if saved is not None:
            self._sampler.seek(saved["position"])
        self._samples_per_step = self._batch * self._sampler.world_size
        self._base = self._sampler.start
        self._base_batches = batches_in_pass
        return iter(self.loader)


class _Skipped:
    """An iterable of ``iterable``'s items after the first ``count``."""

    def __init__(self, iterable: Iterable[Any], count: int, length: int | None) -> None:
        self._iterable = iterable
        self._count = count
        self._length = length

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(self._iterable, self._count, None)

    def __len__(self) -> int:
        if self._length is None:
            raise TypeError("the skipped iterable has no length")
        return max(0, self._length - self._count)


class Skip(Strategy):
    """Rebuild the pass's order and skip the consumed part at the index level."""

    name = "skip"

    def __init__(self, loader: DataLoader[Any]) -> None:
        super().__init__(loader)
        self._dl = loader
        batch_sampler = loader.batch_sampler
        self._sampler_length: int | None = None
        self._pass_batches: int | None = None  # batches per pass, when counted in batches
        self._batch = 1
        self._drop_last = False
        if not (batch_sampler is None or is_plain_batch_sampler(batch_sampler)):
            self._pass_batches = sized(batch_sampler)
        else:
            # Sample-level position: the batch size may change between runs.
            self._sampler_length = sized(loader.sampler)
            if batch_sampler is not None:
                self._batch = batch_sampler.batch_size  # type: ignore[attr-defined]  # checked
                self._drop_last = batch_sampler.drop_last  # type: ignore[attr-defined]  # above
        self._start_samples = 0  # samples of the pass skipped by the last open
        self._start_batches = 0
        self._seeds = PassSeeds(loader)

    @property
    def _by_sample(self) -> bool:
        return self._sampler_length is not None

    def fingerprint(self) -> dict[str, Any]:
        out = super().fingerprint()
        sampler = self._dl.sampler
        out["sampler"] = type(sampler).__qualname__
        out["batch_sampler"] = type(self._dl.batch_sampler).__qualname__
        if self._by_sample:
            out["samples_per_pass"] = self._sampler_length
        else:
            out["batch_size"] = getattr(self._dl.batch_sampler, "batch_size", None)
        for attribute in ("num_replicas", "shuffle", "seed", "replacement"):
            value = getattr(sampler, attribute, None)
            if isinstance(value, (bool, int)):
                out[f"sampler.{attribute}"] = value
        out.update(self._seeds.fingerprint())
        return out

    def _samples(self, batches_in_pass: int) -> int:
        assert self._sampler_length is not None  # only called in sample mode
        done = self._start_samples + (batches_in_pass - self._start_batches) * self._batch
        return min(self._sampler_length, done)

    def pass_start(self) -> dict[str, Any]:
        return self._position(0)

    def save(self, batches_in_pass: int) -> dict[str, Any]:
        return self._position(self._samples(batches_in_pass) if self._by_sample else 0)

    def _position(self, samples_in_pass: int) -> dict[str, Any]:
        out = self._seeds.position()
        if self._by_sample:
            out["samples_in_pass"] = samples_in_pass
        return out

    def check(self, saved: Saved) -> None:
        where = "state['resume']"
        if self._by_sample:
            samples = require_count(saved.position, "samples_in_pass", where)
            if self._sampler_length is not None and samples > self._sampler_length:
                raise ValueError(
                    f"{where}['samples_in_pass'] is {samples}, more than the "
                    f"{self._sampler_length} samples in a pass of this loader"
                )
        else:
            _check_pass_length(saved, self._pass_batches)
        self._seeds.check(saved.position)

    def adopt(self, saved: Mapping[str, Any]) -> None:
        self._seeds.adopt(saved)

    def finished(self, batches_in_pass: int) -> bool:
        if self._by_sample:
            assert self._sampler_length is not None
            left = self._sampler_length - self._samples(batches_in_pass)
            return left < (self._batch if self._drop_last else 1)
        return self._pass_batches is not None and batches_in_pass >= self._pass_batches

    def open(
        self, pass_index: int, batches_in_pass: int, saved: Mapping[str, Any] | None
    ) -> Iterator[Any]:
        set_epoch(self._dl, pass_index)
        self._seeds.start_pass(pass_index)
        self._start_batches = batches_in_pass
        if self._by_sample:
            self._start_samples = saved["samples_in_pass"] if saved is not None else 0
            skip = self._start_samples
        else:
            skip = batches_in_pass
        if skip == 0:
            return iter(self._dl)
        return iter(self._rest_of_pass(skip))

    def _rest_of_pass(self, skip: int) -> DataLoader[Any]:
        """Return a one-off ``DataLoader`` over the pass after its first ``skip`` units."""
        dl = self._dl
        kwargs: dict[str, Any] = {
            "num_workers": dl.num_workers,
            "collate_fn": dl.collate_fn,
            "pin_memory": dl.pin_memory,
            "timeout": dl.timeout,
            "worker_init_fn": dl.worker_init_fn,
            "multiprocessing_context": dl.multiprocessing_context,
            "generator": dl.generator,
        }
        if dl.num_workers > 0:
            kwargs["prefetch_factor"] = dl.prefetch_factor
        if hasattr(dl, "in_order"):  # torch >= 2.6
            kwargs["in_order"] = dl.in_order
        if dl.pin_memory_device:
            kwargs["pin_memory_device"] = dl.pin_memory_device
        if dl.batch_sampler is None:
            rest = _Skipped(dl.sampler, skip, self._sampler_length)
            return DataLoader(dl.dataset, batch_size=None, sampler=rest, **kwargs)
        if self._by_sample:
            rest = _Skipped(dl.sampler, skip, self._sampler_length)
            batches: Iterable[Any] = BatchSampler(rest, self._batch, self._drop_last)
        else:
            batches = _Skipped(dl.batch_sampler, skip, sized(dl.batch_sampler))
        return DataLoader(dl.dataset, batch_sampler=batches, **kwargs)


class Delegate(Strategy):
    """Nest the state of a loader, or dataset, that saves its own position.

    After a failure inside a batch, the wrapped loader's own state cannot be trusted: torchdata's
    loader without workers, for one, has already moved its sampler past the failed batch. So
    the position after an error is the last state known to be consistent (the one saved by the
    last ``save``, or the start of the pass) and a number of batches to replay from it.
    """

    name = "delegate"

    def __init__(self, loader: Iterable[Any], target: Stateful) -> None:
        super().__init__(loader)
        self._target = target
        self._seeds = PassSeeds(loader, adopt_always=True)
        # The last consistent point of the current pass: (batches into it, the wrapped loader's
        # state there, encoded, or None for "a fresh pass"). Encoding copies: the wrapped
        # loader's state may share objects with its live iterator (torchdata's does).
        self._good: tuple[int, dict[str, Any] | None] = (0, None)

    def save(self, batches_in_pass: int) -> dict[str, Any]:
        inner = encode(self._target.state_dict())
        self._good = (batches_in_pass, inner)
        return {**self._seeds.position(), "inner": encode(inner)}  # (a copy of plain values)

    def save_after_error(self, batches_in_pass: int) -> dict[str, Any]:
        good_batches, inner = self._good
        position = {**self._seeds.position(), "inner": None if inner is None else encode(inner)}
        if batches_in_pass > good_batches:
            position["replay"] = batches_in_pass - good_batches
        return position

    def pass_start(self) -> dict[str, Any]:
        # `None` means "a fresh pass", which the pass seeds make the same in every run. The
        # wrapped loader's own state would still describe the pass that ended (torchdata's, its
        # sampler's generator included), and before the first pass torchdata would build its
        # iterator early to give one.
        return {**self._seeds.position(), "inner": None}

    def check(self, saved: Saved) -> None:
        # What the wrapped loader makes of its own state is its business (torchdata, for
        # one, reads it at the next iter()).
        replay = 0
        if "replay" in saved.position:
            replay = require_count(saved.position, "replay", "state['resume']")
            if not 0 < replay <= saved.batches_in_pass:
                raise ValueError(
                    f"state['resume']['replay'] must be between 1 and state['batches_in_pass'] "
                    f"= {saved.batches_in_pass} (got {replay}): the state is corrupt"
                )
        inner = None  # "a fresh pass"
        if saved.position.get("inner", "missing") is not None:
            inner = require(saved.position, "inner", dict, "state['resume']")
        base = saved.batches_in_pass - replay  # where the wrapped loader's own state must be
        if not inner and base:
            # None is "a fresh pass", and torchdata reads {} as "no state": either way the
            # pass would start again and its batches come twice.
            raise ValueError(
                f"state['resume']['inner'] is {'None' if inner is None else 'empty'}, but the "
                f"wrapped loader's state must be {base} batches into pass {saved.pass_index}: "
                "its position is missing and the pass would start again; the state is corrupt"
            )
        if inner is None:
            self._seeds.check(saved.position)
            return
        try:
            decode(inner)
        except Exception as error:
            raise ValueError(
                f"state['resume']['inner'] holds an encoded value that does not decode ({error})"
                ": the state is corrupt"
            ) from error
        self._seeds.check(saved.position)

    def adopt(self, saved: Mapping[str, Any]) -> None:
        self._seeds.adopt(saved)

    def open(
        self, pass_index: int, batches_in_pass: int, saved: Mapping[str, Any] | None
    ) -> Iterator[Any]:
        set_epoch(self.loader, pass_index)
        self._seeds.start_pass(pass_index)
        inner = None if saved is None else saved["inner"]
        replay: int = 0 if saved is None else saved.get("replay", 0)
        base = batches_in_pass - replay  # where the loader's own state (or a fresh pass) is
        self._good = (base, None if inner is None else encode(inner))
        if inner is None:
            iterator = iter(self.loader)
        else:
            try:
                self._target.load_state_dict(decode(inner))
                iterator = iter(self.loader)  # (torchdata applies a loaded state here)
            except (AssertionError, KeyError, TypeError, ValueError) as error:
                raise ValueError(
                    f"state['resume']['inner'] was refused by {short_repr(self._target)} "
                    f"({type(error).__name__}: {error}): it was saved by a loader built "
                    "differently (torchdata: another num_workers), or by another version of it, "
                    "or it is corrupt"
                ) from error
        if replay:
            self._replay(iterator, replay, pass_index)
        return iterator

    def _replay(self, iterator: Iterator[Any], count: int, pass_index: int) -> None:
        warn(
            f"VirtualDataLoader is reopening pass {pass_index} of {short_repr(self.loader)} "
            f"after an error by replaying {count} batches from its last consistent state (the "
            "last state_dict(), or the start of the pass): each is loaded again and thrown away"
        )
        _replay_batches(iterator, count, pass_index, self.loader)


class Replay(Strategy):
    """Iterate the pass again and throw the consumed batches away (warns once)."""

    name = "replay"
    _warned = False

    def __init__(self, loader: Iterable[Any]) -> None:
        super().__init__(loader)
        # Only trust a length that is exact: a sequence's, or a map-style DataLoader's.
        reliable = isinstance(loader, Sequence) or (
            isinstance(loader, DataLoader) and not isinstance(loader.dataset, IterableDataset)
        )
        self._length = sized(loader) if reliable else None

    def fingerprint(self) -> dict[str, Any]:
        out = super().fingerprint()
        if self._length is not None:
            # A position means another sample in a pass of another length.
            out["batches_per_pass"] = self._length
        return out

    def finished(self, batches_in_pass: int) -> bool:
        return self._length is not None and batches_in_pass >= self._length

    def check(self, saved: Saved) -> None:
        _check_pass_length(saved, self._length)

    def open(
        self, pass_index: int, batches_in_pass: int, saved: Mapping[str, Any] | None
    ) -> Iterator[Any]:
        set_epoch(self.loader, pass_index)
        iterator = iter(self.loader)
        if saved is None or batches_in_pass == 0:
            return iterator
        if not self._warned and not isinstance(self.loader, Sequence):
            # (Replaying a sequence of ready batches loads nothing: no warning.)
            self._warned = True
            warn(
                f"VirtualDataLoader is resuming {short_repr(self.loader)} by replaying "
                f"{batches_in_pass} batches of pass {pass_index}: each is loaded again and "
                "thrown away. For an O(1) resume, use a DataLoader with an InfiniteSampler "
                "(or any plain DataLoader over a map-style dataset), or a loader with "
                "state_dict()/load_state_dict().",
            )
        _replay_batches(iterator, batches_in_pass, pass_index, self.loader)
        return iterator


def _replay_batches(iterator: Iterator[Any], count: int, pass_index: int, loader: object) -> None:
    """Take ``count`` batches of pass ``pass_index`` from ``iterator`` and throw them away."""
    done = sum(1 for _ in itertools.islice(iterator, count))
    if done < count:
        raise ValueError(
            f"cannot resume: pass {pass_index} of {short_repr(loader)} ended after {done} of "
            f"the {count} batches to replay to reach the saved position; the loader must yield "
            "the same batches in every run"
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


def choose(loader: Iterable[Any]) -> Strategy:
    """Return the fastest exact strategy for ``loader``.

    Raises:
        TypeError: a ``SeekableSampler`` is the loader's ``batch_sampler``: it yields single
            indices, not batches.
    """
    if isinstance(loader, DataLoader) and is_seekable(loader.batch_sampler):
        raise TypeError(
            f"'loader' has {short_repr(loader.batch_sampler)} as its batch_sampler, but it yields "
            "single indices, not batches of them; pass it as the sampler: "
            "DataLoader(dataset, sampler=InfiniteSampler(dataset), batch_size=...)"
        )
    if isinstance(loader, DataLoader) and (found := _seekable(loader)) is not None:
        return Seek(loader, *found)  # (one endless pass: set_epoch is never called)
    if set_epoch_misses_workers(loader):
        warn(
            f"the dataset of {short_repr(loader)} has set_epoch(), which VirtualDataLoader calls "
            "with the pass index in the main process, but persistent_workers=True keeps the "
            "workers' copies of the dataset from the first pass: whatever the dataset derives "
            "from set_epoch (an augmentation seed, a shard) stays at pass 0 in the workers. Use "
            "persistent_workers=False, or key the randomness by the sample position instead "
            "(an InfiniteSampler and position-seeded samples: see the README)"
        )
    if isinstance(loader, Stateful) and saves_own_state(loader):
        return Delegate(loader, loader)
    if type(loader) is DataLoader:
        dataset = loader.dataset
        if isinstance(dataset, IterableDataset):
            if isinstance(dataset, Stateful) and loader.num_workers == 0:
                return Delegate(loader, dataset)
            return Replay(loader)
        return Skip(loader)
    return Replay(loader)
