"""``MixtureSampler``: each source on its own endless order, seek, shards, phases, state, errors.

The proportion bound has its own file, ``test_mixture_rule.py``; real process groups are in
``test_mixture_distributed.py``.
"""

from __future__ import annotations

import io
import itertools
import json
import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import ConcatDataset, DataLoader

from _helpers import IndexDataset, assert_resumes_exactly, round_trip
from virtual_epochs import InfiniteSampler, MixtureSampler, SeekableSampler, VirtualDataLoader

SIZES = [7, 50, 1025, 10**9 + 7]  # both permutation algorithms, and a source never finished
WEIGHTS = [1, 3, 2, 4]
PHASES = [(300, [0, 1, 1, 1]), (700, [5, 1, 0, 2])]


def mixture(**overrides: Any) -> MixtureSampler:
    kwargs: dict[str, Any] = {"weights": WEIGHTS, "phases": PHASES, "seed": 11, **overrides}
    return MixtureSampler(kwargs.pop("sources", SIZES), **kwargs)


def take(sampler: Any, count: int) -> list[int]:
    return list(itertools.islice(sampler, count))


def split(stream: list[int], sizes: list[int]) -> list[list[int]]:
    """Return each source's own indices, in stream order (ConcatDataset indices made local)."""
    ends = list(itertools.accumulate(sizes))
    out: list[list[int]] = [[] for _ in sizes]
    for index in stream:
        k = next(k for k, end in enumerate(ends) if index < end)
        out[k].append(index - (ends[k] - sizes[k]))
    return out


def test_each_source_walks_its_own_infinite_sampler_order_across_phases() -> None:
    mix = mixture()
    per_source = split(take(mix, 3000), SIZES)
    for k, (size, own) in enumerate(zip(SIZES, per_source, strict=True)):
        # Nothing repeated or skipped at a phase change: exactly the source's own stream.
        assert own == take(InfiniteSampler(size, seed=mix.source_seeds[k]), len(own)), k
    # So every pass of every source is a permutation of it, and each pass a new one.
    small = per_source[0]
    passes = [small[i : i + 7] for i in range(0, len(small) - 6, 7)]
    assert len(passes) > 20
    assert all(sorted(p) == list(range(7)) for p in passes)
    assert len({tuple(p) for p in passes}) > len(passes) // 2
    assert sorted(per_source[1][:50]) == list(range(50))
    assert len(set(mix.source_seeds)) == len(SIZES)


def test_locate_and_counts_agree_with_the_stream() -> None:
    mix = mixture()
    stream = take(mix, 1200)
    offsets = [0, *itertools.accumulate(SIZES)]
    located = [mix.locate(g) for g in range(1200)]
    assert [offsets[k] + i for k, i in located] == stream
    for position in (0, 1, 299, 300, 301, 700, 1200):
        counts = [0] * len(SIZES)
        for k, _ in located[:position]:
            counts[k] += 1
        assert mix.counts(position) == counts


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 1500), st.integers(1, 7), st.integers(1, 300))
def test_start_and_seek_equal_the_slice_of_the_stream(start: int, world: int, count: int) -> None:
    whole = take(mixture(), start + world * count)
    ranks = [mixture(start=start, rank=r, world_size=world) for r in range(world)]
    rows = zip(*(take(sampler, count) for sampler in ranks), strict=True)
    assert [i for row in rows for i in row] == whole[start:]
    seeking = mixture()
    seeking.seek(start)
    assert take(seeking, world * count) == whole[start:]


def test_far_positions_are_o1_and_equal_locate() -> None:
    mix = MixtureSampler(SIZES, WEIGHTS, phases=[(10**15, [1, 1, 1, 1])], seed=3)
    for start in (10**12, 10**15 - 5, 2**62 - 4):
        mix.seek(start)
        offsets = [0, *itertools.accumulate(SIZES)]
        expected = [offsets[k] + i for k, i in map(mix.locate, range(start, start + 9))]
        assert take(mix, 9) == expected


