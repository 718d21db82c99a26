"""Exact resume: a restored loader continues with exactly the batches of the uninterrupted run."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import (
    DataLoader,
)

from _helpers import IndexDataset, assert_resumes_exactly, plain, round_trip, run_epochs
from _shapes_table import (
    BATCH,
    EPOCHS,
    IN_PROCESS,
    PASS_BATCHES,
    SHAPES,
    STEPS_PER_EPOCH,
    N,
    advance,
    maker,
    saved,
)
from virtual_epochs import InfiniteSampler, VirtualDataLoader

Factory = Callable[[], VirtualDataLoader[Any]]


class ReIterable:
    """Not a DataLoader: a user's own re-iterable whose passes depend on ``set_epoch``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.epoch))
        return iter(order.tolist())


# (Resume at every step of every shape of loader in the table: test_strategy_contract.py.)


def test_replay_of_a_user_iterable_is_exact_and_warns_once_with_its_cost() -> None:
    def make() -> VirtualDataLoader[Any]:
        return VirtualDataLoader(ReIterable(5), 3)

    assert make().strategy == "replay"
    vl = make()
    for _ in range(2):
        list(vl)
    state = vl.state_dict()  # step 6: pass 1, 1 batch in
    resumed = make()
    resumed.load_state_dict(state)
    with pytest.warns(UserWarning, match=r"by replaying 1 batches of pass 1: each is loaded again"):
        first = next(iter(resumed))
    assert first == vl_stream(make(), 7)[6]
    with pytest.warns(UserWarning, match="replaying"):
        assert_resumes_exactly(make, epochs=5)


def vl_stream(vl: VirtualDataLoader[Any], steps: int) -> list[Any]:
    out: list[Any] = []
    while len(out) < steps:
        out.extend(plain(batch) for batch in vl)
    return out[:steps]


@pytest.mark.parametrize("workers", [(0, 2), (2, 0), (2, 2)])
def test_resume_with_other_workers_prefetch_and_persistence(workers: tuple[int, int]) -> None:
    def factory(name: str, num_workers: int) -> Factory:
        extra: dict[str, Any] = {}
        if num_workers:
            extra = {"prefetch_factor": 3, "persistent_workers": True}
        return lambda: SHAPES[name].make(num_workers=num_workers, **extra)

    before, after = workers
    for name in ["infinite-sampler", "shuffle-with-generator", "sequential"]:
        assert_resumes_exactly(
            factory(name, before),
            epochs=4,
            save_at=[0, 2, 4, 7, 12],
            make_resumed=factory(name, after),
        )


def test_shuffle_without_generator_resumes_under_another_global_seed() -> None:
    # DataLoader(shuffle=True) draws nothing we cannot rebuild: the RandomSampler is seeded
    # per pass from (seed, pass), with the seed saved in the checkpoint.
    shape = SHAPES["shuffle-without-generator"]
    torch.manual_seed(1)
    vl = shape.make()
    first = run_epochs(vl, 2)
    state = round_trip(vl.state_dict())
    rest = run_epochs(vl, EPOCHS)
    torch.manual_seed(99)  # another process, another global seed
    resumed = shape.make()
    resumed.load_state_dict(state)
    assert run_epochs(resumed, EPOCHS) == rest
    flat = [i for epoch in first + rest for batch in epoch for i in batch]
    passes = [flat[i : i + N] for i in range(0, 3 * N, N)]  # 7 batches (3 * 6 + 2) per pass
    assert [sorted(p) for p in passes] == [list(range(N))] * 3
    assert len({tuple(p) for p in passes}) == 3  # a new shuffle every pass


