"""7. Mixtures: throughput, index memory, first index far away, resume latency.

Throughput: a 3-source mixture (10^3, 10^6 and 10^9 samples, weights 0.2, 0.3, 0.5) through
``BatchSampler(..., 256)``, in lockstep (``_harness.lockstep``) with ``InfiniteSampler`` over
one source of the same total, a ``RandomSampler`` over a ``ConcatDataset`` (of 10^3, 10^6 and
10^7 samples: at 10^9 its ``randperm`` alone would take 8 GB; its cost per index does not
depend on ``n``, and one whole pass, ``randperm`` included, is measured) and torchdata's
``MultiNodeWeightedSampler`` over the same three sources, each source an endless
``InfiniteSampler`` order (the cheapest endless shuffle there is at 10^9), batched by
``nodes.Batcher``. Memory: Megatron's ``BlendedDataset`` index arrays from its own formula
(an ``int16`` source and an ``int64`` sample index per sample), and ours measured in a fresh
process with 1,000 sources of 10^9 samples. Resume: ``load_state_dict`` of a state at the
position, then the first batch of 256.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from torch.utils.data import BatchSampler, ConcatDataset, RandomSampler, Sampler
from torchdata import nodes  # type: ignore[import-untyped]  # no stubs

from virtual_epochs import InfiniteSampler, MixtureSampler

from ._fixtures import Sized
from ._harness import (
    Mode,
    Report,
    Step,
    Table,
    fmt_count,
    fmt_ratio,
    fmt_seconds,
    lockstep,
    median,
    single_thread,
)

BATCH = 256
SIZES = [10**3, 10**6, 10**9]
WEIGHTS = [0.2, 0.3, 0.5]
GOAL_VS_INFINITE = 0.5
GOAL_VS_RANDOM = 2.0
GOAL_MIB = 32.0
GOAL_FIRST_S = 1e-3
OURS, INFINITE = "BatchSampler(MixtureSampler)", "BatchSampler(InfiniteSampler)"
RANDOM, TORCHDATA = "BatchSampler(RandomSampler(ConcatDataset))", "MultiNodeWeightedSampler"
ROOT = Path(__file__).resolve().parent.parent


def _batches(make: Callable[[], Sampler[int]]) -> Step:
    return partial(next, iter(BatchSampler(make(), BATCH, drop_last=False)))


def _torchdata() -> Step:
    offsets = [0, *itertools.accumulate(SIZES)]
    sources = {
        f"source{k}": nodes.Mapper(
            nodes.SamplerWrapper(InfiniteSampler(size, seed=k)), partial(int.__add__, offsets[k])
        )
        for k, size in enumerate(SIZES)
    }
    weights = {f"source{k}": float(w) for k, w in enumerate(WEIGHTS)}
    root = nodes.Batcher(
        nodes.MultiNodeWeightedSampler(
            sources, weights, stop_criteria="CYCLE_FOREVER", rank=0, world_size=1, seed=0
        ),
        BATCH,
    )
    root.reset()
    return partial(next, root)


def _makers(random_sizes: list[int]) -> dict[str, Callable[[], Step]]:
    def mixture() -> Sampler[int]:
        return MixtureSampler(SIZES, WEIGHTS, seed=0)

    def infinite() -> Sampler[int]:
        return InfiniteSampler(sum(SIZES), seed=0)

    def random() -> Sampler[int]:
        return RandomSampler(ConcatDataset([Sized(n) for n in random_sizes]))  # type: ignore[arg-type]  # a sized stand-in

    return {
        OURS: partial(_batches, mixture),
        INFINITE: partial(_batches, infinite),
        RANDOM: partial(_batches, random),
        TORCHDATA: _torchdata,
    }


def _throughput(mode: Mode, report: Report) -> None:
    random_sizes = mode.pick([10**3, 10**6, 10**7], [10**3, 10**3, 10**4])
    steps = -(-sum(random_sizes) // BATCH)  # one whole pass of the RandomSampler
    rounds = mode.pick(5, 1)
    seconds: dict[str, list[float]] = {name: [] for name in _makers(random_sizes)}
    for round_index in range(mode.warmup + rounds):
        times = lockstep(_makers(random_sizes), steps, seed=round_index)
        if round_index >= mode.warmup:
            for name, nanoseconds in times.items():
                seconds[name].append(sum(nanoseconds) / 1e9)
    table = Table(
        f"sources of {', '.join(map(fmt_count, SIZES))} samples, weights {WEIGHTS}, {steps} "
        f"batches of {BATCH} per contender per round, in lockstep, {rounds} rounds",
        ["contender", "median indices/s", "ours' speed-up: median (quartiles)", "goal", "verdict"],
    )
    indices = steps * BATCH
    for name, values in seconds.items():
        ratios = [theirs / ours for ours, theirs in zip(seconds[OURS], values, strict=True)]
        goal, cell, shown = "", "", fmt_ratio(ratios) if name != OURS else ""
        if name == INFINITE:
            goal = f">= {GOAL_VS_INFINITE}x"
            met = median(ratios) >= GOAL_VS_INFINITE
            cell = report.goal(f"mixture throughput >= {GOAL_VS_INFINITE}x InfiniteSampler", met)
        if name == RANDOM:
            goal = f">= {GOAL_VS_RANDOM}x"
            met = median(ratios) >= GOAL_VS_RANDOM
            cell = report.goal(f"mixture throughput >= {GOAL_VS_RANDOM}x RandomSampler", met)
        table.add(name, f"{indices / median(values) / 1e6:.2f} M", shown, goal, cell)
    table.notes.append(single_thread())
    table.notes.append(
        "speed-up = the contender's time / ours in the same round (above 1: ours is faster)"
    )
    table.notes.append(
        f"RandomSampler over a ConcatDataset of {', '.join(map(fmt_count, random_sizes))} "
        "samples (a whole pass, randperm included); InfiniteSampler over one source of "
        f"{fmt_count(sum(SIZES))} samples; MultiNodeWeightedSampler's sources are "
        "SamplerWrapper(InfiniteSampler) nodes"
    )
    report.tables.append(table)


def _probe(sources: int, size: int, start: int, draw: int) -> dict[str, Any]:
    """Peak RSS increase and time to first index of a fresh mixture, in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.mixture", *map(str, (sources, size, start, draw))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the mixture memory probe failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def probe(sources: int, size: int, start: int, draw: int) -> dict[str, Any]:
    """Run in a fresh process: make a mixture, time its first index, draw ``draw`` indices."""
    from ._memory_probe import _peak_kib, _reset_peak

    single_thread()
    warm = MixtureSampler([10, 10], [1, 1])
    list(itertools.islice(warm, 10))
    reset = _reset_peak()
    before = _peak_kib()
    began = time.perf_counter()
    sampler = MixtureSampler([size] * sources, list(range(1, sources + 1)), seed=0, start=start)
    iterator = iter(sampler)
    next(iterator)
    first = time.perf_counter() - began
    for _ in itertools.islice(iterator, draw - 1):
        pass
    return {"peak_mib": (_peak_kib() - before) / 1024, "first_s": first, "reset": reset}


