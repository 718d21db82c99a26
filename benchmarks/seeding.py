"""6. The cost of keyed randomness: seeding every sample's generators from its position.

A sample takes 1 ms to load (``time.sleep``: I/O-bound loading, as in ``boundary``) and then
draws a small augmentation from torch's global generator. The same pipeline runs plain (the
DataLoader's worker seeds) and keyed (``KeyedSampler`` + ``KeyedDataset``, all three global
generators, or torch's alone), side by side in one run, in batches of 16:

- with 2 workers, where seeding happens in the workers and nothing is restored;
- with ``num_workers=0``, where the main process's global states are saved and restored
  around each batch (``__getitems__``), or around each sample (``batch_size=None``).

Each contender hands out its first batch untimed (worker start-up is paid by all alike), then
the next batches are timed. A third table times the pieces alone, in this process.
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
        f"Seconds for a run of batches of {BATCH} samples that each take 1 ms to load (sleep) "
        "and draw noise from torch's global generator: plain against keyed. Goals: keyed "
        f"(all three generators) <= {GOALS['workers']}x plain with {WORKERS} workers, "
        f"<= {GOALS['main']}x plain with num_workers=0.",
    )
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
            f"{where}, {samples} timed samples, {rounds} rounds",
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
            if name == "keyed: torch, random, numpy":
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
