"""A mixture's weight schedule: phases, their integer weights, and where each source stands.

Phase ``j`` covers global positions ``[starts[j], starts[j + 1])`` (the last one never ends)
and draws with its own weights. At the start of a phase every source continues its own order
where it stood: ``bases[j][k]``, the number of positions source ``k`` held in all earlier
phases, is computed once from the rule's counts, so nothing is repeated or skipped.

Weights become non-negative ints with the same ratios (``integer_weights``): exact when the
user's weights are ratios of small integers, as written (``0.7, 0.2, 0.1`` is ``7, 2, 1``),
else rounded to parts of ``2**31``.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from fractions import Fraction
from numbers import Real
from typing import Any, NamedTuple

import torch

from . import _mixture_rule
from ._checks import describe

_DENOMINATOR = 1 << 20  # a float is read as a ratio of ints below this when it is that close:
_CLOSE = 2.0**-24  # within float32's rounding (weights that went through a float32 tensor)


def check_weights(name: str, weights: Any, sizes: Sequence[int]) -> list[float | int]:
    """Return ``weights`` as a list after checking them against the sources' ``sizes``.

    Raises:
        TypeError: ``weights`` is not a sequence of real numbers.
        ValueError: a weight is negative, NaN or infinite; all are zero; the count differs
            from the number of sources; a source with a positive weight is empty.
    """
    if isinstance(weights, torch.Tensor) or type(weights).__name__ == "ndarray":
        # A 1-D tensor or NumPy array of weights: its numbers, as Python floats or ints.
        weights = weights.tolist() if weights.ndim == 1 else weights
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise TypeError(
            f"'{name}' must be a sequence of one number per source (got {describe(weights)})"
        )
    if len(weights) != len(sizes):
        raise ValueError(
            f"'{name}' must hold one weight per source, {len(sizes)} (got {len(weights)})"
        )
    out: list[float | int] = []
    for k, weight in enumerate(weights):
        if isinstance(weight, bool) or not isinstance(weight, Real):
            raise TypeError(f"'{name}'[{k}] must be a real number (got {describe(weight)})")
        value = weight if isinstance(weight, int) else float(weight)
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"'{name}'[{k}] must be a finite number >= 0 (got {weight!r}); give a source "
                "weight 0 to leave it out"
            )
        if value > 0 and sizes[k] == 0:
            raise ValueError(
                f"'{name}'[{k}] is {weight!r}, but source {k} is empty; give it weight 0 or "
                "add samples to it"
            )
        out.append(value)
    if not any(out):
        raise ValueError(f"'{name}' must have at least one positive weight (got all zero)")
    return out


def integer_weights(weights: Sequence[float | int]) -> tuple[list[int], bool]:
    """Return non-negative ints in the ratios of ``weights``, and whether they are exact.

    Each float is read as the simplest fraction (denominator below ``2**20``) within float32's
    rounding of it (relative ``2**-24``), if there is one: ``0.7`` and ``float32(0.7)`` are both
    ``7/10``. The fractions are scaled to ints and reduced. If their sum is above
    ``_mixture_rule.MAX_TOTAL`` they are rounded to parts of it instead (largest remainders,
    at least one part for every positive weight): then the proportions are off by at most
    ``2**-31`` each.

    >>> integer_weights([0.7, 0.2, 0.1])
    ([7, 2, 1], True)
    >>> integer_weights(torch.tensor([0.7, 0.2, 0.1]).tolist())  # float32 values
    ([7, 2, 1], True)
    >>> integer_weights([3, 0, 6])
    ([1, 0, 2], True)
    >>> integer_weights([1, 2**40])[1]
    False
    """
    fractions = []
    for weight in weights:
        exact = Fraction(weight)
        if isinstance(weight, float):
            simple = exact.limit_denominator(_DENOMINATOR)
            if abs(simple - exact) <= exact * Fraction(_CLOSE):
                exact = simple
        fractions.append(exact)
    scale = math.lcm(*(f.denominator for f in fractions))
    ints = [int(f * scale) for f in fractions]
    common = math.gcd(*ints)
    ints = [i // common for i in ints]
    total = sum(ints)
    if total <= _mixture_rule.MAX_TOTAL:
        return ints, True
    parts = _mixture_rule.MAX_TOTAL
    shares = [Fraction(i * parts, total) for i in ints]
    rounded = [max(math.floor(s), 1) if s > 0 else 0 for s in shares]
    left = parts - sum(rounded)
    # Hand out (or take back) single parts by largest remainder, never below one.
    by_remainder = sorted(range(len(ints)), key=lambda k: shares[k] - rounded[k], reverse=True)
    step = 1 if left > 0 else -1
    k = 0
    while left != 0:
        i = by_remainder[k % len(ints)] if step > 0 else by_remainder[-1 - k % len(ints)]
        if shares[i] > 0 and rounded[i] + step >= 1:
            rounded[i] += step
            left -= step
        k += 1
    common = math.gcd(*rounded)
    return [r // common for r in rounded], False


class Phase(NamedTuple):
    """One phase: where it starts, its integer weights, its rule's tables, the sources' bases."""

    start: int
    weights: list[int]
    exact: bool
    tree: _mixture_rule.Tree
    bases: list[int]


class Schedule:
    """The phases of a mixture, with every source's position at each phase start.

    Args:
        sizes: the number of samples of each source.
        weights: the first phase's weights, from position 0.
        phases: ``(start, weights)`` of each later phase, starts increasing.
        rule: the name of the rule in ``_mixture_rule.RULES``.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float | int],
        phases: Sequence[tuple[int, Sequence[float | int]]],
        rule: str,
    ) -> None:
        self.rule = _mixture_rule.RULES[rule]
        self.phases: list[Phase] = []
        bases = [0] * len(sizes)
        for start, phase_weights in [(0, weights), *phases]:
            if self.phases:
                before = self.phases[-1]
                counts = self.rule.counts(before.tree, start - before.start)
                bases = [b + c for b, c in zip(bases, counts, strict=True)]
            ints, exact = integer_weights(phase_weights)
            self.phases.append(Phase(start, ints, exact, self.rule.build(ints), bases))
        self.starts = [phase.start for phase in self.phases]

    def phase_at(self, position: int) -> int:
        """Return the number of the phase that holds global ``position``."""
        return bisect_right(self.starts, position) - 1

    def counts(self, position: int) -> list[int]:
        """Return how many of the global positions ``0 .. position - 1`` each source holds."""
        phase = self.phases[self.phase_at(position)]
        counts = self.rule.counts(phase.tree, position - phase.start)
        return [b + c for b, c in zip(phase.bases, counts, strict=True)]

    def locate_int(self, position: int) -> tuple[int, int]:
        """Return ``(source, position within that source)`` at global ``position``."""
        phase = self.phases[self.phase_at(position)]
        source, rank = self.rule.locate_int(phase.tree, position - phase.start)
        return source, phase.bases[source] + rank

    def weights(self) -> list[list[int]]:
        """Return every phase's integer weights (fresh lists)."""
        return [list(phase.weights) for phase in self.phases]


