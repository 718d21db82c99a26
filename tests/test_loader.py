"""VirtualDataLoader: epochs, passes, laziness, set_epoch, and bad input."""

from __future__ import annotations

import gc
import itertools
import os
import re
import signal
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from _helpers import FailOnce, IndexDataset, plain
from virtual_epochs import InfiniteSampler, KeyedSampler, MixtureSampler, VirtualDataLoader

# ----------------------------------------------------------------------- the blog post


class SimpleDataset:
    """The blog post's two-sample dataset."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> tuple[int, int]:
        return index, index


def test_blog_example_one_step_per_epoch(capsys: pytest.CaptureFixture[str]) -> None:
    loader = DataLoader(SimpleDataset(), batch_size=1)  # type: ignore[arg-type]
    virtual_loader = VirtualDataLoader(loader, steps_per_epoch=1)
    for x, y in virtual_loader:
        print(x, y)
    assert capsys.readouterr().out == "tensor([0]) tensor([0])\n"


def test_blog_example_four_steps_walk_the_dataset_twice(capsys: pytest.CaptureFixture[str]) -> None:
    loader = DataLoader(SimpleDataset(), batch_size=1)  # type: ignore[arg-type]
    virtual_loader = VirtualDataLoader(loader, steps_per_epoch=4)
    for x, y in virtual_loader:
        print(x, y)
    assert capsys.readouterr().out == (
        "tensor([0]) tensor([0])\n"
        "tensor([1]) tensor([1])\n"
        "tensor([0]) tensor([0])\n"
        "tensor([1]) tensor([1])\n"
    )


# ------------------------------------------------------------------- epochs and stream


@pytest.mark.parametrize("steps_per_epoch", [1, 2, 3, 7, 10, 23])
def test_epochs_have_exactly_steps_per_epoch_batches_and_continue_the_stream(
    steps_per_epoch: int,
) -> None:
    batches = list(range(7))
    vl = VirtualDataLoader(batches, steps_per_epoch)
    epochs = [list(vl) for _ in range(5)]
    assert all(len(epoch) == steps_per_epoch for epoch in epochs)
    assert list(itertools.chain(*epochs)) == list(
        itertools.islice(itertools.cycle(batches), 5 * steps_per_epoch)
    )
    assert len(vl) == steps_per_epoch
    assert vl.steps == 5 * steps_per_epoch
    assert vl.epoch == 5


def test_len_is_steps_per_epoch_always() -> None:
    vl = VirtualDataLoader(DataLoader(range(10), batch_size=3), steps_per_epoch=5)
    assert len(vl) == 5
    it = iter(vl)
    next(it)
    assert len(vl) == 5
    state = vl.state_dict()
    fresh = VirtualDataLoader(DataLoader(range(10), batch_size=3), steps_per_epoch=5)
    fresh.load_state_dict(state)
    assert len(fresh) == 5
    assert len(list(fresh)) == 4  # the rest of the epoch, while len() keeps the full epoch


def test_abandoned_epoch_does_not_shorten_the_next_one_nor_rewind_the_stream() -> None:
    vl = VirtualDataLoader(list(range(100)), steps_per_epoch=10)
    first = []
    for batch in vl:
        first.append(batch)
        if len(first) == 3:
            break
    assert vl.epoch == 0
    second = list(vl)
    assert first == [0, 1, 2]
    assert second == list(range(3, 13))
    assert vl.epoch == 2


def test_loop_stopped_right_at_the_boundary_gets_no_empty_epoch() -> None:
    # Frameworks stop pulling after len() batches: the generator is never resumed.
    vl = VirtualDataLoader(list(range(5)), steps_per_epoch=3)
    epochs = [list(itertools.islice(iter(vl), len(vl))) for _ in range(3)]
    assert epochs == [[0, 1, 2], [3, 4, 0], [1, 2, 3]]
    assert vl.epoch == 3


def test_epoch_counts_as_complete_once_its_last_batch_is_handed_out() -> None:
    vl = VirtualDataLoader(list(range(5)), steps_per_epoch=2)
    it = iter(vl)
    assert (vl.epoch, vl.step_in_epoch) == (0, 0)
    next(it)
    assert (vl.epoch, vl.step_in_epoch) == (0, 1)
    next(it)
    assert (vl.epoch, vl.step_in_epoch) == (1, 0)
    state = vl.state_dict()
    assert (state["epoch"], state["batches_in_epoch"]) == (1, 0)
    resumed = VirtualDataLoader(list(range(5)), steps_per_epoch=2)
    resumed.load_state_dict(state)
    assert list(resumed) == [2, 3]  # a whole next epoch, not an empty remainder


def test_range_from_epoch_reads_naturally() -> None:
    vl = VirtualDataLoader(list(range(4)), steps_per_epoch=3)
    seen = [(epoch, list(vl)) for epoch in range(vl.epoch, 3)]
    assert [epoch for epoch, _ in seen] == [0, 1, 2]
    assert list(range(vl.epoch, 3)) == []


# ---------------------------------------------------------------------------- counting
# The batches handed out are counted by a C iterator advanced before each batch is taken, and
# settled into the counters whenever an iteration stops. These pin every way one can stop.


def _progress(vl: VirtualDataLoader[Any]) -> tuple[int, int, int, int]:
    state = vl.state_dict()
    return vl.steps, vl.epoch, vl.step_in_epoch, state["steps"]


@pytest.mark.parametrize("batches", [list(range(7)), DataLoader(IndexDataset(7))])
def test_progress_read_between_batches_counts_exactly_the_batches_handed_out(
    batches: Any,
) -> None:
    vl = VirtualDataLoader(batches, steps_per_epoch=3)  # passes of 7 end inside epochs
    handed = 0
    for epoch in range(5):
        for step, _ in enumerate(vl):
            handed += 1
            done = step + 1
            expected_epoch, in_epoch = (epoch + 1, 0) if done == 3 else (epoch, done)
            assert _progress(vl) == (handed, expected_epoch, in_epoch, handed)
            if epoch == 2 and step == 1:
                break  # an abandoned epoch keeps its count
        if epoch == 2:
            assert _progress(vl) == (handed, 2, 2, handed)
    assert vl.state_dict()["pass"] == handed // 7


class Probe(Dataset[int]):
    """Sample ``i`` is ``i``; loading it records what ``vl`` says at that moment."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.vl: VirtualDataLoader[Any] | None = None
        self.seen: list[tuple[int, int, int]] = []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        assert self.vl is not None
        self.seen.append((self.vl.steps, self.vl.epoch, self.vl.state_dict()["steps"]))
        return index


