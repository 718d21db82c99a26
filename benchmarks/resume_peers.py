"""5b. Resume latency of the peers, beside ours, at 10^3, 10^4 and 10^5 batches.

Interleaved with ours (seek) at the same sample position: ours ("skip") over
``DataLoader(shuffle=True)``; torchdata's ``StatefulDataLoader(shuffle=True)``; Accelerate's
``skip_first_batches``; plain replay (iterate and discard); and a fresh
``DataLoader(shuffle=True)`` as the floor, all over the same shuffled dataset.
"""

from __future__ import annotations

from accelerate import PartialState, skip_first_batches  # type: ignore[import-untyped]  # no stubs

from . import _states
from ._harness import (
    Measure,
    Mode,
    Report,
    Table,
    fmt_count,
    fmt_ratio,
    fmt_seconds,
    interleave,
    median,
    paired_ratios,
)
from ._resume_setup import BATCH, OURS, Setup, first_batch, loaded, replay


class _Templates:
    """States saved after one batch, one per kind of loader, to edit into far positions."""

    def __init__(self, setup: Setup) -> None:
        self.seek = _states.saved_after_one_batch(setup.ours())
        self.skip = _states.saved_after_one_batch(setup.ours_skip())
        self.stateful = _states.saved_after_one_batch(setup.stateful())


def _peer_contenders(
    setup: Setup, templates: _Templates, batches: int, with_replay: bool
) -> dict[str, Measure]:
    samples, workers = batches * BATCH, setup.workers
    out: dict[str, Measure] = {
        OURS: first_batch(setup.ours, loaded(_states.ours_seek(templates.seek, samples, BATCH))),
        "ours (skip, DataLoader(shuffle=True))": first_batch(
            setup.ours_skip, loaded(_states.ours_skip(templates.skip, batches, BATCH))
        ),
        "torchdata StatefulDataLoader": first_batch(
            setup.stateful, loaded(_states.stateful(templates.stateful, batches, BATCH, workers))
        ),
        "accelerate skip_first_batches": first_batch(
            lambda: setup.plain(shuffle=True), lambda loader: skip_first_batches(loader, batches)
        ),
        "fresh DataLoader (no resume)": first_batch(lambda: setup.plain(shuffle=True), iter),
    }
    if with_replay:
        out["plain replay"] = first_batch(lambda: setup.plain(shuffle=True), replay(batches))
    return out


def peers_table(report: Report, mode: Mode, n: int, positions: list[int]) -> None:
    table = Table(
        f"peers: n = {n}, batch {BATCH}, shuffled",
        [
            "workers",
            "position (batches)",
            "contender",
            "median latency",
            "vs ours (seek): median (quartiles)",
        ],
    )
    PartialState()  # Accelerate's one-off set-up, out of the timings
    for workers in (0, 2):
        setup = Setup(n, workers, steps_per_epoch=10**9)
        _states.check_skip(setup, BATCH)
        _states.check_stateful(setup, BATCH)
        templates = _Templates(setup)
        # With workers a replay costs about a millisecond a batch here: minutes at 10^5.
        replay_limit = positions[-1] if workers == 0 else mode.pick(10**4, 10)
        per_batch = 0.0
        for batches in positions:
            contenders = _peer_contenders(setup, templates, batches, batches <= replay_limit)
            times = interleave(contenders, mode.pick(5, 1), warmup=mode.warmup)
            for name, values in times.items():
                ratio = (
                    fmt_ratio(paired_ratios(values, times[OURS])) if name != OURS else "1 (itself)"
                )
                table.add(workers, fmt_count(batches), name, fmt_seconds(median(values)), ratio)
                label = f"{name}, {workers} workers"
                if name != OURS:
                    report.data.setdefault("resume", {}).setdefault(label, []).append(
                        (batches * BATCH, median(values))
                    )
            if "plain replay" in times:
                per_batch = median(times["plain replay"]) / batches
            else:
                estimate = fmt_seconds(per_batch * batches)
                table.add(
                    workers, fmt_count(batches), "plain replay", f"skipped (about {estimate})", ""
                )
    table.notes.append(
        "skipped replays would take minutes per run; the estimate is linear in the batches from "
        "the largest measured replay"
    )
    table.notes.append(
        "Accelerate's skip_first_batches skips at the index level but is not a resume: with a "
        "shuffled DataLoader the order of the skipped pass is not the saved run's"
    )
    report.tables.append(table)
