"""Counting handed-out batches with no work of ours on the per-batch path.

``StepCount`` holds the number of batches handed out since the start of training. While an
epoch runs, that number moves without any Python code of ours: ``begin(left)`` returns a C
iterator (``itertools.repeat(None, left)``) that the epoch's generator advances by one
``FOR_ITER`` right before each ``yield``::

    counter = count.begin(left)
    for _ in itertools.repeat(None, left):
        batch = take()
        for _ in counter:
            break
        yield batch

Its remaining length (``operator.length_hint``) says how many batches were handed out, at any
moment: between batches, while the next one loads, in a signal handler. ``settle()`` folds it
into the plain count whenever an iteration stops. Nothing is allocated per batch, where
``steps += 1`` would allocate a new int past 256 (measured in docs/performance.md).
"""

from __future__ import annotations

import itertools
import operator


class StepCount:
    """Batches handed out since the start of training, counted as described in the module."""

    __slots__ = ("_live", "_settled", "_start")

    def __init__(self, steps: int = 0) -> None:
        self._settled = steps
        self._live: itertools.repeat[None] | None = None
        self._start = 0  # the length `_live` started with

    def __call__(self) -> int:
        """Return the count, the live counter's included."""
        live = self._live
        if live is None:
            return self._settled
        return self._settled + self._start - operator.length_hint(live)

    def begin(self, left: int) -> itertools.repeat[None]:
        """Return the live counter for the next ``left`` batches at most."""
        self._live = counter = itertools.repeat(None, left)
        self._start = left
        return counter

    def settle(self, counter: itertools.repeat[None] | None) -> None:
        """Fold ``counter``'s count into the plain count, if it is the live one."""
        if counter is not None and counter is self._live:
            self._settled = self()
            self._live = None

    def reset(self, steps: int) -> None:
        """Set the count to ``steps`` (a loaded state); any live counter is forgotten."""
        self._settled = steps
        self._live = None

    @property
    def settled(self) -> int:
        """The count as last settled (the live counter not included)."""
        return self._settled
