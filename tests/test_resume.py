"""Exact resume: a restored loader continues with exactly the batches of the uninterrupted run."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import (
    DataLoader,
    DistributedSampler,
    SequentialSampler,
)
from torchdata.stateful_dataloader import StatefulDataLoader

from _helpers import (
    CountingStream,
    IndexDataset,
    assert_resumes_exactly,
    plain,
    round_trip,
    run_epochs,
)
from virtual_epochs import InfiniteSampler, VirtualDataLoader

Factory = Callable[[], VirtualDataLoader[Any]]


class VariableBatches:
    """A custom batch sampler: batches of sizes 1, 2, 3, 1, 2, 3, ... in order."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[list[int]]:
        start, size = 0, 1
        while start < self.n:
            yield list(range(start, min(self.n, start + size)))
            start += size
            size = size % 3 + 1

    def __len__(self) -> int:
        return sum(1 for _ in self)


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


SHAPES: dict[str, tuple[str, Factory]] = {
    "infinite-sampler": (
        "seek",
        lambda: VirtualDataLoader(
            DataLoader(IndexDataset(11), batch_size=3, sampler=InfiniteSampler(11, seed=4)), 4
        ),
    ),
    "sequential": (
        "skip",
        lambda: VirtualDataLoader(DataLoader(IndexDataset(11), batch_size=3), 4),
    ),
    "sequential-drop-last": (
        "skip",
        lambda: VirtualDataLoader(DataLoader(IndexDataset(11), batch_size=3, drop_last=True), 4),
    ),
    "shuffle-with-generator": (
        "skip",
        lambda: VirtualDataLoader(
            DataLoader(
                IndexDataset(11),
                batch_size=3,
                shuffle=True,
                generator=torch.Generator().manual_seed(7),
            ),
            4,
        ),
    ),
    "shuffle-without-generator": (
        "skip",
        lambda: VirtualDataLoader(DataLoader(IndexDataset(11), batch_size=3, shuffle=True), 4),
    ),
    "distributed-sampler": (
        "skip",
        lambda: VirtualDataLoader(
            DataLoader(
                IndexDataset(11),
                batch_size=2,
                sampler=DistributedSampler(range(11), num_replicas=2, rank=1, seed=5),
            ),
            4,
        ),
    ),
    "custom-batch-sampler": (
        "skip",
        lambda: VirtualDataLoader(
            DataLoader(IndexDataset(11), batch_sampler=VariableBatches(11)), 4
        ),
    ),
    "no-batching": (
        "skip",
        lambda: VirtualDataLoader(
            DataLoader(IndexDataset(7), batch_size=None, sampler=SequentialSampler(range(7))), 4
        ),
    ),
    "list-of-batches": ("replay", lambda: VirtualDataLoader([[0, 1], [2, 3], [4]], 4)),
    "stateful-dataloader": (
        "delegate",
        lambda: VirtualDataLoader(
            StatefulDataLoader(
                IndexDataset(11),
                batch_size=3,
                shuffle=True,
                generator=torch.Generator().manual_seed(7),
            ),
            4,
        ),
    ),
    "stateful-dataloader-without-generator": (
        "delegate",
        lambda: VirtualDataLoader(
            StatefulDataLoader(IndexDataset(11), batch_size=3, shuffle=True), 4
        ),
    ),
    "iterable-dataset-with-state": (
        "delegate",
        lambda: VirtualDataLoader(DataLoader(CountingStream(7), batch_size=2), 3),
    ),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_resume_at_every_step_equals_the_uninterrupted_run(shape: str) -> None:
    strategy, make = SHAPES[shape]
    assert make().strategy == strategy
    assert_resumes_exactly(make, epochs=8)  # 32 steps: several passes of every shape


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
    def factory(num_workers: int, *, shuffle: bool, infinite: bool) -> Factory:
        extra: dict[str, Any] = {}
        if num_workers:
            extra = {"prefetch_factor": 3, "persistent_workers": True}

        def make() -> VirtualDataLoader[Any]:
            sampler = InfiniteSampler(13, seed=1) if infinite else None
            loader = DataLoader(
                IndexDataset(13),
                batch_size=4,
                shuffle=shuffle and not infinite,
                sampler=sampler,
                generator=torch.Generator().manual_seed(3) if shuffle else None,
                num_workers=num_workers,
                **extra,
            )
            return VirtualDataLoader(loader, 3)

        return make

    before, after = workers
    for infinite, shuffle in [(True, True), (False, True), (False, False)]:
        assert_resumes_exactly(
            factory(before, shuffle=shuffle, infinite=infinite),
            epochs=4,
            save_at=[0, 2, 4, 7, 12],
            make_resumed=factory(after, shuffle=shuffle, infinite=infinite),
        )


def test_shuffle_without_generator_resumes_under_another_global_seed() -> None:
    # DataLoader(shuffle=True) draws nothing we cannot rebuild: the RandomSampler is seeded
    # per pass from (seed, pass), with the seed saved in the checkpoint.
    torch.manual_seed(1)
    vl = VirtualDataLoader(DataLoader(range(10), batch_size=3, shuffle=True), 3)
    first = run_epochs(vl, 2)
    state = round_trip(vl.state_dict())
    rest = run_epochs(vl, 4)
    torch.manual_seed(99)  # another process, another global seed
    resumed = VirtualDataLoader(DataLoader(range(10), batch_size=3, shuffle=True), 3)
    resumed.load_state_dict(state)
    assert run_epochs(resumed, 4) == rest
    flat = [i for epoch in first + rest for batch in epoch for i in batch]
    passes = [flat[i : i + 10] for i in range(0, 30, 10)]  # 4 batches (3+3+3+1) per pass
    assert [sorted(p) for p in passes] == [list(range(10))] * 3
    assert len({tuple(p) for p in passes}) == 3  # a new shuffle every pass


@pytest.mark.parametrize("infinite", [True, False])
def test_no_skipped_sample_is_loaded(infinite: bool) -> None:
    def make(dataset: IndexDataset) -> VirtualDataLoader[Any]:
        sampler = InfiniteSampler(50, seed=2) if infinite else None
        loader = DataLoader(dataset, batch_size=4, shuffle=not infinite, sampler=sampler)
        return VirtualDataLoader(loader, 5)

    vl = make(IndexDataset(50))
    run_epochs(vl, 3)
    next(iter(vl))
    state = vl.state_dict()  # 16 batches in, mid-epoch, mid-pass
    dataset = IndexDataset(50)
    resumed = make(dataset)
    resumed.load_state_dict(state)
    batch = next(iter(resumed))
    assert sorted(dataset.loaded) == sorted(batch.tolist())  # only the batch handed out


@pytest.mark.parametrize("infinite", [True, False])
@pytest.mark.parametrize("new_batch", [1, 2, 5])
def test_batch_size_may_change_the_sample_stream_carries_over(
    infinite: bool, new_batch: int
) -> None:
    def make(batch: int) -> VirtualDataLoader[Any]:
        sampler = InfiniteSampler(10, seed=8) if infinite else None
        generator = None if infinite else torch.Generator().manual_seed(5)
        loader = DataLoader(
            range(10), batch_size=batch, sampler=sampler, shuffle=not infinite, generator=generator
        )
        return VirtualDataLoader(loader, 3)

    def samples(vl: VirtualDataLoader[Any], epochs: int) -> list[int]:
        return [i for epoch in run_epochs(vl, epochs) for batch in epoch for i in batch]

    expected = samples(make(3), 20)  # the uninterrupted sample stream
    old = make(3)
    done = samples(old, 2)  # 6 batches: mid-pass
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


def test_state_is_plain_fresh_and_survives_json_and_torch_load() -> None:
    vl = SHAPES["infinite-sampler"][1]()
    next(iter(vl))
    first = vl.state_dict()
    second = vl.state_dict()
    assert first == second
    assert first is not second
    assert first["resume"] is not second["resume"]
    first["resume"]["seek"]["position"] = -5
    assert vl.state_dict() == second  # mutating a returned state changes nothing
    assert json.loads(json.dumps(second)) == second
    buffer = io.BytesIO()
    torch.save(second, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True) == second


def test_state_at_a_pass_boundary_is_saved_as_the_start_of_the_next_pass() -> None:
    vl = VirtualDataLoader(DataLoader(range(6), batch_size=2), 5)  # 3 batches per pass
    iterator = iter(vl)
    for _ in range(3):
        next(iterator)
    state = vl.state_dict()
    assert (state["pass"], state["batches_in_pass"]) == (1, 0)
    assert state["resume"]["skip"]["samples_in_pass"] == 0


def test_state_after_an_exception_reflects_delivered_batches_only(tmp_path: Any) -> None:
    from _helpers import FailOnce

    def make(dataset: Any) -> VirtualDataLoader[Any]:
        return VirtualDataLoader(
            DataLoader(
                dataset, batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(1)
            ),
            4,
        )

    reference = run_epochs(make(range(12)), 3)
    order = [i for epoch in reference for batch in epoch for i in batch]
    bad = order[5]  # in the third batch
    vl = make(FailOnce(12, bad=bad, error=RuntimeError("bad sample"), marker=tmp_path / "m"))
    with pytest.raises(RuntimeError, match="bad sample"):
        list(vl)
    state = vl.state_dict()
    assert state["steps"] == 2
    resumed = make(range(12))
    resumed.load_state_dict(state)
    assert run_epochs(resumed, 3) == [reference[0][2:], *reference[1:]]


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


def test_custom_batch_sampler_is_skipped_at_the_batch_level_without_loading() -> None:
    def make(dataset: IndexDataset) -> VirtualDataLoader[Any]:
        return VirtualDataLoader(DataLoader(dataset, batch_sampler=VariableBatches(9)), 3)

    vl = make(IndexDataset(9))
    run_epochs(vl, 1)
    state = vl.state_dict()  # batches [0], [1, 2], [3, 4, 5] handed out
    dataset = IndexDataset(9)
    resumed = make(dataset)
    resumed.load_state_dict(state)
    batch = next(iter(resumed))
    assert dataset.loaded == batch.tolist() == [6]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_stateful_dataloader_resumes_exactly_across_passes(num_workers: int) -> None:
    def make() -> VirtualDataLoader[Any]:
        loader = StatefulDataLoader(
            IndexDataset(10),
            batch_size=3,
            shuffle=True,
            generator=torch.Generator().manual_seed(1),
            num_workers=num_workers,
        )
        return VirtualDataLoader(loader, 3)

    assert_resumes_exactly(make, epochs=4, save_at=[0, 1, 4, 5, 8])


@pytest.mark.parametrize(
    "shape", ["infinite-sampler", "shuffle-without-generator", "list-of-batches"]
)
def test_resuming_leaves_the_global_rng_where_the_uninterrupted_run_has_it(shape: str) -> None:
    make = SHAPES[shape][1]
    saved: list[tuple[dict[str, Any], torch.Tensor]] = []

    def train(vl: VirtualDataLoader[Any], epochs: int, save_at: int = -1) -> list[float]:
        # A training step draws random numbers (dropout, say) for every batch.
        out = []
        for _ in range(vl.epoch, epochs):
            for _ in vl:
                out.append(torch.rand(()).item())
                if vl.steps == save_at:
                    saved.append((vl.state_dict(), torch.get_rng_state()))
        return out

    torch.manual_seed(0)
    expected = train(make(), 4, save_at=6)
    state, rng = saved[0]
    resumed = make()
    resumed.load_state_dict(state)
    torch.set_rng_state(rng)
    assert train(resumed, 4) == expected[6:]


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


def test_a_state_without_a_digest_is_refused_when_verify_replay_is_on() -> None:
    source = VirtualDataLoader([[0], [1], [2]], 2)
    next(iter(source))
    with pytest.raises(
        ValueError,
        match=r"state\['resume'\]\['replay'\] has no 'digest': the checkpoint was saved without "
        r"verify_replay=True, so there is nothing to check the replayed batches against; resume "
        r"it with verify_replay=False",
    ):
        VirtualDataLoader([[0], [1], [2]], 2, verify_replay=True).load_state_dict(
            source.state_dict()
        )
