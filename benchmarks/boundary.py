"""2. Throughput across pass boundaries, with two DataLoader workers.

A pass is 256 samples that each take 1 ms to load (``time.sleep``: I/O-bound loading, as from
disk or network; a busy loop would instead measure how three processes share two cores), in
batches of 16, so 16 batches per pass and about 8 ms per batch with 2 workers. Each contender
hands out its first batch untimed (worker start-up is paid by all alike), then the next
``passes * 16`` batches are timed, crossing ``passes`` pass boundaries. With a "training step"
the loop sleeps 10 ms after each batch, so the workers have slack to prefetch in.
"""

from __future__ import annotations

import gc
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from torch.utils.data import DataLoader

from virtual_epochs import InfiniteSampler, VirtualDataLoader

from ._fixtures import BlogLoader, EndlessPermutations, Slow
from ._harness import (
    Measure,
    Mode,
    Report,
    Table,
    fmt_ratio,
    interleave,
    median,
    paired_ratios,
    single_thread,
)

SAMPLES, BATCH, WORKERS, LOAD_S, STEP_S = 256, 16, 2, 0.001, 0.010
GOALS = {"blog wrapper (default workers)": 1.2, "bare endless DataLoader": 0.97}


def _loader(**kwargs: Any) -> DataLoader[Any]:
    return DataLoader(Slow(SAMPLES, LOAD_S), batch_size=BATCH, num_workers=WORKERS, **kwargs)


def _factories(total: int) -> dict[str, Callable[[], Iterable[Any]]]:
    return {
        "blog wrapper (default workers)": lambda: BlogLoader(_loader(shuffle=True), total),
        "blog wrapper (persistent_workers=True)": lambda: BlogLoader(
            _loader(shuffle=True, persistent_workers=True), total
        ),
        "ours (InfiniteSampler)": lambda: VirtualDataLoader(
            _loader(sampler=InfiniteSampler(SAMPLES, seed=0)), total
        ),
        "bare endless DataLoader": lambda: itertools.islice(
            _loader(sampler=EndlessPermutations(SAMPLES)), total
        ),
    }


def _measure(make: Callable[[], Iterable[Any]], batches: int, step_s: float) -> Measure:
    def once() -> float:
        source = make()
        iterator: Iterator[Any] = iter(source)
        next(iterator)  # worker start-up and the first batch: untimed
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
            if step_s:
                time.sleep(step_s)
        seconds = time.perf_counter() - start
        del iterator, source  # shut the workers down before the next contender starts
        gc.collect()
        return seconds

    return once


def run(mode: Mode) -> Report:
    thread_note = single_thread()
    passes = mode.pick(8, 1)
    rounds = mode.pick(5, 1)
    batches = passes * (SAMPLES // BATCH)
    report = Report(
        "boundary",
        "2. Pass-boundary throughput (2 workers)",
        f"Batches per second over {passes} passes of {SAMPLES} samples (1 ms each, sleep), "
        f"batch {BATCH}, {WORKERS} workers. Goals: ours >= 1.2x the blog wrapper with default "
        "workers, >= 0.97x a bare DataLoader whose sampler never ends.",
    )
    for step_s in (0.0, STEP_S):
        factories = _factories(batches + 1)
        contenders = {name: _measure(make, batches, step_s) for name, make in factories.items()}
        times = interleave(contenders, rounds, warmup=mode.warmup)
        step = f"{step_s * 1000:.0f} ms training step" if step_s else "no training step"
        table = Table(
            f"{step}, {batches} timed batches, {rounds} rounds",
            ["contender", "median batches/s", "ours vs it: median (quartiles)", "goal", "verdict"],
        )
        ours = times["ours (InfiniteSampler)"]
        for name, values in times.items():
            # Throughput ratio ours / contender = time of contender / time of ours.
            ratios = paired_ratios(values, ours)
            goal, cell, ratio = "", "", fmt_ratio(ratios)
            if name in GOALS:
                goal = f"ours >= {GOALS[name]}x"
                cell = report.goal(
                    f"boundary, {step}: ours >= {GOALS[name]}x {name}",
                    median(ratios) >= GOALS[name],
                )
            elif name.startswith("ours"):
                ratio = "1 (itself)"
            table.add(name, f"{batches / median(values):.1f}", ratio, goal, cell)
        table.notes.append(
            "ratio = (contender's time) / (ours' time) in the same round: above 1, ours is faster"
        )
        table.notes.append(
            "loading a sample is time.sleep(1 ms): I/O-bound loading; a busy loop would measure "
            "how two workers and the main process share two cores instead"
        )
        table.notes.append(thread_note + "; workers run one thread each anyway")
        report.tables.append(table)
    return report
