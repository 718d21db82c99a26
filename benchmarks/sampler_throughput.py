"""4. Sampler throughput: indices per second over whole passes, batched as a DataLoader does.

Each round makes new samplers and takes one whole pass from each, in lockstep (see
``_harness.lockstep``): a step is the next batch of ``BatchSampler(sampler, 256,
drop_last=False)``, or, for the bare samplers, the next 256 indices drawn one by one in a
Python loop. A pass is ``ceil(n / 256)`` steps (``InfiniteSampler`` never ends: it is cut
there). ``RandomSampler``'s first step includes its ``randperm`` and ``tolist()``, as every pass
of a training run does. The bare samplers show where the time goes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from functools import partial

from torch.utils.data import BatchSampler, RandomSampler, Sampler

from virtual_epochs import InfiniteSampler

from ._fixtures import Sized
from ._harness import (
    Mode,
    Report,
    Step,
    Table,
    fmt_ratio,
    lockstep,
    median,
    single_thread,
)

BATCH = 256
GOAL = 2.0
RANDOM, OURS = "BatchSampler(RandomSampler)", "BatchSampler(InfiniteSampler)"
RANDOM_ALONE, OURS_ALONE = "RandomSampler alone", "InfiniteSampler alone"


def _batches(make: Callable[[], Sampler[int]]) -> Step:
    return partial(next, iter(BatchSampler(make(), BATCH, drop_last=False)))


def _drain(indices: Iterable[int]) -> None:
    for _ in itertools.islice(indices, BATCH):
        pass


def _indices(make: Callable[[], Sampler[int]]) -> Step:
    return partial(_drain, iter(make()))


def _makers(n: int) -> dict[str, Callable[[], Step]]:
    def random_sampler() -> Sampler[int]:
        return RandomSampler(Sized(n))

    def infinite_sampler() -> Sampler[int]:
        return InfiniteSampler(n, seed=0)

    return {
        RANDOM: partial(_batches, random_sampler),
        OURS: partial(_batches, infinite_sampler),
        RANDOM_ALONE: partial(_indices, random_sampler),
        OURS_ALONE: partial(_indices, infinite_sampler),
    }


def run(mode: Mode) -> Report:
    thread_note = single_thread()
    n = mode.pick(10**7, 10**4)
    rounds = mode.pick(7, 2)
    steps = -(-n // BATCH)
    report = Report(
        "sampler_throughput",
        "4. Sampler throughput",
        f"Indices per second over one whole pass of n = {n} samples, in batches of {BATCH}. "
        f"Goal: BatchSampler(InfiniteSampler) >= {GOAL}x BatchSampler(RandomSampler).",
    )
    seconds: dict[str, list[float]] = {name: [] for name in _makers(1)}
    for round_index in range(mode.warmup + rounds):
        times = lockstep(_makers(n), steps, seed=round_index)
        if round_index >= mode.warmup:
            for name, nanoseconds in times.items():
                seconds[name].append(sum(nanoseconds) / 1e9)
    table = Table(
        f"n = {n}, one pass per contender per round, in lockstep, {rounds} rounds",
        ["contender", "median indices/s", "speed-up: median (quartiles)", "goal", "verdict"],
    )
    for name, values in seconds.items():
        baseline = seconds[RANDOM_ALONE if name.endswith("alone") else RANDOM]
        ratios = [base / value for base, value in zip(baseline, values, strict=True)]
        goal, cell = "", ""
        if name == OURS:
            goal = f">= {GOAL}x"
            met = median(ratios) >= GOAL
            cell = report.goal(f"throughput: ours >= {GOAL}x RandomSampler", met)
        table.add(name, f"{n / median(values) / 1e6:.1f} M", fmt_ratio(ratios), goal, cell)
    table.notes.append(thread_note)
    table.notes.append(
        "speed-up = the RandomSampler contender's time / this one's, in the same round (the "
        "batched ones against BatchSampler(RandomSampler), the bare ones against "
        "RandomSampler alone)"
    )
    table.notes.append("bare samplers: 256 indices per step, drawn one by one by a Python for loop")
    report.tables.append(table)
    return report
