"""Reproducible passes for samplers that draw their order from a ``torch.Generator``.

``RandomSampler`` (and kin) has no ``set_epoch``: pass ``p``'s order depends on everything its
generator drew before, which a new process cannot know. ``PassSeeds`` gives such samplers a
generator of their own, reseeded at each pass from ``(seed, pass)``, the way
``DistributedSampler`` seeds from ``seed + epoch``: the order becomes a function of the pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import RandomSampler, SubsetRandomSampler, WeightedRandomSampler

from . import _permutation
from ._bits import M32
from ._shapes import TORCHDATA_RANDOM_SAMPLER, qualified_name
from ._state import require, require_count

_GENERATOR_SAMPLERS = (RandomSampler, SubsetRandomSampler, WeightedRandomSampler)


def _pass_seed(seed: int, pass_index: int) -> int:
    """Return the generator seed of pass ``pass_index`` for sampler seed ``seed``.

    ``torch.Generator.manual_seed`` keeps only the low 32 bits of a seed, so the seeds are 32-bit
    and all different for ``2**32`` consecutive passes (a bijection of ``base + pass``):

    >>> len({_pass_seed(7, p) for p in range(100_000)})
    100000
    """
    base = _permutation.splitmix64(seed) & M32
    return _permutation.hash32((base + pass_index) & M32)


def _drives_generator(sampler: object) -> bool:
    """Whether ``sampler`` draws its order from its ``generator`` attribute at every pass."""
    return isinstance(sampler, _GENERATOR_SAMPLERS) or (
        qualified_name(sampler) == TORCHDATA_RANDOM_SAMPLER
    )


class PassSeeds:
    """Seeds the loader's generator-driven samplers from ``(seed, pass)`` at every pass.

    Such a sampler (``RandomSampler`` and kin) has no ``set_epoch``: pass ``p``'s order depends
    on everything its generator drew before, which a new process cannot know. Giving it a
    generator of its own, reseeded at each pass, makes the order a function of the pass, the way
    ``DistributedSampler`` seeds from ``seed + epoch``.

    The seed is the user's generator's ``initial_seed()`` (a setting: part of the fingerprint),
    or, when the sampler came without one, ``torch.initial_seed()``: nobody chose it, so it is
    saved with the position and adopted on resume. ``adopt_always`` treats every seed as
    adopted (torchdata's ``RandomSampler`` makes itself a generator when given none).
    """

    def __init__(self, loader: object, *, adopt_always: bool = False) -> None:
        batch_sampler = getattr(loader, "batch_sampler", None)
        found = (getattr(loader, "sampler", None), getattr(batch_sampler, "sampler", None))
        self._samplers: list[Any] = []
        for sampler in found:
            if _drives_generator(sampler) and all(sampler is not s for s in self._samplers):
                self._samplers.append(sampler)
        user = [s.generator for s in self._samplers if s.generator is not None]
        self._users = bool(user) and not adopt_always
        self.seed = user[0].initial_seed() if user else torch.initial_seed()
        self._generator = torch.Generator()

    KEY = "pass_seeds"
    """The key this part's state nests under, inside its strategy's own state."""
    SEED = "seed"

    @property
    def _adopts(self) -> bool:
        return bool(self._samplers) and not self._users

    def fingerprint(self) -> dict[str, Any]:
        """The user's seed, if the user chose one."""
        return {"generator_seed": self.seed} if self._samplers and self._users else {}

    def position(self) -> dict[str, Any]:
        """The adopted seed, saved with the position: ``{KEY: {SEED: seed}}``, or nothing."""
        return {self.KEY: {self.SEED: self.seed}} if self._adopts else {}

    def check(self, own: Mapping[str, Any], where: str) -> None:
        """Validate the saved adopted seed in a strategy's own state ``own`` (named ``where``)."""
        if self._adopts:
            part = require(own, self.KEY, Mapping, where)
            seed = require_count(part, self.SEED, f"{where}['{self.KEY}']")
            if seed >= 1 << 64:
                raise ValueError(
                    f"{where}['{self.KEY}']['{self.SEED}'] must be below 2**64 (got {seed})"
                )

    def start_pass(self, pass_index: int, own: Mapping[str, Any] | None) -> None:
        """Seed the samplers for pass ``pass_index`` (before the pass's ``iter()``).

        Args:
            pass_index: the pass about to start.
            own: the strategy's own part of a checked saved state, whose adopted seed is taken
                over, or ``None``.
        """
        if own is not None and self._adopts:
            self.seed = own[self.KEY][self.SEED]
        if self._samplers:
            self._generator.manual_seed(_pass_seed(self.seed, pass_index))
            for sampler in self._samplers:
                sampler.generator = self._generator
