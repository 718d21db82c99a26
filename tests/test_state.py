"""The checkpoint format: what a state holds, and the states of version 1 (0.1.0).

The refusals of bad states are in ``test_refusals.py``; what every shape of loader keeps (plain
states, JSON and ``torch.load`` round trips, fresh copies) in ``test_strategy_contract.py``.
"""

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
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from _helpers import IndexDataset, plain
from virtual_epochs import InfiniteSampler, VirtualDataLoader


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
    source = make()
    for _ in itertools.islice(source, 2):
        pass
    state = source.state_dict()
    far = 2**63 + 5  # beyond InfiniteSampler's 2**62: this sampler declares no max_start
    state["resume"]["seek"]["position"] = far
    vl = make()
    vl.load_state_dict(state)
    assert next(iter(vl)).tolist() == [far % 7, (far + 1) % 7]


# ------------------------------------------------------------- version 1 (0.1.0) states

V1 = json.loads((Path(__file__).parent / "fixtures" / "states-v1.json").read_text())
V1_LOADERS: dict[str, Callable[[], VirtualDataLoader[Any]]] = {
    # The loaders that wrote tests/fixtures/states-v1.json with virtual_epochs 0.1.0: not the
    # table's (_shapes_table), whose sizes may change; these must stay as the fixture was made.
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
