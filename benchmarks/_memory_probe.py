"""Samplers' peak memory and time to first index, each measured in a process of its own.

``python -m benchmarks._memory_probe DRAW KIND:N [KIND:N ...]`` imports everything once, then
forks one child process per ``KIND:N`` job, one after the other (so the children pay no
interpreter start-up, and none sees another's memory), and prints a JSON list of the results.

A child iterates a 10-sample sampler of every kind first, so that the baseline already holds
the code and torch's lazily created state; then it resets its peak RSS where Linux allows
(``/proc/self/clear_refs``), reads the baseline from ``getrusage``'s ``ru_maxrss``, makes the
sampler, times its first index, draws ``DRAW`` indices, and reads ``ru_maxrss`` again.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DistributedSampler, RandomSampler, Sampler
from torchdata.stateful_dataloader.sampler import (  # type: ignore[import-untyped]  # no stubs
    StatefulDistributedSampler,
)

from virtual_epochs import InfiniteSampler

from ._fixtures import Sized

KINDS: dict[str, Callable[[int], Sampler[int] | None]] = {
    "empty (nothing)": lambda _n: None,
    "RandomSampler": lambda n: RandomSampler(Sized(n)),
    "DistributedSampler": lambda n: DistributedSampler(Sized(n), num_replicas=1, rank=0),
    "StatefulDistributedSampler": lambda n: StatefulDistributedSampler(
        Sized(n),
        num_replicas=1,
        rank=0,
    ),
    "InfiniteSampler": lambda n: InfiniteSampler(n, seed=0),
}


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def probe(kind: str, n: int, draw: int) -> dict[str, float | bool]:
    torch.set_num_threads(1)
    for make in KINDS.values():
        sampler = make(10)
        if sampler is not None:
            list(itertools.islice(sampler, 10))
    del sampler
    reset = _reset_peak()
    before = _peak_kib()
    start = time.perf_counter()
    sampler = KINDS[kind](n)
    first = 0.0
    if sampler is not None:
        iterator = iter(sampler)
        next(iterator)
        first = time.perf_counter() - start
        for _ in itertools.islice(iterator, draw - 1):
            pass
    return {
        "first_index_s": first,
        "peak_mib": (_peak_kib() - before) / 1024,
        "peak_reset": reset,
    }


def in_child(kind: str, n: int, draw: int) -> dict[str, float | bool]:
    """Run ``probe`` in a forked child process and return what it found."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, report through the pipe, leave without clean-up
        os.close(read_end)
        code = 0
        try:
            os.write(write_end, json.dumps(probe(kind, n, draw)).encode())
        except BaseException:  # any failure must reach the parent as a code
            code = 1
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not payload:
        raise RuntimeError(f"the memory probe of {kind} at n={n} failed (status {status})")
    result: dict[str, float | bool] = json.loads(payload)
    return result


if __name__ == "__main__":
    draw_arg, *jobs = sys.argv[1:]
    results = []
    for job in jobs:
        kind_arg, n_arg = job.rsplit(":", 1)
        results.append(
            {"kind": kind_arg, "n": int(n_arg), **in_child(kind_arg, int(n_arg), int(draw_arg))}
        )
    print(json.dumps(results))
