"""Faults during training: nothing is lost or repeated, and every error says what happened.

A batch counts when the loop receives it. Whatever fails (the dataset, the inner loader, a
killed worker, Ctrl-C, a checkpoint that does not fit), the caller gets the error, the state
reflects the batches delivered and nothing else, and training continues exactly: from a restored
checkpoint, or with the same object. docs/faults.md is the table of these cases.
"""

from __future__ import annotations

import gc
import itertools
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.stateful_dataloader import (
    _StatefulMultiProcessingDataLoaderIter,
)

from _helpers import CountingStream, FailOnce, plain, round_trip
from virtual_epochs import InfiniteSampler, VirtualDataLoader

N = 12  # samples
BATCH = 2  # so a pass is 6 batches
STEPS_PER_EPOCH = 4  # so epochs and passes do not line up
EPOCHS = 4  # 16 steps: into the third pass

Make = Callable[..., VirtualDataLoader[Any]]


@pytest.fixture
def shut_down_workers() -> Iterator[None]:
    """Shut down the test's DataLoader worker pools before the next test forks its own.

    After an exception from a worker, torch's iterator stays in a reference cycle (the
    traceback holds the frame that holds it) until the garbage collector runs; shutting its
    workers down from inside a collection then waits out torch's 5 s join timeout per worker,
    at a random point of a later test. ``_shutdown_workers`` is torch's private method, used
    here for test hygiene only.
    """
    yield
    pools = (_MultiProcessingDataLoaderIter, _StatefulMultiProcessingDataLoaderIter)
    for obj in gc.get_objects():
        if type(obj) in pools:  # (isinstance would trip torch's deprecated module objects)
            obj._shutdown_workers()
    gc.collect()


class DataError(Exception):
    """A failure of the user's data code (a corrupt sample, an unreachable file)."""


def seek(dataset: Dataset[int], num_workers: int = 0, **kwargs: Any) -> VirtualDataLoader[Any]:
    sampler = InfiniteSampler(len(dataset), seed=3)  # type: ignore[arg-type]
    loader = DataLoader(
        dataset, batch_size=BATCH, sampler=sampler, num_workers=num_workers, **kwargs
    )
    return VirtualDataLoader(loader, STEPS_PER_EPOCH)


def skip(dataset: Dataset[int], num_workers: int = 0, **kwargs: Any) -> VirtualDataLoader[Any]:
    loader = DataLoader(
        dataset,
        batch_size=BATCH,
        shuffle=True,
        generator=torch.Generator().manual_seed(3),
        num_workers=num_workers,
        **kwargs,
    )
    return VirtualDataLoader(loader, STEPS_PER_EPOCH)


def delegate(dataset: Dataset[int], num_workers: int = 0) -> VirtualDataLoader[Any]:
    loader = StatefulDataLoader(
        dataset,
        batch_size=BATCH,
        shuffle=True,
        generator=torch.Generator().manual_seed(3),
        num_workers=num_workers,
    )
    return VirtualDataLoader(loader, STEPS_PER_EPOCH)


MAKERS: dict[str, Make] = {"seek": seek, "skip": skip, "delegate": delegate}


def reference(
    make: Make, num_workers: int = 0
) -> tuple[list[tuple[int, Any]], list[dict[str, Any]]]:
    """The uninterrupted run: ``(epoch, batch)`` per step, and the state after each step."""
    vl = make(range(N), num_workers)
    stream: list[tuple[int, Any]] = []
    states = [round_trip(vl.state_dict())]
    for epoch in range(EPOCHS):
        for batch in vl:
            stream.append((epoch, plain(batch)))
            states.append(round_trip(vl.state_dict()))
    return stream, states


def run_tagged(vl: VirtualDataLoader[Any], epochs: int = EPOCHS) -> list[tuple[int, Any]]:
    """Iterate ``vl`` from ``vl.epoch`` to ``epochs``: ``(epoch, batch)`` per step."""
    return [(epoch, plain(batch)) for epoch in range(vl.epoch, epochs) for batch in vl]