def _memory(mode: Mode, report: Report) -> None:
    draw = mode.pick(100_000, 1_000)
    rounds = mode.pick(3, 1)
    table = Table(
        f"index memory and the first index, a fresh process per run, first {draw} indices drawn",
        ["what", "sources x samples", "start", "memory", "time to first index", "goal", "verdict"],
    )
    for total in (10**8, 10**10):
        table.add(
            "Megatron BlendedDataset index (formula: 2 + 8 bytes a sample)",
            f"any, {fmt_count(total)} in all",
            "",
            f"{10 * total / 2**30:.1f} GiB, built before the first sample",
            "",
            "",
            "",
        )
    size = mode.pick(10**9, 10**6)
    for sources, start in ((3, 10**12), (1000, 0), (1000, 10**12)):
        found = [_probe(sources, size, start, draw) for _ in range(rounds)]
        peak = max(result["peak_mib"] for result in found)
        first = median([result["first_s"] for result in found])
        goal, cell = "", ""
        if sources == 1000 and start == 0:
            goal = f"< {GOAL_MIB:.0f} MiB"
            cell = report.goal(
                f"mixture memory, 1000 sources of {fmt_count(size)}: < {GOAL_MIB:.0f} MiB",
                peak < GOAL_MIB,
            )
        if sources == 3:
            goal = f"< {fmt_seconds(GOAL_FIRST_S)}"
            cell = report.goal(
                f"mixture first index at {fmt_count(start)}: < {fmt_seconds(GOAL_FIRST_S)}",
                first < GOAL_FIRST_S,
            )
        table.add(
            "MixtureSampler (peak RSS increase)",
            f"{sources} x {fmt_count(size)}",
            fmt_count(start),
            f"{peak:.1f} MiB",
            fmt_seconds(first),
            goal,
            cell,
        )
    table.notes.append(
        "Megatron: BlendedDataset builds dataset_index (int16) and dataset_sample_index (int64) "
        "for every sample of the run up front, by its greedy choice"
    )
    table.notes.append(
        "ours: the peak of the runs; time = their median, from making the sampler to its "
        "first index, in a process that has made one small mixture before"
    )
    report.tables.append(table)


