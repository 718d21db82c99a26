"""Shared test helpers: datasets that report what was loaded, and the resume checker."""

from __future__ import annotations

import copy
import itertools
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import Dataset, IterableDataset

from virtual_epochs import VirtualDataLoader


class IndexDataset(Dataset[int]):
    """Sample ``i`` is ``i``; every ``__getitem__`` is recorded in ``loaded``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.loaded: list[int] = []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        self.loaded.append(int(index))
        return int(index)


class FailOnce(Dataset[int]):
    """Sample ``i`` is ``i``, but loading ``bad`` raises ``error`` the first time.

    "The first time" is recorded in the file ``marker``, so it holds across worker processes.
    """

    def __init__(self, n: int, bad: int, error: BaseException, marker: Path) -> None:
        self.n = n
        self.bad = bad
        self.error = error
        self.marker = marker

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        if index == self.bad and not self.marker.exists():
            self.marker.touch()
            raise self.error
        return int(index)


class CountingStream(IterableDataset[int]):
    """An iterable dataset that saves its own position (the torchdata and HF convention).

    ``state_dict()`` is the position inside the current pass and stays at the end once the pass
    is over; ``__iter__`` starts where a loaded state says, else at the start of a new pass.
    Item ``i`` of pass ``p`` is ``1000 * p + source[i]`` (``source`` defaults to ``i``): a
    dataset as ``source`` makes the stream load its samples (and fail where that dataset does).
    """

    def __init__(self, n: int, source: Dataset[int] | None = None) -> None:
        self.n = n
        self.source = source
        self.position = 0
        self.epoch = 0
        self.restored: int | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        self.position = self.restored if self.restored is not None else 0
        self.restored = None
        while self.position < self.n:
            item = self.position if self.source is None else self.source[self.position]
            self.position += 1
            yield self.epoch * 1000 + item

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = self.restored = state["position"]


def plain(batch: Any) -> Any:
    """Turn a batch (tensors, lists, tuples, ints) into comparable plain Python values."""
    if isinstance(batch, torch.Tensor):
        return batch.tolist()
    if isinstance(batch, (list, tuple)):
        return [plain(item) for item in batch]
    if isinstance(batch, dict):
        return {key: plain(value) for key, value in batch.items()}
    return batch


def run_epochs(vl: VirtualDataLoader[Any], epochs: int) -> list[list[Any]]:
    """Iterate ``vl`` from ``vl.epoch`` up to epoch ``epochs``; return each epoch's batches."""
    return [[plain(batch) for batch in vl] for _ in range(vl.epoch, epochs)]


def round_trip(state: dict[str, Any]) -> dict[str, Any]:
    """Return ``state`` after a JSON round trip (which also proves it is plain)."""
    copied: dict[str, Any] = json.loads(json.dumps(state))
    return copied


def assert_resumes_exactly(
    make: Callable[[], VirtualDataLoader[Any]],
    epochs: int,
    *,
    save_at: Iterable[int] | None = None,
    make_resumed: Callable[[], VirtualDataLoader[Any]] | None = None,
    flatten: bool = False,
) -> None:
    """Check that a loader restored at any step continues exactly as the uninterrupted run.

    Runs ``make()`` for ``epochs`` epochs, saving ``state_dict()`` (through JSON) after every
    step in ``save_at`` (default: every step, and before the first). For each saved state, a
    fresh ``make_resumed()`` (default ``make()``) loads it and runs to the same end; its epoch
    numbers and batches must equal the uninterrupted run's from that step on. With ``flatten``
    the batches are compared as one stream of samples (for a changed batch size).
    """
    vl = make()
    wanted = set(save_at) if save_at is not None else None
    states: dict[int, dict[str, Any]] = {}
    stream: list[tuple[int, Any]] = []  # (epoch, batch) in order
    if wanted is None or 0 in wanted:
        states[0] = round_trip(vl.state_dict())
    for epoch in range(epochs):
        for batch in vl:
            stream.append((epoch, plain(batch)))
            if wanted is None or len(stream) in wanted:
                states[len(stream)] = round_trip(vl.state_dict())
    assert len(stream) == epochs * vl.steps_per_epoch
    for step, state in states.items():
        resumed = (make_resumed or make)()
        resumed.load_state_dict(state)
        expected_epoch = stream[step][0] if step < len(stream) else epochs
        assert resumed.epoch == expected_epoch, f"epoch after loading the state of step {step}"
        got = [(epoch, plain(batch)) for epoch in range(resumed.epoch, epochs) for batch in resumed]
        expected = stream[step:]
        if flatten:
            assert _samples(got) == _samples(expected), f"samples after step {step}"
        else:
            assert got == expected, f"batches after resuming at step {step}"


