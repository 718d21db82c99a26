"""``replay``: resume any other iterable of batches by iterating its pass again.

The consumed batches of the pass in progress are loaded again and thrown away, with one warning
that says what that costs. This is exact only if the wrapped loader yields the same batches in
every run: no unseeded shuffling, no per-worker random state. With ``verify_replay=True`` a
digest of the batches handed out in the pass is saved, and a replay whose batches differ is
refused. Its own state::

    {"digest": "3f2a..."}   # with verify_replay=True: blake2b of the pass's batches so far
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from ._checks import describe, short
from ._shapes import set_epoch, sized
from ._state import Saved, require
from ._strategy import Strategy, check_pass_length
from ._warnings import warn


class Replay(Strategy):
    """Iterate the pass again and throw the consumed batches away (warns once)."""

    name = "replay"
    DIGEST = "digest"

    def __init__(self, loader: Iterable[Any], *, verify: bool = False) -> None:
        super().__init__(loader)
        # Only trust a length that is exact: a sequence's, or a map-style DataLoader's.
        reliable = isinstance(loader, Sequence) or (
            isinstance(loader, DataLoader) and not isinstance(loader.dataset, IterableDataset)
        )
        self._length = sized(loader) if reliable else None
        self._verify = verify
        self._digests = _Digests()
        self._warned = False

    def fingerprint(self) -> dict[str, Any]:
        out = super().fingerprint()
        if self._length is not None:
            # A position means another sample in a pass of another length.
            out["batches_per_pass"] = self._length
        return out

    def check(self, saved: Saved) -> None:
        check_pass_length(saved, self._length)
        if self._verify and saved.batches_in_pass:
            if self.DIGEST not in saved.own:
                raise ValueError(
                    f"{saved.where} has no '{self.DIGEST}': the checkpoint was saved without "
                    "verify_replay=True, so there is nothing to check the replayed batches "
                    "against; resume it with verify_replay=False, and save the next checkpoint "
                    "with verify_replay=True"
                )
            require(saved.own, self.DIGEST, str, saved.where)

    def reset(
        self, pass_index: int, batches_in_pass: int, own: Mapping[str, Any] | None
    ) -> Iterator[Any]:
        set_epoch(self.loader, pass_index)
        self._digests.restart()
        iterator = iter(self.loader)
        if self._verify:
            iterator = self._digests.hashing(iterator)
        if batches_in_pass == 0:
            return iterator
        if not self._warned and not isinstance(self.loader, Sequence):
            # (Replaying a sequence of ready batches loads nothing: no warning.)
            self._warned = True
            warn(
                f"VirtualDataLoader is resuming {short(self.loader)} by replaying "
                f"{batches_in_pass} batches of pass {pass_index}: each is loaded again and "
                "thrown away, and the result is exact only if the loader yields the same batches "
                "in every run (no unseeded shuffling, no per-worker random state; pass "
                "verify_replay=True to check it). For an O(1) resume, use a DataLoader with an "
                "InfiniteSampler (or any plain DataLoader over a map-style dataset), or a loader "
                "with state_dict()/load_state_dict()."
            )
        replay_batches(iterator, batches_in_pass, pass_index, self.loader)
        if self._verify and own is not None and self.DIGEST in own:
            found = self._digests.at(batches_in_pass)
            if found != own[self.DIGEST]:
                raise ValueError(
                    f"cannot resume: the {batches_in_pass} batches of pass {pass_index} replayed "
                    f"from {short(self.loader)} differ from those the saved run handed out "
                    f"(digest {found[:12]}... against {own[self.DIGEST][:12]}...): the loader does "
                    "not yield the same batches in every run (an unseeded shuffle, randomness "
                    "drawn per worker?), so a replay would not continue the saved run. Seed its "
                    "randomness, or use an InfiniteSampler or a loader with state_dict()"
                )
        return iterator

    def position(self, batches_in_pass: int) -> dict[str, Any]:
        if not self._verify:
            return {}
        return {self.DIGEST: self._digests.at(batches_in_pass)}

    def finished(self, batches_in_pass: int) -> bool:
        return self._length is not None and batches_in_pass >= self._length


_EMPTY = hashlib.blake2b(digest_size=16).hexdigest()


class _Digests:
    """A running digest of the batches drawn from a pass, readable at the last two counts."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self._hash = hashlib.blake2b(digest_size=16)
        self._count = 0
        self._now = self._hash.hexdigest()
        self._before = self._now

    def hashing(self, iterator: Iterator[Any]) -> Iterator[Any]:
        for batch in iterator:
            _feed(self._hash, batch)
            self._before, self._now = self._now, self._hash.hexdigest()
            self._count += 1
            yield batch

    def at(self, count: int) -> str:
        """Return the digest after ``count`` batches of the pass.

        That is the latest, or the one before it (a batch drawn but not yet counted by the
        consumer: a state saved while it loads).
        """
        if count == 0:
            return _EMPTY
        if count == self._count:
            return self._now
        if count == self._count - 1:
            return self._before
        raise RuntimeError(
            f"no digest for {count} batches of the pass (drawn: {self._count}); this is a bug"
        )


def _feed(hash_: Any, value: Any) -> None:
    """Feed ``value`` (a batch: tensors, arrays, numbers, strings, and containers of them)."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        hash_.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        # The raw bytes, read in place (numpy is not a dependency).
        hash_.update(ctypes.string_at(tensor.data_ptr(), tensor.numel() * tensor.element_size()))
    elif hasattr(value, "__array_interface__") and callable(getattr(value, "tobytes", None)):
        hash_.update(f"A{value.dtype}{value.shape}".encode())  # a numpy array
        hash_.update(value.tobytes())
    elif isinstance(value, Mapping):
        hash_.update(f"M{len(value)}".encode())
        for key in sorted(value, key=repr):
            _feed(hash_, key)
            _feed(hash_, value[key])
    elif isinstance(value, (list, tuple)):
        hash_.update(f"L{len(value)}".encode())
        for item in value:
            _feed(hash_, item)
    elif value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        hash_.update(f"V{value!r}".encode())
    else:
        raise TypeError(
            f"verify_replay=True cannot digest a batch part {describe(value)}: batches must "
            "hold tensors, numpy arrays, numbers, strings, bytes, None, and lists, tuples and "
            "dicts of them; pass verify_replay=False"
        )


def replay_batches(iterator: Iterator[Any], count: int, pass_index: int, loader: object) -> None:
    """Take ``count`` batches of pass ``pass_index`` from ``iterator`` and throw them away."""
    done = sum(1 for _ in itertools.islice(iterator, count))
    if done < count:
        raise ValueError(
            f"cannot resume: pass {pass_index} of {short(loader)} ended after {done} of "
            f"the {count} batches to replay to reach the saved position; the loader must yield "
            "the same batches in every run"
        )