def run_until_error(
    vl: VirtualDataLoader[Any], error: type[BaseException], match: str | None = None
) -> tuple[list[tuple[int, Any]], list[dict[str, Any]], pytest.ExceptionInfo[Any]]:
    """Train until ``error``; return what was delivered, the states saved, and the error."""
    delivered: list[tuple[int, Any]] = []
    saved: list[dict[str, Any]] = [round_trip(vl.state_dict())]
    with pytest.raises(error, match=match) as info:  # noqa: PT012  # the loop is the subject
        for epoch in range(EPOCHS):
            for batch in vl:
                delivered.append((epoch, plain(batch)))
                saved.append(round_trip(vl.state_dict()))
    return delivered, saved, info


def check_recovery(
    make: Make,
    vl: VirtualDataLoader[Any],
    delivered: list[tuple[int, Any]],
    stream: list[tuple[int, Any]],
    states: list[dict[str, Any]],
    num_workers: int = 0,
) -> None:
    """After a fault at step ``k = len(delivered)``: state, restore and continuation are exact."""
    k = len(delivered)
    assert delivered == stream[:k]
    assert vl.steps == k
    state = round_trip(vl.state_dict())
    # A new process restores it: the failed batch comes first, then the uninterrupted run.
    restored = make(range(N), num_workers)
    restored.load_state_dict(state)
    assert run_tagged(restored) == stream[k:]
    assert same_position(state, states[k])  # the uninterrupted run's state after k steps
    # The same object goes on: the data stream continues exactly, the failed batch first. The
    # interrupted epoch is abandoned, as after a `break`: the next iteration is a whole epoch.
    epoch = vl.epoch
    abandoned = states[k]["batches_in_epoch"] > 0
    after = [plain(batch) for batch in vl]
    assert len(after) == STEPS_PER_EPOCH
    assert vl.epoch == epoch + 1 + abandoned
    while len(after) < len(stream) - k:
        after.extend(plain(batch) for batch in vl)
    assert after[: len(stream) - k] == batches(stream[k:])


def same_position(state: dict[str, Any], expected: dict[str, Any]) -> bool:
    """Whether ``state`` is ``expected``, or the same step saved as the start of the next pass.

    (A loader of unknown length learns that its pass ended only when it asks for one more
    batch: after a failure there, the state says "pass p + 1, no batch yet".)
    """
    after_the_pass = {**expected, "pass": expected["pass"] + 1, "batches_in_pass": 0}
    return state in (expected, after_the_pass)


def batches(stream: list[tuple[int, Any]]) -> list[Any]:
    return [batch for _, batch in stream]


# ------------------------------------------------------- exceptions from the data pipeline

# Steps of the first pass (6 batches): the very first, mid-epoch, the first of epoch 1, and the
# last of the pass.
FAIL_AT = [0, 2, 4, 5]


CASES = [
    pytest.param(
        name,
        num_workers,
        step,
        id=f"{name}-workers{num_workers}-step{step}",
        marks=pytest.mark.timeout(60),
    )
    for name in MAKERS
    for num_workers in (0, 2)
    for step in (FAIL_AT if num_workers == 0 else FAIL_AT[1:3])
]


@pytest.mark.usefixtures("shut_down_workers")
@pytest.mark.parametrize(("name", "num_workers", "step"), CASES)
def test_dataset_exception_reaches_the_caller_and_nothing_is_lost(
    name: str, num_workers: int, step: int, tmp_path: Path
) -> None:
    make = MAKERS[name]
    stream, states = reference(make, num_workers)  # (torchdata's order depends on workers)
    bad = stream[step][1][0]  # a sample of that batch; step < 6, so its first load
    error = DataError(f"corrupt sample {bad}")
    dataset = FailOnce(N, bad=bad, error=error, marker=tmp_path / "failed")
    vl = make(dataset, num_workers)
    delivered, _, info = run_until_error(vl, DataError, match=f"corrupt sample {bad}")
    if num_workers == 0:
        assert info.value is error  # unchanged: the very object raised
    # (From a worker, torch re-raises the same type with the worker's traceback in the text.)
    assert len(delivered) == step
    check_recovery(make, vl, delivered, stream, states, num_workers)


