"""The checkpoint format: validation, clear errors, and atomic loads."""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler
from torchdata.stateful_dataloader import StatefulDataLoader

from _helpers import IndexDataset, plain, run_epochs
from virtual_epochs import InfiniteSampler, VirtualDataLoader


def infinite(n: int = 20, seed: int = 1, shuffle: bool = True) -> VirtualDataLoader[Any]:
    sampler = InfiniteSampler(n, seed=seed, shuffle=shuffle)
    return VirtualDataLoader(DataLoader(range(n), batch_size=4, sampler=sampler), 3)


def shuffled(n: int = 20, seed: int | None = 1) -> VirtualDataLoader[Any]:
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return VirtualDataLoader(
        DataLoader(range(n), batch_size=4, shuffle=True, generator=generator), 3
    )


def saved_mid_epoch(make: Callable[[], VirtualDataLoader[Any]]) -> dict[str, Any]:
    vl = make()
    run_epochs(vl, 1)
    iterator = iter(vl)
    next(iterator)
    return vl.state_dict()


def edit(state: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """Return a deep copy of ``state`` with ``state[path...] = value`` (or deleted if ...)."""
    out = copy.deepcopy(state)
    target = out
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


BAD_STATES: list[tuple[str, tuple[str, ...], Any, type, str]] = [
    ("missing version", ("version",), ..., ValueError, r"state has no key 'version'"),
    (
        "unknown version",
        ("version",),
        3,
        ValueError,
        r"state\['version'\] is 3, but this version of virtual_epochs reads versions 1, 2 only",
    ),
    ("version as text", ("version",), "1", TypeError, r"state\['version'\] must be of type int"),
    ("missing steps", ("steps",), ..., ValueError, r"state has no key 'steps' \(found keys"),
    (
        "negative steps",
        ("steps",),
        -1,
        ValueError,
        r"state\['steps'\] must be an int >= 0 \(got -1\)",
    ),
    (
        "bool counter",
        ("epoch",),
        True,
        TypeError,
        r"state\['epoch'\] must be of type int \(got True of type bool\)",
    ),
    ("float counter", ("pass",), 1.0, TypeError, r"state\['pass'\] must be of type int"),
    (
        "zero epoch length",
        ("steps_per_epoch",),
        0,
        ValueError,
        r"state\['steps_per_epoch'\] must be an int >= 1 \(got 0\)",
    ),
    (
        "more batches in epoch than steps",
        ("batches_in_epoch",),
        10**6,
        ValueError,
        r"state\['batches_in_epoch'\] \(1000000\) cannot exceed state\['steps'\]",
    ),
    (
        "more batches in pass than steps",
        ("batches_in_pass",),
        10**6,
        ValueError,
        r"state\['batches_in_pass'\] \(1000000\) cannot exceed state\['steps'\]",
    ),
    ("missing resume", ("resume",), ..., ValueError, r"state has no key 'resume'"),
    (
        "resume not a dict",
        ("resume",),
        [1],
        TypeError,
        r"state\['resume'\] must be of type Mapping",
    ),
    (
        "other strategy",
        ("resume", "strategy"),
        "skip",
        ValueError,
        r"state\['resume'\]\['strategy'\] is 'skip', but this loader resumes by 'seek'",
    ),
    (
        "missing fingerprint",
        ("resume", "fingerprint"),
        ...,
        ValueError,
        r"state\['resume'\] has no key 'fingerprint'",
    ),
    (
        "other seed",
        ("resume", "fingerprint", "seed"),
        2,
        ValueError,
        (
            r"different sample order: state\['resume'\]\['fingerprint'\]\['seed'\] is 2 but "
            r"this loader has 1"
        ),
    ),
    (
        "other dataset size",
        ("resume", "fingerprint", "num_samples"),
        21,
        ValueError,
        r"\['num_samples'\] is 21 but this loader has 20",
    ),
    (
        "shuffle as int",
        ("resume", "fingerprint", "shuffle"),
        1,
        ValueError,
        r"\['shuffle'\] is 1 but this loader has True",
    ),
    (
        "extra fingerprint key",
        ("resume", "fingerprint", "color"),
        "red",
        ValueError,
        r"\['color'\] is 'red' but this loader has '<absent>'",
    ),
    (
        "missing position",
        ("resume", "seek", "position"),
        ...,
        ValueError,
        r"state\['resume'\]\['seek'\] has no key 'position'",
    ),
    (
        "position beyond 2**62",
        ("resume", "seek", "position"),
        2**62 + 1,
        ValueError,
        (
            r"state\['resume'\]\['seek'\]\['position'\] must be at most 2\*\*62 for "
            r"InfiniteSampler \(got 4611686018427387905\)"
        ),
    ),
    (
        "seek state of another pass",
        ("pass",),
        1,
        ValueError,
        r"state\['pass'\] is 1, but a loader over an endless SeekableSampler has a single pass",
    ),
    (
        "negative position",
        ("resume", "seek", "position"),
        -3,
        ValueError,
        r"state\['resume'\]\['seek'\]\['position'\] must be an int >= 0 \(got -3\)",
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "error", "message"),
    [case[1:] for case in BAD_STATES],
    ids=[case[0] for case in BAD_STATES],
)
def test_bad_state_gets_a_clear_error_and_changes_nothing(
    path: tuple[str, ...], value: Any, error: type, message: str
) -> None:
    good = saved_mid_epoch(infinite)
    vl = infinite()
    run_epochs(vl, 2)  # somewhere else in the stream
    before = vl.state_dict()
    with pytest.raises(error, match=message):
        vl.load_state_dict(edit(good, path, value))
    assert vl.state_dict() == before
    reference = infinite()
    reference.load_state_dict(before)
    assert run_epochs(vl, 4) == run_epochs(reference, 4)


@pytest.mark.parametrize("state", [None, [], "state", 3])
def test_state_that_is_not_a_dict(state: Any) -> None:
    with pytest.raises(
        TypeError, match=r"'state_dict' must be a dict returned by VirtualDataLoader"
    ):
        infinite().load_state_dict(state)


SKIP_CASES: list[tuple[str, Callable[[], VirtualDataLoader[Any]], str]] = [
    (
        "other generator seed",
        lambda: shuffled(seed=2),
        r"\['generator_seed'\] is 1 but this loader has 2",
    ),
    (
        "other dataset size",
        lambda: shuffled(n=21),
        r"\['dataset_size'\] is 20 but this loader has 21",
    ),
    (
        "other sampler",
        lambda: VirtualDataLoader(DataLoader(range(20), batch_size=4), 3),
        r"\['generator_seed'\] is 1 but this loader has '<absent>'",
    ),
]


@pytest.mark.parametrize(
    ("make", "message"), [case[1:] for case in SKIP_CASES], ids=[case[0] for case in SKIP_CASES]
)
def test_skip_fingerprint_names_what_differs(
    make: Callable[[], VirtualDataLoader[Any]], message: str
) -> None:
    state = saved_mid_epoch(shuffled)
    with pytest.raises(ValueError, match=message):
        make().load_state_dict(state)


def test_skip_position_beyond_the_pass_is_rejected() -> None:
    state = saved_mid_epoch(shuffled)
    state["resume"]["skip"]["samples_in_pass"] = 21
    with pytest.raises(ValueError, match=r"\['samples_in_pass'\] is 21, more than the 20 samples"):
        shuffled().load_state_dict(state)


def test_adopted_seed_is_validated() -> None:
    state = saved_mid_epoch(lambda: shuffled(seed=None))
    assert isinstance(state["resume"]["skip"]["pass_seeds"]["seed"], int)
    state["resume"]["skip"]["pass_seeds"]["seed"] = "x"
    with pytest.raises(
        TypeError,
        match=r"state\['resume'\]\['skip'\]\['pass_seeds'\]\['seed'\] must be of type int",
    ):
        shuffled(seed=None).load_state_dict(state)


def test_state_of_a_list_loader_is_plain_and_small() -> None:
    vl = VirtualDataLoader([[1], [2], [3]], 2)
    next(iter(vl))
    state = vl.state_dict()
    assert state == {
        "version": 2,
        "steps_per_epoch": 2,
        "epoch": 0,
        "batches_in_epoch": 1,
        "steps": 1,
        "pass": 0,
        "batches_in_pass": 1,
        "resume": {
            "strategy": "replay",
            "fingerprint": {"loader": "list", "batches_per_pass": 3},
            "replay": {},
        },
    }
    resumed = VirtualDataLoader([[1], [2], [3]], 2)
    resumed.load_state_dict(state)
    assert [plain(batch) for batch in resumed] == [[2]]


def test_distributed_sampler_checkpoint_is_refused_on_another_number_of_ranks() -> None:
    def make(replicas: int) -> VirtualDataLoader[Any]:
        sampler = DistributedSampler(range(20), num_replicas=replicas, rank=0, seed=1)
        return VirtualDataLoader(DataLoader(range(20), batch_size=2, sampler=sampler), 3)

    state = saved_mid_epoch(lambda: make(2))
    with pytest.raises(ValueError, match=r"\['sampler.num_replicas'\] is 2 but this loader has 3"):
        make(3).load_state_dict(state)


def test_a_seekable_sampler_that_ends_is_an_error() -> None:
    class Ending(InfiniteSampler):
        def __iter__(self) -> Iterator[int]:
            return itertools.islice(super().__iter__(), 4)

    sampler = Ending(10, seed=1)
    vl = VirtualDataLoader(DataLoader(range(10), batch_size=2, sampler=sampler), 5)
    assert vl.strategy == "seek"
    iterator = iter(vl)
    first = list(itertools.islice(InfiniteSampler(10, seed=1), 4))
    assert [next(iterator).tolist() for _ in range(2)] == [first[:2], first[2:]]
    with pytest.raises(RuntimeError, match=r"ran out, but a SeekableSampler must be endless"):
        next(iterator)


class Countdown:
    """A user's own SeekableSampler, with plain attributes: index ``g % n`` at position ``g``,
    with no limit on positions (the protocol sets none)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.start = 0
        self.world_size = 1

    def seek(self, position: int) -> None:
        self.start = position

    def fingerprint(self) -> dict[str, Any]:
        return {"n": self.n}

    def __iter__(self) -> Iterator[int]:
        return (g % self.n for g in itertools.count(self.start))


def test_a_users_seekable_sampler_resumes_by_seek_with_no_limit_of_ours() -> None:
    def make() -> VirtualDataLoader[Any]:
        return VirtualDataLoader(DataLoader(range(7), batch_size=2, sampler=Countdown(7)), 3)

    assert make().strategy == "seek"
    state = saved_mid_epoch(make)
    far = 2**63 + 5  # beyond InfiniteSampler's 2**62: this sampler declares no max_start
    state["resume"]["seek"]["position"] = far
    vl = make()
    vl.load_state_dict(state)
    assert next(iter(vl)).tolist() == [far % 7, (far + 1) % 7]


# ------------------------------------------------------------- version 1 (0.1.0) states

V1 = json.loads((Path(__file__).parent / "fixtures" / "states-v1.json").read_text())
V1_LOADERS: dict[str, Callable[[], VirtualDataLoader[Any]]] = {
    # The loaders that wrote tests/fixtures/states-v1.json with virtual_epochs 0.1.0.
    "seek": lambda: VirtualDataLoader(
        DataLoader(IndexDataset(11), batch_size=3, sampler=InfiniteSampler(11, seed=4)), 4
    ),
    "seek-large": lambda: VirtualDataLoader(
        DataLoader(IndexDataset(2000), batch_size=3, sampler=InfiniteSampler(2000, seed=4)), 4
    ),
    "skip-shuffle-adopted-seed": lambda: VirtualDataLoader(
        DataLoader(IndexDataset(11), batch_size=3, shuffle=True), 4
    ),
    "skip-generator": lambda: VirtualDataLoader(
        DataLoader(
            IndexDataset(11), batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(7)
        ),
        4,
    ),
    "delegate": lambda: VirtualDataLoader(
        StatefulDataLoader(
            IndexDataset(11), batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(2)
        ),
        4,
    ),
    "replay": lambda: VirtualDataLoader([[0, 1], [2, 3], [4], [5, 6], [7]], 4),
}


@pytest.mark.parametrize("name", sorted(set(V1_LOADERS) - {"seek"}))
def test_a_version_1_state_resumes_exactly_and_is_saved_again_as_version_2(name: str) -> None:
    saved = V1[name]["state"]
    assert saved["version"] == 1
    torch.manual_seed(999)  # an adopted seed comes from the state, not from this process
    vl = V1_LOADERS[name]()
    vl.load_state_dict(copy.deepcopy(saved))
    again = vl.state_dict()
    assert again["version"] == 2
    assert set(again["resume"]) == {"strategy", "fingerprint", name.split("-", maxsplit=1)[0]}
    got: list[Any] = []
    while len(got) < 8:
        got.extend(plain(batch) for batch in vl)
    assert got[:8] == V1[name]["next"]
    # The version-2 state taken right after the load resumes the same way.
    resumed = V1_LOADERS[name]()
    resumed.load_state_dict(again)
    assert [plain(batch) for batch in resumed] == V1[name]["next"][:2]


def test_a_version_1_state_of_a_small_shuffled_infinite_sampler_is_refused() -> None:
    # 0.1.0 shuffled datasets of at most 1024 samples with another algorithm: such a checkpoint
    # would resume onto another order, so the fingerprint refuses it.
    saved = copy.deepcopy(V1["seek"]["state"])
    assert saved["resume"]["fingerprint"]["num_samples"] == 11
    vl = V1_LOADERS["seek"]()
    before = vl.state_dict()
    with pytest.raises(
        ValueError,
        match=re.escape(
            "the checkpoint was saved with a different sample order: "
            "state['resume']['fingerprint']['shuffle_order'] is '<absent>' but this loader has 2"
        ),
    ):
        vl.load_state_dict(saved)
    assert vl.state_dict() == before


def test_a_version_1_state_is_checked_like_a_version_2_one() -> None:
    saved = copy.deepcopy(V1["seek-large"]["state"])
    saved["resume"]["fingerprint"]["seed"] = 5
    with pytest.raises(ValueError, match=r"\['seed'\] is 5 but this loader has 4"):
        V1_LOADERS["seek-large"]().load_state_dict(saved)
    saved = copy.deepcopy(V1["skip-shuffle-adopted-seed"]["state"])
    saved["resume"]["seed"] = -1
    with pytest.raises(
        ValueError,
        match=r"state\['resume'\]\['skip'\]\['pass_seeds'\]\['seed'\] must be an int >= 0",
    ):
        V1_LOADERS["skip-shuffle-adopted-seed"]().load_state_dict(saved)