def _samples(stream: Sequence[tuple[int, Any]]) -> list[Any]:
    out: list[Any] = []
    for _, batch in stream:
        out.extend(batch if isinstance(batch, list) else [batch])
    return out


def run_command(
    command: list[str],
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> str:
    """Run ``command`` in its own process group and return its output; it must exit 0.

    On timeout the whole group is killed (torchrun's ranks with it) and the test fails: a
    multi-process test never hangs CI.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    with subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    ) as process:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            pytest.fail(f"timed out after {timeout} s: {command}\n{output[-5000:]}")
    assert process.returncode == 0, output[-5000:]
    return output


LAUNCHES = itertools.count()  # numbers each launch's rendezvous file


def spawn_ranks(world_size: int, tmp_path: Path, name: str, config: dict[str, Any]) -> list[Any]:
    """Run ``_distributed_worker.run`` on ``world_size`` spawned ranks; return their reports.

    A new rendezvous file for every launch (a FileStore must never find one left by an earlier
    group; on old torch the ranks leave without cleaning up), and a join that kills every rank
    when the test's timeout ends it.
    """
    import torch.multiprocessing as mp  # (spawning tests only)

    import _distributed_worker

    config = {
        **config,
        "rendezvous": str(tmp_path / f"{name}-{next(LAUNCHES)}.rendezvous"),
        "report": str(tmp_path / f"{name}.json"),
    }
    context = mp.start_processes(
        _distributed_worker.run,
        args=(world_size, config),
        nprocs=world_size,
        join=False,
        start_method="spawn",
    )
    try:
        while not context.join(timeout=60):
            pass
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    reports: list[Any] = json.loads(Path(config["report"]).read_text())
    return reports


class FailAt(Dataset[int]):
    """Sample ``i`` is ``source[i]``, but the ``at``-th load (from 0) raises ``error``, once.

    Loads are counted in this process: for loaders without workers, where the loads of a step
    happen when the loop asks for its batch.
    """

    def __init__(self, source: Dataset[int], at: int, error: BaseException) -> None:
        self.source = source
        self.at = at
        self.error = error
        self.loads = 0

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> int:
        self.loads += 1
        if self.loads - 1 == self.at:
            raise self.error
        return self.source[index]


# ------------------------------------------------------------- faults: the recovery checker

Tagged = list[tuple[int, Any]]
"""``(epoch, batch)`` per step."""


def run_tagged(vl: VirtualDataLoader[Any], epochs: int) -> Tagged:
    """Iterate ``vl`` from ``vl.epoch`` to ``epochs``: ``(epoch, batch)`` per step."""
    return [(epoch, plain(batch)) for epoch in range(vl.epoch, epochs) for batch in vl]


def reference(
    make: Callable[[], VirtualDataLoader[Any]], epochs: int
) -> tuple[Tagged, list[dict[str, Any]]]:
    """The uninterrupted run: ``(epoch, batch)`` per step, and the state after each step."""
    vl = make()
    stream: Tagged = []
    states = [round_trip(vl.state_dict())]
    for epoch in range(epochs):
        for batch in vl:
            stream.append((epoch, plain(batch)))
            states.append(round_trip(vl.state_dict()))
    return stream, states


def run_until_error(
    vl: VirtualDataLoader[Any], epochs: int, error: type[BaseException], match: str | None = None
) -> tuple[Tagged, list[dict[str, Any]], pytest.ExceptionInfo[Any]]:
    """Train until ``error``; return what was delivered, the states saved, and the error."""
    delivered: Tagged = []
    saved: list[dict[str, Any]] = [round_trip(vl.state_dict())]
    with pytest.raises(error, match=match) as info:  # noqa: PT012  # the loop is the subject
        for epoch in range(epochs):
            for batch in vl:
                delivered.append((epoch, plain(batch)))
                saved.append(round_trip(vl.state_dict()))
    return delivered, saved, info


def check_recovery(
    make: Callable[[], VirtualDataLoader[Any]],
    vl: VirtualDataLoader[Any],
    delivered: Tagged,
    stream: Tagged,
    states: list[dict[str, Any]],
    epochs: int,
) -> None:
    """After a fault at step ``k = len(delivered)``: state, restore and continuation are exact.

    ``stream`` and ``states`` are the uninterrupted run's (``reference``); ``make()`` builds the
    loader a new process restores the state into.
    """
    k = len(delivered)
    assert delivered == stream[:k]
    assert vl.steps == k
    state = round_trip(vl.state_dict())
    # A new process restores it: the failed batch comes first, then the uninterrupted run.
    restored = make()
    restored.load_state_dict(state)
    assert run_tagged(restored, epochs) == stream[k:]
    assert same_position(state, states[k], states[0])  # the uninterrupted run's, after k steps
    # The same object goes on: the data stream continues exactly, the failed batch first. The
    # interrupted epoch is abandoned, as after a `break`: the next iteration is a whole epoch.
    epoch = vl.epoch
    abandoned = states[k]["batches_in_epoch"] > 0
    after = [plain(batch) for batch in vl]
    assert len(after) == vl.steps_per_epoch
    assert vl.epoch == epoch + 1 + abandoned
    while len(after) < len(stream) - k:
        after.extend(plain(batch) for batch in vl)
    assert after[: len(stream) - k] == batches(stream[k:])


def same_position(state: dict[str, Any], expected: dict[str, Any], start: dict[str, Any]) -> bool:
    """Whether ``state`` is ``expected``, or the same step saved as the start of the next pass.

    (A loader of unknown length learns that its pass ended only when it asks for one more
    batch: after a failure there, the state says "pass p + 1, no batch yet", with the
    strategy's position at the start of a pass, as in ``start``, the state before any batch.)
    """
    strategy = expected["resume"]["strategy"]
    after_the_pass = {
        **expected,
        "pass": expected["pass"] + 1,
        "batches_in_pass": 0,
        "resume": {**expected["resume"], strategy: start["resume"][strategy]},
    }
    return state in (expected, after_the_pass)


def batches(stream: Tagged) -> list[Any]:
    """The batches of a tagged stream."""
    return [batch for _, batch in stream]


# -------------------------------------------------------------------------------- refusals


def assert_refused(
    vl: VirtualDataLoader[Any], state: Any, error: type[BaseException], match: str
) -> BaseException:
    """``vl.load_state_dict(state)`` raises ``error`` matching ``match`` and changes nothing.

    Neither the loader's state nor the dict it was given. Returns the error.
    """
    before = vl.state_dict()
    given = copy.deepcopy(state)
    with pytest.raises(error, match=match) as info:
        vl.load_state_dict(state)
    assert state == given, "load_state_dict changed the dict it was given"
    assert vl.state_dict() == before, "a refused state changed the loader"
    return info.value


def edit(state: dict[str, Any], path: Sequence[Any], value: Any) -> dict[str, Any]:
    """Return a deep copy of ``state`` with ``state[path...] = value`` (deleted if ``...``).

    Every key on the way must exist, and so must the last one unless a value is added.
    """
    out = copy.deepcopy(state)
    target = out
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out