REPLAYING = (
    r"reopening pass 0 of .* after an error by replaying {} batches from its last consistent"
)


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("shut_down_workers")
@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("checkpoints", [True, False], ids=["checkpoint-per-epoch", "none"])
def test_delegate_resumes_a_failed_batch_from_its_last_consistent_state(
    num_workers: int, checkpoints: bool, tmp_path: Path
) -> None:
    # The wrapped loader's own state after a failed batch is not trusted (torchdata's without
    # workers has moved past that batch). The position after the error is the state saved by
    # the last state_dict() (or the start of the pass) plus the batches to replay from it.
    stream, _ = reference(delegate, num_workers)
    step = 5  # the last batch of pass 0, the second of epoch 1
    good = STEPS_PER_EPOCH if checkpoints else 0  # the last consistent point of pass 0
    dataset = FailOnce(N, stream[step][1][0], DataError("corrupt"), tmp_path / "failed")
    vl = delegate(dataset, num_workers)
    delivered = []
    with pytest.raises(DataError, match="corrupt"):  # noqa: PT012  # the loop is the subject
        for _ in range(EPOCHS):
            delivered.extend(plain(batch) for batch in vl)
            if checkpoints:
                vl.state_dict()
    assert delivered == batches(stream[:step])
    state = round_trip(vl.state_dict())
    assert (state["steps"], state["pass"], state["batches_in_pass"]) == (step, 0, step)
    assert state["resume"]["delegate"]["replay"] == step - good
    assert (state["resume"]["delegate"]["inner"] is None) == (not checkpoints)
    # A new process restores it: the replay, then the failed batch and the uninterrupted run.
    restored = delegate(range(N), num_workers)
    restored.load_state_dict(state)
    with pytest.warns(UserWarning, match=REPLAYING.format(step - good)):
        assert run_tagged(restored) == stream[step:]
    # The same object goes on in the same way.
    with pytest.warns(UserWarning, match=REPLAYING.format(step - good)):
        after = [plain(batch) for _ in range(3) for batch in vl]
    assert after[: len(stream) - step] == batches(stream[step:])


REPLAY_KEY = r"state\['resume'\]\['delegate'\]\['replay'\]"
BETWEEN = REPLAY_KEY + r" must be between 1 and state\['batches_in_pass'\] = 3"


@pytest.mark.parametrize(
    ("replay", "error", "match"),
    [
        (0, ValueError, BETWEEN + r" \(got 0\): the state is corrupt"),
        (4, ValueError, BETWEEN + r" \(got 4\): the state is corrupt"),
        (
            -1,
            ValueError,
            r"state\['resume'\]\['delegate'\]\['replay'\] must be an int >= 0 \(got -1\)",
        ),
        (True, TypeError, r"\['replay'\] must be of type int \(got True of type bool\)"),
        ("1", TypeError, r"\['replay'\] must be of type int \(got '1' of type str\)"),
    ],
    ids=["zero", "more-than-the-pass", "negative", "bool", "str"],
)
def test_a_bad_replay_count_is_refused_and_nothing_changes(
    replay: Any, error: type[Exception], match: str
) -> None:
    vl = delegate(range(N))
    for _ in itertools.islice(vl, 3):
        pass
    state = round_trip(vl.state_dict())
    state["resume"]["delegate"]["replay"] = replay
    fresh = delegate(range(N))
    before = fresh.state_dict()
    with pytest.raises(error, match=match):
        fresh.load_state_dict(state)
    assert fresh.state_dict() == before


