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

from _helpers import (
    CountingStream,
    FailOnce,
    IndexDataset,
    batches,
    check_recovery,
    plain,
    reference,
    round_trip,
    run_tagged,
    run_until_error,
)
from _shapes_table import BATCH, EPOCHS, PASS_BATCHES, SEED, SHAPES, STEPS_PER_EPOCH, N, advance
from virtual_epochs import VirtualDataLoader

# The table's sizes: passes of 7 batches, epochs of 5 steps, 25 steps (into the fourth pass).
SHAPE = {  # the shapes these faults are tried on, by strategy
    "seek": SHAPES["infinite-sampler"],
    "skip": SHAPES["shuffle-with-generator"],
    "delegate": SHAPES["stateful-dataloader"],
}
# (Every shape of the table goes through a failed batch without workers in
# test_strategy_contract.py; here: with workers, killed workers, Ctrl-C, and errors elsewhere.)


def maker(
    name: str, dataset: Dataset[int] | None = None, num_workers: int = 0
) -> Callable[[], VirtualDataLoader[Any]]:
    """A factory of loaders of ``SHAPE[name]`` over ``dataset`` (default: the plain samples)."""
    return lambda: SHAPE[name].make(dataset, num_workers=num_workers)


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


# ------------------------------------------------------- exceptions from the data pipeline

# Steps of the first pass (6 batches): the very first, mid-epoch, the first of epoch 1, and the
# last of the pass.
# Mid-epoch, and the first of epoch 1 (steps of the first pass, where a sample is loaded for
# the first time). Without workers, every shape of the table at more steps: the contract test.
FAIL_AT = [2, 5]


CASES = [
    pytest.param(name, step, id=f"{name}-workers2-step{step}", marks=pytest.mark.timeout(60))
    for name in ("skip", "delegate")  # (seek with workers: a shape of the table, the contract)
    for step in FAIL_AT
]


@pytest.mark.usefixtures("shut_down_workers")
@pytest.mark.parametrize(("name", "step"), CASES)
def test_dataset_exception_in_a_worker_reaches_the_caller_and_nothing_is_lost(
    name: str, step: int, tmp_path: Path
) -> None:
    num_workers = 2
    stream, states = reference(maker(name, num_workers=num_workers), EPOCHS)
    bad = stream[step][1][0]  # a sample of that batch; step < 7, so its first load
    error = DataError(f"corrupt sample {bad}")
    dataset = FailOnce(N, bad=bad, error=error, marker=tmp_path / "failed")
    vl = maker(name, dataset, num_workers)()
    delivered, _, _ = run_until_error(vl, EPOCHS, DataError, match=f"corrupt sample {bad}")
    # (From a worker, torch re-raises the same type with the worker's traceback in the text.)
    assert len(delivered) == step
    check_recovery(maker(name, num_workers=num_workers), vl, delivered, stream, states, EPOCHS)


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
    stream, _ = reference(maker("delegate", num_workers=num_workers), EPOCHS)
    step = PASS_BATCHES - 1  # the last batch of pass 0, the second of epoch 1
    good = STEPS_PER_EPOCH if checkpoints else 0  # the last consistent point of pass 0
    dataset = FailOnce(N, stream[step][1][0], DataError("corrupt"), tmp_path / "failed")
    vl = maker("delegate", dataset, num_workers)()
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
    restored = maker("delegate", num_workers=num_workers)()
    restored.load_state_dict(state)
    with pytest.warns(UserWarning, match=REPLAYING.format(step - good)):
        assert run_tagged(restored, EPOCHS) == stream[step:]
    # The same object goes on in the same way.
    with pytest.warns(UserWarning, match=REPLAYING.format(step - good)):
        after = [plain(batch) for _ in range(EPOCHS - 1) for batch in vl]
    assert after[: len(stream) - step] == batches(stream[step:])