def test_the_order_is_pinned() -> None:
    # A changed order breaks the meaning of every saved checkpoint: change it only on purpose.
    expected = [514817406, 45, 249, 5, 501974844, 365027989, 10, 595, 38, 441794368, 967453503, 49]
    assert take(mixture(), 12) == expected


def test_weights_are_ratios_and_sources_may_be_given_as_a_concat_dataset() -> None:
    parts = [IndexDataset(size) for size in SIZES[:3]]
    a = MixtureSampler(ConcatDataset(parts), [0.2, 0.5, 0.3], seed=5)
    b = MixtureSampler([7, 50, 1025], [2, 5, 3], seed=5)
    assert take(a, 500) == take(b, 500)
    assert a.fingerprint() == b.fingerprint()
    assert a.weights == [[2, 5, 3]]
    # A float32 tensor of weights (0.2 is 0.20000000298... there) reads as the same ratios.
    c = MixtureSampler([7, 50, 1025], torch.tensor([0.2, 0.5, 0.3]), seed=5)
    assert c.fingerprint() == b.fingerprint()
    with pytest.raises(TypeError, match=r"'weights' must be a sequence of one number per source"):
        MixtureSampler([7, 50, 1025], torch.ones(3, 1))


def test_the_global_rng_is_never_read_or_advanced() -> None:
    torch.manual_seed(0)
    first = take(mixture(), 2000)
    state = torch.get_rng_state()
    torch.manual_seed(12345)
    assert take(mixture(), 2000) == first
    torch.manual_seed(0)
    take(mixture(), 2000)
    assert torch.equal(torch.get_rng_state(), state)


def test_it_is_a_seekable_sampler_with_no_length() -> None:
    mix = mixture()
    assert isinstance(mix, SeekableSampler)
    assert mix.max_start == 2**62  # the optional limit a loader may check at load
    with pytest.raises(TypeError, match="MixtureSampler is endless and has no length"):
        len(mix)


def make_loader(
    mix: MixtureSampler | None = None, batch: int = 3, spe: int = 5
) -> VirtualDataLoader[Any]:
    parts = ConcatDataset([IndexDataset(size) for size in SIZES[:3]])
    if mix is None:
        mix = MixtureSampler(parts, [1, 3, 2], phases=[(40, [3, 0, 1])], seed=2)
    return VirtualDataLoader(DataLoader(parts, sampler=mix, batch_size=batch), spe)


def test_virtual_data_loader_resumes_by_seek_at_every_step() -> None:
    assert make_loader().strategy == "seek"
    assert_resumes_exactly(make_loader, 4)


def test_virtual_data_loader_loads_nothing_it_skips() -> None:
    vl = make_loader()
    for _ in range(3):
        list(vl)
    state = round_trip(vl.state_dict())
    resumed = make_loader()
    resumed.load_state_dict(state)
    dataset = resumed.loader.dataset  # type: ignore[attr-defined]  # a DataLoader
    next(iter(resumed))
    assert sum(len(part.loaded) for part in dataset.datasets) == 3  # one batch, nothing replayed