def test_a_replay_longer_than_the_pass_is_an_error_naming_both_counts() -> None:
    vl = VirtualDataLoader(DataLoader(CountingStream(7), batch_size=2), STEPS_PER_EPOCH)
    assert vl.strategy == "delegate"
    for _ in itertools.islice(vl, 3):
        pass
    state = round_trip(vl.state_dict())
    state["resume"]["delegate"].update(inner=None, replay=3)  # "3 batches from pass 0's start"
    shorter = VirtualDataLoader(DataLoader(CountingStream(3), batch_size=2), STEPS_PER_EPOCH)
    shorter.load_state_dict(state)  # (nothing in the state says how long a pass is)
    with (
        pytest.warns(UserWarning, match="replaying 3 batches"),
        pytest.raises(
            ValueError,
            match=r"cannot resume: pass 0 of .* ended after 2 of the 3 batches to replay to reach "
            "the saved position; the loader must yield the same batches in every run",
        ),
    ):
        next(iter(shorter))


@pytest.mark.parametrize(
    "name",
    ["seek", "skip", "delegate"],
)
def test_a_checkpoint_before_the_first_batch_changes_nothing(name: str) -> None:
    # Saving is observation: a run that checkpoints at step 0 (before training, or to test
    # the checkpointing) must see the same batches as one that does not.
    expected = run_tagged(MAKERS[name](range(N)))
    vl = MAKERS[name](range(N))
    vl.state_dict()
    assert run_tagged(vl) == expected


class FlakyBatches:
    """A user's re-iterable of batches ``[i]``; the ``fail_at``-th batch it makes raises once.

    Not a ``DataLoader``: it is resumed by replay, and its batches are counted across passes,
    so it can fail at any step, later passes included.
    """

    def __init__(self, n: int, fail_at: int | None) -> None:
        self.n = n
        self.fail_at = fail_at
        self.made = 0

    def __iter__(self) -> Iterator[list[int]]:
        for i in range(self.n):
            self.made += 1
            if self.made - 1 == self.fail_at:
                raise DataError(f"batch {i} failed")
            yield [i]


@pytest.mark.filterwarnings("ignore:VirtualDataLoader is resuming")  # replay's cost warning
@pytest.mark.parametrize("step", [0, 3, 4, 5, 6, 7, 13])
def test_inner_loader_exception_in_any_pass_replay_strategy(step: int) -> None:
    def make(*_: Any, fail_at: int | None = None) -> VirtualDataLoader[Any]:
        return VirtualDataLoader(FlakyBatches(6, fail_at), STEPS_PER_EPOCH)

    assert make().strategy == "replay"
    stream, states = reference(make)
    vl = make(fail_at=step)
    delivered, _, _ = run_until_error(vl, DataError, match=r"batch \d failed")
    assert len(delivered) == step
    check_recovery(make, vl, delivered, stream, states)


