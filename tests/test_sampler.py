"""``InfiniteSampler``: an endless, sharded, resumable stream that is a pure function of its inputs.

The reference for every stream below is the global sample order of ``_permutation`` (itself
tested against the scalar ``index_at`` in ``test_permutation.py``): rank ``r`` of ``W`` must
yield global positions ``start + r, start + r + W, ...`` of it, across chunk boundaries, resumes
and changes of world size.
"""

from __future__ import annotations

import copy
import itertools
import json
import pickle
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from _helpers import IndexDataset
from virtual_epochs import InfiniteSampler
from virtual_epochs import _permutation as permutation
from virtual_epochs._permutation import index_at

# Where the sampler's chunks end with the default chunk sizes (1024, 2048, 4096, ...), and the
# positions on either side: resuming must not depend on where a chunk happens to end.
CHUNK_EDGES = (1023, 1024, 1025, 3071, 3072, 3073, 7168, 15360, 31744, 64512, 97280)


def global_stream(
    n: int, start: int, count: int, *, seed: int = 0, shuffle: bool = True
) -> list[int]:
    """Return the indices at global positions ``start .. start + count - 1``."""
    return permutation.indices(start, 1, count, n=n, seed=seed, shuffle=shuffle).tolist()


def take(iterator: Iterator[int], count: int) -> list[int]:
    return list(itertools.islice(iterator, count))


def interleave(samplers: list[InfiniteSampler], rows: int) -> list[int]:
    """Return ``rows`` rows of one index from each rank, rank by rank: the global order."""
    iterators = [iter(sampler) for sampler in samplers]
    return [next(it) for _ in range(rows) for it in iterators]


def ranks(world_size: int, n: int, **kwargs: Any) -> list[InfiniteSampler]:
    return [
        InfiniteSampler(n, rank=rank, world_size=world_size, **kwargs) for rank in range(world_size)
    ]


# --- The stream ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 7, 1024, 1025, 10**6])
def test_it_yields_forever_the_global_stream(n: int) -> None:
    # 100_000 indices cross many chunks (1024, 2048, ... 32768) and, for small n, many passes.
    got = take(iter(InfiniteSampler(n, seed=5)), 100_000)
    assert got == global_stream(n, 0, 100_000, seed=5)
    assert all(type(index) is int for index in got[:5])


@pytest.mark.parametrize("n", [1, 3, 10, 1025])
def test_every_pass_is_a_permutation(n: int) -> None:
    got = take(iter(InfiniteSampler(n, seed=9)), 20 * n)
    for p in range(20):
        assert sorted(got[p * n : (p + 1) * n]) == list(range(n))
    if n >= 10:
        assert got[:n] != got[n : 2 * n]  # a new shuffle every pass


@pytest.mark.parametrize(
    ("n", "seed", "shuffle", "start"),
    [
        (5, 0, True, 0),
        (5, 2**64 - 1, True, 3),
        (1024, 7, True, 1000),
        (1025, 7, True, 1000),
        (7, 3, False, 12),
        (10**10, 1, True, 10**12),
    ],
)
def test_the_stream_is_the_scalar_pure_function(
    n: int, seed: int, shuffle: bool, start: int
) -> None:
    sampler = InfiniteSampler(n, seed=seed, shuffle=shuffle, start=start)
    expected = [index_at(start + j, n=n, seed=seed, shuffle=shuffle) for j in range(1500)]
    assert take(iter(sampler), 1500) == expected


def test_without_shuffle_it_counts() -> None:
    assert take(iter(InfiniteSampler(4, shuffle=False, seed=123)), 10) == [
        0,
        1,
        2,
        3,
        0,
        1,
        2,
        3,
        0,
        1,
    ]


def test_seed_and_shuffle_decide_the_order() -> None:
    streams = [take(iter(InfiniteSampler(100, seed=seed)), 300) for seed in range(5)]
    assert len({tuple(s) for s in streams}) == 5
    assert take(iter(InfiniteSampler(100, seed=3)), 300) == streams[3]  # deterministic


