"""The contract between ``VirtualDataLoader`` and the ways it resumes a wrapped loader.

``VirtualDataLoader`` counts steps, epochs and passes; a ``Strategy`` knows one shape of wrapped
loader: how a pass of it is opened at a position, and how that position is written down. The
contract is narrow, in the spirit of torchdata's ``BaseNode`` (``reset``, ``next``,
``get_state``):

- ``reset(pass_index, batches_in_pass, own)`` opens pass ``pass_index`` with ``batches_in_pass``
  of its batches already handed out, and returns the iterator over the rest. ``own`` is the
  strategy's own part of a saved state (``state['resume'][name]``), already checked, or
  ``None`` where no saved position applies (a new pass). It is the only way a saved position
  reaches a strategy.
- ``position(batches_in_pass)`` returns the strategy's own part of a state for that point of
  the pass in progress, where ``0`` means the start of a pass not opened yet. It is pure:
  ``state_dict()`` calls it as often as it likes.
- ``finished(batches_in_pass)`` says whether the pass in progress has no batch left (where that
  is known without asking the iterator), so that a state saved there names the next pass.
- ``recover(batches_in_pass, recovery)`` returns the position to reopen at after the iterator
  failed (its own position is then unknown). ``recovery`` is the recovery point that
  ``VirtualDataLoader`` marked explicitly (its last ``state_dict()`` in this pass).
- ``fingerprint()`` returns the settings that decide the sample order;
  ``check_fingerprint(fingerprint, saved)`` compares a loaded state's with it (equality, unless
  the strategy knows better: ``seek`` lets a sampler with ``check_checkpoint`` judge), and
  ``check(saved)`` validates the state's own part; all before anything changes.

Each strategy names its own keys as class constants, nests them under ``name``, and lets a part
shared with other strategies (``PassSeeds``) nest under that part's own key.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar, NamedTuple

from ._shapes import sized
from ._state import Saved, check_fingerprint


class Recovery(NamedTuple):
    """A position known to be consistent: ``batches_in_pass`` into the pass, and ``own`` there."""

    batches_in_pass: int
    own: Mapping[str, Any]


class Strategy(abc.ABC):
    """How passes of one shape of wrapped loader are opened and resumed (see the module)."""

    name: ClassVar[str]
    """The strategy's name: ``vl.strategy``, and the key its own state nests under."""

    def __init__(self, loader: Iterable[Any]) -> None:
        self.loader = loader

    def fingerprint(self) -> dict[str, Any]:
        """Return the settings that decide the order of samples (plain values)."""
        out: dict[str, Any] = {"loader": type(self.loader).__qualname__}
        dataset_size = sized(getattr(self.loader, "dataset", None))
        if dataset_size is not None:
            out["dataset_size"] = dataset_size
        return out

    def check_fingerprint(self, fingerprint: Mapping[str, Any], saved: Saved) -> None:
        """Check the saved fingerprint against this loader's ``fingerprint``: equal, by default."""
        check_fingerprint(fingerprint, saved.fingerprint, unchecked=saved.unchecked)

    @abc.abstractmethod
    def check(self, saved: Saved) -> None:
        """Validate ``saved.own`` (and counters that concern it); raise on anything wrong."""

    @abc.abstractmethod
    def reset(
        self, pass_index: int, batches_in_pass: int, own: Mapping[str, Any] | None
    ) -> Iterator[Any]:
        """Open pass ``pass_index`` after its first ``batches_in_pass`` batches."""

    @abc.abstractmethod
    def position(self, batches_in_pass: int) -> dict[str, Any]:
        """Return the strategy's own state ``batches_in_pass`` into the pass; pure."""

    def finished(self, batches_in_pass: int) -> bool:
        """Whether ``batches_in_pass`` batches are all that the pass in progress has."""
        del batches_in_pass
        return False

    def recover(self, batches_in_pass: int, recovery: Recovery | None) -> dict[str, Any]:
        """Return the position to reopen at after the iterator failed ``batches_in_pass`` in.

        By default the position is computed from the count alone.
        """
        del recovery
        return self.position(batches_in_pass)


def check_pass_length(saved: Saved, length: int | None) -> None:
    """Check that the saved position fits in a pass of ``length`` batches (if known)."""
    if length is not None and saved.batches_in_pass > length:
        raise ValueError(
            f"state['batches_in_pass'] is {saved.batches_in_pass}, more than the {length} "
            "batches in a pass of this loader: the checkpoint comes from another loader"
        )
