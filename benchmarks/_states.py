"""Checkpoints at far positions, made by arithmetic instead of by iterating there.

A state is saved after one real batch; the counters are then moved to the position wanted.
``check_*`` makes sure each edit is what a real save would hold: the edit to a small position
must equal the state saved after really iterating that far (and, for ours, the first batch
after resuming at the largest position must be the sampler's indices there).
"""

from __future__ import annotations

import copy
import gc
import itertools
from typing import TYPE_CHECKING, Any

import torch

from virtual_epochs import InfiniteSampler

if TYPE_CHECKING:
    from ._resume_setup import Setup

CHECK_BATCHES = 5


def _after(loader: Any, batches: int) -> dict[str, Any]:
    iterator = iter(loader)
    for _ in range(batches):
        next(iterator)
    state: dict[str, Any] = loader.state_dict()
    del iterator
    gc.collect()  # shut workers down
    return state


def saved_after_one_batch(loader: Any) -> dict[str, Any]:
    """Return ``loader.state_dict()`` after one batch (ours or a ``StatefulDataLoader``)."""
    return _after(loader, 1)


stateful_after_one_batch = saved_after_one_batch


def _counters(state: dict[str, Any], steps: int) -> dict[str, Any]:
    state = copy.deepcopy(state)
    steps_per_epoch = state["steps_per_epoch"]
    state.update(
        steps=steps,
        batches_in_pass=steps,
        epoch=steps // steps_per_epoch,
        batches_in_epoch=steps % steps_per_epoch,
    )
    return state


def ours_seek(template: dict[str, Any], position: int, batch: int) -> dict[str, Any]:
    """Return our "seek" state at global sample ``position`` (one endless pass)."""
    state = _counters(template, position // batch)
    state["resume"]["seek"]["position"] = position
    return state


def ours_skip(template: dict[str, Any], batches: int, batch: int) -> dict[str, Any]:
    """Return our "skip" state after ``batches`` batches of the first pass."""
    state = _counters(template, batches)
    state["resume"]["skip"]["samples_in_pass"] = batches * batch
    return state


def stateful(template: dict[str, Any], batches: int, batch: int, workers: int) -> dict[str, Any]:
    """Return a ``StatefulDataLoader`` state after ``batches`` batches of the first pass."""
    state = copy.deepcopy(template)
    snapshot = state.get("_snapshot")
    main = snapshot["_main_snapshot"] if snapshot is not None else state
    main["_sampler_iter_yielded"] = batches
    main["_sampler_iter_state"]["samples_yielded"] = batches * batch
    main["_sampler_iter_state"]["sampler_iter_state"]["yielded"] = batches * batch
    if snapshot is None:
        state["_num_yielded"] = batches
    else:
        snapshot["_snapshot_step"] = batches
        snapshot["_last_yielded_worker_id"] = (batches - 1) % workers
        state["_steps_since_snapshot"] = 0
    return state


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return torch.equal(a, b)
    return bool(a == b)


def _check(kind: str, edited: dict[str, Any], real: dict[str, Any]) -> None:
    if not _same(edited, real):
        raise RuntimeError(
            f"the arithmetic {kind} state differs from a real one after {CHECK_BATCHES} batches:"
            f"\nedited {edited}\nreal   {real}"
        )


def check_seek(setup: Setup, position: int, batch: int) -> None:
    """Check the "seek" edit, and that resuming at ``position`` yields the sampler's indices."""
    template = saved_after_one_batch(setup.ours())
    real = _after(setup.ours(), CHECK_BATCHES)
    _check("seek", ours_seek(template, CHECK_BATCHES * batch, batch), real)
    loader = setup.ours()
    loader.load_state_dict(ours_seek(template, position, batch))
    first = next(iter(loader))
    expected = list(itertools.islice(InfiniteSampler(setup.n, seed=0, start=position), batch))
    del loader
    gc.collect()
    if first.tolist() != expected:
        raise RuntimeError(f"resuming at {position} gave {first.tolist()}, expected {expected}")


def check_skip(setup: Setup, batch: int) -> None:
    template = saved_after_one_batch(setup.ours_skip())
    real = _after(setup.ours_skip(), CHECK_BATCHES)
    # The "skip" state records a per-run seed when the sampler has no generator of its own.
    template["resume"]["skip"]["pass_seeds"] = real["resume"]["skip"]["pass_seeds"]
    _check("skip", ours_skip(template, CHECK_BATCHES, batch), real)


def check_stateful(setup: Setup, batch: int) -> None:
    template = stateful_after_one_batch(setup.stateful())
    real = _after(setup.stateful(), CHECK_BATCHES)
    edited = stateful(template, CHECK_BATCHES, batch, setup.workers)
    # Seeds drawn per loader or per iterator (the sampler's generator, the workers' base
    # seed) are not positions: take them from the real state.
    mine = edited["_snapshot"]["_main_snapshot"] if setup.workers else edited
    theirs = real["_snapshot"]["_main_snapshot"] if setup.workers else real
    for key in ("_base_seed",):
        if key in theirs:
            mine[key] = theirs[key]
    mine["_sampler_iter_state"]["sampler_iter_state"]["generator"] = theirs["_sampler_iter_state"][
        "sampler_iter_state"
    ]["generator"]
    _check("StatefulDataLoader", edited, real)
