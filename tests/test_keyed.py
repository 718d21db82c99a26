"""keyed: per-sample randomness is a function of (seed, global sample position), nothing else.

Streams of augmented samples must be equal bit for bit whatever loads them (workers, prefetch,
start method, ranks, resume step), differ where the position or seed differs, leave the main
process's global generators as they were, and fail loudly when fed plain indices.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from torch.utils.data import DataLoader, Dataset, RandomSampler, TensorDataset
from torchdata.stateful_dataloader import StatefulDataLoader

from _helpers import CountingStream, IndexDataset, assert_resumes_exactly
from _keyed_data import (
    CONTINUOUS,
    WIDTH,
    Augmented,
    BatchedAugmented,
    WorkerTagged,
    augment,
    keyed_loader,
    tag_worker,
    take,
)
from virtual_epochs import (
    InfiniteSampler,
    KeyedDataset,
    KeyedSampler,
    SampleKey,
    VirtualDataLoader,
)
from virtual_epochs._permutation import index_at
from virtual_epochs._sample_seeds import python_seed, seed_globals

TESTS = Path(__file__).resolve().parent
N, BATCH, SPE, STEPS = 11, 4, 3, 9  # 11 samples, batches of 4: passes end mid-batch

pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


@pytest.fixture(scope="module")
def reference() -> torch.Tensor:
    """The stream in the main process, no workers: what every variation must reproduce."""
    return take(keyed_loader(N, BATCH, SPE), STEPS)


def expected_sample(index: int, position: int, seed: int = 1) -> torch.Tensor:
    """What the sample at ``position`` must be: ``augment(index)`` with the globals keyed."""
    seed_globals(seed, position)
    return augment(index)


# ------------------------------------------------------------------------ the same everywhere


def test_each_sample_is_its_position_keyed_augmentation(reference: torch.Tensor) -> None:
    flat = reference.reshape(-1, WIDTH)
    state = torch.get_rng_state()
    for position, sample in enumerate(flat):
        index = index_at(position, n=N, seed=0, shuffle=True)
        assert torch.equal(sample, expected_sample(index, position)), position
    torch.set_rng_state(state)


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "loader_args",
    [
        {"num_workers": 1},
        {"num_workers": 3, "prefetch_factor": 1},
        {"num_workers": 3, "prefetch_factor": 5, "persistent_workers": True},
        {"num_workers": 2, "multiprocessing_context": "spawn"},
        {"num_workers": 2, "multiprocessing_context": "forkserver"},
        {"num_workers": 0, "pin_memory": True},
        {"num_workers": 2, "pin_memory": True},
    ],
    ids=["1", "3-prefetch1", "3-prefetch5-persistent", "2-spawn", "2-forkserver", "pin0", "pin2"],
)
def test_the_stream_is_bitwise_the_same_whatever_loads_it(
    reference: torch.Tensor, loader_args: dict[str, Any]
) -> None:
    with warnings.catch_warnings():
        # pin_memory without an accelerator warns and does nothing; with one, it pins.
        warnings.filterwarnings("ignore", message=".*pin_memory.*")
        got = take(keyed_loader(N, BATCH, SPE, **loader_args), STEPS)
    assert torch.equal(got, reference)


def test_the_stream_is_the_same_with_batched_fetch(reference: torch.Tensor) -> None:
    dataset = BatchedAugmented(N)
    got = take(keyed_loader(N, BATCH, SPE, dataset=dataset), STEPS)
    assert torch.equal(got, reference)
    # The batched fetch is used, one sample at a time (a batch-wide draw could not be keyed).
    assert len(dataset.calls) == STEPS * BATCH
    assert all(len(call) == 1 for call in dataset.calls)


def test_the_stream_is_the_same_without_auto_batching(reference: torch.Tensor) -> None:
    # batch_size=None: the DataLoader calls __getitem__ per sample (no __getitems__).
    sampler = KeyedSampler(InfiniteSampler(N, seed=0), seed=1)
    loader = DataLoader(KeyedDataset(Augmented(N)), batch_size=None, sampler=sampler)
    samples = torch.stack(list(itertools.islice(loader, STEPS * BATCH)))
    assert torch.equal(samples, reference.reshape(-1, WIDTH))


@pytest.mark.timeout(120)
def test_worker_init_fn_still_runs_and_cannot_change_the_draws(reference: torch.Tensor) -> None:
    got = take(
        keyed_loader(
            N, BATCH, SPE, dataset=WorkerTagged(N), num_workers=2, worker_init_fn=tag_worker
        ),
        STEPS,
    )
    assert set(got[..., -1].unique().tolist()) == {100.0, 101.0}  # both workers ran it
    assert torch.equal(got[..., :-1], reference)


def test_resuming_at_every_step_gives_the_uninterrupted_stream() -> None:
    assert_resumes_exactly(lambda: keyed_loader(N, BATCH, SPE), epochs=4)


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("before", "after"), [(0, 2), (3, 1)])
def test_resuming_with_another_num_workers_gives_the_uninterrupted_stream(
    reference: torch.Tensor, before: int, after: int
) -> None:
    for step in (1, 5):
        vl = keyed_loader(N, BATCH, SPE, num_workers=before)
        head = take(vl, step)
        state = json.loads(json.dumps(vl.state_dict()))
        resumed = keyed_loader(N, BATCH, SPE, num_workers=after)
        resumed.load_state_dict(state)
        assert torch.equal(torch.cat([head, take(resumed, STEPS - step)]), reference), step


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_together_yield_the_single_rank_stream(world_size: int) -> None:
    # Same global batch: world_size ranks of 2 samples against 1 rank of 2 * world_size.
    single = take(keyed_loader(N, 2 * world_size, SPE), STEPS).reshape(-1, WIDTH)
    ranks = [
        take(keyed_loader(N, 2, SPE, rank=r, world_size=world_size), STEPS)
        for r in range(world_size)
    ]
    # Rank r holds positions start + r, start + r + W, ...: interleave the rows.
    rows = torch.stack(ranks, dim=2).reshape(-1, WIDTH)
    assert torch.equal(rows, single)


def test_a_resume_on_another_number_of_ranks_continues_the_stream() -> None:
    single = take(keyed_loader(N, 6, SPE), 6).reshape(-1, WIDTH)
    two = [keyed_loader(N, 3, SPE, rank=r, world_size=2) for r in range(2)]
    head = torch.stack([take(vl, 2) for vl in two], dim=2).reshape(-1, WIDTH)
    state = two[0].state_dict()
    three = [keyed_loader(N, 2, SPE, rank=r, world_size=3) for r in range(3)]
    for vl in three:
        vl.load_state_dict(state)
    tail = torch.stack([take(vl, 4) for vl in three], dim=2).reshape(-1, WIDTH)
    assert torch.equal(torch.cat([head, tail]), single)


def test_the_stream_ignores_the_global_rng_and_a_changed_batch_size(
    reference: torch.Tensor,
) -> None:
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    got = take(keyed_loader(N, 2 * BATCH, SPE), STEPS // 3)
    flat = got.reshape(-1, WIDTH)
    assert torch.equal(flat, reference.reshape(-1, WIDTH)[: len(flat)])


def test_torchdata_stateful_dataloader_resumes_the_keyed_sampler(reference: torch.Tensor) -> None:
    def make() -> StatefulDataLoader:
        sampler = KeyedSampler(InfiniteSampler(N, seed=0), seed=1)
        return StatefulDataLoader(KeyedDataset(Augmented(N)), batch_size=BATCH, sampler=sampler)

    loader = make()
    head = list(itertools.islice(iter(loader), 4))
    state = loader.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    tail = list(itertools.islice(iter(resumed), STEPS - 4))
    assert torch.equal(torch.stack(head + tail), reference)


# --------------------------------------------------------------------- different where it must


def test_the_same_index_in_the_next_pass_gets_new_draws() -> None:
    flat = take(keyed_loader(N, 1, N), 3 * N).reshape(-1, WIDTH)
    by_index: dict[float, list[torch.Tensor]] = {}
    for sample in flat:
        by_index.setdefault(float(sample[0]), []).append(sample[CONTINUOUS])
    assert len(by_index) == N
    for index, draws in by_index.items():
        assert len(draws) == 3
        for a, b in itertools.combinations(draws, 2):
            assert not torch.any(a == b), f"index {index}: a draw repeated in another pass"


def test_another_seed_gives_other_draws_and_the_same_order(reference: torch.Tensor) -> None:
    other = take(keyed_loader(N, BATCH, SPE, keyed_seed=2), STEPS)
    assert torch.equal(other[..., 0], reference[..., 0])  # same indices
    assert not torch.any(other[..., CONTINUOUS] == reference[..., CONTINUOUS])


def test_explicit_generators_depend_on_seed_and_position_only() -> None:
    def draws(key: SampleKey) -> tuple[float, float]:
        return float(torch.rand((), generator=key.torch_generator())), float(
            key.numpy_generator().random()
        )

    assert draws(SampleKey(1, 9, 4)) == draws(SampleKey(7, 9, 4))
    assert draws(SampleKey(1, 9, 4)) != draws(SampleKey(1, 10, 4))
    assert draws(SampleKey(1, 9, 4)) != draws(SampleKey(1, 9, 5))
    # Not the stream the global generator gets for the same key.
    seed_globals(4, 9)
    assert float(torch.rand(())) != draws(SampleKey(1, 9, 4))[0]


def test_control_worker_seeded_augmentations_change_with_workers_and_resume() -> None:
    # The same pipeline seeded the usual way: the DataLoader seeds each worker at iter().
    def make(workers: int) -> VirtualDataLoader[Any]:
        loader = DataLoader(
            Augmented(N),
            batch_size=BATCH,
            sampler=InfiniteSampler(N, seed=0),
            num_workers=workers,
            generator=torch.Generator().manual_seed(0),
        )
        return VirtualDataLoader(loader, SPE)

    one = take(make(1), STEPS)
    assert torch.equal(one, take(make(1), STEPS))  # deterministic for one setting...
    assert torch.equal(one[..., 0], take(make(2), STEPS)[..., 0])  # ...and the same samples,
    assert not torch.equal(one, take(make(2), STEPS))  # but other draws with 2 workers
    vl = make(1)
    head = take(vl, 4)
    resumed = make(1)
    resumed.load_state_dict(vl.state_dict())
    resumed_stream = torch.cat([head, take(resumed, STEPS - 4)])
    assert torch.equal(resumed_stream[..., 0], one[..., 0])
    assert not torch.equal(resumed_stream, one)  # a resume changes the augmentations


def test_seeding_random_is_exactly_random_seed() -> None:
    saved = random.getstate()
    random.gauss(0, 1)  # leaves a cached normal sample, which seeding must drop
    seed_globals(3, 77)
    state = random.getstate()
    random.seed(python_seed(3, 77))
    assert random.getstate() == state
    random.setstate(saved)


# ------------------------------------------------------------------------- independence


def test_first_draws_over_many_positions_are_uniform_and_uncorrelated() -> None:
    count = 100_000
    saved = torch.get_rng_state(), random.getstate(), np.random.get_state()
    draws = np.empty((5, count))
    for position in range(count):
        seed_globals(0, position)
        key = SampleKey(0, position, 0)
        draws[:, position] = (
            torch.rand((), dtype=torch.float64).item(),
            random.random(),
            np.random.rand(),
            torch.rand((), dtype=torch.float64, generator=key.torch_generator()).item(),
            key.numpy_generator().random() if position < count // 5 else np.nan,
        )
    torch.set_rng_state(saved[0])
    random.setstate(saved[1])
    np.random.set_state(saved[2])
    names = ["torch", "random", "numpy", "torch_generator", "numpy_generator"]
    for name, row in zip(names, draws, strict=True):
        values = row[~np.isnan(row)]
        assert stats.kstest(values, "uniform").pvalue > 1e-3, name
        # Neighbouring positions are uncorrelated (|r| ~ 1/sqrt(count) by chance).
        limit = 5 / np.sqrt(len(values))
        for lag in (1, 2, 1024):
            r = np.corrcoef(values[:-lag], values[lag:])[0, 1]
            assert abs(r) < limit, f"{name}, lag {lag}: r = {r:.4f}"
    # The streams of one position are independent of each other.
    for a, b in itertools.combinations(range(4), 2):
        r = np.corrcoef(draws[a], draws[b])[0, 1]
        assert abs(r) < 5 / np.sqrt(count), f"{names[a]} vs {names[b]}: r = {r:.4f}"
    # Pairs of neighbours fill the unit square evenly (a 10 x 10 chi-square).
    for name, row in zip(names[:3], draws[:3], strict=True):
        cells = np.histogram2d(row[:-1], row[1:], bins=10, range=[[0, 1], [0, 1]])[0]
        assert stats.chisquare(cells.ravel()).pvalue > 1e-3, name


# ------------------------------------------------------------------ the main process's RNG


def _global_draws() -> tuple[Any, ...]:
    return (
        torch.rand(3).tolist(),
        torch.randn(1).item(),
        random.random(),
        random.gauss(0, 1),
        np.random.rand(),
        np.random.normal(),
    )


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    # Leave a cached normal sample in each (torch, random and numpy keep the pair's second).
    torch.randn(1)
    random.gauss(0, 1)
    np.random.normal()


@pytest.mark.parametrize("batch_size", [BATCH, None], ids=["batched", "per-sample"])
def test_global_rng_is_restored_after_each_batch_without_workers(batch_size: int | None) -> None:
    _seed_all(5)
    expected = _global_draws()
    _seed_all(5)
    sampler = KeyedSampler(InfiniteSampler(N, seed=0), seed=1)
    loader = DataLoader(
        KeyedDataset(Augmented(N)),
        batch_size=batch_size,
        sampler=sampler,
        generator=torch.Generator(),
    )
    iterator = iter(loader)
    for _ in range(3):
        next(iterator)
    assert _global_draws() == expected


def test_global_rng_is_restored_when_a_sample_fails() -> None:
    class Failing(Dataset[int]):
        def __getitem__(self, index: int) -> int:
            torch.rand(5)
            raise KeyError(index)

    _seed_all(5)
    expected = _global_draws()
    _seed_all(5)
    for call in (
        lambda: KeyedDataset(Failing())[SampleKey(0, 0, 0)],
        lambda: KeyedDataset(Failing()).__getitems__([SampleKey(0, 0, 0)]),
    ):
        with pytest.raises(KeyError):
            call()
    assert _global_draws() == expected


# ---------------------------------------------------------------------------- the sampler


@settings(deadline=None, max_examples=40)
@given(
    n=st.integers(1, 50),
    world_size=st.integers(1, 4),
    data=st.data(),
    start=st.integers(0, 200),
    seed=st.integers(0, 3),
)
def test_keys_carry_the_global_position_of_each_index(
    n: int, world_size: int, data: st.DataObject, start: int, seed: int
) -> None:
    rank = data.draw(st.integers(0, world_size - 1))
    inner = InfiniteSampler(n, seed=seed, rank=rank, world_size=world_size, start=start)
    keys = list(itertools.islice(KeyedSampler(inner, seed=9), 30))
    positions = [start + rank + k * world_size for k in range(30)]
    assert [key.position for key in keys] == positions
    assert [key.index for key in keys] == [
        index_at(p, n=n, seed=seed, shuffle=True) for p in positions
    ]
    assert {key.seed for key in keys} == {9}


def test_sampler_is_a_seekable_sampler_with_the_inner_settings() -> None:
    inner = InfiniteSampler(N, seed=3, rank=1, world_size=2)
    sampler = KeyedSampler(inner, seed=4)
    assert (sampler.rank, sampler.world_size, sampler.start, sampler.seed) == (1, 2, 0, 4)
    assert sampler.sampler is inner
    assert sampler.fingerprint() == {**inner.fingerprint(), "keyed_seed": 4}
    sampler.seek(10)
    assert inner.start == 10
    assert next(iter(sampler)).position == 11


class _LateRanks:
    """A user's own SeekableSampler whose rank is known only once "the process group" is up."""

    def __init__(self) -> None:
        self.ready = False
        self.start = 0

    @property
    def rank(self) -> int:
        if not self.ready:
            raise RuntimeError("no process group yet")
        return 1

    @property
    def world_size(self) -> int:
        if not self.ready:
            raise RuntimeError("no process group yet")
        return 2

    def seek(self, position: int) -> None:
        self.start = position

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "late"}

    def __iter__(self) -> Any:
        return itertools.count(100)