def test_a_sized_dataset_gives_its_length() -> None:
    dataset = torch.utils.data.TensorDataset(torch.zeros(13, 2))
    sampler = InfiniteSampler(dataset, seed=4)
    assert sampler.num_samples == 13
    assert take(iter(sampler), 100) == take(iter(InfiniteSampler(13, seed=4)), 100)
    assert InfiniteSampler(range(6)).num_samples == 6


def test_settings_are_readable() -> None:
    sampler = InfiniteSampler(10, seed=3, shuffle=False, rank=1, world_size=4, start=8)
    assert (sampler.num_samples, sampler.seed, sampler.shuffle) == (10, 3, False)
    assert (sampler.rank, sampler.world_size, sampler.start) == (1, 4, 8)
    assert sampler.fingerprint() == {"num_samples": 10, "seed": 3, "shuffle": False}


def test_it_has_no_length() -> None:
    with pytest.raises(TypeError, match=r"endless and has no length.*VirtualDataLoader"):
        len(InfiniteSampler(10))


# --- Global random state -------------------------------------------------------------------------


def test_the_global_random_state_neither_decides_nor_changes() -> None:
    torch.manual_seed(0)
    first = take(iter(InfiniteSampler(1000, seed=2)), 5000)
    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)  # the global numpy state is what is checked here
    states = (torch.get_rng_state(), random.getstate(), pickle.dumps(np.random.get_state()))
    for n in (1000, 10**6):
        sampler = InfiniteSampler(n, seed=2)
        got = take(iter(sampler), 5000)
        sampler.load_state_dict(sampler.state_dict())
        take(iter(sampler), 10)
    assert got == global_stream(10**6, 0, 5000, seed=2)
    assert take(iter(InfiniteSampler(1000, seed=2)), 5000) == first
    torch_state, python_state, numpy_state = states
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == python_state
    assert pickle.dumps(np.random.get_state()) == numpy_state


# --- Shards --------------------------------------------------------------------------------------


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("n", [1, 3, 10, 1025])
def test_ranks_interleave_into_the_single_process_stream(world_size: int, n: int) -> None:
    rows = 1200  # past the first chunk of every rank
    for start in (0, 5):
        got = interleave(ranks(world_size, n, seed=11, start=start), rows)
        assert got == global_stream(n, start, rows * world_size, seed=11)


