"""5. Resume latency against position: load a checkpoint, then take the first batch.

Every measurement builds a fresh loader (untimed), then times ``load_state_dict`` (or its
peer's equivalent) plus the first batch, and shuts the workers down afterwards (untimed). The
states are made arithmetically: saved after one batch, then the counters moved to the position
(see ``_states``, which also checks each edit against a state saved by really iterating).

- ours (seek): ``VirtualDataLoader`` over ``DataLoader(sampler=InfiniteSampler(n))``, at
  10^3..10^9 samples, beside a fresh start of the same loader.
- the peers at 10^3, 10^4, 10^5 batches: see ``resume_peers``.
"""

from __future__ import annotations

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
    single_thread,
)
from ._resume_setup import BATCH, OURS, Setup, first_batch, loaded
from .resume_peers import peers_table

GOAL_S = 0.002
FLAT = 1.25  # with workers: at most this many times a fresh start of the same loader


def _ours_table(report: Report, mode: Mode, n: int, positions: list[int]) -> None:
    table = Table(
        f"{OURS}: n = {n}, batch {BATCH}",
        [
            "workers",
            "position (samples)",
            "median latency",
            "added vs fresh start (median)",
            "vs fresh start: median (quartiles)",
            "goal",
            "verdict",
        ],
    )
    for workers in (0, 2):
        setup = Setup(n, workers, steps_per_epoch=1000)
        template = _states.saved_after_one_batch(setup.ours())
        contenders: dict[str, Measure] = {"fresh start": first_batch(setup.ours, iter)}
        for position in positions:
            state = _states.ours_seek(template, position, BATCH)
            contenders[str(position)] = first_batch(setup.ours, loaded(state))
        _states.check_seek(setup, positions[-1], BATCH)
        # Worker start-up varies by tens of milliseconds from run to run: more rounds there.
        rounds = mode.pick(15, 3) if workers == 0 else mode.pick(9, 1)
        times = interleave(contenders, rounds, warmup=mode.warmup)
        fresh = times.pop("fresh start")
        table.add(
            workers, "fresh start (no state)", fmt_seconds(median(fresh)), "", "1 (itself)", "", ""
        )
        curve = []
        for key, values in times.items():
            position, latency = int(key), median(values)
            ratios = paired_ratios(values, fresh)
            added = median([value - base for value, base in zip(values, fresh, strict=True)])
            if workers == 0:
                goal = f"< {GOAL_S * 1000:.0f} ms"
                met = latency < GOAL_S
            else:
                goal = f"<= {FLAT}x fresh start"
                met = median(ratios) <= FLAT
            cell = report.goal(
                f"resume, {workers} workers, at {fmt_count(position)} samples: {goal}", met
            )
            table.add(
                workers,
                fmt_count(position),
                fmt_seconds(latency),
                _signed(added),
                fmt_ratio(ratios),
                goal,
                cell,
            )
            curve.append((position, latency))
        report.data.setdefault("resume", {})[f"ours (seek), {workers} workers"] = curve
    table.notes.append(
        "with 2 workers every loader pays the workers' start-up for its first batch (tens of "
        "milliseconds, varying by as much from run to run), so the goal there is flatness "
        "against a fresh start of the same loader"
    )
    report.tables.append(table)


def _signed(seconds: float) -> str:
    return ("-" if seconds < 0 else "+") + fmt_seconds(abs(seconds))


def run(mode: Mode) -> Report:
    thread_note = single_thread()
    n = mode.pick(2_000_000, 10_000)
    ours_positions = mode.pick([10**e for e in range(3, 10)], [10**9])
    peer_positions = mode.pick([10**3, 10**4, 10**5], [10])
    report = Report(
        "resume",
        "5. Resume latency against position",
        "Time to load a checkpoint and get the first batch, against how far into the stream "
        f"it was taken. Goal: ours (seek) flat, under {GOAL_S * 1000:.0f} ms up to 10^9 samples.",
    )
    _ours_table(report, mode, n, ours_positions)
    peers_table(report, mode, n, peer_positions)
    for table in report.tables:
        table.notes.append(thread_note)
    return report
