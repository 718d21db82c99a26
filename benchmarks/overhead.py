"""1. Per-step overhead: VirtualDataLoader against iterating the DataLoader directly.

Every contender iterates a ``DataLoader(Indices(batch * steps), batch_size=batch)`` in the main
process (``num_workers=0``), one pass of ``steps`` batches per round, in lockstep: step ``i`` of
every contender is taken (``next(iterator)``, as a ``for`` loop does) and timed before step
``i + 1`` of any, in an order shuffled at every step. A neighbour's burst of load then falls on
all contenders alike: timing whole passes one after the other gave quartiles of +-5-10% on the
2-core machine, against a goal of 1%. A rotated order is not enough: each contender then nearly
always runs right after the same other one, and inherits the caches it left (1.5% bias seen).
An A/A control (direct iteration twice) shows the method's own error, and a bare generator
(``yield from loader``) the least that any Python-level wrapper can cost. The heavier references
run in a lockstep group of their own (``GROUPS``). A step in which any contender took over
``OUTLIER`` times its median (a preemption) is dropped for all of them. Each contender's first
step includes making its iterator (the blog wrapper makes it in its constructor).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader  # type: ignore[import-untyped]  # no stubs

from virtual_epochs import InfiniteSampler, VirtualDataLoader

from ._fixtures import BlogLoader, Countdowns, Indices
from ._harness import (
    Measure,
    Mode,
    Report,
    Step,
    Table,
    fmt_ratio,
    interleave,
    lockstep,
    median,
    single_thread,
    timed,
)

GOAL = 1.01
OUTLIER = 10
CONTROL = "direct again (A/A control)"
SAVING = "ours + state_dict() every step"
TORCHDATA = "torchdata StatefulDataLoader"
BARE = "a bare generator (yield from)"
# Lockstep groups, each against its own "direct". The heavier references run apart: beside
# them, the cheap contenders' steps find the caches cold and cost ~300 ns more, wrappers alike.
GROUPS = (("direct", CONTROL, BARE, "blog wrapper", "ours"), ("direct", SAVING, TORCHDATA))


def _makers(batch: int, steps: int) -> dict[str, Callable[[], Step]]:
    """Return each contender's maker: it makes the iterator, and each step is ``next()`` of it
    (as a ``for`` loop takes it, through ``tp_iternext``)."""
    dataset = Indices(batch * steps)
    loader = DataLoader(dataset, batch_size=batch)
    stateful = StatefulDataLoader(dataset, batch_size=batch)

    def saving() -> Iterator[Any]:
        vl = VirtualDataLoader(loader, steps)
        for item in vl:
            vl.state_dict()
            yield item

    def bare() -> Iterator[Any]:
        yield from loader

    iterables: dict[str, Callable[[], Iterable[Any]]] = {
        "direct": lambda: loader,
        CONTROL: lambda: loader,
        BARE: bare,
        "blog wrapper": lambda: BlogLoader(loader, steps),
        "ours": lambda: VirtualDataLoader(loader, steps),
        SAVING: saving,
        TORCHDATA: lambda: stateful,
    }
    return {name: partial(_stepper, make) for name, make in iterables.items()}


def _stepper(make: Callable[[], Iterable[Any]]) -> Step:
    return partial(next, iter(make()))


def _round_ratios(times: dict[str, list[int]]) -> tuple[dict[str, float], dict[str, float]]:
    """Return each contender's mean step (s) and its ratio to "direct", outlier steps dropped."""
    limits = {name: OUTLIER * median(values) for name, values in times.items()}
    keep = [
        i
        for i in range(len(times["direct"]))
        if i == 0 or all(values[i] <= limits[name] for name, values in times.items())
    ]
    sums = {name: sum(values[i] for i in keep) for name, values in times.items()}
    means = {name: total / len(keep) / 1e9 for name, total in sums.items()}
    return means, {name: total / sums["direct"] for name, total in sums.items()}


def _measure(
    batch: int, steps: int, rounds: int, warmup: int
) -> tuple[dict[str, list[float]], ...]:
    """Return per-round mean steps and ratios, after ``warmup`` rounds thrown away.

    Each round runs every group of ``GROUPS`` in lockstep, on freshly built loaders (so that
    where their objects land in memory varies from round to round).
    """
    means: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}
    for round_index in range(warmup + rounds):
        for group in GROUPS:
            makers = _makers(batch, steps)
            times = lockstep({name: makers[name] for name in group}, steps)
            round_means, round_ratios = _round_ratios(times)
            if round_index < warmup:
                continue
            for name in group[1:] if group is not GROUPS[0] else group:
                means.setdefault(name, []).append(round_means[name])
                ratios.setdefault(name, []).append(round_ratios[name])
    return means, ratios