def test_state_dict_is_plain_and_round_trips_through_json_and_torch_load() -> None:
    mix = mixture(world_size=3, rank=1)
    it = iter(mix)
    for _ in range(100):
        next(it)
    state = mix.state_dict()
    assert state["start"] == 300
    assert state == round_trip(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert loaded == state
    # Any rank and world size resume from it: the start is a global position.
    other = mixture(world_size=2, rank=0)
    other.load_state_dict(loaded)
    assert take(other, 10) == take(mixture(start=300), 20)[::2]
    state["sizes"].append(1)  # a fresh dict: the sampler's own lists are not shared
    assert mix.fingerprint()["sizes"] == SIZES


def test_a_schedule_changed_after_the_checkpoint_resumes_exactly() -> None:
    mix = mixture()
    take(mix, 0)
    it = iter(mix)
    for _ in range(500):
        next(it)
    state = round_trip(mix.state_dict())
    assert state["start"] == 500
    # The phase in progress (from 300) now ends at 900 instead of going on; an annealing phase.
    extended = [PHASES[0], (900, [0, 0, 1, 3])]
    resumed = mixture(phases=extended)
    resumed.load_state_dict(state)
    fresh = mixture(phases=extended)
    assert take(resumed, 800) == take(fresh, 1300)[500:]
    # Up to the old schedule's next change (700), the new stream is the old one.
    assert take(mixture(), 700)[500:] == take(mixture(phases=extended), 700)[500:]


@pytest.mark.parametrize(
    ("phases", "match"),
    [
        ([(300, [0, 1, 1, 2])], r"phase 1 \(from position 300\) has weights \[0, 1, 1, 2\] here"),
        ([(301, [0, 1, 1, 1])], r"phase 1 \(from position 300\) starts at 301 in this sampler"),
        ([], r"phase 1 \(from position 300\) is not in this sampler's schedule"),
        (
            [(100, [1, 1, 1, 1]), *PHASES],
            r"phase 1 \(from position 300\) starts at 100 in this sampler's schedule",
        ),
        ([PHASES[0], (450, [1, 1, 1, 1])], r"phase 2 \(from position 450\) is not in the checkp"),
    ],
)
def test_a_schedule_changed_before_the_checkpoint_is_refused_naming_the_phase(
    phases: list[Any], match: str
) -> None:
    mix = mixture()
    mix.seek(500)
    state = round_trip(mix.state_dict())
    resumed = mixture(phases=phases)
    with pytest.raises(ValueError, match=f"differs before its position 500: {match}"):
        resumed.load_state_dict(state)
    assert resumed.start == 0  # nothing applied


def test_the_virtual_data_loader_resumes_with_a_schedule_changed_after_the_checkpoint() -> None:
    parts = ConcatDataset([IndexDataset(size) for size in SIZES[:3]])

    def extended() -> VirtualDataLoader[Any]:
        later = MixtureSampler(parts, [1, 3, 2], phases=[(40, [3, 0, 1]), (100, [1, 1, 1])], seed=2)
        return make_loader(later)

    # Saved after every step of 3 epochs (positions 0 .. 45): all before the new phase at 100.
    vl = make_loader()
    states = [round_trip(vl.state_dict())]
    for _ in range(3):
        states.extend(round_trip(vl.state_dict()) for _ in vl)
    for step, state in enumerate(states):
        resumed = extended()
        resumed.load_state_dict(state)
        fresh = extended()
        whole = [b.tolist() for _ in range(4) for b in fresh]
        got = [b.tolist() for _ in range(resumed.epoch, 4) for b in resumed]
        assert got == whole[step:]
    # A change before the saved position is refused, naming the phase.
    early = MixtureSampler(parts, [1, 3, 2], phases=[(30, [3, 0, 1])], seed=2)
    with pytest.raises(ValueError, match=r"phase 1 \(from position 40\) starts at 30"):
        make_loader(early).load_state_dict(states[-1])


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"sources": [7, 50, 1026, 10**9 + 7]}, "sizes"),
        ({"seed": 12}, "seed"),
    ],
)
def test_a_fingerprint_mismatch_is_refused_naming_the_key(change: dict[str, Any], key: str) -> None:
    state = round_trip(mixture().state_dict())
    match = rf"MixtureSampler state\['{key}'\] is .* but this sampler"
    with pytest.raises(ValueError, match=match):
        mixture(**change).load_state_dict(state)