def test_a_replay_longer_than_the_pass_is_an_error_naming_both_counts() -> None:
    # (Its own loaders: a stream of another length than the one that saved the state.)
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
    stream, states = reference(make, EPOCHS)
    vl = make(fail_at=step)
    delivered, _, _ = run_until_error(vl, EPOCHS, DataError, match=r"batch \d failed")
    assert len(delivered) == step
    check_recovery(make, vl, delivered, stream, states, EPOCHS)


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
    # (Its own loader: the table's "stateful-dataloader", failing to start a pass.)
    # Between passes the wrapped loader's own state still describes the pass that ended (its
    # sampler's generator included): the state saved there is "a fresh pass", which the pass
    # seeds make the same as the uninterrupted run's.
    def make(*_: Any, fail_on: int | None = None) -> VirtualDataLoader[Any]:
        loader = FlakyStartLoader(
            IndexDataset(N),
            batch_size=BATCH,
            shuffle=True,
            generator=torch.Generator().manual_seed(SEED),
            fail_on=fail_on,
        )
        return VirtualDataLoader(loader, STEPS_PER_EPOCH)

    stream, states = reference(make, EPOCHS)
    assert batches(stream) == batches(reference(maker("delegate"), EPOCHS)[0])  # the table's
    vl = make(fail_on=2)
    assert vl.strategy == "delegate"
    delivered, _, _ = run_until_error(vl, EPOCHS, DataError, match="storage unreachable")
    end = PASS_BATCHES
    assert delivered == stream[:end]  # all of pass 0
    state = round_trip(vl.state_dict())
    assert (state["steps"], state["pass"], state["batches_in_pass"]) == (end, 1, 0)
    assert state["resume"]["delegate"]["inner"] is None
    restored = make()
    restored.load_state_dict(state)
    assert run_tagged(restored, EPOCHS) == stream[end:]
    # The same object goes on (a whole epoch: the interrupted one is abandoned).
    assert [plain(batch) for batch in vl] == batches(stream[end : end + STEPS_PER_EPOCH])
    assert states[end]["resume"]["delegate"]["inner"] is not None  # (mid-run, it is nested)


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
    workers = 2 if name == "delegate" else 0  # (torchdata's order depends on the workers)
    stream, states = reference(maker(name, num_workers=workers), EPOCHS)
    step = PASS_BATCHES - 1  # the last batch of the first pass, in epoch 1
    dataset = KillOnce(N, bad=stream[step][1][0], marker=tmp_path / "killed", delay=1.0)
    vl = maker(name, dataset, 2)()
    delivered, saved, _ = run_until_error(vl, EPOCHS, RuntimeError, match=WORKER_DIED)
    assert len(delivered) == step  # the loop was waiting for the batch the worker died with
    assert saved[-1] == round_trip(vl.state_dict())  # the last checkpoint is the current state
    check_recovery(maker(name, num_workers=workers), vl, delivered, stream, states, EPOCHS)


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
    stream, states = reference(maker("seek"), EPOCHS)
    dataset = KillOnce(N, bad=stream[3][1][0], marker=tmp_path / "killed", delay=0.3)
    vl = maker("seek", dataset, 2)()
    delivered = []
    with pytest.raises(RuntimeError, match=r"DataLoader worker \(pid \d+\) is killed by signal"):  # noqa: PT012
        for batch in vl:
            delivered.append(plain(batch))
            time.sleep(5)  # training on batch 0; the worker loading batch 3 is killed meanwhile
    assert delivered == batches(stream[:1])
    state = round_trip(vl.state_dict())
    assert state == states[1]
    restored = maker("seek")()
    restored.load_state_dict(state)
    assert run_tagged(restored, EPOCHS) == stream[1:]
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
    stream, states = reference(maker(name), EPOCHS)
    step = 3
    dataset = FailOnce(N, stream[step][1][0], KeyboardInterrupt(), tmp_path / "interrupted")
    vl = maker(name, dataset)()
    delivered, _, _ = run_until_error(vl, EPOCHS, KeyboardInterrupt)
    assert len(delivered) == step
    check_recovery(maker(name), vl, delivered, stream, states, EPOCHS)


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("shut_down_workers")
@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("name", ["seek", "skip"])
def test_keyboard_interrupt_in_the_training_loop(name: str, num_workers: int) -> None:
    stream, states = reference(maker(name), EPOCHS)
    step = PASS_BATCHES  # interrupted while training on batch 7 (epoch 1, the first of pass 1)
    vl = maker(name, num_workers=num_workers)()
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
    check_recovery(maker(name), vl, delivered, stream, states, EPOCHS)
    # ... so the checkpoint to resume from is the last one saved after a completed step: it
    # gives that batch again.
    assert len(saved) == step + 1
    restored = maker(name)()
    restored.load_state_dict(saved[-1])
    assert run_tagged(restored, EPOCHS) == stream[step:]