def check_phases(phases: Any, sizes: Sequence[int], max_start: int) -> list[tuple[int, list[Any]]]:
    """Return ``phases`` as a list of ``(start, weights)`` after checking every part.

    Raises:
        TypeError: ``phases`` or a part of it has the wrong type.
        ValueError: a start is not above the one before (the first above 0) or past
            ``max_start``, or a phase's weights are wrong (see ``check_weights``).
    """
    if isinstance(phases, (str, bytes)) or not isinstance(phases, Sequence):
        raise TypeError(
            "'phases' must be a sequence of (start, weights) pairs, one per phase after the "
            f"first (got {describe(phases)})"
        )
    out = []
    previous = 0
    for j, phase in enumerate(phases):
        if isinstance(phase, (str, bytes)) or not isinstance(phase, Sequence) or len(phase) != 2:
            raise TypeError(
                f"'phases'[{j}] must be a (start, weights) pair (got {describe(phase)})"
            )
        start, weights = phase
        if isinstance(start, bool) or not isinstance(start, int):
            raise TypeError(
                f"'phases'[{j}] must start at an int global position (got {describe(start)})"
            )
        if start <= previous:
            raise ValueError(
                f"'phases'[{j}] must start after position {previous}, where the phase before "
                f"it starts (got {start}); list the phases in order"
            )
        if start > max_start:
            raise ValueError(f"'phases'[{j}] must start at a position <= 2**62 (got {start})")
        out.append((start, check_weights(f"phases[{j}] weights", weights, sizes)))
        previous = start
    return out


def check_past(mine: Schedule, starts: list[int], weights: list[list[int]], position: int) -> None:
    """Check that a saved schedule agrees with ``mine`` on every position before ``position``.

    The phases that start before ``position`` must be the same (start and weights); the one in
    progress there may end elsewhere, and phases from ``position`` on may be added, moved,
    reweighted or removed.

    Raises:
        ValueError: the schedules differ before ``position``; the message names the phase.
    """
    theirs = [(s, w) for s, w in zip(starts, weights, strict=True) if s < position]
    ours = [(p.start, p.weights) for p in mine.phases if p.start < position]
    for j in range(max(len(theirs), len(ours))):
        if j >= len(ours):
            what = "is not in this sampler's schedule"
        elif j >= len(theirs):
            what = "is not in the checkpoint's schedule"
        elif theirs[j][0] != ours[j][0]:
            what = f"starts at {ours[j][0]} in this sampler's schedule"
        elif theirs[j][1] != ours[j][1]:
            what = f"has weights {ours[j][1]} here, but {theirs[j][1]} in the checkpoint"
        else:
            continue
        start = theirs[j][0] if j < len(theirs) else ours[j][0]
        raise ValueError(
            f"the checkpoint's schedule differs before its position {position}: phase {j} "
            f"(from position {start}) {what}; only phases from the saved position on may change"
        )
