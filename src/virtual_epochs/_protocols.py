"""The small protocols ``VirtualDataLoader`` looks for in what it wraps.

Capabilities are found by these protocols, never by ``isinstance`` on our own classes, so a
user's sampler or loader can offer the same fast paths as ours.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class SeekableSampler(Protocol):
    """An endless sampler whose order is a pure function of a global sample position.

    ``InfiniteSampler`` is one. A ``DataLoader`` whose sampler (or whose ``BatchSampler``'s
    sampler) has these members is resumed by ``VirtualDataLoader`` in O(1): it seeks the sampler
    to the saved position instead of replaying anything.

    Rank ``r`` of ``world_size`` ranks yields global positions ``start + r``,
    ``start + r + world_size``, ...; all ranks together consume ``world_size`` positions per
    index that each of them yields.

    No limit is set on positions. A sampler that has one may declare it as an ``int``
    attribute ``max_start`` (``InfiniteSampler``'s is ``2**62``): ``VirtualDataLoader`` then
    refuses a saved position beyond it at load, before anything changes, instead of at the
    first batch. ``world_size`` is read when a pass opens, so it may come from a process group
    initialised after the sampler was built.

    A sampler may also judge a saved fingerprint itself, with a method
    ``check_checkpoint(fingerprint, position)`` that raises ``ValueError`` naming what differs
    where it matters: ``MixtureSampler`` accepts a weight schedule changed only after the saved
    position. Without one, the saved fingerprint must equal ``fingerprint()``.
    """

    @property
    def start(self) -> int:
        """The global sample position at which the next ``iter()`` starts."""

    @property
    def world_size(self) -> int:
        """How many ranks share the global sample stream."""

    def seek(self, position: int) -> None:
        """Make the next ``iter()`` start at global sample ``position``."""

    def fingerprint(self) -> dict[str, Any]:
        """Return the settings that decide the order (plain ints, strings and bools)."""


def is_seekable(obj: object) -> bool:
    """Whether ``obj`` has the members of ``SeekableSampler``, looked up without running any.

    ``isinstance(obj, SeekableSampler)`` evaluates properties on Python 3.11, and a sampler's
    ``world_size`` may ask ``torch.distributed`` (and refuse, before the process group exists),
    so the members are looked up statically, as Python 3.12's protocol check does.
    """
    missing = object()
    return all(
        inspect.getattr_static(obj, name, missing) is not missing for name in _SEEKABLE_MEMBERS
    )


_SEEKABLE_MEMBERS = ("start", "world_size", "seek", "fingerprint")


@runtime_checkable
class Stateful(Protocol):
    """An object that saves and restores its own position, such as torchdata's loaders."""

    def state_dict(self) -> dict[str, Any]:
        """Return the state."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state returned by ``state_dict``."""