@pytest.mark.parametrize(
    "name", [name for name in IN_PROCESS if SHAPES[name].strategy in ("seek", "skip")]
)
def test_no_skipped_sample_is_loaded(name: str) -> None:
    # seek and skip resume at the index level: a restored loader loads the samples it hands
    # out, and nothing of what it skips, at any step (custom batch samplers included).
    for step in range(EPOCHS * STEPS_PER_EPOCH):
        dataset = IndexDataset(N)
        resumed = maker(name, dataset)()
        resumed.load_state_dict(saved(name, step))
        batch = plain(next(iter(resumed)))
        assert sorted(dataset.loaded) == sorted(batch if isinstance(batch, list) else [batch])


@pytest.mark.parametrize("infinite", [True, False])
@pytest.mark.parametrize("new_batch", [1, 2, 5])
def test_batch_size_may_change_the_sample_stream_carries_over(
    infinite: bool, new_batch: int
) -> None:
    def make(batch: int) -> VirtualDataLoader[Any]:
        name = "infinite-sampler" if infinite else "shuffle-with-generator"
        return SHAPES[name].make(batch_size=batch)

    def samples(vl: VirtualDataLoader[Any], epochs: int) -> list[int]:
        return [i for epoch in run_epochs(vl, epochs) for batch in epoch for i in batch]

    expected = samples(make(BATCH), 20)  # the uninterrupted sample stream
    old = make(BATCH)
    done = samples(old, 2)  # 10 batches: mid-pass (the second)
    state = old.state_dict()
    resumed = make(new_batch)
    resumed.load_state_dict(state)
    after = samples(resumed, 6)
    assert done == expected[: len(done)]
    assert len(after) >= 12
    assert after == expected[len(done) : len(done) + len(after)]


def test_steps_per_epoch_may_change_data_continues_and_epochs_keep_their_numbers() -> None:
    old = VirtualDataLoader(list(range(100)), 10)
    run_epochs(old, 2)
    iterator = iter(old)
    for _ in range(6):
        next(iterator)
    state = old.state_dict()  # epoch 2, 6 batches in, 26 steps
    shorter = VirtualDataLoader(list(range(100)), 4)
    shorter.load_state_dict(state)
    assert (shorter.epoch, len(shorter)) == (3, 4)  # epoch 2 already had 6 >= 4 batches
    assert list(shorter) == [26, 27, 28, 29]
    longer = VirtualDataLoader(list(range(100)), 20)
    longer.load_state_dict(state)
    assert longer.epoch == 2
    assert list(longer) == list(range(26, 40))  # the rest of epoch 2, 20 batches in all
    assert longer.epoch == 3


def test_state_at_a_pass_boundary_is_saved_as_the_start_of_the_next_pass() -> None:
    state = advance(maker("sequential")(), PASS_BATCHES).state_dict()  # inside epoch 1
    assert (state["pass"], state["batches_in_pass"]) == (1, 0)
    assert state["resume"]["skip"]["samples_in_pass"] == 0


