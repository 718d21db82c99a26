"""``seek``: resume a ``DataLoader`` over a ``SeekableSampler`` by arithmetic, in O(1).

Its own state::

    {"position": 1280}   # the global sample position of the next step's first sample

The loader over an endless sampler has a single pass (0); the position is a global sample
position, so the batch size, workers and number of ranks may change between runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from torch.utils.data import DataLoader

from ._checks import as_power, short
from ._protocols import SeekableSampler
from ._state import Saved, require_count
from ._strategy import Strategy


class Seek(Strategy):
    """O(1) resume: seek a ``SeekableSampler`` to a global sample position."""

    name = "seek"
    POSITION = "position"

    def __init__(self, loader: DataLoader[Any], sampler: SeekableSampler, batch: int) -> None:
        super().__init__(loader)
        self._sampler = sampler
        self._batch = batch  # samples per step on this rank (all ranks, behind Accelerate)
        # Where the open iteration started: a global position and the pass's batch count then.
        # The world size is read when a pass opens, not here: a sampler may take it from a
        # process group that is initialised after the loader is built.
        self._base: int | None = None
        self._base_batches = 0
        self._samples_per_step = batch

    def fingerprint(self) -> dict[str, Any]:
        return dict(self._sampler.fingerprint())

    def check_fingerprint(self, fingerprint: Mapping[str, Any], saved: Saved) -> None:
        # A sampler that knows which differences are harmless at a position (a mixture whose
        # schedule changes only after it) judges the saved fingerprint itself.
        judge = getattr(self._sampler, "check_checkpoint", None)
        if callable(judge) and not saved.unchecked:
            judge(saved.fingerprint, require_count(saved.own, self.POSITION, saved.where))
        else:
            super().check_fingerprint(fingerprint, saved)

    def check(self, saved: Saved) -> None:
        position = require_count(saved.own, self.POSITION, saved.where)
        # The protocol sets no limit; a sampler may declare the largest position it seeks to.
        limit = getattr(self._sampler, "max_start", None)
        if isinstance(limit, int) and position > limit:
            raise ValueError(
                f"{saved.where}['{self.POSITION}'] must be at most {as_power(limit)} for "
                f"{type(self._sampler).__name__} (got {position}): no run gets that far, the "
                "state is corrupt"
            )
        if saved.pass_index != 0:
            raise ValueError(
                f"state['pass'] is {saved.pass_index}, but a loader over an endless "
                "SeekableSampler has a single pass, 0: the state is corrupt"
            )

    def reset(
        self, pass_index: int, batches_in_pass: int, own: Mapping[str, Any] | None
    ) -> Iterator[Any]:
        if pass_index > 0:
            raise RuntimeError(
                f"the sampler {short(self._sampler)} ran out, but a SeekableSampler must be "
                "endless; make its __iter__ never stop"
            )
        if own is not None:
            self._sampler.seek(own[self.POSITION])
        self._samples_per_step = self._batch * self._sampler.world_size
        self._base = self._sampler.start
        self._base_batches = batches_in_pass
        return iter(self.loader)

    def position(self, batches_in_pass: int) -> dict[str, Any]:
        if self._base is None:  # not opened yet: where the sampler will start
            return {self.POSITION: self._sampler.start}
        steps = batches_in_pass - self._base_batches
        return {self.POSITION: self._base + steps * self._samples_per_step}
