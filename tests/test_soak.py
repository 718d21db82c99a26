"""A long run over a tiny dataset: memory stays flat and every counter stays exact.

10^6 steps in 10^4 epochs of 100 steps over 3 samples: the epoch and step counters and the state
are checked after every epoch, the batches of every tenth epoch against the sampler's order at
that position; the resident set size is sampled through the run, and tracemalloc watches the
Python allocations over a window at the end. The pass-restart path (a list of 3 batches: a new
pass every 3 steps) runs for 10^5 steps.

Measured on the shared 2-core development machine (load 3 to 5), checks included: 40,000 to
70,000 steps/s for the DataLoader over an InfiniteSampler (15 to 27 s for the 10^6 steps),
30,000 to 45,000 steps/s for the list (a pass restart costs about 60 us, mostly runtime
Protocol checks), and less than half of that under tracemalloc.
"""

from __future__ import annotations

import gc
import itertools
import time
import tracemalloc
from typing import Any

import pytest
from torch.utils.data import DataLoader

from virtual_epochs import InfiniteSampler, VirtualDataLoader

STEPS_PER_EPOCH = 100
MIB = 1 << 20


def rss() -> int:
    """The resident set size of this process, in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")  # pragma: no cover


def traced_growth(run_epochs: Any, settle: int, epochs: int) -> int:
    """Bytes of Python allocations kept by ``run_epochs(epochs)``, measured with tracemalloc.

    ``run_epochs(settle)`` runs first under tracing, so that buffers made before tracing and
    replaced since (the sampler's chunk of 32768 indices, say) are not counted as growth, and
    garbage is collected before each reading: what counts is what stays reachable.
    """
    tracemalloc.start()
    try:
        run_epochs(settle)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        run_epochs(epochs)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.timeout(120)
def test_a_million_steps_over_an_infinite_sampler() -> None:
    sampler = InfiniteSampler(3, seed=7)
    vl = VirtualDataLoader(DataLoader(range(3), batch_size=None, sampler=sampler), STEPS_PER_EPOCH)
    done = 0  # epochs

    def run(count: int) -> None:
        nonlocal done
        for _ in range(count):
            batches = list(vl)
            done += 1
            steps = STEPS_PER_EPOCH * done
            if done % 10 == 0:  # the batches, exactly: those of the sampler at that place
                where = InfiniteSampler(3, seed=7, start=steps - STEPS_PER_EPOCH)
                assert batches == list(itertools.islice(where, STEPS_PER_EPOCH))
            state = vl.state_dict()  # a checkpoint every epoch
            assert (vl.steps, vl.epoch, vl.step_in_epoch) == (steps, done, 0)
            assert (state["steps"], state["epoch"], state["batches_in_epoch"]) == (steps, done, 0)
            assert (state["pass"], state["batches_in_pass"]) == (0, steps)  # one endless pass
            assert state["resume"]["seek"]["position"] == steps  # one sample per step

    start = time.perf_counter()
    run(1_000)  # warm-up
    memory = [rss()]
    for _ in range(8):
        run(1_000)
        memory.append(rss())
    run(370)
    memory.append(rss())  # (before tracemalloc, which keeps memory of its own)
    rate = STEPS_PER_EPOCH * done / (time.perf_counter() - start)
    growth = traced_growth(run, 330, 300)  # 10^4 epochs in all; 330 > one chunk of indices
    print(
        f"soak: {rate:.0f} steps/s with the checks; RSS after each 1000 epochs "
        f"{[m // 1024 for m in memory]} KiB; {growth} B kept over 300 traced epochs"
    )
    assert (vl.steps, vl.epoch) == (10**6, 10**4)
    assert max(memory) - memory[0] < 5 * MIB, [m // 1024 for m in memory]
    assert growth < 64 * 1024, f"{growth} bytes of Python allocations kept over 300 epochs"
    # And the millionth step is a checkpoint like any other.
    resumed = VirtualDataLoader(
        DataLoader(range(3), batch_size=None, sampler=InfiniteSampler(3, seed=7)),
        STEPS_PER_EPOCH,
    )
    resumed.load_state_dict(vl.state_dict())
    assert list(resumed) == list(vl)


@pytest.mark.timeout(60)
def test_pass_restarts_a_hundred_thousand_steps_over_a_list() -> None:
    batches = [[0], [1], [2]]
    vl = VirtualDataLoader(batches, STEPS_PER_EPOCH)
    done = 0
    start = time.perf_counter()

    def run(count: int) -> None:
        nonlocal done
        for _ in range(count):
            got = [batch[0] for batch in vl]
            assert got == [step % 3 for step in range(done, done + STEPS_PER_EPOCH)]
            done += STEPS_PER_EPOCH
            state = vl.state_dict()
            assert (vl.steps, vl.epoch, state["steps"], state["epoch"]) == (
                done,
                done // STEPS_PER_EPOCH,
                done,
                done // STEPS_PER_EPOCH,
            )
            assert (state["pass"], state["batches_in_pass"]) == divmod(done, 3)

    run(100)  # warm-up
    memory = [rss()]
    for _ in range(4):
        run(200)
        memory.append(rss())
    rate = done / (time.perf_counter() - start)
    growth = traced_growth(run, 5, 95)  # 10^3 epochs in all
    print(
        f"restarts: {rate:.0f} steps/s with the checks; RSS {[m // 1024 for m in memory]} KiB; "
        f"{growth} B kept over 95 epochs"
    )
    assert (vl.steps, vl.epoch) == (10**5, 10**3)
    assert max(memory) - memory[0] < 5 * MIB, [m // 1024 for m in memory]
    assert growth < 64 * 1024, f"{growth} bytes of Python allocations kept over 95 epochs"