# ------------------------------------------------------------------- property testing


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 30),
    batch=st.integers(1, 7),
    steps_per_epoch=st.integers(1, 9),
    drop_last=st.booleans(),
    shuffle=st.booleans(),
    infinite=st.booleans(),
    save_at=st.integers(0, 40),
)
def test_resume_property(
    n: int,
    batch: int,
    steps_per_epoch: int,
    drop_last: bool,
    shuffle: bool,
    infinite: bool,
    save_at: int,
) -> None:
    if drop_last and batch > n and not infinite:
        batch = n  # a loader without any batch is an error, tested elsewhere

    def make() -> VirtualDataLoader[Any]:
        if infinite:
            loader = DataLoader(
                range(n), batch_size=batch, sampler=InfiniteSampler(n, shuffle=shuffle, seed=n)
            )
        else:
            loader = DataLoader(
                range(n),
                batch_size=batch,
                drop_last=drop_last,
                shuffle=shuffle,
                generator=torch.Generator().manual_seed(n) if shuffle else None,
            )
        return VirtualDataLoader(loader, steps_per_epoch)

    epochs = -(-(save_at + 10) // steps_per_epoch)
    assert_resumes_exactly(make, epochs=epochs, save_at=[save_at])


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(4, 20),
    batch=st.integers(1, 4),
    steps_per_epoch=st.integers(2, 5),
    infinite=st.booleans(),
    save_at=st.integers(1, 12),
)
def test_resume_property_with_workers(
    n: int, batch: int, steps_per_epoch: int, infinite: bool, save_at: int
) -> None:
    def make() -> VirtualDataLoader[Any]:
        sampler = InfiniteSampler(n, seed=3) if infinite else None
        loader = DataLoader(
            range(n),
            batch_size=batch,
            shuffle=not infinite,
            sampler=sampler,
            generator=torch.Generator().manual_seed(2),
            num_workers=2,
        )
        return VirtualDataLoader(loader, steps_per_epoch)

    assert_resumes_exactly(make, epochs=-(-(save_at + 4) // steps_per_epoch), save_at=[save_at])


def test_stateful_dataloader_with_workers_resumes_exactly_across_passes() -> None:
    # (Without workers, at every step: the contract test.)
    def make() -> VirtualDataLoader[Any]:
        return SHAPES["stateful-dataloader"].make(num_workers=2)

    assert_resumes_exactly(make, epochs=3, save_at=[0, 1, 4, 5, 8, 13])


# ------------------------------------------- replay: the stream must be the same every run


class UnseededShuffle:
    """A re-iterable whose every pass is a fresh, unseeded shuffle: not the same in every run."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[list[int]]:
        unseeded = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little"))
        order = torch.randperm(self.n, generator=unseeded).tolist()
        return iter([order[i : i + 2] for i in range(0, self.n, 2)])


def test_verify_replay_resumes_a_deterministic_loader_exactly_at_every_step() -> None:
    assert_resumes_exactly(
        lambda: VirtualDataLoader(ReIterable(5), 3, verify_replay=True), epochs=5
    )


def test_verify_replay_refuses_a_replay_whose_batches_differ() -> None:
    source = VirtualDataLoader(UnseededShuffle(12), 4, verify_replay=True)
    next(iter(source))
    state = source.state_dict()
    assert len(state["resume"]["replay"]["digest"]) == 32
    resumed = VirtualDataLoader(UnseededShuffle(12), 4, verify_replay=True)
    resumed.load_state_dict(state)
    with (
        pytest.warns(UserWarning, match="exact only if the loader yields the same batches"),
        pytest.raises(
            ValueError,
            match=r"cannot resume: the 1 batches of pass 0 replayed from .* differ from those "
            r"the saved run handed out \(digest \w{12}\.\.\. against \w{12}\.\.\.\): the loader "
            "does not yield the same batches in every run",
        ),
    ):
        next(iter(resumed))
    # Without the check the same resume goes on silently with other data: the trap it catches.
    blind = VirtualDataLoader(UnseededShuffle(12), 4)
    blind.load_state_dict({**state, "resume": {**state["resume"], "replay": {}}})
    with pytest.warns(UserWarning, match="verify_replay=True to check it"):
        next(iter(blind))


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (
            lambda: VirtualDataLoader(
                DataLoader(range(4), sampler=InfiniteSampler(4)), 2, verify_replay=True
            ),
            ValueError,
            (
                r"'verify_replay' applies to loaders resumed by replaying their batches, but "
                r"<torch\.utils\.data\.dataloader\.DataLoader object .*> is resumed by 'seek', "
                r"which replays nothing; leave verify_replay=False"
            ),
        ),
        (
            lambda: VirtualDataLoader([[1]], 2, verify_replay=1),
            TypeError,
            r"'verify_replay' must be a bool \(got 1 of type int\)",
        ),
        (
            lambda: list(VirtualDataLoader([[object()]], 2, verify_replay=True)),
            TypeError,
            (
                r"verify_replay=True cannot digest a batch part <object object at .*> of type "
                "object: batches must hold tensors"
            ),
        ),
    ],
)
def test_verify_replay_misuse_is_refused(make: Factory, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        make()
