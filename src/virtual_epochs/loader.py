"""``VirtualDataLoader``: epochs of a fixed number of steps over an endless stream of batches.

The stream is the wrapped loader iterated pass after pass. The object only counts: batches
handed out, where the current epoch and pass began, and the strategy (``_resume``) that starts
each pass and resumes inside one.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import weakref
from collections.abc import Generator, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

import torch

from . import _resume, _state
from ._checks import check_bool, check_int, describe, short
from ._counting import StepCount
from ._strategy import Recovery, Strategy
from ._warnings import warn

T = TypeVar("T")


class VirtualDataLoader(Generic[T]):
    """Cut the endless stream of a loader's batches into epochs of ``steps_per_epoch`` steps.

    Each ``for batch in vl:`` is one virtual epoch of exactly ``steps_per_epoch`` batches, taken
    from the stream where the previous epoch stopped; the wrapped loader is restarted whenever
    a pass over it ends, with ``set_epoch(pass)`` called on its samplers first, so every pass is
    a new shuffle. ``len(vl) == steps_per_epoch`` always, so tqdm, LR schedulers and
    Lightning see a fixed epoch length.

    ``state_dict()`` and ``load_state_dict()`` resume at any step with exactly the batches of an
    uninterrupted run, by the fastest exact means the wrapped loader allows: see ``strategy``.

    Args:
        loader: any re-iterable of batches: a ``DataLoader``, torchdata's
            ``StatefulDataLoader``, a list of batches, an object whose ``__iter__`` starts a
            new pass. A one-shot iterator (a generator object) serves one pass only.
        steps_per_epoch: the number of batches in every epoch.
        verify_replay: for a loader resumed by replaying its batches (``strategy ==
            "replay"``): save a digest of the pass's batches in ``state_dict()``, and refuse a
            resume whose replayed batches differ (a loader that does not yield the same batches
            in every run). Costs a hash of every batch; an error for other strategies.

    >>> vl = VirtualDataLoader([10, 20, 30], steps_per_epoch=2)
    >>> len(vl)
    2
    >>> [list(vl) for epoch in range(3)]
    [[10, 20], [30, 10], [20, 30]]
    >>> vl.epoch, vl.steps
    (3, 6)
    """

    def __init__(
        self, loader: Iterable[T], steps_per_epoch: int, *, verify_replay: bool = False
    ) -> None:
        check_int(
            "steps_per_epoch",
            steps_per_epoch,
            minimum=1,
            hint="; pass the number of batches each epoch should have",
        )
        if loader is None or not isinstance(loader, Iterable):
            raise TypeError(
                f"'loader' must be an iterable of batches, such as a DataLoader "
                f"(got {describe(loader)})"
            )
        check_bool("verify_replay", verify_replay)
        self._loader = loader
        self._steps_per_epoch = steps_per_epoch
        self._strategy = _resume.choose(loader, verify_replay=verify_replay)
        # What decides the sample order, computed once (state_dict() must stay cheap) and
        # afresh when a checkpoint is checked against it.
        self._fingerprint = self._strategy.fingerprint()
        self._one_shot = isinstance(loader, Iterator)
        # Progress, in batches handed out since the start of training (`_count()`).
        self._count = StepCount()
        self._epoch = 0  # the epoch in progress
        self._epoch_mark = 0  # the count when that epoch began
        self._pass = 0  # the pass of the wrapped loader in progress
        self._pass_mark = 0  # the count when that pass began
        self._resuming = False  # the next iteration continues a loaded mid-epoch state
        # The iterator over the current pass; where it must be (re)opened, if not at the count
        # (a loaded state, or the recovery after a failure): the strategy's own state there;
        # and the recovery point marked in this pass (see `_mark_recovery_point`).
        self._inner: Iterator[T] | None = None
        self._pending: Mapping[str, Any] | None = None
        self._recovery: Recovery | None = None
        self._opened = False
        self._active: weakref.ref[Generator[T, None, None]] | None = None
        # Only a strategy with its own recover() reads the recovery point: for the others,
        # state_dict() need not copy one.
        self._keeps_recovery = type(self._strategy).recover is not Strategy.recover

    # ----------------------------------------------------------------------------- reading

    @property
    def loader(self) -> Iterable[T]:
        """The wrapped loader."""
        return self._loader

    @property
    def steps_per_epoch(self) -> int:
        """The number of batches in every epoch."""
        return self._steps_per_epoch

    @property
    def strategy(self) -> str:
        """How a checkpoint is resumed: ``"seek"``, ``"delegate"``, ``"skip"`` or ``"replay"``.

        The fastest exact way the wrapped loader allows, chosen when it is wrapped; the README's
        strategy table says what each costs and what may change between runs.
        """
        return self._strategy.name

    @property
    def steps(self) -> int:
        """Batches handed out since the start of training (a global step counter)."""
        return self._count()

    @property
    def epoch(self) -> int:
        """The 0-based virtual epoch in progress, or next to start.

        An epoch counts as complete as soon as its last batch is handed out, so
        ``for epoch in range(vl.epoch, epochs)`` resumes naturally from a checkpoint.
        """
        return self._epoch_at(self._count())[0]

    @property
    def step_in_epoch(self) -> int:
        """Batches of ``epoch`` already handed out (0 once an epoch is complete).

        After a mid-epoch resume, ``tqdm(vl, initial=vl.step_in_epoch)`` shows the whole epoch.
        """
        return self._epoch_at(self._count())[1]

    def __len__(self) -> int:
        return self._steps_per_epoch

    def __repr__(self) -> str:
        return f"VirtualDataLoader({short(self._loader)}, steps_per_epoch={self._steps_per_epoch})"

    def _epoch_at(self, steps: int) -> tuple[int, int]:
        """Return ``(epoch, batches of it handed out)`` at count ``steps``: the epoch rule.

        An epoch is complete as soon as its last batch is handed out: the next one is then in
        progress, with none of its batches handed out yet.
        """
        done = steps - self._epoch_mark
        if done >= self._steps_per_epoch:
            return self._epoch + 1, 0
        return self._epoch, done

    # --------------------------------------------------------------------------- iterating

    def __iter__(self) -> Iterator[T]:
        cell: list[weakref.ref[Generator[T, None, None]]] = []
        generator = self._run_epoch(cell)
        cell.append(weakref.ref(generator))
        return generator

    def _run_epoch(
        self, cell: list[weakref.ref[Generator[T, None, None]]]
    ) -> Generator[T, None, None]:
        """Yield one epoch. Nothing runs before the first ``next()``."""
        self._begin_epoch(cell[0])
        steps_per_epoch, count = self._steps_per_epoch, self._count
        counter = None
        try:
            while (left := steps_per_epoch - (count.settled - self._epoch_mark)) > 0:
                take = (self._inner if self._inner is not None else self._open()).__next__
                # The per-batch path allocates nothing and calls nothing of ours: the inner
                # iterator's `__next__` is called directly (from the generator's frame, with no
                # C frame between, when it is Python code, as a DataLoader's is), and the
                # batches handed out are counted by `counter` (see `_counting`). It is advanced
                # after the batch came, so a batch in flight is never counted, and right before
                # the `yield`, with nothing between where a signal handler could run and see
                # it counted but not handed out.
                counter = count.begin(left)
                for _ in itertools.repeat(None, left):
                    try:
                        batch = take()
                    except StopIteration:
                        break
                    for _ in counter:
                        break
                    yield batch
                count.settle(counter)
                if count.settled - self._epoch_mark < steps_per_epoch:
                    self._end_pass()
        except GeneratorExit:
            count.settle(counter)
            raise
        except BaseException:
            count.settle(counter)
            # The inner iterator's position is unknown after a failure: reopen at ours, so the
            # failed batch comes again and nothing is skipped.
            self._drop_inner()
            raise

    def _begin_epoch(self, me: weakref.ref[Generator[T, None, None]]) -> None:
        """Epoch bookkeeping, at the first ``next()`` of an iteration."""
        previous = self._active() if self._active is not None else None
        if previous is not None and previous is not me():
            # An older iteration must not pull from the shared stream: it ends here. Frameworks
            # drop an abandoned iteration before starting the next, or stop pulling once its
            # epoch is complete; one still held mid-epoch is a second loop over the same stream
            # (zip(vl, vl)): say so.
            if self._running() is previous:
                warn(
                    f"a new iteration over {self!r} began while an earlier one was "
                    f"{self._count() - self._epoch_mark} of {self._steps_per_epoch} batches into "
                    f"epoch {self._epoch}: the earlier one is ended (its next() raises "
                    "StopIteration) and the new one starts the next epoch. Iterate one epoch at "
                    "a time: finish or break out of a loop over it before starting another"
                )
            previous.close()
        self._active = me
        steps = self._count()
        epoch, in_epoch = self._epoch_at(steps)
        if epoch > self._epoch or (in_epoch and not self._resuming):  # complete, or abandoned
            self._epoch += 1
            self._epoch_mark = steps
        self._resuming = False

    def _running(self) -> Generator[T, None, None] | None:
        """Return the iteration that is suspended inside an epoch it has not finished, if any.

        One not started yet (Lightning makes one just to check) or whose epoch is complete
        (frameworks stop pulling after ``len()`` batches) may be ended without a word.
        """
        active = self._active() if self._active is not None else None
        if active is None or inspect.getgeneratorstate(active) != inspect.GEN_SUSPENDED:
            return None
        if self._epoch_at(self._count())[0] > self._epoch:
            return None
        return active

    def _open(self) -> Iterator[T]:
        """Start (or restart) the iterator over the current pass, at the current position."""
        if self._opened and self._one_shot:
            raise TypeError(
                f"'loader' {short(self._loader)} is a one-shot iterator and cannot "
                f"start pass {self._pass} (or restart one); pass a re-iterable instead, such as "
                "a DataLoader, a list of batches, or an object whose __iter__ starts a new pass"
            )
        self._opened = True
        batches_in_pass = self._count.settled - self._pass_mark
        pending, self._pending = self._pending, None
        # Where a pass starts, the uninterrupted run opened an iterator too, and a DataLoader
        # draws its workers' base seed from the global RNG there: so does this. A reopen inside
        # a pass happens where the uninterrupted run opened nothing: it leaves the global RNG as
        # it was, so that a restored run's model sees the same random numbers.
        inside = pending is not None and batches_in_pass > 0
        try:
            with torch.random.fork_rng(devices=[]) if inside else contextlib.nullcontext():
                self._inner = self._strategy.reset(self._pass, batches_in_pass, pending)
        except BaseException:
            self._pending = pending  # the position still stands: the next attempt reopens there
            raise
        return self._inner

    def _end_pass(self) -> None:
        """The inner iterator ran out: start the next pass (at the next ``_open``)."""
        if self._count.settled == self._pass_mark:
            raise ValueError(
                f"pass {self._pass} of 'loader' {short(self._loader)} yielded no "
                "batch, so it cannot fill an epoch of "
                f"{self._steps_per_epoch} steps; check that its dataset is not empty and that "
                "drop_last does not drop every batch"
            )
        self._pass += 1
        self._pass_mark = self._count.settled
        self._inner = None
        self._pending = None
        self._recovery = None

    def _drop_inner(self) -> None:
        """Forget the inner iterator; the next batch reopens the pass at our position."""
        if self._inner is not None:
            batches_in_pass = self._count.settled - self._pass_mark
            self._pending = self._strategy.recover(batches_in_pass, self._recovery)
            self._recovery = Recovery(batches_in_pass, self._pending)
            # A DataLoader iterator left to the garbage collector stops its workers whenever
            # that runs, and can stall seconds there: stop them now. (A private torch API,
            # hence the guard.)
            shutdown = getattr(self._inner, "_shutdown_workers", None)
            if callable(shutdown):
                with contextlib.suppress(Exception):
                    shutdown()
            self._inner = None

    # ------------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Return the position in the stream as a fresh plain dict; O(1), the same on every rank.

        The format is documented in ``virtual_epochs._state``: counters (``epoch``,
        ``batches_in_epoch``, ``steps``, ``pass``, ``batches_in_pass``), the epoch length, and
        under ``resume`` the strategy, the fingerprint of the settings that decide the sample
        order, and the strategy's own position under its name. It is safe for ``json`` and for
        ``torch.load(..., weights_only=True)`` (with ``"delegate"``, as far as the wrapped
        loader's own state is).

        It changes nothing but the recovery point of the pass in progress: a failure later in
        the pass resumes from the position returned here (see ``_mark_recovery_point``).
        """
        steps = self._count()
        pass_index, batches_in_pass = self._pass, steps - self._pass_mark
        if self._pending is not None:
            own = _state.copy_plain(self._pending)  # not reopened since: still the position
        elif self._inner is None:
            own = self._strategy.position(0)
        elif batches_in_pass and self._strategy.finished(batches_in_pass):
            # The pass has handed out its last batch: save the start of the next one, so that
            # a resume does not reopen a finished pass only to find it empty.
            pass_index, batches_in_pass = pass_index + 1, 0
            own = self._strategy.position(0)
        else:
            own = self._strategy.position(batches_in_pass)
            self._mark_recovery_point(batches_in_pass, own)
        epoch, in_epoch = self._epoch_at(steps)
        return {
            _state.VERSION_KEY: _state.VERSION,
            _state.STEPS_PER_EPOCH: self._steps_per_epoch,
            _state.EPOCH: epoch,
            _state.BATCHES_IN_EPOCH: in_epoch,
            _state.STEPS: steps,
            _state.PASS: pass_index,
            _state.BATCHES_IN_PASS: batches_in_pass,
            _state.RESUME: {
                _state.STRATEGY: self._strategy.name,
                _state.FINGERPRINT: dict(self._fingerprint),
                self._strategy.name: own,
            },
        }

    def _mark_recovery_point(self, batches_in_pass: int, own: Mapping[str, Any]) -> None:
        """Remember a position just saved as the one to fall back on after a failure.

        A loader that keeps its own state (``delegate``) cannot be trusted after a batch fails
        inside it; the last position a checkpoint saved in this pass can, so a failure replays
        from there rather than from the start of the pass.
        """
        if self._keeps_recovery:
            self._recovery = Recovery(batches_in_pass, _state.copy_plain(own))

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Continue from a ``state_dict()``; call it before iterating.

        The next iteration yields the rest of the saved epoch (all of the next one if the saved
        epoch was complete), then epochs continue as in the uninterrupted run. The whole state
        is checked before anything changes: a failed load leaves the loader as it was. States
        written by virtual_epochs 0.1.0 (format version 1) load too.

        ``steps_per_epoch`` may differ from the saved one: the data position carries over
        exactly, epochs keep their numbers, and the epoch in progress ends after
        ``steps_per_epoch`` batches in all (at once, if that many were already handed out).

        Raises:
            RuntimeError: an iteration is inside an epoch it has not finished (load before
                iterating, or after leaving the loop).
            TypeError: the state, or a value in it, has the wrong type.
            ValueError: a key is missing, the version is unknown, or the checkpoint was saved
                with settings that give another sample order (the message names the key).
        """
        if self._running() is not None:
            raise RuntimeError(
                f"load_state_dict() was called while an epoch of {self!r} is being iterated "
                f"({self._count() - self._epoch_mark} of {self._steps_per_epoch} batches handed "
                "out): the loop would end early and its epoch count drift from vl.epoch. Load "
                "before iterating: leave the loop (break), or close() the iterator, first; "
                "nothing was changed"
            )
        saved = _state.parse(state_dict, self._strategy.name)
        fingerprint = self._strategy.fingerprint()
        self._strategy.check_fingerprint(fingerprint, saved)
        self._strategy.check(saved)
        # Everything is valid: apply. First end an iteration begun before the load (its epoch
        # complete, or not started): it must not go on, and it settles its count now, not into
        # the loaded one.
        active = self._active() if self._active is not None else None
        if active is not None:
            active.close()
        own = _state.copy_plain(saved.own)  # nothing shared with the caller's dict
        self._fingerprint = fingerprint
        in_epoch = min(saved.batches_in_epoch, self._steps_per_epoch)
        self._count.reset(saved.steps)
        self._epoch = saved.epoch
        self._epoch_mark = saved.steps - in_epoch
        self._pass = saved.pass_index
        self._pass_mark = saved.steps - saved.batches_in_pass
        self._resuming = True
        self._active = None
        self._inner = None
        self._pending = own
        self._recovery = Recovery(saved.batches_in_pass, own)