class FlakyStart:
    """A re-iterable of ``0, 1, 2`` whose ``fail_on``-th pass fails to start."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.fail_on = fail_on
        self.starts = 0

    def __iter__(self) -> Iterator[int]:
        self.starts += 1
        if self.starts == self.fail_on:
            raise DataError("storage unreachable")
        return iter(range(3))


def test_an_error_while_opening_the_next_pass_loses_nothing() -> None:
    vl = VirtualDataLoader(FlakyStart(fail_on=2), 4)
    iterator = iter(vl)
    assert [next(iterator) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(DataError, match="storage unreachable"):
        next(iterator)
    state = round_trip(vl.state_dict())
    assert (state["steps"], state["pass"], state["batches_in_pass"]) == (3, 1, 0)
    restored = VirtualDataLoader(FlakyStart(), 4)
    restored.load_state_dict(state)
    assert (list(restored), list(restored)) == ([0], [1, 2, 0, 1])  # the rest of epoch 0, ...
    assert list(vl) == [0, 1, 2, 0]  # (the same object: a new epoch, the last one abandoned)


class FlakyStartLoader(StatefulDataLoader):  # type: ignore[misc]  # torchdata has no stubs
    """torchdata's loader whose ``fail_on``-th pass fails to start."""

    def __init__(self, *args: Any, fail_on: int | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fail_on = fail_on
        self.starts = 0

    def __iter__(self) -> Any:
        self.starts += 1
        if self.starts == self.fail_on:
            raise DataError("storage unreachable")
        return super().__iter__()


def test_an_error_while_opening_the_next_pass_loses_nothing_delegate() -> None:
    # Between passes the wrapped loader's own state still describes the pass that ended (its
    # sampler's generator included): the state saved there is "a fresh pass", which the pass
    # seeds make the same as the uninterrupted run's.
    def make(*_: Any, fail_on: int | None = None) -> VirtualDataLoader[Any]:
        loader = FlakyStartLoader(
            range(N),
            batch_size=BATCH,
            shuffle=True,
            generator=torch.Generator().manual_seed(3),
            fail_on=fail_on,
        )
        return VirtualDataLoader(loader, STEPS_PER_EPOCH)

    stream, states = reference(make)
    vl = make(fail_on=2)
    assert vl.strategy == "delegate"
    delivered, _, _ = run_until_error(vl, DataError, match="storage unreachable")
    assert delivered == stream[:6]  # all of pass 0
    state = round_trip(vl.state_dict())
    assert (state["steps"], state["pass"], state["batches_in_pass"]) == (6, 1, 0)
    assert state["resume"]["delegate"]["inner"] is None
    restored = make()
    restored.load_state_dict(state)
    assert run_tagged(restored) == stream[6:]
    assert [plain(batch) for batch in vl] == batches(stream[6:10])  # the same object goes on
    assert (
        states[6]["resume"]["delegate"]["inner"] is not None
    )  # (mid-run, the inner state is nested)


# ----------------------------------------------------------------- a worker killed (OOM)


class KillOnce(Dataset[int]):
    """Sample ``i`` is ``i``; loading ``bad`` the first time SIGKILLs the loading process.

    That is what the kernel's OOM killer does to a DataLoader worker. "The first time" is
    recorded in the file ``marker``, so it holds across worker processes. The worker waits
    ``delay`` seconds first, so that the main process is where the test wants it (blocked on
    this batch, or in the loop body) when the SIGCHLD comes.
    """

    def __init__(self, n: int, bad: int, marker: Path, delay: float) -> None:
        self.n = n
        self.bad = bad
        self.marker = marker
        self.delay = delay

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        if index == self.bad and not self.marker.exists():
            self.marker.touch()
            time.sleep(self.delay)
            os.kill(os.getpid(), signal.SIGKILL)
        return int(index)


WORKER_DIED = r"DataLoader worker \(pid(\(s\))? \d+\) (exited unexpectedly|is killed by signal)"


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("shut_down_workers")
@pytest.mark.parametrize("name", ["seek", "skip", "delegate"])
def test_worker_killed_mid_epoch_error_reaches_the_caller_and_resume_is_exact(
    name: str, tmp_path: Path
) -> None:
    make = MAKERS[name]
    workers = 2 if name == "delegate" else 0  # (torchdata's order depends on the workers)
    stream, states = reference(make, workers)
    step = 5  # the last batch of the first pass, in epoch 1
    dataset = KillOnce(N, bad=stream[step][1][0], marker=tmp_path / "killed", delay=1.0)
    vl = make(dataset, 2)
    delivered, saved, _ = run_until_error(vl, RuntimeError, match=WORKER_DIED)
    assert len(delivered) == step  # the loop was waiting for the batch the worker died with
    assert saved[-1] == round_trip(vl.state_dict())  # the last checkpoint is the current state
    check_recovery(make, vl, delivered, stream, states, workers)


def run_epoch_catching(vl: VirtualDataLoader[Any], out: list[Any]) -> str | None:
    """Append one epoch's batches to ``out``; the message of a RuntimeError that stops it."""
    try:
        out.extend(plain(batch) for batch in vl)
    except RuntimeError as error:
        return str(error)
    return None


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("shut_down_workers")
def test_worker_killed_while_the_loop_body_runs(tmp_path: Path) -> None:
    # torch raises the error from its SIGCHLD handler, wherever the main process is: here in
    # the loop body, with batch 0 in hand. The batch counts (it was handed out); the inner
    # iterator was not told. A restored loader simply goes on; the same object goes on too,
    # after torch's error once more (below).
    stream, states = reference(seek)
    dataset = KillOnce(N, bad=stream[3][1][0], marker=tmp_path / "killed", delay=0.3)
    vl = seek(dataset, 2)
    delivered = []
    with pytest.raises(RuntimeError, match=r"DataLoader worker \(pid \d+\) is killed by signal"):  # noqa: PT012
        for batch in vl:
            delivered.append(plain(batch))
            time.sleep(5)  # training on batch 0; the worker loading batch 3 is killed meanwhile
    assert delivered == batches(stream[:1])
    state = round_trip(vl.state_dict())
    assert state == states[1]
    restored = seek(range(N))
    restored.load_state_dict(state)
    assert run_tagged(restored) == stream[1:]
    # The same object. Where torch's error comes again is a race inside torch: at batch 1 when
    # it still has to unpickle that batch (its shared memory went with the dead worker), else
    # at batch 3, the one the worker died loading, after torch's 5 s status check. Either way
    # it comes once, the loader reopens the pass at the first batch not delivered, and the
    # stream goes on exactly.
    after: list[Any] = []
    errors = []
    for _ in range(4):  # epochs, or attempts after an error
        message = run_epoch_catching(vl, after)
        if message is not None:
            assert re.fullmatch(WORKER_DIED, message)
            errors.append((len(after), vl.steps))
    assert errors in ([(0, 1)], [(2, 3)])  # (batches since, steps): nothing counted that failed
    assert after == batches(stream[1 : 1 + len(after)])
    assert len(after) >= 10


# ------------------------------------------------------------------------------ Ctrl-C


@pytest.mark.parametrize("name", ["seek", "skip"])
def test_keyboard_interrupt_in_the_dataset(name: str, tmp_path: Path) -> None:
    make = MAKERS[name]
    stream, states = reference(make)
    step = 3
    dataset = FailOnce(N, stream[step][1][0], KeyboardInterrupt(), tmp_path / "interrupted")
    vl = make(dataset)
    delivered, _, _ = run_until_error(vl, KeyboardInterrupt)
    assert len(delivered) == step
    check_recovery(make, vl, delivered, stream, states)


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("shut_down_workers")
@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("name", ["seek", "skip"])
def test_keyboard_interrupt_in_the_training_loop(name: str, num_workers: int) -> None:
    make = MAKERS[name]
    stream, states = reference(make)
    step = 6  # interrupted while training on batch 6 (epoch 1, the first of pass 1)
    vl = make(range(N), num_workers)
    delivered: list[tuple[int, Any]] = []
    saved: list[dict[str, Any]] = [round_trip(vl.state_dict())]
    with pytest.raises(KeyboardInterrupt):  # noqa: PT012  # the loop is the subject
        for epoch in range(EPOCHS):
            for batch in vl:
                delivered.append((epoch, plain(batch)))
                if len(delivered) == step + 1:
                    raise KeyboardInterrupt  # mid-step: the batch was handed out
                saved.append(round_trip(vl.state_dict()))  # after the optimizer step
    # The batch in hand counts as delivered ...
    check_recovery(make, vl, delivered, stream, states)
    # ... so the checkpoint to resume from is the last one saved after a completed step: it
    # gives that batch again.
    assert len(saved) == step + 1
    restored = make(range(N))
    restored.load_state_dict(saved[-1])
    assert run_tagged(restored) == stream[step:]


def test_same_object_can_resume_the_interrupted_epoch_instead_of_abandoning_it(
    tmp_path: Path,
) -> None:
    # Continuing after an error starts a new epoch (an abandoned epoch is not made up for). To
    # finish the interrupted epoch instead, as a restored process does, reload the own state.
    stream, states = reference(skip)
    dataset = FailOnce(N, stream[2][1][0], DataError("corrupt"), tmp_path / "failed")
    vl = skip(dataset)
    delivered, _, _ = run_until_error(vl, DataError)
    vl.load_state_dict(vl.state_dict())
    assert delivered + run_tagged(vl) == stream
    assert vl.state_dict() == states[-1]


# ------------------------------------------------- a checkpoint that does not fit the loader


def saved_state(make: Callable[[], VirtualDataLoader[Any]], steps: int = 5) -> dict[str, Any]:
    """The state of a run of ``make()`` after ``steps`` steps (mid-epoch for 5)."""
    vl = make()
    while vl.steps < steps:
        for _ in zip(range(steps - vl.steps), vl, strict=False):
            pass
    return round_trip(vl.state_dict())


def seek_over(n: int, seed: int = 3, shuffle: bool = True) -> VirtualDataLoader[Any]:
    loader = DataLoader(
        range(n), batch_size=BATCH, sampler=InfiniteSampler(n, seed=seed, shuffle=shuffle)
    )
    return VirtualDataLoader(loader, STEPS_PER_EPOCH)


def skip_over(n: int, seed: int | None = 3, shuffle: bool = True) -> VirtualDataLoader[Any]:
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    loader = DataLoader(range(n), batch_size=BATCH, shuffle=shuffle, generator=generator)
    return VirtualDataLoader(loader, STEPS_PER_EPOCH)


MISMATCHES: list[
    tuple[
        str, Callable[[], VirtualDataLoader[Any]], Callable[[], VirtualDataLoader[Any]], type, str
    ]
] = [
    (
        "seek: the dataset grew",
        lambda: seek_over(12),
        lambda: seek_over(13),
        ValueError,
        (
            r"the checkpoint was saved with a different sample order: "
            r"state\['resume'\]\['fingerprint'\]\['num_samples'\] is 12 but this loader has 13; "
            r"resume with the settings that wrote the checkpoint, or start a new run"
        ),
    ),
    (
        "seek: another seed",
        lambda: seek_over(12, seed=3),
        lambda: seek_over(12, seed=4),
        ValueError,
        r"\['fingerprint'\]\['seed'\] is 3 but this loader has 4",
    ),
    (
        "seek: shuffle turned off",
        lambda: seek_over(12),
        lambda: seek_over(12, shuffle=False),
        ValueError,
        r"\['fingerprint'\]\['shuffle'\] is True but this loader has False",
    ),
    (
        "skip: the dataset shrank",
        lambda: skip_over(12),
        lambda: skip_over(11),
        ValueError,
        r"state\['resume'\]\['fingerprint'\]\['dataset_size'\] is 12 but this loader has 11",
    ),
    (
        "skip: another generator seed",
        lambda: skip_over(12, seed=3),
        lambda: skip_over(12, seed=4),
        ValueError,
        r"\['fingerprint'\]\['generator_seed'\] is 3 but this loader has 4",
    ),
    (
        "skip: shuffle turned off",
        lambda: skip_over(12),
        lambda: skip_over(12, shuffle=False),
        ValueError,
        r"\['fingerprint'\]\['generator_seed'\] is 3 but this loader has '<absent>'",
    ),
    (
        "another kind of loader (another run's checkpoint)",
        lambda: skip_over(12),
        lambda: seek_over(12),
        ValueError,
        (
            r"state\['resume'\]\['strategy'\] is 'skip', but this loader resumes by 'seek': the "
            r"checkpoint comes from a differently built loader"
        ),
    ),
    (
        "a list of batches, then a DataLoader",
        lambda: VirtualDataLoader([[0, 1], [2, 3]], STEPS_PER_EPOCH),
        lambda: VirtualDataLoader(DataLoader(range(4), batch_size=2), STEPS_PER_EPOCH),
        ValueError,
        r"\['strategy'\] is 'replay', but this loader resumes by 'skip'",
    ),
]


@pytest.mark.parametrize(
    ("saver", "loader", "error", "message"),
    [case[1:] for case in MISMATCHES],
    ids=[case[0] for case in MISMATCHES],
)
def test_checkpoint_of_another_setting_is_refused_naming_what_differs(
    saver: Callable[[], VirtualDataLoader[Any]],
    loader: Callable[[], VirtualDataLoader[Any]],
    error: type,
    message: str,
) -> None:
    state = saved_state(saver)
    vl = loader()
    before = vl.state_dict()
    with pytest.raises(error, match=message):
        vl.load_state_dict(state)
    assert vl.state_dict() == before


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (
            torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1).state_dict(),
            (
                r"state has no key 'version' \(found keys \['param_groups', 'state'\]\); "
                r"pass a dict returned by VirtualDataLoader.state_dict\(\)"
            ),
        ),
        (
            InfiniteSampler(12, seed=3).state_dict(),
            (
                r"state has no key 'steps_per_epoch' \(found keys \['num_samples', 'seed', "
                r"'shuffle', 'shuffle_order', 'start', 'version'\]\)"
            ),
        ),
        ({"data": {"version": 1}}, r"state has no key 'version' \(found keys \['data'\]\)"),
    ],
    ids=["an optimizer's state", "the sampler's own state", "the whole checkpoint"],
)
def test_a_state_of_something_else_names_the_missing_key(other: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        seek_over(12).load_state_dict(other)


def test_a_checkpoint_of_another_run_with_the_same_settings_loads() -> None:
    # The state has no run identity: the same settings give the same sample order, so another
    # run's checkpoint is a valid position in this run's stream (it is the caller's to pair the
    # data state with the right model checkpoint).
    state = saved_state(lambda: seek_over(12))
    vl = seek_over(12)
    vl.load_state_dict(state)
    assert vl.steps == 5


def test_adopted_seed_of_a_shuffle_without_generator_is_taken_from_the_checkpoint() -> None:
    # DataLoader(shuffle=True) without a generator: nobody chose its seed, so it is not a
    # setting: the checkpoint's seed is adopted, and the order continues exactly.
    torch.manual_seed(1)
    expected = run_tagged(skip_over(12, seed=None))
    torch.manual_seed(1)
    state = saved_state(lambda: skip_over(12, seed=None))
    torch.manual_seed(2)  # another process
    vl = skip_over(12, seed=None)
    vl.load_state_dict(state)
    assert run_tagged(vl) == expected[5:]


@pytest.mark.parametrize("maker", [seek_over, skip_over], ids=["seek", "skip"])
def test_continue_on_purpose_with_a_changed_dataset(
    maker: Callable[[int], VirtualDataLoader[Any]],
) -> None:
    # The documented way to carry the counters over to a changed dataset: take this loader's
    # fingerprint into the checkpoint. The position is kept; the order is the new dataset's.
    state = saved_state(lambda: maker(12))
    vl = maker(16)
    state["resume"]["fingerprint"] = vl.state_dict()["resume"]["fingerprint"]
    vl.load_state_dict(state)
    assert (vl.epoch, vl.steps, vl.step_in_epoch) == (1, 5, 1)
    got = [plain(batch) for batch in vl]
    assert len(got) == STEPS_PER_EPOCH - 1
    assert all(0 <= i < 16 for batch in got for i in batch)
    assert (vl.epoch, vl.steps) == (2, 8)
