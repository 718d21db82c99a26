"""6. The cost of keyed randomness: seeding every sample's generators from its position.

A sample takes 1 ms to load (``time.sleep``: I/O-bound loading, as in ``boundary``) and then
draws a small augmentation from torch's global generator. The same pipeline runs plain (the
DataLoader's worker seeds) and keyed (``KeyedSampler`` + ``KeyedDataset``, all three global
generators, or torch's alone), side by side in one run, in batches of 16:

- with 2 workers, where seeding happens in the workers and nothing is restored;
- with ``num_workers=0``, where the main process's global states are saved and restored
  around each batch (``__getitems__``), or around each sample (``batch_size=None``).

End to end, each contender hands out its first batch untimed (worker start-up is paid by all
alike), then the next batches are timed; on a shared 2-core machine those ratios move by
several percent from round to round. So the cost of seeding is also measured where it is
paid: inside the workers, each sample's fetch is timed by the worker itself, for the plain and
the keyed dataset side by side (one worker each, running at the same time, so that load from
elsewhere falls on both); the goal with workers is checked on those medians. A last table
times the pieces alone, in this process.
"""

from __future__ import annotations

import gc
import time
import timeit
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from virtual_epochs import InfiniteSampler, KeyedDataset, KeyedSampler, SampleKey
from virtual_epochs._sample_seeds import GlobalStates, seed_globals

from ._harness import (
    Measure,
    Mode,
    Report,
    Table,
    fmt_ratio,
    fmt_seconds,
    interleave,
    median,
    paired_ratios,
    single_thread,
)

SAMPLES, BATCH, WORKERS, LOAD_S = 4096, 16, 2, 0.001
GOALS = {"workers": 1.01, "main": 1.10}


class Augmented(Dataset[torch.Tensor]):
    """Loading a sample sleeps ``seconds``, then it gets noise from torch's global generator."""

    def __init__(self, n: int, seconds: float) -> None:
        self.n = n
        self.seconds = seconds

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> torch.Tensor:
        time.sleep(self.seconds)
        return torch.full((8,), float(index)) + torch.rand(8)


def _loader(keyed: tuple[str, ...] | None, workers: int, batch: int | None) -> DataLoader[Any]:
    data: Dataset[Any] = Augmented(SAMPLES, LOAD_S)
    sampler: Any = InfiniteSampler(SAMPLES, seed=0)
    if keyed is not None:
        data = KeyedDataset(data, generators=keyed)
        sampler = KeyedSampler(sampler, seed=1)
    return DataLoader(
        data,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        generator=torch.Generator().manual_seed(0),
    )


ALL = ("torch", "random", "numpy")
CONTENDERS: dict[str, dict[str, tuple[tuple[str, ...] | None, int | None]]] = {
    "workers": {
        "plain (worker seeds)": (None, BATCH),
        "keyed: torch, random, numpy": (ALL, BATCH),
        "keyed: torch only": (("torch",), BATCH),
    },
    "main": {
        "plain (worker seeds)": (None, BATCH),
        "keyed: torch, random, numpy": (ALL, BATCH),
        "keyed: torch only": (("torch",), BATCH),
        "plain, batch_size=None": (None, None),
        "keyed, batch_size=None (restore per sample)": (ALL, None),
    },
}


def _measure(make: Callable[[], DataLoader[Any]], batches: int) -> Measure:
    def once() -> float:
        loader = make()
        iterator: Iterator[Any] = iter(loader)
        next(iterator)  # worker start-up and the first batch: untimed
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        seconds = time.perf_counter() - start
        del iterator, loader  # shut the workers down before the next contender starts
        gc.collect()
        return seconds

    return once


class Timed(Dataset[int]):
    """Each sample is the nanoseconds its fetch took, timed inside the process that ran it."""

    def __init__(self, inner: Dataset[Any], keyed: bool) -> None:
        self.inner = inner
        self.keyed = keyed

    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, key: Any) -> int:
        start = time.perf_counter_ns()
        if self.keyed:
            self.inner[key]
        else:
            self.inner[key.index]  # the same index, a plain fetch
        return time.perf_counter_ns() - start


