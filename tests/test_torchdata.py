"""torchdata's ``StatefulDataLoader`` and stateful ``IterableDataset``s (Hugging Face ``datasets``).

- an ``InfiniteSampler`` inside a ``StatefulDataLoader`` is checkpointed by it alone;
- ``VirtualDataLoader`` around one resumes exactly (``tests/test_resume.py`` covers 0 and 2
  workers); here: what changing ``num_workers`` between runs does;
- a streaming Hugging Face dataset: virtual epochs over it, resumed through its own state.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from _helpers import IndexDataset, assert_resumes_exactly, plain, round_trip, run_epochs
from virtual_epochs import InfiniteSampler, VirtualDataLoader


def infinite_loader(num_workers: int) -> StatefulDataLoader[Any]:
    """Batches of 3 from 11 samples, in the endless order of an ``InfiniteSampler``."""
    return StatefulDataLoader(
        IndexDataset(11),
        batch_size=3,
        sampler=InfiniteSampler(11, seed=2),
        num_workers=num_workers,
    )


@pytest.mark.parametrize("num_workers", [0, 2])
def test_stateful_dataloader_alone_checkpoints_an_infinite_sampler(num_workers: int) -> None:
    expected = [plain(batch) for batch in itertools.islice(infinite_loader(num_workers), 14)]
    for step in (0, 1, 4, 8, 13):  # 4 and 8 are past the end of the first and second pass
        loader = infinite_loader(num_workers)
        batches = iter(loader)
        for _ in range(step):
            next(batches)
        state = round_trip(loader.state_dict())  # the sampler's state_dict() is in there
        resumed = infinite_loader(num_workers)
        resumed.load_state_dict(state)
        got = [plain(batch) for batch in itertools.islice(resumed, 14 - step)]
        assert got == expected[step:], f"after resuming at step {step}"


@pytest.mark.parametrize(("before", "after"), [(0, 2), (2, 0)])
def test_stateful_dataloader_refuses_another_num_workers(before: int, after: int) -> None:
    def make(num_workers: int) -> VirtualDataLoader[Any]:
        loader = StatefulDataLoader(IndexDataset(11), batch_size=3, num_workers=num_workers)
        return VirtualDataLoader(loader, 3)

    vl = make(before)
    next(iter(vl))
    resumed = make(after)
    assert resumed.strategy == "delegate"
    resumed.load_state_dict(round_trip(vl.state_dict()))  # accepted here: torchdata applies
    key = "_snapshot" if after else "_num_yielded"  # its state when the pass reopens
    with pytest.raises(
        ValueError,
        match=rf"state\['resume'\]\['delegate'\]\['inner'\] was refused by .* \(AssertionError: "
        rf"State doesn't contain key '{key}' expected for .*\): it was saved by a loader built "
        r"differently \(torchdata: another num_workers\)",
    ) as info:
        next(iter(resumed))
    assert isinstance(info.value.__cause__, AssertionError)


@pytest.mark.parametrize(("before", "after"), [(0, 2), (2, 0)])
def test_infinite_sampler_lets_num_workers_change_inside_a_stateful_dataloader(
    before: int, after: int
) -> None:
    # With an InfiniteSampler inside, VirtualDataLoader seeks the sampler and never hands the
    # StatefulDataLoader a state of its own: the number of workers may change.
    assert VirtualDataLoader(infinite_loader(before), 4).strategy == "seek"
    assert_resumes_exactly(
        lambda: VirtualDataLoader(infinite_loader(before), 4),
        epochs=4,
        save_at=[0, 3, 5, 9],
        make_resumed=lambda: VirtualDataLoader(infinite_loader(after), 4),
    )


# ---------------------------------------------------------- Hugging Face streaming datasets


def streaming(buffer_size: int | None = None) -> Any:
    """Ten examples ``{"i": 0..9}`` in 2 shards, as a streaming (iterable) HF dataset."""
    import datasets  # imported here: the rest of the module does not need it

    stream = datasets.Dataset.from_dict({"i": list(range(10))}).to_iterable_dataset(num_shards=2)
    if buffer_size is not None:
        stream = stream.shuffle(seed=3, buffer_size=buffer_size)
    return stream


def hf_factory(loader: Callable[..., Any], **kwargs: Any) -> Callable[[], VirtualDataLoader[Any]]:
    return lambda: VirtualDataLoader(loader(streaming(), batch_size=3, **kwargs), 2)


def test_hf_streaming_dataset_gives_virtual_epochs_and_resumes_through_its_own_state() -> None:
    make = hf_factory(DataLoader)
    vl = make()
    assert vl.strategy == "delegate"  # its state_dict() is nested in ours
    epochs = run_epochs(vl, 6)  # 12 batches: 3 passes of 4 batches (3 + 3 + 3 + 1 examples)
    samples = [i for epoch in epochs for batch in epoch for i in batch["i"]]
    assert [len(epoch) for epoch in epochs] == [2] * 6
    for pass_index in range(3):
        assert sorted(samples[10 * pass_index : 10 * pass_index + 10]) == list(range(10))
    assert_resumes_exactly(make, epochs=6)  # at every step, across the pass boundaries


def test_hf_streaming_dataset_with_workers_resumes_through_stateful_dataloader() -> None:
    # A plain DataLoader with workers cannot reach the dataset's state (each worker has its own
    # copy): VirtualDataLoader would replay. StatefulDataLoader collects the workers' states.
    assert VirtualDataLoader(DataLoader(streaming(), num_workers=2), 2).strategy == "replay"
    make = hf_factory(StatefulDataLoader, num_workers=2)
    assert make().strategy == "delegate"
    assert_resumes_exactly(make, epochs=5, save_at=[0, 1, 3, 4, 5, 8])


def test_hf_shuffle_buffer_is_not_in_its_state() -> None:
    # datasets 5.x saves the position in the shards but not the shuffle buffer's content (it
    # says so when loading): a buffer-shuffled stream does not resume exactly. When this test
    # fails, datasets restores its buffer now: update docs/integrations.md.
    def make() -> VirtualDataLoader[Any]:
        return VirtualDataLoader(DataLoader(streaming(buffer_size=4), batch_size=3), 2)

    vl = make()
    states, stream = [], []
    for _ in range(4):
        for batch in vl:
            stream.append(plain(batch)["i"])
            states.append(round_trip(vl.state_dict()))
    resumed = make()
    resumed.load_state_dict(states[1])  # after step 2, in the middle of the first pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # datasets' "the shuffle buffer will be refilled"
        got = [plain(batch)["i"] for _ in range(resumed.epoch, 4) for batch in resumed]
    # The buffer's examples are lost and others come twice (datasets 5.2: [8, 3] where the
    # uninterrupted run has [8, 0, 9], [4]).
    assert got != stream[2:]