@pytest.mark.parametrize(("n", "world_size"), [(3, 5), (3, 1000), (1, 64), (10, 11), (1025, 1100)])
def test_more_ranks_than_samples(n: int, world_size: int) -> None:
    rows = 3
    got = interleave(ranks(world_size, n, seed=1), rows)
    assert got == global_stream(n, 0, rows * world_size, seed=1)
    for p in range(rows * world_size // n):  # every whole pass is still a permutation
        assert sorted(got[p * n : (p + 1) * n]) == list(range(n))


@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_ranks_cover_each_window_of_positions_exactly_once(world_size: int) -> None:
    # Without shuffling and with n beyond the positions used, an index is its global position.
    start = 10**9 + 3
    rows = 5000
    seen = [take(iter(s), rows) for s in ranks(world_size, 10**12, shuffle=False, start=start)]
    for rank, positions in enumerate(seen):
        assert positions == list(range(start + rank, start + rows * world_size, world_size))
    for row in range(rows):  # each window of world_size positions: once each
        window = sorted(positions[row] for positions in seen)
        assert window == list(range(start + row * world_size, start + (row + 1) * world_size))


# --- Start, seek, huge positions -----------------------------------------------------------------


@pytest.mark.parametrize("start", [0, 1, 1023, 1024, 5000, 99_999])
def test_start_skips_to_a_global_position(start: int) -> None:
    assert take(iter(InfiniteSampler(77, seed=6, start=start)), 3000) == global_stream(
        77, start, 3000, seed=6
    )


@pytest.mark.parametrize(
    ("n", "start"),
    [
        (10**10, 10**12),
        (10**10, 10**12 + 7),
        (10**6, 10**12),
        (1000, 10**12),
        (2**62 + 1, 2**62),  # n above 2**62, at the largest start
    ],
)
def test_a_huge_start_is_exact(n: int, start: int) -> None:
    got = take(iter(InfiniteSampler(n, seed=8, start=start, rank=1, world_size=3)), 2000)
    assert got[:20] == [index_at(start + 1 + 3 * j, n=n, seed=8, shuffle=True) for j in range(20)]
    assert got == permutation.indices(start + 1, 3, 2000, n=n, seed=8, shuffle=True).tolist()


def test_the_first_index_costs_a_small_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    # Constant memory and a quick first index, whatever the position: the first chunk is small
    # and chunks grow to a bounded size.
    counts: list[int] = []
    real = permutation.indices

    def spy(first: int, stride: int, count: int, **kwargs: Any) -> torch.Tensor:
        counts.append(count)
        return real(first, stride, count, **kwargs)

    monkeypatch.setattr(permutation, "indices", spy)
    iterator = iter(InfiniteSampler(10**10, seed=1, start=10**12))
    assert next(iterator) == index_at(10**12, n=10**10, seed=1, shuffle=True)
    assert counts == [counts[0]]
    assert 1 <= counts[0] <= 4096
    take(iterator, 300_000)
    assert counts == sorted(counts)
    assert max(counts) <= 1 << 16


def test_seek_moves_the_next_iterator_only() -> None:
    sampler = InfiniteSampler(50, seed=2)
    old = iter(sampler)
    take(old, 10)
    sampler.seek(1234)
    assert sampler.start == 1234
    assert sampler.state_dict()["start"] == 1234
    assert take(old, 5) == global_stream(50, 10, 5, seed=2)  # unaffected
    assert take(iter(sampler), 100) == global_stream(50, 1234, 100, seed=2)


def test_a_new_iterator_starts_again_from_start() -> None:
    sampler = InfiniteSampler(20, seed=3, start=4)
    first = take(iter(sampler), 50)
    assert take(iter(sampler), 50) == first == global_stream(20, 4, 50, seed=3)


# --- State ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("world_size", "consumed"),
    [(1, consumed) for consumed in (0, 1, 2, *CHUNK_EDGES)]
    + [(3, consumed) for consumed in (0, 1, *CHUNK_EDGES[:7])],
)
def test_resume_equals_the_uninterrupted_stream(world_size: int, consumed: int) -> None:
    n = 1000
    samplers = ranks(world_size, n, seed=4, start=17)
    iterators = [iter(s) for s in samplers]
    for it in iterators:
        take(it, consumed)
    states = [s.state_dict() for s in samplers]
    assert states[0]["start"] == 17 + consumed * world_size
    assert all(state == states[0] for state in states)  # the same on every rank
    expected = [take(it, 1500) for it in iterators]  # the uninterrupted run
    for rank, state in enumerate(states):
        resumed = InfiniteSampler(n, seed=4, rank=rank, world_size=world_size)
        resumed.load_state_dict(state)
        assert take(iter(resumed), 1500) == expected[rank]


@pytest.mark.parametrize(("saved_on", "resumed_on"), [(4, 3), (3, 4), (8, 1), (1, 8), (2, 2)])
def test_resume_on_another_world_size_continues_the_global_stream(
    saved_on: int, resumed_on: int
) -> None:
    n, rows = 333, 1500
    samplers = ranks(saved_on, n, seed=21)
    before = interleave(samplers, rows)
    state = samplers[saved_on - 1].state_dict()
    assert state["start"] == rows * saved_on
    resumed = ranks(resumed_on, n, seed=21)
    for sampler in resumed:
        sampler.load_state_dict(state)
    after = interleave(resumed, rows)
    assert before + after == global_stream(n, 0, rows * (saved_on + resumed_on), seed=21)