def test_rank_and_world_size_are_read_at_iteration_not_when_built() -> None:
    inner = _LateRanks()
    sampler = KeyedSampler(inner, seed=2)  # before "init_process_group": no error
    inner.ready = True
    sampler.seek(10)
    keys = list(itertools.islice(sampler, 3))
    assert [(key.index, key.position) for key in keys] == [(100, 11), (101, 13), (102, 15)]


def test_sampler_state_dict_round_trips_through_json() -> None:
    sampler = KeyedSampler(InfiniteSampler(N, seed=3, rank=1, world_size=2), seed=4)
    assert sampler.state_dict()["start"] == 0
    iterator = iter(sampler)
    for _ in range(3):
        next(iterator)
    state = json.loads(json.dumps(sampler.state_dict()))
    assert state["start"] == 6
    other = KeyedSampler(InfiniteSampler(N, seed=3, world_size=3), seed=4)
    other.load_state_dict(state)
    assert next(iter(other)).position == 6


def test_a_checkpoint_with_another_keyed_seed_or_none_is_refused() -> None:
    keyed = keyed_loader(N, BATCH, SPE)
    take(keyed, 2)
    other = keyed_loader(N, BATCH, SPE, keyed_seed=2)
    with pytest.raises(ValueError, match=r"\['keyed_seed'\] is 1 but this loader has 2"):
        other.load_state_dict(keyed.state_dict())
    plain = VirtualDataLoader(
        DataLoader(Augmented(N), batch_size=BATCH, sampler=InfiniteSampler(N, seed=0)), SPE
    )
    with pytest.raises(ValueError, match=r"\['keyed_seed'\] is '<absent>' but this loader has 1"):
        keyed.load_state_dict(plain.state_dict())
    with pytest.raises(ValueError, match=r"KeyedSampler state\['keyed_seed'\] is 1"):
        KeyedSampler(InfiniteSampler(N), seed=2).load_state_dict(
            KeyedSampler(InfiniteSampler(N), seed=1).state_dict()
        )