@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        (lambda s: s.pop("weights"), ValueError, r"has no key 'weights'"),
        (lambda s: s.update(extra=1), ValueError, r"has an unexpected key 'extra'"),
        (lambda s: s.update(start=-1), ValueError, r"\['start'\] must be an int in \[0, 2\*\*62\]"),
        (lambda s: s.update(phase_starts=[0]), ValueError, r"one per entry of 'weights'"),
        (lambda s: s["weights"].__setitem__(0, "x"), TypeError, r"\['weights'\]\[0\] must be a"),
        (lambda s: s.update(version=9), ValueError, r"\['version'\] is 9"),
    ],
)
def test_a_malformed_state_is_refused(edit: Any, error: type[Exception], match: str) -> None:
    state = round_trip(mixture().state_dict())
    edit(state)
    with pytest.raises(error, match=match):
        mixture().load_state_dict(state)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"weights": [1, -1, 1, 1]}, ValueError, r"'weights'\[1\] must be a finite number >= 0 "),
        ({"weights": [1, math.nan, 1, 1]}, ValueError, r"'weights'\[1\] .* \(got nan\)"),
        ({"weights": [1, 1, math.inf, 1]}, ValueError, r"'weights'\[2\] .* \(got inf\)"),
        ({"weights": [0, 0, 0, 0]}, ValueError, r"'weights' must have at least one positive"),
        ({"weights": [1, 1, 1]}, ValueError, r"'weights' must hold one weight per source, 4 \(got"),
        ({"weights": [1, True, 1, 1]}, TypeError, r"'weights'\[1\] must be a real number"),
        ({"weights": "1111"}, TypeError, r"'weights' must be a sequence of one number per source"),
        (
            {"sources": [5, 0], "weights": [1, 1], "phases": []},
            ValueError,
            r"'weights'\[1\] is 1, but source 1 is empty; give it weight 0",
        ),
        (
            {"sources": [5, 0], "weights": [1, 0], "phases": [(10, [1, 2])]},
            ValueError,
            r"'phases\[0\] weights'\[1\] is 2, but source 1 is empty",
        ),
        ({"sources": []}, TypeError, r"'sources' must be a ConcatDataset or a non-empty sequence"),
        ({"sources": [5, "x"]}, TypeError, r"'sources'\[1\] must be a sized dataset or an int"),
        ({"sources": [5, -1]}, ValueError, r"'sources\[1\]' must be an int >= 0 \(got -1\)"),
        ({"sources": [2**62 + 1]}, ValueError, r"'sources'\[0\] must hold at most 2\*\*62 samples"),
        ({"sources": [2**62] * 2}, ValueError, r"'sources' must hold fewer than 2\*\*63 samples"),
        ({"phases": [(0, WEIGHTS)]}, ValueError, r"'phases'\[0\] must start after position 0"),
        (
            {"phases": [(50, WEIGHTS), (50, WEIGHTS)]},
            ValueError,
            r"'phases'\[1\] must start after position 50, where the phase before it starts",
        ),
        ({"phases": [(2**62 + 1, WEIGHTS)]}, ValueError, r"'phases'\[0\] must start at a position"),
        ({"phases": [(1.5, WEIGHTS)]}, TypeError, r"'phases'\[0\] must start at an int global"),
        ({"phases": [(5,)]}, TypeError, r"'phases'\[0\] must be a \(start, weights\) pair"),
        ({"phases": {5: WEIGHTS}}, TypeError, r"'phases' must be a sequence of \(start, weights\)"),
        (
            {"phases": [(5, [1, -2, 0, 0])]},
            ValueError,
            r"'phases\[0\] weights'\[1\] must be a finite",
        ),
        ({"seed": -1}, ValueError, r"'seed' must be an int >= 0 \(got -1\)"),
        ({"seed": 2**64}, ValueError, r"'seed' must be below 2\*\*64"),
        ({"rank": 2, "world_size": 2}, ValueError, r"'rank' must be in \[0, world_size\)"),
        ({"rank": True}, TypeError, r"'rank' must be an int >= 0"),
        ({"world_size": 0}, ValueError, r"'world_size' must be an int >= 1 \(got 0\)"),
        ({"start": 2**62 + 1}, ValueError, r"'start' must be an int <= 2\*\*62"),
    ],
)
def test_bad_arguments_are_refused_naming_the_argument(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        mixture(**kwargs)


def test_bad_positions_are_refused() -> None:
    mix = mixture()
    with pytest.raises(ValueError, match=r"'position' must be an int <= 2\*\*62"):
        mix.seek(2**62 + 1)
    with pytest.raises(TypeError, match=r"'position' must be an int >= 0"):
        mix.locate(1.0)  # type: ignore[arg-type]  # the misuse under test
    with pytest.raises(ValueError, match=r"'position' must be an int >= 0 \(got -1\)"):
        mix.counts(-1)
    with pytest.raises(ValueError, match=r"'position' must be an int < 2\*\*63 \(got 92233"):
        mix.counts(2**63)


def test_rank_and_world_size_come_from_torch_distributed_only_when_read() -> None:
    mix = MixtureSampler(SIZES, WEIGHTS, rank=1)  # world size not known yet: no error here
    with pytest.raises(ValueError, match=r"'rank' must be in \[0, world_size\) = \[0, 1\)"):
        iter(mix)
    assert MixtureSampler(SIZES, WEIGHTS).world_size == 1


def test_a_thousand_sources_of_a_billion_samples_start_far_away() -> None:
    mix = MixtureSampler([10**9] * 1000, list(range(1000)), seed=1, start=10**12)
    first = take(mix, 3)
    k, i = mix.locate(10**12)
    assert first[0] == k * 10**9 + i
    assert json.loads(json.dumps(mix.state_dict()))["sizes"] == [10**9] * 1000


def test_many_sources_at_once_give_what_each_source_gives_alone() -> None:
    # Above 16 sources in a chunk, all the large ones go through one vectorised network.
    sizes = [1, 3, 1024, 1025, 5000, 10**6, 10**12, 2**60 + 1] * 5
    mix = MixtureSampler(sizes, list(range(1, 41)), seed=8, world_size=3, rank=2, start=10**9)
    offsets = [0, *itertools.accumulate(sizes)]
    expected = [offsets[k] + i for k, i in map(mix.locate, range(10**9 + 2, 10**9 + 1500, 3))]
    assert take(mix, len(expected)) == expected


def test_torchdata_stateful_data_loader_saves_and_restores_it_with_a_later_phase_added() -> None:
    from torchdata.stateful_dataloader import (  # type: ignore[import-untyped]  # no stubs
        StatefulDataLoader,
    )

    parts = ConcatDataset([IndexDataset(size) for size in SIZES[:3]])

    def loader(phases: list[Any]) -> Any:
        mix = MixtureSampler(parts, [1, 3, 2], phases=phases, seed=2)
        return StatefulDataLoader(parts, sampler=mix, batch_size=4)

    first = loader([(40, [3, 0, 1])])
    it = iter(first)
    for _ in range(5):
        next(it)
    state = first.state_dict()
    assert state["_sampler_iter_state"]["sampler_state"]["start"] == 20  # ours, saved by it
    moved = loader([(10, [3, 0, 1])])
    moved.load_state_dict(state)  # torchdata hands the sampler its state at the next iter()
    with pytest.raises(ValueError, match=r"phase 1 \(from position 10\) is not in the checkp"):
        next(iter(moved))  # a phase from 10 changes positions 10 .. 19, already drawn
    later = [(40, [3, 0, 1]), (60, [0, 1, 1])]  # a phase from position 60, after the saved 20
    resumed = loader(later)
    resumed.load_state_dict(state)
    got = [batch.tolist() for batch in itertools.islice(resumed, 15)]
    assert got == [batch.tolist() for batch in itertools.islice(loader(later), 20)][5:]