def test_state_before_iterating_is_the_start() -> None:
    sampler = InfiniteSampler(9, seed=1, start=5, rank=1, world_size=2)
    assert sampler.state_dict() == {
        "version": 1,
        "start": 5,
        "num_samples": 9,
        "seed": 1,
        "shuffle": True,
        "shuffle_order": 2,
    }
    iterator = iter(sampler)
    assert sampler.state_dict()["start"] == 5  # nothing consumed yet
    next(iterator)
    assert sampler.state_dict()["start"] == 7  # one row of two positions


def test_state_follows_the_latest_iterator() -> None:
    sampler = InfiniteSampler(30, seed=1)
    first = iter(sampler)
    take(first, 40)
    second = iter(sampler)
    take(second, 3)
    assert sampler.state_dict()["start"] == 3
    take(first, 10)
    assert sampler.state_dict()["start"] == 3


def test_state_is_a_fresh_plain_dict() -> None:
    sampler = InfiniteSampler(10, seed=2**64 - 1)
    take(iter(sampler), 7)
    state = sampler.state_dict()
    assert state is not sampler.state_dict()
    state["start"] = 0
    state["seed"] = 5
    assert sampler.state_dict()["start"] == 7
    assert sampler.state_dict()["seed"] == 2**64 - 1
    assert {type(value) for value in sampler.state_dict().values()} <= {int, bool}


def test_state_survives_json_torch_save_pickle_and_copy(tmp_path: Path) -> None:
    sampler = InfiniteSampler(1000, seed=2**64 - 1, rank=1, world_size=2)
    iterator = iter(sampler)
    take(iterator, 1500)
    state = sampler.state_dict()
    torch.save(state, tmp_path / "state.pt")
    copies = [
        json.loads(json.dumps(state)),
        torch.load(tmp_path / "state.pt", weights_only=True),
        pickle.loads(pickle.dumps(state)),  # our own bytes
    ]
    expected = take(iterator, 100)
    for saved in copies:
        assert saved == state
        resumed = InfiniteSampler(1000, seed=2**64 - 1, rank=1, world_size=2)
        resumed.load_state_dict(saved)
        assert take(iter(resumed), 100) == expected


def test_a_sampler_pickles_and_copies_with_its_position() -> None:
    sampler = InfiniteSampler(100, seed=5, world_size=2, rank=0)
    take(iter(sampler), 1500)
    for clone in (pickle.loads(pickle.dumps(sampler)), copy.deepcopy(sampler)):
        assert clone.state_dict() == sampler.state_dict()
        assert clone.fingerprint() == sampler.fingerprint()


@settings(deadline=None, max_examples=40)
@given(
    n=st.one_of(st.integers(1, 2000), st.integers(1, 10**15)),
    world_size=st.integers(1, 9),
    seed=st.integers(0, 2**64 - 1),
    shuffle=st.booleans(),
    start=st.one_of(st.integers(0, 5000), st.integers(0, 10**15)),
    data=st.data(),
)
def test_any_rank_resumes_exactly_hypothesis(
    n: int, world_size: int, seed: int, shuffle: bool, start: int, data: st.DataObject
) -> None:
    rank = data.draw(st.integers(0, world_size - 1), label="rank")
    consumed = data.draw(st.integers(0, 5000), label="consumed")
    settings_: dict[str, Any] = {"seed": seed, "shuffle": shuffle, "world_size": world_size}
    sampler = InfiniteSampler(n, rank=rank, start=start, **settings_)
    iterator = iter(sampler)
    head = take(iterator, consumed)
    state = sampler.state_dict()
    assert state["start"] == start + consumed * world_size
    tail = take(iterator, 200)
    positions = permutation.indices(
        start + rank, world_size, consumed + 200, n=n, seed=seed, shuffle=shuffle
    ).tolist()
    assert head + tail == positions
    other_rank = data.draw(st.integers(0, world_size - 1), label="resumed rank")
    resumed = InfiniteSampler(n, rank=other_rank, **settings_)
    resumed.load_state_dict(state)
    assert (
        take(iter(resumed), 200)
        == permutation.indices(
            state["start"] + other_rank, world_size, 200, n=n, seed=seed, shuffle=shuffle
        ).tolist()
    )