# ------------------------------------------------------------------------------- misuse

USE = r"give the DataLoader sampler=KeyedSampler\(InfiniteSampler\(dataset, seed=\.\.\.\)\)"


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: KeyedSampler(RandomSampler(range(3))),
            TypeError,
            (
                r"'sampler' must be an endless SeekableSampler with a 'rank', such as "
                r"InfiniteSampler\(dataset, seed=...\) \(got <torch.utils.data.sampler."
                r"RandomSampler.*for DataLoader\(shuffle=True\) use InfiniteSampler"
            ),
        ),
        (
            lambda: KeyedSampler(KeyedSampler(InfiniteSampler(3))),
            TypeError,
            "'sampler' is already a KeyedSampler; wrap the InfiniteSampler once",
        ),
        (
            lambda: KeyedSampler(InfiniteSampler(3), seed=True),
            TypeError,
            r"'seed' must be an int >= 0 \(got True of type bool\)",
        ),
        (
            lambda: KeyedSampler(InfiniteSampler(3), seed=-1),
            ValueError,
            r"'seed' must be an int >= 0 \(got -1\)",
        ),
        (
            lambda: KeyedSampler(InfiniteSampler(3), seed=1 << 64),
            ValueError,
            r"'seed' must be below 2\*\*64 \(got 18446744073709551616\)",
        ),
        (
            lambda: len(KeyedSampler(InfiniteSampler(3))),
            TypeError,
            r"KeyedSampler is endless and has no length; wrap the DataLoader in VirtualDataLoader",
        ),
        (
            lambda: KeyedDataset(IndexDataset(3))[2],
            TypeError,
            (
                rf"expected a SampleKey from a KeyedSampler \(got 2 of type int\): {USE}; plain "
                r"samplers \(shuffle=True, RandomSampler, DistributedSampler, a bare "
                r"InfiniteSampler\) carry no sample positions"
            ),
        ),
        (
            lambda: KeyedDataset(IndexDataset(3)).__getitems__([SampleKey(0, 0, 0), 1]),
            TypeError,
            rf"expected a SampleKey from a KeyedSampler \(got 1 of type int\): {USE}",
        ),
        (
            lambda: next(iter(DataLoader(KeyedDataset(IndexDataset(3)), shuffle=True))),
            TypeError,
            rf"\(got \d of type int\): {USE}",
        ),
        (  # the skip path of VirtualDataLoader: an error that points to InfiniteSampler
            lambda: next(
                iter(VirtualDataLoader(DataLoader(KeyedDataset(IndexDataset(3)), shuffle=True), 2))
            ),
            TypeError,
            rf"expected a SampleKey from a KeyedSampler \(got \d of type int\): {USE}",
        ),
        (
            lambda: next(
                iter(
                    DataLoader(
                        KeyedDataset(IndexDataset(3)), batch_size=2, sampler=InfiniteSampler(3)
                    )
                )
            ),
            TypeError,
            rf"expected a SampleKey from a KeyedSampler \(got \d of type int\): {USE}",
        ),
        (
            lambda: KeyedDataset(CountingStream(3)),
            TypeError,
            (
                r"'dataset' must be a map-style dataset, with __getitem__ \(got <"
                r".*an iterable dataset has no indices"
            ),
        ),
        (
            lambda: KeyedDataset(KeyedDataset(IndexDataset(3))),
            TypeError,
            "'dataset' is already a KeyedDataset; wrap the dataset once",
        ),
        (
            lambda: len(KeyedDataset(_NoLength())),
            TypeError,
            r"the wrapped dataset <.* of type _NoLength has no length",
        ),
        (
            lambda: KeyedDataset(_BadBatched())[SampleKey(2, 0, 0)],
            TypeError,
            (
                r"_BadBatched.__getitems__\(\[2\]\) must return a list of one sample \(got "
                r"\{'x': \[2\]\} of type dict\); KeyedDataset fetches one sample at a time"
            ),
        ),
    ],
)
def test_misuse_is_refused_with_what_to_do(make: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    ("generators", "error", "match"),
    [
        (
            "torch",
            TypeError,
            (
                r"'generators' must be a tuple of names from \('torch', 'random', 'numpy'\) \(got "
                r"'torch' of type str\)"
            ),
        ),
        (
            ("torch", "cuda"),
            ValueError,
            (
                r"'generators' must hold names from \('torch', 'random', 'numpy'\) \(got 'cuda' "
                r"in \('torch', 'cuda'\)\)"
            ),
        ),
        (
            (),
            ValueError,
            (
                r"'generators' must name at least one of .* \(got \(\)\); with none, use the "
                "dataset without KeyedDataset"
            ),
        ),
    ],
)
def test_generators_must_be_known_names(
    generators: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        KeyedDataset(IndexDataset(3), generators=generators)


def test_only_the_chosen_generators_are_seeded_and_restored() -> None:
    dataset = KeyedDataset(Augmented(N), generators=["torch"])
    assert dataset.generators == ("torch",)
    assert KeyedDataset(Augmented(N)).generators == ("torch", "random", "numpy")
    key = SampleKey(3, 8, 1)
    random.seed(0)
    np.random.seed(0)
    first = dataset[key]
    random.seed(1)
    np.random.seed(1)
    second = dataset[key]
    # torch's draws are keyed; random's and numpy's come from wherever the globals stood...
    assert torch.equal(first[:10], second[:10])
    assert not torch.equal(first[10:], second[10:])
    # ...and were not restored: the sample drew from them.
    random.seed(1)
    np.random.seed(1)
    dataset[key]
    assert random.random() != random.Random(1).random()


class _NoLength(Dataset[int]):
    def __getitem__(self, index: int) -> int:
        return index


class _BadBatched(_NoLength):
    def __getitems__(self, indices: list[int]) -> dict[str, list[int]]:
        return {"x": indices}


def test_a_plain_dataset_fed_keys_fails_instead_of_indexing_with_them() -> None:
    # A SampleKey is no tuple and no int: a 3-d tensor cannot quietly be indexed by it.
    images = TensorDataset(torch.zeros(5, 4, 4))
    loader = DataLoader(images, batch_size=2, sampler=KeyedSampler(InfiniteSampler(5)))
    with pytest.raises((TypeError, IndexError), match="SampleKey"):
        next(iter(loader))


def test_sample_key_is_a_plain_value() -> None:
    key = SampleKey(1, 2, 3)
    assert key == SampleKey(1, 2, 3)
    assert key != SampleKey(1, 2, 4)
    assert key != (1, 2, 3)
    assert len({key, SampleKey(1, 2, 3)}) == 1
    assert SampleKey.check(key) is key


# ------------------------------------------------------------- SIGKILL, then a fresh process

CHILD = """
import json, os, sys
from _keyed_data import keyed_loader

workers, checkpoint, out, total = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
vl = keyed_loader(11, 4, 3, num_workers=workers)
if os.path.exists(checkpoint):
    with open(checkpoint) as f:
        vl.load_state_dict(json.load(f))
with open(out, "a") as lines:
    while vl.steps < total:
        for batch in vl:
            lines.write(json.dumps([vl.steps, batch.tolist()]) + "\\n")
            lines.flush()
            with open(checkpoint + ".tmp", "w") as f:
                json.dump(vl.state_dict(), f)
            os.replace(checkpoint + ".tmp", checkpoint)
            print(vl.steps, flush=True)
            if vl.steps == total:
                break
"""


@pytest.mark.timeout(180)
def test_a_run_killed_with_sigkill_resumes_in_a_fresh_process_with_other_workers(
    tmp_path: Path,
) -> None:
    total = 12
    checkpoint, out = tmp_path / "state.json", tmp_path / "batches.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }

    def command(workers: int) -> list[str]:
        return [sys.executable, "-c", CHILD, str(workers), str(checkpoint), str(out), str(total)]

    with subprocess.Popen(
        command(2), stdout=subprocess.PIPE, text=True, env=env, start_new_session=True
    ) as child:
        try:
            assert child.stdout is not None
            for line in child.stdout:
                if int(line) >= 5:
                    os.killpg(child.pid, signal.SIGKILL)  # the run and its workers, no cleanup
                    break
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    killed_at = json.loads(checkpoint.read_text())["steps"]
    assert 5 <= killed_at < total
    subprocess.run(command(1), env=env, check=True, timeout=120, capture_output=True)
    stream: dict[int, Any] = {}
    for line in out.read_text().splitlines():
        step, batch = json.loads(line)
        assert stream.setdefault(step, batch) == batch  # a step written twice: the same batch
    assert sorted(stream) == list(range(1, total + 1))
    got = torch.tensor([stream[step] for step in sorted(stream)], dtype=torch.float64)
    assert torch.equal(got, take(keyed_loader(N, BATCH, SPE), total))