def test_a_batch_being_loaded_is_not_counted_yet() -> None:
    # A dataset or sampler that reads the epoch while it loads (a curriculum) sees the epoch
    # of the batch it loads, and a checkpoint taken then does not skip that batch.
    probe = Probe(5)
    vl = VirtualDataLoader(DataLoader(probe), steps_per_epoch=3)
    probe.vl = vl
    for _ in range(4):
        list(vl)
    assert probe.seen == [(step, step // 3, step) for step in range(12)]


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
def test_a_checkpoint_saved_by_a_signal_handler_while_a_batch_loads_resumes_exactly() -> None:
    # As on a cluster's preemption notice: the handler runs wherever the main thread is; here
    # inside the loading of sample 5, the 6th batch.
    states: list[dict[str, Any]] = []

    class Preempted(Probe):
        def __getitem__(self, index: int) -> int:
            if index == 5 and not states:
                os.kill(os.getpid(), signal.SIGUSR1)  # the handler runs before this returns
            return super().__getitem__(index)

    dataset = Preempted(7)
    vl = VirtualDataLoader(DataLoader(dataset), steps_per_epoch=4)
    dataset.vl = vl
    previous = signal.signal(signal.SIGUSR1, lambda *_: states.append(vl.state_dict()))
    try:
        stream = [b.item() for _ in range(3) for b in vl]
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert len(states) == 1
    assert states[0]["steps"] == 5
    resumed = VirtualDataLoader(DataLoader(IndexDataset(7)), steps_per_epoch=4)
    resumed.load_state_dict(states[0])
    assert [b.item() for _ in range(resumed.epoch, 3) for b in resumed] == stream[5:]


def test_an_exception_thrown_into_the_iteration_keeps_the_batch_already_handed_out() -> None:
    vl = VirtualDataLoader(DataLoader(IndexDataset(10)), steps_per_epoch=4)
    iterator = iter(vl)
    assert [next(iterator).item() for _ in range(2)] == [0, 1]
    with pytest.raises(KeyboardInterrupt):
        iterator.throw(KeyboardInterrupt())  # as a Ctrl-C in the loop body would arrive
    assert (vl.steps, vl.state_dict()["batches_in_pass"]) == (2, 2)
    assert [b.item() for b in vl] == [2, 3, 4, 5]  # nothing lost or repeated


@pytest.mark.parametrize("how", ["del", "gc"])
def test_an_iteration_dropped_mid_epoch_keeps_its_count(how: str) -> None:
    vl = VirtualDataLoader(list(range(10)), steps_per_epoch=4)
    iterator = iter(vl)
    next(iterator), next(iterator)
    if how == "gc":
        holder: list[Any] = [iterator]
        holder.append(holder)  # a reference cycle: only the garbage collector frees it
        del holder
    del iterator
    assert (vl.steps, vl.epoch, vl.step_in_epoch) == (2, 0, 2)
    gc.collect()
    assert (vl.steps, vl.epoch, vl.step_in_epoch) == (2, 0, 2)
    assert list(vl) == [2, 3, 4, 5]


def test_a_state_loaded_after_an_iteration_is_not_shifted_by_its_count() -> None:
    source = VirtualDataLoader(DataLoader(IndexDataset(10)), steps_per_epoch=4)
    for _ in range(2):
        list(source)  # 8 batches
    saved = source.state_dict()
    vl = VirtualDataLoader(DataLoader(IndexDataset(10)), steps_per_epoch=4)
    iterator = iter(vl)
    for _ in range(4):
        next(iterator)  # the epoch is complete; the generator is still suspended, as in Lightning
    vl.load_state_dict(saved)
    assert (vl.steps, vl.epoch, vl.step_in_epoch) == (8, 2, 0)
    assert vl.state_dict() == saved
    with pytest.raises(StopIteration):
        next(iterator)  # the iteration begun before the load does not go on
    assert [b.item() for b in vl] == [8, 9, 0, 1]
    assert vl.steps == 12


LOADING_MID_EPOCH = (
    "load_state_dict() was called while an epoch of VirtualDataLoader([0, 1, 2, 3, 4, 5, 6, 7, "
    "8, 9], steps_per_epoch=4) is being iterated (3 of 4 batches handed out): the loop would end "
    "early and its epoch count drift from vl.epoch. Load before iterating: leave the loop "
    "(break), or close() the iterator, first; nothing was changed"
)


def test_loading_inside_a_running_epoch_is_refused_and_changes_nothing() -> None:
    saved = VirtualDataLoader(list(range(10)), steps_per_epoch=4).state_dict()
    vl = VirtualDataLoader(list(range(10)), steps_per_epoch=4)
    seen = []
    for batch in vl:
        seen.append(batch)
        if len(seen) == 3:
            with pytest.raises(RuntimeError, match=re.escape(LOADING_MID_EPOCH)):
                vl.load_state_dict(saved)  # e.g. a rollback inside the loop
            break
    assert seen == [0, 1, 2]
    assert (vl.steps, vl.epoch, vl.step_in_epoch) == (3, 0, 3)
    # The documented way: leave the loop, then load, then iterate.
    iterator = iter(vl)
    assert next(iterator) == 3  # an abandoned epoch: this iteration is epoch 1
    iterator.close()
    vl.load_state_dict(saved)
    assert list(vl) == [0, 1, 2, 3]
    # An iteration made but not started (Lightning's check) does not block a load.
    unstarted = iter(vl)
    vl.load_state_dict(saved)
    assert list(unstarted) == [0, 1, 2, 3]


# --------------------------------------------------------------------------- laziness


class CountingIterable:
    """A re-iterable of ``batches`` that counts how often a pass was started."""

    def __init__(self, batches: list[Any]) -> None:
        self.batches = batches
        self.started = 0

    def __iter__(self) -> Iterator[Any]:
        self.started += 1
        return iter(self.batches)


def test_iter_is_lazy_and_a_discarded_iterator_changes_nothing() -> None:
    source = CountingIterable([1, 2, 3])
    vl = VirtualDataLoader(source, steps_per_epoch=2)
    iter(vl)  # Lightning calls iter() once and throws the result away
    assert source.started == 0
    assert (vl.epoch, vl.steps) == (0, 0)
    assert list(vl) == [1, 2]
    assert source.started == 1


SUPERSEDED = (
    "a new iteration over VirtualDataLoader([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], steps_per_epoch=4) "
    "began while an earlier one was 1 of 4 batches into epoch 0: the earlier one is ended (its "
    "next() raises StopIteration) and the new one starts the next epoch. Iterate one epoch at a "
    "time: finish or break out of a loop over it before starting another"
)


def test_an_older_iteration_held_mid_epoch_stops_with_a_warning_when_a_newer_one_starts() -> None:
    vl = VirtualDataLoader(list(range(10)), steps_per_epoch=4)
    old = iter(vl)
    assert next(old) == 0
    new = iter(vl)
    with pytest.warns(UserWarning, match=re.escape(SUPERSEDED)) as caught:
        assert next(new) == 1  # the old epoch was abandoned; the stream continues
    assert caught[0].filename == __file__  # the warning points at the user's line
    with pytest.raises(StopIteration):
        next(old)
    assert list(new) == [2, 3, 4]


def test_zip_of_two_iterations_warns_instead_of_silently_yielding_one_pair() -> None:
    vl = VirtualDataLoader(list(range(10)), steps_per_epoch=4)
    with pytest.warns(UserWarning, match="a new iteration over VirtualDataLoader"):
        pairs = list(zip(vl, vl, strict=False))
    assert pairs == [(0, 1)]


def test_iterations_one_after_another_do_not_warn() -> None:
    vl = VirtualDataLoader(list(range(10)), steps_per_epoch=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        done = iter(vl)
        assert list(itertools.islice(done, 4)) == [0, 1, 2, 3]  # complete, still suspended
        assert next(iter(vl)) == 4  # dropped at once: closed by the garbage collector
        assert (vl.steps, vl.epoch, vl.step_in_epoch) == (5, 1, 1)
        with pytest.raises(StopIteration):
            next(done)  # the completed iteration was ended by the newer one
        for _ in vl:
            break  # abandoned by the loop itself
        assert list(vl) == [6, 7, 8, 9]


def test_wraps_a_custom_reiterable_and_restarts_it_every_pass() -> None:
    source = CountingIterable(["a", "b"])
    vl = VirtualDataLoader(source, steps_per_epoch=5)
    assert list(vl) == ["a", "b", "a", "b", "a"]
    assert source.started == 3


# ------------------------------------------------------------------------- set_epoch


def test_set_epoch_is_the_pass_index_so_every_pass_is_a_new_shuffle() -> None:
    n = 12
    sampler = DistributedSampler(range(n), num_replicas=2, rank=0, shuffle=True, seed=3)
    loader = DataLoader(range(n), batch_size=2, sampler=sampler)
    vl = VirtualDataLoader(loader, steps_per_epoch=4)  # 3 batches per pass
    got = [plain(batch) for _ in range(3) for batch in vl]

    def pass_order(pass_index: int) -> list[int]:
        reference = DistributedSampler(range(n), num_replicas=2, rank=0, shuffle=True, seed=3)
        reference.set_epoch(pass_index)
        return list(reference)

    expected = [pass_order(p) for p in range(4)]
    flat = [i for batch in got for i in batch]
    assert flat == [i for order in expected for i in order]
    assert expected[0] != expected[1]  # the check above would not notice equal passes
    assert sampler.epoch == 3


def test_set_epoch_reaches_the_batch_samplers_sampler() -> None:
    sampler = DistributedSampler(range(8), num_replicas=1, rank=0, shuffle=True, seed=1)
    batch_sampler = torch.utils.data.BatchSampler(sampler, batch_size=4, drop_last=False)
    loader = DataLoader(range(8), batch_sampler=batch_sampler)
    vl = VirtualDataLoader(loader, steps_per_epoch=5)
    list(vl)
    assert sampler.epoch == 2  # passes 0, 1 and 2 were started


# --------------------------------------------------------------------- InfiniteSampler


def test_infinite_sampler_inner_loader_never_ends() -> None:
    dataset = IndexDataset(10)
    loader = DataLoader(dataset, batch_size=4, sampler=InfiniteSampler(10, seed=5))
    vl = VirtualDataLoader(loader, steps_per_epoch=3)
    assert vl.strategy == "seek"
    flat = [i for _ in range(5) for batch in vl for i in batch.tolist()]
    expected = list(itertools.islice(InfiniteSampler(10, seed=5), 60))
    assert flat == expected
    passes = [sorted(flat[i : i + 10]) for i in range(0, 60, 10)]
    assert all(p == list(range(10)) for p in passes)


def test_sample_order_does_not_depend_on_the_global_rng() -> None:
    def run() -> list[Any]:
        loader = DataLoader(range(20), batch_size=3, sampler=InfiniteSampler(20, seed=2))
        vl = VirtualDataLoader(loader, steps_per_epoch=4)
        return [plain(batch) for _ in range(3) for batch in vl]

    torch.manual_seed(0)
    first = run()
    torch.manual_seed(12345)
    assert run() == first


# ---------------------------------------------------------------------- failure modes


def test_one_shot_iterator_gets_an_error_when_a_restart_is_needed() -> None:
    vl = VirtualDataLoader((i for i in range(3)), steps_per_epoch=5)
    it = iter(vl)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(TypeError, match=r"one-shot iterator and cannot start pass 1"):
        next(it)


def test_one_shot_iterator_is_fine_for_one_pass() -> None:
    vl = VirtualDataLoader(iter(range(6)), steps_per_epoch=3)
    assert [list(vl) for _ in range(2)] == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize(
    "loader",
    [
        pytest.param([], id="empty-list"),
        pytest.param(DataLoader(range(0), batch_size=2), id="empty-dataset"),
        pytest.param(DataLoader(range(3), batch_size=4, drop_last=True), id="drop-last-drops-all"),
    ],
)
def test_a_pass_without_batches_is_an_error_naming_the_loader(loader: Any) -> None:
    vl = VirtualDataLoader(loader, steps_per_epoch=3)
    with pytest.raises(ValueError, match=r"pass 0 of 'loader' .* yielded no batch"):
        next(iter(vl))
    assert vl.steps == 0


def test_a_later_empty_pass_is_an_error_too() -> None:
    class Shrinking:
        def __init__(self) -> None:
            self.passes = [[1, 2], []]

        def __iter__(self) -> Iterator[int]:
            return iter(self.passes.pop(0))

    vl = VirtualDataLoader(Shrinking(), steps_per_epoch=5)
    it = iter(vl)
    assert [next(it), next(it)] == [1, 2]
    with pytest.raises(ValueError, match=r"pass 1 of 'loader' .* yielded no batch"):
        next(it)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_exception_propagates_unchanged_and_the_step_is_not_counted(
    num_workers: int, tmp_path: Path
) -> None:
    dataset = FailOnce(10, bad=5, error=KeyError("corrupt sample 5"), marker=tmp_path / "failed")
    loader = DataLoader(dataset, batch_size=2, num_workers=num_workers)
    vl = VirtualDataLoader(loader, steps_per_epoch=4)
    iterator = iter(vl)
    got = [next(iterator).tolist() for _ in range(2)]
    with pytest.raises(KeyError, match="corrupt sample 5") as info:
        next(iterator)
    if num_workers == 0:
        assert info.value is dataset.error
    assert got == [[0, 1], [2, 3]]
    assert vl.steps == 2
    assert vl.state_dict()["batches_in_pass"] == 2
    # The failed batch comes again, nothing skipped or repeated; the interrupted epoch was
    # abandoned, so a whole new one starts.
    assert [b.tolist() for b in vl] == [[4, 5], [6, 7], [8, 9], [0, 1]]
    assert vl.epoch == 2


class BrokenIterable:
    def __iter__(self) -> Iterator[int]:
        raise OSError("storage unreachable")


def test_error_starting_a_pass_propagates() -> None:
    vl = VirtualDataLoader(BrokenIterable(), steps_per_epoch=2)
    with pytest.raises(OSError, match="storage unreachable"):
        list(vl)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"steps_per_epoch": 0}, ValueError, r"'steps_per_epoch' must be an int >= 1 \(got 0\)"),
        ({"steps_per_epoch": -1}, ValueError, r"'steps_per_epoch' must be an int >= 1 \(got -1\)"),
        (
            {"steps_per_epoch": 2.5},
            TypeError,
            r"'steps_per_epoch' must be an int >= 1 \(got 2.5 of type float\); pass the number",
        ),
        (
            {"steps_per_epoch": True},
            TypeError,
            r"'steps_per_epoch' must be an int >= 1 \(got True of type bool\)",
        ),
        (
            {"steps_per_epoch": "10"},
            TypeError,
            r"'steps_per_epoch' must be an int >= 1 \(got '10' of type str\)",
        ),
        (
            {"steps_per_epoch": None},
            TypeError,
            r"'steps_per_epoch' must be an int >= 1 \(got None of type NoneType\)",
        ),
        (
            {"loader": None},
            TypeError,
            r"'loader' must be an iterable of batches, such as a DataLoader \(got None",
        ),
        (
            {"loader": 5},
            TypeError,
            r"'loader' must be an iterable of batches, such as a DataLoader \(got 5 of type int",
        ),
    ],
)
def test_bad_arguments_get_clear_errors(kwargs: dict[str, Any], error: type, message: str) -> None:
    arguments: dict[str, Any] = {"loader": [1, 2], "steps_per_epoch": 3, **kwargs}
    with pytest.raises(error, match=message):
        VirtualDataLoader(**arguments)


