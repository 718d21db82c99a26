"""The small protocols ``VirtualDataLoader`` looks for in what it wraps.

Capabilities are found by these protocols, never by ``isinstance`` on our own classes, so a
user's sampler or loader can offer the same fast paths as ours.
"""

from __future__ import annotations

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


@runtime_checkable
class Stateful(Protocol):
    """An object that saves and restores its own position, such as torchdata's loaders."""

    def state_dict(self) -> dict[str, Any]:
        """Return the state."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state returned by ``state_dict``."""
