"""``skip``: resume a plain ``DataLoader`` over a map-style dataset at the index level.

Resuming rebuilds the pass's order (``set_epoch(pass)``, and ``PassSeeds`` for samplers driven
by a ``torch.Generator``) and skips the consumed part of it in a one-off ``DataLoader`` for the
rest of that pass: no skipped sample is loaded. Its own state::

    {
        "samples_in_pass": 96,            # with a sampler and a plain BatchSampler (or none)
        "pass_seeds": {"seed": 1234},     # where PassSeeds adopted a seed (see _pass_seeds)
    }

With a plain ``BatchSampler`` the position is counted in samples, so the batch size may change
between runs; with any other batch sampler it is ``state['batches_in_pass']`` alone.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from torch.utils.data import BatchSampler, DataLoader

from ._pass_seeds import PassSeeds
from ._shapes import is_plain_batch_sampler, set_epoch, sized
from ._state import Saved, require_count
from ._strategy import Strategy, check_pass_length

# What the one-off loader sets itself, and what it must not copy: it lives for one pass only.
_NOT_COPIED = frozenset(
    {"self", "dataset", "batch_size", "shuffle", "sampler", "batch_sampler", "drop_last"}
    | {"persistent_workers"}
)


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
    SAMPLES_IN_PASS = "samples_in_pass"

    def __init__(self, loader: DataLoader[Any]) -> None:
        super().__init__(loader)
        self._dl = loader
        batch_sampler = loader.batch_sampler
        self._sampler_length: int | None = None  # samples per pass, when counted in samples
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
        self._start_samples = 0  # samples of the pass skipped by the last reset
        self._start_batches = 0
        self._seeds = PassSeeds(loader)

    def fingerprint(self) -> dict[str, Any]:
        out = super().fingerprint()
        sampler = self._dl.sampler
        out["sampler"] = type(sampler).__qualname__
        out["batch_sampler"] = type(self._dl.batch_sampler).__qualname__
        if self._sampler_length is not None:
            out["samples_per_pass"] = self._sampler_length
        else:
            out["batch_size"] = getattr(self._dl.batch_sampler, "batch_size", None)
        for attribute in ("num_replicas", "shuffle", "seed", "replacement"):
            value = getattr(sampler, attribute, None)
            if isinstance(value, (bool, int)):
                out[f"sampler.{attribute}"] = value
        out.update(self._seeds.fingerprint())
        return out

    def check(self, saved: Saved) -> None:
        if self._sampler_length is not None:
            samples = require_count(saved.own, self.SAMPLES_IN_PASS, saved.where)
            if samples > self._sampler_length:
                raise ValueError(
                    f"{saved.where}['{self.SAMPLES_IN_PASS}'] is {samples}, more than the "
                    f"{self._sampler_length} samples in a pass of this loader"
                )
        else:
            check_pass_length(saved, self._pass_batches)
        self._seeds.check(saved.own, saved.where)

    def reset(
        self, pass_index: int, batches_in_pass: int, own: Mapping[str, Any] | None
    ) -> Iterator[Any]:
        set_epoch(self._dl, pass_index)
        self._seeds.start_pass(pass_index, own)
        self._start_batches = batches_in_pass
        if self._sampler_length is not None:
            self._start_samples = own[self.SAMPLES_IN_PASS] if own is not None else 0
            skip = self._start_samples
        else:
            skip = batches_in_pass
        if skip == 0:
            return iter(self._dl)
        return iter(self._rest_of_pass(skip))

    def position(self, batches_in_pass: int) -> dict[str, Any]:
        out = self._seeds.position()
        if self._sampler_length is not None:
            out[self.SAMPLES_IN_PASS] = self._samples(batches_in_pass)
        return out

    def finished(self, batches_in_pass: int) -> bool:
        if self._sampler_length is not None:
            left = self._sampler_length - self._samples(batches_in_pass)
            return left < (self._batch if self._drop_last else 1)
        return self._pass_batches is not None and batches_in_pass >= self._pass_batches

    def _samples(self, batches_in_pass: int) -> int:
        """Samples of the pass consumed after ``batches_in_pass`` batches (0 at a new pass)."""
        if batches_in_pass == 0 or self._sampler_length is None:
            return 0
        done = self._start_samples + (batches_in_pass - self._start_batches) * self._batch
        return min(self._sampler_length, done)

    def _rest_of_pass(self, skip: int) -> DataLoader[Any]:
        """Return a one-off ``DataLoader`` over the pass after its first ``skip`` units.

        It is built from the loader's own public attributes, as Ignite rebuilds one: every
        ``DataLoader`` argument the loader holds with a value other than its default is copied,
        whatever the torch version, except those that decide the batches (set here) and
        ``persistent_workers`` (the one-off loader serves one pass).
        """
        dl = self._dl
        kwargs: dict[str, Any] = {}
        for name, parameter in inspect.signature(DataLoader.__init__).parameters.items():
            if name in _NOT_COPIED or not hasattr(dl, name):
                continue
            value = getattr(dl, name)
            if value is not parameter.default and value != parameter.default:
                kwargs[name] = value
        if dl.batch_sampler is None:
            rest = _Skipped(dl.sampler, skip, self._sampler_length)
            return DataLoader(dl.dataset, batch_size=None, sampler=rest, **kwargs)
        if self._sampler_length is not None:
            rest = _Skipped(dl.sampler, skip, self._sampler_length)
            batches: Iterable[Any] = BatchSampler(rest, self._batch, self._drop_last)
        else:
            batches = _Skipped(dl.batch_sampler, skip, sized(dl.batch_sampler))
        return DataLoader(dl.dataset, batch_sampler=batches, **kwargs)