def test_an_infinite_sampler_as_batch_sampler_is_refused_at_wrap_time() -> None:
    loader = DataLoader(range(10), batch_sampler=InfiniteSampler(10))
    with pytest.raises(
        TypeError,
        match=re.escape(
            "but it yields single indices, not batches of them; pass it as the sampler: "
            "DataLoader(dataset, sampler=InfiniteSampler(dataset), batch_size=...)"
        ),
    ):
        VirtualDataLoader(loader, steps_per_epoch=3)


@pytest.mark.parametrize(
    ("sampler", "drawn"),
    [
        (InfiniteSampler(100), 100),  # would train on a tenth of the dataset, silently
        (InfiniteSampler(2000), 2000),  # would fail at the first index past the end
        (KeyedSampler(InfiniteSampler(100)), 100),
        (MixtureSampler([600, 300], [2, 1]), 900),
    ],
)
def test_a_sampler_over_another_number_of_samples_than_the_dataset_is_refused(
    sampler: Any, drawn: int
) -> None:
    loader = DataLoader(range(1000), batch_size=4, sampler=sampler)
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"draws indices from {drawn} samples, but the loader's dataset has 1000; build the "
            "sampler from the dataset itself (InfiniteSampler(dataset), "
            "MixtureSampler(ConcatDataset(parts), ...)), or give the DataLoader a Subset of the "
            "dataset to train on part of it"
        ),
    ):
        VirtualDataLoader(loader, steps_per_epoch=3)