def _in_workers(mode: Mode, report: Report) -> Table:
    """Median time to fetch one sample inside a worker, plain and keyed, side by side."""
    samples = mode.pick(3000, 48)
    contenders: dict[str, Dataset[Any]] = {
        "plain (worker seeds)": Timed(Augmented(SAMPLES, LOAD_S), keyed=False),
        "keyed: torch, random, numpy": Timed(
            KeyedDataset(Augmented(SAMPLES, LOAD_S), generators=ALL), keyed=True
        ),
        "keyed: torch only": Timed(
            KeyedDataset(Augmented(SAMPLES, LOAD_S), generators=("torch",)), keyed=True
        ),
    }
    iterators = {
        name: iter(
            DataLoader(
                data,
                batch_size=BATCH,
                sampler=KeyedSampler(InfiniteSampler(SAMPLES, seed=0), seed=1),
                num_workers=1,
            )
        )
        for name, data in contenders.items()
    }
    times: dict[str, list[int]] = {name: [] for name in contenders}
    for _ in range(samples // BATCH):
        for name, iterator in iterators.items():  # all workers run at once
            times[name].extend(next(iterator).tolist())
    del iterators
    gc.collect()
    table = Table(
        f"inside the workers: one sample's fetch, {samples} samples each, one worker each, "
        "all running at once",
        ["contender", "median fetch", "vs plain", "extra per sample", "goal", "verdict"],
    )
    plain = median(times["plain (worker seeds)"])
    for name, values in times.items():
        value = median(values)
        ratio = value / plain
        goal = cell = ""
        if name == "keyed: torch, random, numpy":
            limit = GOALS["workers"]
            goal = f"<= {limit}x"
            cell = report.goal(f"seeding, in the workers: keyed <= {limit}x plain", ratio <= limit)
        is_plain = name.startswith("plain")
        table.add(
            name,
            fmt_seconds(value * 1e-9),
            "1 (itself)" if is_plain else f"{ratio:.4f}x",
            "" if is_plain else f"{(value - plain) / 1e3:+.1f} us",
            goal,
            cell,
        )
    table.notes.append(
        "each worker times its own fetches (time.perf_counter_ns around dataset[key]) and "
        "returns the nanoseconds as the sample: the DataLoader's transfer is not in the figure, "
        "and is the same for both"
    )
    return table


def _pieces(mode: Mode) -> Table:
    """The per-sample pieces alone, in this process: the floor under the pipeline figures."""
    positions = iter(range(1 << 40))
    table = Table(
        "the pieces alone, per call, this process ("
        + mode.pick("best of 7 runs of about 0.2 s each", "one run of 20 calls")
        + ")",
        ["piece", "time per call"],
    )
    pieces: dict[str, Callable[[], object]] = {
        "seed torch, random and numpy for one position": lambda: seed_globals(1, next(positions)),
        "seed torch alone": lambda: torch.default_generator.manual_seed(next(positions)),
        "torch.manual_seed (every device backend), for comparison": lambda: torch.manual_seed(
            next(positions)
        ),
        "save and restore torch, random and numpy (main process, per batch)": lambda: (
            GlobalStates().restore()
        ),
        "SampleKey(...).torch_generator()": lambda: SampleKey(
            0, next(positions), 1
        ).torch_generator(),
    }
    state = torch.get_rng_state()
    for name, call in pieces.items():
        timer = timeit.Timer(call)
        number = 20 if mode.smoke else timer.autorange()[0]
        best = min(timer.repeat(number=number, repeat=mode.pick(7, 1))) / number
        table.add(name, fmt_seconds(best))
    torch.set_rng_state(state)
    table.notes.append(
        "torch.default_generator.manual_seed seeds the CPU generator only; torch.manual_seed "
        "also visits every device backend (here CPU-only torch)"
    )
    return table


def run(mode: Mode) -> Report:
    thread_note = single_thread()
    rounds = mode.pick(7, 1)
    report = Report(
        "seeding",
        "6. Keyed randomness: the cost of seeding each sample",
        f"Batches of {BATCH} samples that each take 1 ms to load (sleep) and draw noise from "
        "torch's global generator: plain against keyed. Goals: keyed (all three generators) "
        f"<= {GOALS['workers']}x plain in the workers, <= {GOALS['main']}x plain end to end "
        "with num_workers=0.",
    )
    report.tables.append(_in_workers(mode, report))
    for setting, contenders in CONTENDERS.items():
        workers = WORKERS if setting == "workers" else 0
        samples = mode.pick(1280 if workers else 640, 32)
        measures = {}
        counts = {}
        for name, (keyed, batch) in contenders.items():
            count = samples // (batch or 1)
            counts[name] = samples
            measures[name] = _measure(
                lambda keyed=keyed, batch=batch, workers=workers: _loader(keyed, workers, batch),
                count,
            )
        times = interleave(measures, rounds, warmup=mode.warmup)
        where = f"{workers} workers" if workers else "num_workers=0"
        table = Table(
            f"end to end, {where}, {samples} timed samples, {rounds} rounds",
            [
                "contender",
                "median time",
                "per sample",
                "vs its plain run: median (quartiles)",
                "extra per sample",
                "goal",
                "verdict",
            ],
        )
        for name, values in times.items():
            base_name = (
                "plain, batch_size=None" if "batch_size=None" in name else ("plain (worker seeds)")
            )
            base = times[base_name]
            ratios = paired_ratios(values, base)
            extra = median([v - b for v, b in zip(values, base, strict=True)]) / counts[name]
            goal = cell = ""
            if name == "keyed: torch, random, numpy" and not workers:
                limit = GOALS[setting]
                goal = f"<= {limit}x"
                cell = report.goal(
                    f"seeding, {where}: keyed <= {limit}x plain", median(ratios) <= limit
                )
            elif name == "keyed, batch_size=None (restore per sample)":
                goal = f"(<= {GOALS['main']}x)"
                cell = "met" if median(ratios) <= GOALS["main"] else "over"
            table.add(
                name,
                fmt_seconds(median(values)),
                fmt_seconds(median(values) / counts[name]),
                "1 (itself)" if name == base_name else fmt_ratio(ratios),
                "" if name == base_name else f"{extra * 1e6:+.1f} us",
                goal,
                cell,
            )
        table.notes.append(
            "ratio = (keyed time) / (plain time) in the same round: 1.01 is 1% slower; extra "
            "per sample = the median of the paired differences over the samples"
        )
        if not workers:
            table.notes.append(
                "without workers the global states are saved before and restored after each "
                "batch (one __getitems__ call), or each sample with batch_size=None: numpy's "
                "get_state/set_state pair is most of that"
            )
        table.notes.append(thread_note + "; workers run one thread each anyway")
        report.tables.append(table)
    report.tables.append(_pieces(mode))
    return report
