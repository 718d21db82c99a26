"""tqdm and LR schedulers: they size themselves from ``len(vl)``, which is the virtual epoch."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from _helpers import IndexDataset, round_trip
from virtual_epochs import InfiniteSampler, VirtualDataLoader

STEPS_PER_EPOCH, EPOCHS = 4, 3


def make(infinite: bool) -> VirtualDataLoader[Any]:
    """4 steps per epoch over 7 samples in batches of 2: passes end mid-epoch."""
    sampler = InfiniteSampler(7, seed=0) if infinite else None
    loader = DataLoader(IndexDataset(7), batch_size=2, sampler=sampler)
    return VirtualDataLoader(loader, STEPS_PER_EPOCH)


def bar(vl: VirtualDataLoader[Any], **kwargs: Any) -> tqdm[Any]:
    return tqdm(vl, file=io.StringIO(), **kwargs)


@pytest.mark.parametrize("infinite", [True, False])
def test_tqdm_bar_has_the_epoch_as_total_in_every_epoch(infinite: bool) -> None:
    vl = make(infinite)
    for _ in range(EPOCHS):
        progress = bar(vl)
        assert progress.total == STEPS_PER_EPOCH
        for _ in progress:
            pass
        assert progress.n == STEPS_PER_EPOCH


def test_tqdm_bar_after_a_mid_epoch_resume_starts_at_step_in_epoch() -> None:
    vl = make(infinite=True)
    batches = iter(vl)
    next(batches)
    next(batches)  # 2 of the 4 steps of epoch 0
    state = round_trip(vl.state_dict())

    resumed = make(infinite=True)
    resumed.load_state_dict(state)
    assert (resumed.epoch, resumed.step_in_epoch, len(resumed)) == (0, 2, STEPS_PER_EPOCH)
    plain_bar = bar(resumed)
    for _ in plain_bar:
        pass
    assert (plain_bar.n, plain_bar.total) == (2, STEPS_PER_EPOCH)  # ends at 2/4: looks short

    resumed = make(infinite=True)
    resumed.load_state_dict(state)
    progress = bar(resumed, initial=resumed.step_in_epoch)
    assert progress.n == 2
    for _ in progress:
        pass
    assert (progress.n, progress.total) == (STEPS_PER_EPOCH, STEPS_PER_EPOCH)  # 4/4
    assert resumed.step_in_epoch == 0
    next_epoch = bar(resumed, initial=resumed.step_in_epoch)
    assert (next_epoch.n, next_epoch.total) == (0, STEPS_PER_EPOCH)


class Training:
    """A loader, an optimizer and OneCycleLR(total_steps=EPOCHS * len(loader))."""

    def __init__(self, infinite: bool) -> None:
        self.vl = make(infinite)
        self.optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.01)
        self.schedule = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=0.1, total_steps=EPOCHS * len(self.vl)
        )
        self.rates: list[float] = []  # the rate each step ran at
        self.batches: list[list[int]] = []

    def run(self, stop_at: int | None = None) -> dict[str, Any] | None:
        """Train to the end, or return a checkpoint after step ``stop_at``."""
        for _ in range(self.vl.epoch, EPOCHS):
            for batch in self.vl:
                self.batches.append(batch.tolist())
                self.rates.append(self.optimizer.param_groups[0]["lr"])
                self.optimizer.step()
                self.schedule.step()
                if self.vl.steps == stop_at:
                    return {
                        "data": round_trip(self.vl.state_dict()),
                        "optimizer": self.optimizer.state_dict(),
                        "schedule": self.schedule.state_dict(),
                    }
        return None

    def restore(self, checkpoint: dict[str, Any]) -> None:
        self.vl.load_state_dict(checkpoint["data"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.schedule.load_state_dict(checkpoint["schedule"])


@pytest.mark.parametrize("infinite", [True, False])
def test_one_cycle_lr_sized_from_len_runs_to_the_end_exactly_over_a_resume(infinite: bool) -> None:
    reference = Training(infinite)
    assert reference.run() is None
    assert len(reference.rates) == EPOCHS * STEPS_PER_EPOCH
    assert reference.rates[-1] == pytest.approx(min(reference.rates))  # annealed to the end
    with pytest.raises(ValueError, match="Tried to step"):
        reference.schedule.step()  # one step more than the run has

    for stop_at in (1, 6, 8, 11):  # mid-epoch, and the end of an epoch
        interrupted = Training(infinite)
        checkpoint = interrupted.run(stop_at=stop_at)
        assert checkpoint is not None
        resumed = Training(infinite)
        resumed.restore(checkpoint)
        assert resumed.run() is None
        assert resumed.batches == reference.batches[stop_at:]
        assert resumed.rates == reference.rates[stop_at:]
        with pytest.raises(ValueError, match="Tried to step"):
            resumed.schedule.step()