def test_a_list_state_does_not_load_into_a_list_of_another_length() -> None:
    saved = VirtualDataLoader(list(range(10)), steps_per_epoch=3)
    list(saved)
    other = VirtualDataLoader(list(range(12)), steps_per_epoch=3)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "the checkpoint was saved with a different sample order: "
            "state['resume']['fingerprint']['batches_per_pass'] is 10 but this loader has 12"
        ),
    ):
        other.load_state_dict(saved.state_dict())
    same = VirtualDataLoader(list(range(10)), steps_per_epoch=3)
    same.load_state_dict(saved.state_dict())
    assert list(same) == [3, 4, 5]


def test_repr_names_the_loader_and_the_epoch_length() -> None:
    assert repr(VirtualDataLoader([1, 2], 3)) == "VirtualDataLoader([1, 2], steps_per_epoch=3)"


class EpochEcho(Dataset[int]):
    """Sample ``i`` is the last value given to ``set_epoch`` in the process that loads it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return self.epoch


PERSISTENT = (
    "has set_epoch(), which VirtualDataLoader calls with the pass index in the main process, but "
    "persistent_workers=True keeps the workers' copies of the dataset from the first pass"
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("persistent", [False, True])
def test_dataset_set_epoch_under_persistent_workers_warns_and_what_it_gives(
    persistent: bool,
) -> None:
    loader = DataLoader(EpochEcho(4), batch_size=4, num_workers=1, persistent_workers=persistent)
    if persistent:
        with pytest.warns(UserWarning, match=re.escape(PERSISTENT)) as caught:
            vl = VirtualDataLoader(loader, steps_per_epoch=3)
        assert caught[0].filename == __file__
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            vl = VirtualDataLoader(loader, steps_per_epoch=3)
    passes = [batch.tolist() for batch in vl]
    # Without persistent workers each pass's workers see set_epoch(pass); with them, the
    # workers keep pass 0's copy: the behaviour the warning describes, pinned.
    assert passes == ([[0] * 4] * 3 if persistent else [[0] * 4, [1] * 4, [2] * 4])