# --- Defaults ------------------------------------------------------------------------------------


def test_without_a_process_group_it_is_rank_0_of_1() -> None:
    assert not torch.distributed.is_initialized()
    sampler = InfiniteSampler(10)
    assert (sampler.rank, sampler.world_size) == (0, 1)
    assert InfiniteSampler(10, world_size=4).rank == 0
    assert InfiniteSampler(10, rank=0).world_size == 1
    assert (sampler.seed, sampler.shuffle, sampler.start) == (0, True, 0)


def test_a_default_rank_is_read_at_iter_not_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = InfiniteSampler(10, seed=2)  # built while no process group exists
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    assert (sampler.rank, sampler.world_size) == (1, 2)
    assert take(iter(sampler), 5) == global_stream(10, 0, 10, seed=2)[1::2]
    # Explicit arguments win over the process group.
    assert take(iter(InfiniteSampler(10, seed=2, rank=0, world_size=1)), 3) == global_stream(
        10, 0, 3, seed=2
    )


def test_a_launched_rank_without_a_process_group_is_refused_at_iter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it
    sampler = InfiniteSampler(10)  # building is fine: the group may come later
    message = (
        "InfiniteSampler needs its rank and world size, but no torch.distributed process group "
        "is initialised, while the environment says this process is one of WORLD_SIZE=2 ranks "
        "(torchrun); running as rank 0 of 1 would give every rank the same samples. Call "
        "torch.distributed.init_process_group() before iterating (building the sampler earlier "
        "is fine), or pass rank= and world_size= explicitly"
    )
    with pytest.raises(RuntimeError, match=re.escape(message)):
        iter(sampler)
    with pytest.raises(RuntimeError, match="WORLD_SIZE=2"):
        _ = sampler.world_size
    # Explicit arguments need no process group; a launcher of one rank is rank 0 of 1.
    assert take(iter(InfiniteSampler(10, rank=1, world_size=2)), 1) == global_stream(10, 1, 1)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert (sampler.rank, sampler.world_size) == (0, 1)


# --- In a DataLoader -----------------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_dataloader_yields_the_stream_in_batches(num_workers: int) -> None:
    n, batch, batches = 1025, 7, 400  # 2800 samples: several passes and sampler chunks
    sampler = InfiniteSampler(IndexDataset(n), seed=13, rank=1, world_size=2, start=3)
    loader = DataLoader(IndexDataset(n), batch_size=batch, sampler=sampler, num_workers=num_workers)
    got = [b.tolist() for b in itertools.islice(loader, batches)]
    stream = permutation.indices(4, 2, batch * batches, n=n, seed=13, shuffle=True).tolist()
    assert got == [stream[i : i + batch] for i in range(0, batch * batches, batch)]


# --- Errors --------------------------------------------------------------------------------------


def state(**changes: Any) -> dict[str, Any]:
    """Return a valid state of ``InfiniteSampler(10)``, with ``changes`` (None deletes a key)."""
    out: dict[str, Any] = {"version": 1, "start": 3, "num_samples": 10, "seed": 0, "shuffle": True}
    out["shuffle_order"] = 2  # a shuffled dataset of at most 1024 samples (InfiniteSampler docs)
    out.update(changes)
    return {key: value for key, value in out.items() if value is not None}


def loading(saved: Any) -> Callable[[], None]:
    return lambda: InfiniteSampler(10).load_state_dict(saved)


def seeking(position: Any) -> Callable[[], None]:
    return lambda: InfiniteSampler(10).seek(position)