def run(mode: Mode) -> Report:
    thread_note = single_thread()
    rounds = mode.pick(21, 2)
    report = Report(
        "overhead",
        "1. Per-step overhead (num_workers=0)",
        "Time per batch handed to the loop, for one pass over a trivial map-style dataset "
        "(`__getitem__` returns the index), iterated in the main process. Goal: ours <= "
        f"{GOAL}x direct iteration.",
    )
    for batch, steps in ((1, mode.pick(10_000, 300)), (64, mode.pick(2_000, 50))):
        means, ratios = _measure(batch, steps, rounds, mode.warmup)
        table = Table(
            f"batch_size={batch}, {steps} steps per round in lockstep, {rounds} rounds",
            ["contender", "median per step", "vs direct: median (quartiles)", "goal", "verdict"],
        )
        for name, values in means.items():
            goal, cell = "", ""
            if name == "ours":
                goal = f"<= {GOAL}x"
                met = median(ratios[name]) <= GOAL
                cell = report.goal(f"overhead, batch {batch}: ours <= {GOAL}x direct", met)
            elif name == CONTROL:
                goal = "the method's own error"
            elif name == BARE:
                goal = "reference: the least a generator costs"
            elif name in GROUPS[1][1:]:
                goal = "reference (own group)"
            elif name != "direct":
                goal = "reference"
            table.add(name, f"{median(values) * 1e6:.2f} us", fmt_ratio(ratios[name]), goal, cell)
        table.notes.append(thread_note)
        table.notes.append(
            "garbage collector off inside each round (collected before it); steps over "
            f"{OUTLIER}x a contender's median dropped for all contenders"
        )
        table.notes.append(
            "'own group': run in a lockstep group of its own with a direct baseline of its own; "
            "beside these heavier contenders the wrappers' steps cost ~300 ns more (cold caches)"
        )
        table.notes.append(
            "ours wraps a plain DataLoader here, so its strategy is 'skip'; state_dict() with "
            "'seek' (InfiniteSampler) costs less, see the last table"
        )
        report.tables.append(table)
    report.tables.append(_bare(mode, rounds))
    return report


def _bare(mode: Mode, rounds: int) -> Table:
    """The wrappers' own cost per step, over a list and over a Python-level iterator."""
    steps = mode.pick(200_000, 1_000)
    table = Table(
        f"the wrappers alone: {steps} batches of nothing, {rounds} rounds",
        [
            "contender",
            "over a list: per step",
            "added vs direct (median)",
            "over a Python iterator: per step",
            "added vs direct (median)",
        ],
    )
    cells: dict[str, list[str]] = {}
    for source in ([None] * steps, Countdowns(steps)):
        contenders: dict[str, Measure] = {
            "direct": partial(_timed_drain, partial(iter, source)),
            "blog wrapper": partial(_timed_drain, partial(BlogLoader, source, steps)),
            "ours": partial(_timed_drain, partial(VirtualDataLoader, source, steps)),
        }
        times = interleave(contenders, rounds, warmup=mode.warmup)
        for name, values in times.items():
            added = median([v - d for v, d in zip(values, times["direct"], strict=True)]) / steps
            cells.setdefault(name, []).extend(
                [f"{median(values) / steps * 1e9:.0f} ns", f"{added * 1e9:.0f} ns"]
            )
    for name, row in cells.items():
        table.add(name, *row)
    loader = DataLoader(Indices(steps), batch_size=1)
    for strategy, vl in (
        ("skip", VirtualDataLoader(loader, steps)),
        (
            "seek",
            VirtualDataLoader(DataLoader(Indices(steps), sampler=InfiniteSampler(steps)), steps),
        ),
    ):
        iterator = iter(vl)
        next(iterator)
        calls = steps // 10
        seconds = median([timed(partial(_call, vl.state_dict, calls)) for _ in range(5)])
        table.add(
            f"ours: one state_dict() call ({strategy})",
            f"{seconds / calls * 1e9:.0f} ns",
            "",
            "",
            "",
        )
        del iterator
    table.notes.append(
        "an informative table: no goal; it shows the per-step cost without the DataLoader's. "
        "A DataLoader's iterator has a Python-level `__next__`, as the second source has: ours "
        "calls it directly from its generator, so over it ours adds least"
    )
    return table


def _timed_drain(make: Callable[[], Iterable[object]]) -> float:
    iterable = make()  # built outside the timed block, as the loaders are
    return timed(lambda: _drain(iterable))


def _drain(items: Iterable[object]) -> None:
    for _ in items:
        pass


def _call(function: Callable[[], object], times: int) -> None:
    for _ in range(times):
        function()
