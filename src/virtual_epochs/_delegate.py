"""``delegate``: nest the state of a loader, or dataset, that saves its own position.

Used for torchdata's ``StatefulDataLoader`` and for an ``IterableDataset`` with
``state_dict()``/``load_state_dict()`` under a ``DataLoader`` without workers. Its own state::

    {
        "inner": {...},                   # the wrapped loader's state, encoded (None: a new pass)
        "replay": 2,                      # after a failed batch: batches to replay from "inner"
        "pass_seeds": {"seed": 1234},     # where PassSeeds adopted a seed (see _pass_seeds)
    }

The wrapped loader must give the same batches from the same state in every run: its state is
trusted as it is (a dataset that shuffles with an unseeded generator of its own breaks this).

After a failure inside a batch the wrapped loader's own state cannot be trusted (torchdata's
loader without workers has already moved its sampler past the failed batch). So the position
after an error is the recovery point (the state saved by the last ``state_dict()`` in this
pass, or the start of the pass) and a number of batches to replay from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ._checks import short
from ._pass_seeds import PassSeeds
from ._protocols import Stateful
from ._replay import replay_batches
from ._shapes import set_epoch
from ._state import Saved, decode, encode, require, require_count
from ._strategy import Recovery, Strategy
from ._warnings import warn


class Delegate(Strategy):
    """Nest the state of a loader, or dataset, that saves its own position."""

    name = "delegate"
    INNER = "inner"
    REPLAY = "replay"

    def __init__(self, loader: Iterable[Any], target: Stateful) -> None:
        super().__init__(loader)
        self._target = target
        self._seeds = PassSeeds(loader, adopt_always=True)

    def check(self, saved: Saved) -> None:
        # What the wrapped loader makes of its own state is its business (torchdata, for
        # one, reads it at the next iter()).
        own, where = saved.own, saved.where
        replay = 0
        if self.REPLAY in own:
            replay = require_count(own, self.REPLAY, where)
            if not 0 < replay <= saved.batches_in_pass:
                raise ValueError(
                    f"{where}['{self.REPLAY}'] must be between 1 and state['batches_in_pass'] "
                    f"= {saved.batches_in_pass} (got {replay}): the state is corrupt"
                )
        inner = None  # "a fresh pass"
        if own.get(self.INNER, "missing") is not None:
            inner = require(own, self.INNER, dict, where)
        base = saved.batches_in_pass - replay  # where the wrapped loader's own state must be
        if not inner and base:
            # None is "a fresh pass", and torchdata reads {} as "no state": either way the
            # pass would start again and its batches come twice.
            raise ValueError(
                f"{where}['{self.INNER}'] is {'None' if inner is None else 'empty'}, but the "
                f"wrapped loader's state must be {base} batches into pass {saved.pass_index}: "
                "its position is missing and the pass would start again; the state is corrupt"
            )
        if inner is not None:
            try:
                decode(inner)
            except Exception as error:
                raise ValueError(
                    f"{where}['{self.INNER}'] holds an encoded value that does not decode "
                    f"({error}): the state is corrupt"
                ) from error
        self._seeds.check(own, where)

    def reset(
        self, pass_index: int, batches_in_pass: int, own: Mapping[str, Any] | None
    ) -> Iterator[Any]:
        del batches_in_pass  # the wrapped loader's own state says where the pass stands
        set_epoch(self.loader, pass_index)
        self._seeds.start_pass(pass_index, own)
        inner = None if own is None else own[self.INNER]
        replay: int = 0 if own is None else own.get(self.REPLAY, 0)
        if inner is None:
            iterator = iter(self.loader)
        else:
            try:
                self._target.load_state_dict(decode(inner))
                iterator = iter(self.loader)  # (torchdata applies a loaded state here)
            except (AssertionError, KeyError, TypeError, ValueError) as error:
                raise ValueError(
                    f"state['resume']['{self.name}']['{self.INNER}'] was refused by "
                    f"{short(self._target)} ({type(error).__name__}: {error}): it was saved "
                    "by a loader built differently (torchdata: another num_workers), or by "
                    "another version of it, or it is corrupt"
                ) from error
        if replay:
            warn(
                f"VirtualDataLoader is reopening pass {pass_index} of {short(self.loader)} "
                f"after an error by replaying {replay} batches from its last consistent state "
                "(the last state_dict(), or the start of the pass): each is loaded again and "
                "thrown away"
            )
            replay_batches(iterator, replay, pass_index, self.loader)
        return iterator

    def position(self, batches_in_pass: int) -> dict[str, Any]:
        # At a new pass, None ("a fresh pass"), which the pass seeds make the same in every run:
        # the wrapped loader's own state would still describe the pass that ended (torchdata's,
        # its sampler's generator included), and before the first pass torchdata would build
        # its iterator early to give one. Encoding copies: the wrapped loader's state may share
        # objects with its live iterator (torchdata's does).
        inner = None if batches_in_pass == 0 else encode(self._target.state_dict())
        return {**self._seeds.position(), self.INNER: inner}

    def recover(self, batches_in_pass: int, recovery: Recovery | None) -> dict[str, Any]:
        good = recovery if recovery is not None else Recovery(0, self.position(0))
        own = {**self._seeds.position(), self.INNER: good.own[self.INNER]}
        replay = batches_in_pass - good.batches_in_pass + good.own.get(self.REPLAY, 0)
        if replay:
            own[self.REPLAY] = replay
        return own
