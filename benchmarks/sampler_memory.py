"""3. Sampler memory and time to first index against dataset size, a fresh process per run.

Each measurement runs in a process of its own, forked for it by a ``python -m
benchmarks._memory_probe`` process that has only imported the modules (see there for how the
peak is measured): the peak RSS increase while making the sampler, taking its first index and
drawing the first ``draw`` indices, above a baseline taken in the same process just before.
A run whose estimated peak (from the bytes per sample that the sampler's ``tolist()`` costs)
would exceed ``MAX_BYTES`` is skipped and marked so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._harness import Mode, Report, Table, fmt_count, fmt_seconds, median

MAX_BYTES = 8 * 2**30
GOAL_MIB = 32.0
FLAT_MIB = 8.0  # "flat": ours' peaks at every n within this of each other
EMPTY = "empty (nothing)"
# Estimated peak bytes per sample: a randperm tensor (8), a list of Python ints (8 + 32) and,
# for the distributed samplers, the strided copy of that list (8).
BYTES_PER_SAMPLE = {
    "RandomSampler": 48,
    "DistributedSampler": 56,
    "StatefulDistributedSampler": 56,
    "InfiniteSampler": 0,
    "empty (nothing)": 0,
}
ROOT = Path(__file__).resolve().parent.parent


def _probe(jobs: list[tuple[str, int]], draw: int) -> list[dict[str, Any]]:
    """Measure ``(kind, n)`` jobs in order, each in a child of one fresh probe process."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks._memory_probe", str(draw)]
        + [f"{kind}:{n}" for kind, n in jobs],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the memory probe failed:\n{done.stderr}")
    results: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


Runs = dict[tuple[str, int], list[dict[str, Any]]]


def _collect(sizes: list[int], draw: int, rounds: int) -> Runs:
    """Measure every (sampler, n) that fits, the order rotated each round."""
    kinds = list(BYTES_PER_SAMPLE)
    runs: Runs = {(kind, n): [] for n in sizes for kind in kinds}
    for round_index in range(rounds):
        shift = round_index % len(kinds)
        jobs = []
        for n in sizes:
            for kind in kinds[shift:] + kinds[:shift]:
                # A run that takes gigabytes also takes many seconds: one of those is enough.
                estimate = BYTES_PER_SAMPLE[kind] * n
                if estimate <= MAX_BYTES and (estimate < 2**30 or round_index == 0):
                    jobs.append((kind, n))
        for result in _probe(jobs, draw):
            runs[result["kind"], result["n"]].append(result)
    return runs


def run(mode: Mode) -> Report:
    sizes = mode.pick([10**6, 10**7, 10**8, 10**10], [10**4, 10**10])
    draw = mode.pick(100_000, 1_000)
    report = Report(
        "sampler_memory",
        "3. Sampler memory and time to first index",
        f"Peak RSS increase while making the sampler and drawing its first {draw} indices, and "
        "the time from making it to its first index; a fresh process per run. Goal: ours flat, "
        f"under {GOAL_MIB:.0f} MiB at 10^10 samples.",
    )
    table = Table(
        f"first {draw} indices drawn",
        ["sampler", "n", "runs", "peak RSS increase", "time to first index", "goal", "verdict"],
    )
    runs = _collect(sizes, draw, rounds=mode.pick(3, 1))
    curves: dict[str, list[tuple[int, float]]] = {}
    for (kind, n), found in runs.items():
        if not found:
            estimate = BYTES_PER_SAMPLE[kind] * n / 2**30
            table.add(kind, fmt_count(n), 0, f"skipped (about {estimate:.0f} GiB)", "", "", "")
            continue
        peak = max(result["peak_mib"] for result in found)
        goal, cell, first = "", "", ""
        if kind != EMPTY:
            curves.setdefault(kind, []).append((n, peak))
            first = fmt_seconds(median([result["first_index_s"] for result in found]))
        if kind == "InfiniteSampler" and n == sizes[-1]:
            goal = f"< {GOAL_MIB:.0f} MiB"
            met = peak < GOAL_MIB
            cell = report.goal(f"memory at {fmt_count(n)}: ours < {GOAL_MIB:.0f} MiB", met)
        table.add(kind, fmt_count(n), len(found), f"{peak:.1f} MiB", first, goal, cell)
    ours = [peak for _, peak in curves["InfiniteSampler"]]
    spread = max(ours) - min(ours)
    flat = report.goal(
        f"memory: ours flat across n (spread <= {FLAT_MIB:.0f} MiB)", spread <= FLAT_MIB
    )
    table.add(
        "InfiniteSampler", "all", "", f"spread {spread:.1f} MiB", "", f"<= {FLAT_MIB:.0f} MiB", flat
    )
    reset = all(result["peak_reset"] for found in runs.values() for result in found)
    table.notes.append(
        "peak = the largest of the runs: ru_maxrss after minus before, "
        + (
            "the high-water mark reset through /proc/self/clear_refs first"
            if reset
            else "**the high-water mark could not be reset: increases are lower bounds**"
        )
        + "; time = median of the runs"
    )
    table.notes.append(f"the '{EMPTY}' row draws nothing: it shows the noise floor of the method")
    table.notes.append(
        f"skipped: runs estimated above {MAX_BYTES / 2**30:.0f} GiB (randperm tensor + "
        "list of Python ints, about 48-56 bytes per sample)"
    )
    table.notes.append("torch.set_num_threads(1) in each probe process")
    report.tables.append(table)
    report.data["memory"] = curves
    return report