def test_same_object_can_resume_the_interrupted_epoch_instead_of_abandoning_it(
    tmp_path: Path,
) -> None:
    # Continuing after an error starts a new epoch (an abandoned epoch is not made up for). To
    # finish the interrupted epoch instead, as a restored process does, reload the own state.
    stream, states = reference(maker("skip"), EPOCHS)
    dataset = FailOnce(N, stream[2][1][0], DataError("corrupt"), tmp_path / "failed")
    vl = maker("skip", dataset)()
    delivered, _, _ = run_until_error(vl, EPOCHS, DataError)
    vl.load_state_dict(vl.state_dict())
    assert delivered + run_tagged(vl, EPOCHS) == stream
    assert vl.state_dict() == states[-1]


# ------------------------------------------------- a checkpoint that does not fit the loader


# (The refusals, with their messages, are in test_refusals.py.)

MID = 6  # a step inside the second epoch and the first pass


def test_a_checkpoint_of_another_run_with_the_same_settings_loads() -> None:
    # The state has no run identity: the same settings give the same sample order, so another
    # run's checkpoint is a valid position in this run's stream (it is the caller's to pair the
    # data state with the right model checkpoint).
    state = advance(maker("seek")(), MID).state_dict()
    vl = maker("seek")()
    vl.load_state_dict(state)
    assert vl.steps == MID


def test_adopted_seed_of_a_shuffle_without_generator_is_taken_from_the_checkpoint() -> None:
    # DataLoader(shuffle=True) without a generator: nobody chose its seed, so it is not a
    # setting: the checkpoint's seed is adopted, and the order continues exactly.
    shape = SHAPES["shuffle-without-generator"]
    torch.manual_seed(1)
    expected = run_tagged(shape.make(), EPOCHS)
    torch.manual_seed(1)
    state = advance(shape.make(), MID).state_dict()
    torch.manual_seed(2)  # another process
    vl = shape.make()
    vl.load_state_dict(state)
    assert run_tagged(vl, EPOCHS) == expected[MID:]


@pytest.mark.parametrize("name", ["seek", "skip"])
def test_continue_on_purpose_with_a_changed_dataset(name: str) -> None:
    # The documented way to carry the counters over to a changed dataset: take this loader's
    # fingerprint into the checkpoint. The position is kept; the order is the new dataset's.
    state = advance(maker(name)(), MID).state_dict()
    vl = maker(name, IndexDataset(N + 4))()
    state["resume"]["fingerprint"] = vl.state_dict()["resume"]["fingerprint"]
    vl.load_state_dict(state)
    assert (vl.epoch, vl.steps, vl.step_in_epoch) == (1, MID, 1)
    got = [plain(batch) for batch in vl]
    assert len(got) == STEPS_PER_EPOCH - 1
    assert all(0 <= i < N + 4 for batch in got for i in batch)
    assert (vl.epoch, vl.steps) == (2, 2 * STEPS_PER_EPOCH)