def _resume(mode: Mode, report: Report) -> None:
    rounds = mode.pick(21, 3)
    positions = [10**3, 10**6, 10**9, 10**12]
    table = Table(
        f"load_state_dict + first batch of {BATCH}, median of {rounds}",
        ["sampler", "position", "resume latency"],
    )
    latencies = []
    for position in positions:
        saved = MixtureSampler(SIZES, WEIGHTS, seed=0, start=position).state_dict()
        times = []
        for _ in range(rounds):
            sampler = MixtureSampler(SIZES, WEIGHTS, seed=0)
            began = time.perf_counter()
            sampler.load_state_dict(saved)
            next(iter(BatchSampler(sampler, BATCH, drop_last=False)))
            times.append(time.perf_counter() - began)
        latencies.append(median(times))
        table.add("MixtureSampler, 3 sources", fmt_count(position), fmt_seconds(latencies[-1]))
    flat = max(latencies) <= 3 * min(latencies)
    table.notes.append(
        "flat: the slowest position within 3x of the fastest: "
        + report.goal("mixture resume latency flat in the position", flat)
    )
    report.tables.append(table)


def _small_sources(mode: Mode, report: Report) -> None:
    """Per-index cost of one rank's chunk of positions, for small and large n, many ranks."""
    from virtual_epochs._permutation import indices

    count = mode.pick(32768, 4096)
    rounds = mode.pick(7, 1)
    sizes = [10, 1000, 1024, 1025, 10**6, 10**10]
    worlds = [1, 64, 4096]
    table = Table(
        f"per-index cost of a rank's chunk of {count} positions (stride = world size), median "
        f"of {rounds}, InfiniteSampler's order",
        ["n", *(f"W = {w}" for w in worlds), "worst / 10^10's at the same W", "goal", "verdict"],
    )
    cost: dict[tuple[int, int], float] = {}
    for n in sizes:
        for world in worlds:
            times = []
            for r in range(mode.warmup + rounds):
                began = time.perf_counter()
                indices(12345 + r * count * world, world, count, n=n, seed=1, shuffle=True)
                times.append(time.perf_counter() - began)
            cost[n, world] = median(times[mode.warmup :]) / count
    for n in sizes:
        ratio = max(cost[n, w] / cost[10**10, w] for w in worlds)
        goal, cell = "", ""
        if n <= 1024:
            goal = "<= 3x"
            cell = report.goal(
                f"small sources on many ranks: n = {n} within 3x of 10^10", ratio <= 3
            )
        table.add(f"{n:,}", *(fmt_seconds(cost[n, w]) for w in worlds), f"{ratio:.2f}x", goal, cell)
    table.notes.append(
        "n <= 1024: a swap-or-not network (12 rounds and a keyed rotation); above, the Feistel "
        "network. Before the swap-or-not network, n = 1000 at W = 4096 sorted a whole pass per "
        "index: about 20 us"
    )
    report.tables.append(table)


def run(mode: Mode) -> Report:
    report = Report(
        "mixture",
        "7. Mixtures",
        f"A mixture of {len(SIZES)} sources beside InfiniteSampler, RandomSampler and torchdata's "
        "MultiNodeWeightedSampler; index memory beside Megatron's; first index and resume "
        f"latency far into the stream. Goals: >= {GOAL_VS_INFINITE}x InfiniteSampler and >= "
        f"{GOAL_VS_RANDOM}x RandomSampler in throughput, < {GOAL_MIB:.0f} MiB with 1000 sources "
        f"of 10^9, first index at 10^12 < {fmt_seconds(GOAL_FIRST_S)}, resume flat.",
    )
    _throughput(mode, report)
    _memory(mode, report)
    _resume(mode, report)
    _small_sources(mode, report)
    return report


if __name__ == "__main__":
    count_arg, size_arg, start_arg, draw_arg = map(int, sys.argv[1:])
    print(json.dumps(probe(count_arg, size_arg, start_arg, draw_arg)))