KEYS = "['num_samples', 'seed', 'shuffle', 'shuffle_order', 'start', 'version']"
FROM = "pass a dict returned by InfiniteSampler.state_dict()"
OTHER = "resume with the settings that wrote the checkpoint, or start a new run"
DIFFERENT = "the checkpoint was saved with a different sample order: "
ERRORS: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("n=0", lambda: InfiniteSampler(0), ValueError, "'data_source' must be an int >= 1 (got 0)"),
    ("n=-1", lambda: InfiniteSampler(-1), ValueError, "'data_source' must be an int >= 1 (got -1)"),
    (
        "n=None",
        lambda: InfiniteSampler(None),  # type: ignore[arg-type]  # the error is the test
        TypeError,
        (
            "'data_source' must be a sized dataset or an int number of samples "
            "(got None of type NoneType)"
        ),
    ),
    (
        "n='x'",
        lambda: InfiniteSampler("x"),
        TypeError,
        "'data_source' must be a sized dataset or an int number of samples (got 'x' of type str)",
    ),
    (
        "n=True",
        lambda: InfiniteSampler(True),
        TypeError,
        "'data_source' must be a sized dataset or an int number of samples (got True of type bool)",
    ),
    (
        "n=10.0",
        lambda: InfiniteSampler(10.0),  # type: ignore[arg-type]  # the error is the test
        TypeError,
        (
            "'data_source' must be a sized dataset or an int number of samples "
            "(got 10.0 of type float)"
        ),
    ),
    (
        "n=[]",
        lambda: InfiniteSampler([]),
        ValueError,
        "'data_source' must hold at least one sample (got a list of length 0)",
    ),
    (
        "n=2**63",
        lambda: InfiniteSampler(2**63),
        ValueError,
        "'data_source' must hold fewer than 2**63 samples (got 9223372036854775808)",
    ),
    (
        "seed=-1",
        lambda: InfiniteSampler(5, seed=-1),
        ValueError,
        "'seed' must be an int >= 0 (got -1)",
    ),
    (
        "seed=2**64",
        lambda: InfiniteSampler(5, seed=2**64),
        ValueError,
        "'seed' must be below 2**64 (got 18446744073709551616)",
    ),
    (
        "seed=1.5",
        lambda: InfiniteSampler(5, seed=1.5),  # type: ignore[arg-type]  # the error is the test
        TypeError,
        "'seed' must be an int >= 0 (got 1.5 of type float)",
    ),
    (
        "seed=True",
        lambda: InfiniteSampler(5, seed=True),
        TypeError,
        "'seed' must be an int >= 0 (got True of type bool)",
    ),
    (
        "shuffle=1",
        lambda: InfiniteSampler(5, shuffle=1),  # type: ignore[arg-type]  # the error is the test
        TypeError,
        "'shuffle' must be a bool (got 1 of type int)",
    ),
    (
        "shuffle=None",
        lambda: InfiniteSampler(5, shuffle=None),  # type: ignore[arg-type]  # the error is the test
        TypeError,
        "'shuffle' must be a bool (got None of type NoneType)",
    ),
    (
        "start=-1",
        lambda: InfiniteSampler(5, start=-1),
        ValueError,
        "'start' must be an int >= 0 (got -1)",
    ),
    (
        "start=True",
        lambda: InfiniteSampler(5, start=True),
        TypeError,
        "'start' must be an int >= 0 (got True of type bool)",
    ),
    (
        "start='0'",
        lambda: InfiniteSampler(5, start="0"),  # type: ignore[arg-type]  # the error is the test
        TypeError,
        "'start' must be an int >= 0 (got '0' of type str)",
    ),
    (
        "start=2**62+1",
        lambda: InfiniteSampler(5, start=2**62 + 1),
        ValueError,
        "'start' must be an int <= 2**62 (got 4611686018427387905): the stream needs room",
    ),
    (
        "rank=2 of 2",
        lambda: InfiniteSampler(5, rank=2, world_size=2),
        ValueError,
        "'rank' must be in [0, world_size) = [0, 2) (got 2); pass the rank of this process",
    ),
    (
        "rank=1 of the default 1, at iter()",
        lambda: iter(InfiniteSampler(5, rank=1)),
        ValueError,
        "'rank' must be in [0, world_size) = [0, 1) (got 1)",
    ),
    (
        "rank=-1",
        lambda: InfiniteSampler(5, rank=-1, world_size=2),
        ValueError,
        "'rank' must be an int >= 0 (got -1)",
    ),
    (
        "rank=True",
        lambda: InfiniteSampler(5, rank=True, world_size=2),
        TypeError,
        "'rank' must be an int >= 0 (got True of type bool)",
    ),
    (
        "a DataLoader instead of its dataset",
        lambda: InfiniteSampler(DataLoader(range(100), batch_size=10)),
        TypeError,
        (
            "'data_source' must be the dataset (or its number of samples), not a DataLoader, "
            "whose length is not the number of samples"
        ),
    ),
    (
        "a BatchSampler instead of the dataset",
        lambda: InfiniteSampler(BatchSampler(SequentialSampler(range(100)), 10, False)),
        TypeError,
        "not a BatchSampler, whose length is not the number of samples (got <torch.utils.data",
    ),
    (
        "a sampler instead of the dataset",
        lambda: InfiniteSampler(SequentialSampler(range(100))),
        TypeError,
        "pass the dataset: DataLoader(dataset, sampler=InfiniteSampler(dataset), batch_size=...)",
    ),
    (
        "world_size=0",
        lambda: InfiniteSampler(5, world_size=0),
        ValueError,
        "'world_size' must be an int >= 1 (got 0)",
    ),
    (
        "world_size=2.0",
        lambda: InfiniteSampler(5, world_size=2.0),  # type: ignore[arg-type]  # the error is the test
        TypeError,
        "'world_size' must be an int >= 1 (got 2.0 of type float)",
    ),
    ("seek(-1)", seeking(-1), ValueError, "'position' must be an int >= 0 (got -1)"),
    (
        "seek(True)",
        seeking(True),
        TypeError,
        "'position' must be an int >= 0 (got True of type bool)",
    ),
    (
        "seek(2**62+1)",
        seeking(2**62 + 1),
        ValueError,
        "'position' must be an int <= 2**62 (got 4611686018427387905)",
    ),
    (
        "load(None)",
        loading(None),
        TypeError,
        (
            "'state_dict' must be a dict returned by InfiniteSampler.state_dict() "
            "(got None of type NoneType)"
        ),
    ),
    (
        "load([])",
        loading([]),
        TypeError,
        "'state_dict' must be a dict returned by InfiniteSampler.state_dict() (got [] of",
    ),
    (
        "load({})",
        loading({}),
        ValueError,
        f"InfiniteSampler state has no key 'version' (found keys []); {FROM}",
    ),
    (
        "load without start",
        loading(state(start=None)),
        ValueError,
        (
            "InfiniteSampler state has no key 'start' (found keys "
            f"['num_samples', 'seed', 'shuffle', 'shuffle_order', 'version']); {FROM}"
        ),
    ),
    (
        "load without shuffle",
        loading(state(shuffle=None)),
        ValueError,
        "InfiniteSampler state has no key 'shuffle'",
    ),
    (
        "load a loader's state",
        loading({"version": 1, "steps": 3, "epoch": 0}),
        ValueError,
        "InfiniteSampler state has no key 'start' (found keys ['epoch', 'steps', 'version'])",
    ),
    (
        "load with an extra key",
        loading(state(color="red")),
        ValueError,
        f"InfiniteSampler state has an unexpected key 'color' (expected keys {KEYS}); {FROM}",
    ),
    (
        "load version 2",
        loading(state(version=2)),
        ValueError,
        (
            "InfiniteSampler state['version'] is 2, but this version of virtual_epochs reads "
            "version 1 only; resume with the virtual_epochs release that wrote it"
        ),
    ),
    (
        "load version '1'",
        loading(state(version="1")),
        TypeError,
        "InfiniteSampler state['version'] must be of type int (got '1' of type str)",
    ),
    (
        "load start=True",
        loading(state(start=True)),
        TypeError,
        "InfiniteSampler state['start'] must be of type int (got True of type bool)",
    ),
    (
        "load start=-1",
        loading(state(start=-1)),
        ValueError,
        "InfiniteSampler state['start'] must be an int in [0, 2**62] (got -1)",
    ),
    (
        "load start=2**62+1",
        loading(state(start=2**62 + 1)),
        ValueError,
        "InfiniteSampler state['start'] must be an int in [0, 2**62] (got 4611686018427387905)",
    ),
    (
        "load num_samples=11",
        loading(state(num_samples=11)),
        ValueError,
        f"{DIFFERENT}InfiniteSampler state['num_samples'] is 11 but this sampler has 10; {OTHER}",
    ),
    (
        "load num_samples=10.0",
        loading(state(num_samples=10.0)),
        TypeError,
        "InfiniteSampler state['num_samples'] must be of type int (got 10.0 of type float)",
    ),
    (
        "load seed=1",
        loading(state(seed=1)),
        ValueError,
        f"{DIFFERENT}InfiniteSampler state['seed'] is 1 but this sampler has 0; {OTHER}",
    ),
    (
        "load shuffle=False",
        loading(state(shuffle=False)),
        ValueError,
        f"{DIFFERENT}InfiniteSampler state['shuffle'] is False but this sampler has True; {OTHER}",
    ),
    (
        "load shuffle=1",
        loading(state(shuffle=1)),
        TypeError,
        "InfiniteSampler state['shuffle'] must be of type bool (got 1 of type int)",
    ),
    (
        "len()",
        lambda: len(InfiniteSampler(5)),
        TypeError,
        (
            "InfiniteSampler is endless and has no length; wrap the DataLoader in "
            "VirtualDataLoader(loader, steps_per_epoch=...) for epochs of a fixed length"
        ),
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
def test_errors_say_what_was_expected_and_what_was_given(
    call: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        call()


def test_a_refused_state_changes_nothing() -> None:
    sampler = InfiniteSampler(10, seed=0)
    iterator = iter(sampler)
    take(iterator, 4)
    before = sampler.state_dict()
    with pytest.raises(ValueError, match=r"\['seed'\] is 1"):
        sampler.load_state_dict(state(seed=1, start=8))
    assert sampler.state_dict() == before
    assert take(iterator, 5) == global_stream(10, 4, 5)


# --- Pass boundaries (documented in the README's caveats) ---------------------------------------


@pytest.mark.parametrize(("n", "global_batch"), [(30, 8), (100, 16), (1000, 64), (2000, 128)])
def test_repeats_inside_a_step_that_straddles_a_pass_boundary_match_the_documented_rate(
    n: int, global_batch: int
) -> None:
    """A step with ``a`` samples from pass ``p`` and ``B - a`` from pass ``p + 1`` repeats
    ``a (B - a) / n`` samples on average: inherent to an endless stream, and what the README
    says to expect. Steps inside one pass never repeat a sample."""
    steps = 1000 * n // global_batch  # about 1000 pass boundaries
    stream = permutation.indices(0, 1, steps * global_batch, n=n, seed=0, shuffle=True)
    rows = stream.view(steps, global_batch).tolist()
    repeats, expected, straddling = 0, 0.0, 0
    for step, row in enumerate(rows):
        first = step * global_batch
        tail = -first % n  # samples of the step still in the pass where it starts
        duplicates = global_batch - len(set(row))
        if 0 < tail < global_batch:
            straddling += 1
            repeats += duplicates
            expected += tail * (global_batch - tail) / n
        else:
            assert duplicates == 0, f"step {step} lies inside one pass"
    assert straddling > 500
    assert repeats == pytest.approx(expected, rel=0.15)
