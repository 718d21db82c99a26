"""Shared measuring and reporting: interleaved rounds, medians, paired ratios, markdown tables."""

from __future__ import annotations

import gc
import random
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

Measure = Callable[[], float]
"""One measured run of a contender: does its own set-up, returns the seconds of the timed part."""


@dataclass(frozen=True)
class Mode:
    """The sizes of a session: ``smoke`` (tiny, seconds in all) or full."""

    smoke: bool

    def pick(self, full: Any, smoke: Any) -> Any:
        """Return ``smoke`` in smoke mode, else ``full``."""
        return smoke if self.smoke else full

    @property
    def warmup(self) -> int:
        """Rounds run first and thrown away: one in full mode, none in smoke mode."""
        return 0 if self.smoke else 1


@dataclass
class Table:
    """A markdown table with a title and notes under it."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        if len(cells) != len(self.headers):
            raise ValueError(
                f"row has {len(cells)} cells, table {self.title!r} has {len(self.headers)}"
            )
        self.rows.append([str(cell) for cell in cells])

    def markdown(self) -> str:
        lines = [f"#### {self.title}", ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join("---" for _ in self.headers) + "|")
        lines.extend("| " + " | ".join(row) + " |" for row in self.rows)
        lines.extend(["", *(f"- {note}" for note in self.notes)])
        return "\n".join(lines).rstrip() + "\n"


@dataclass
class Report:
    """What one benchmark hands back: its tables, goal verdicts, and raw numbers for plots."""

    name: str
    title: str
    summary: str
    tables: list[Table] = field(default_factory=list)
    verdicts: list[tuple[str, bool]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def goal(self, description: str, met: bool) -> str:
        """Record a goal's verdict and return it as a table cell."""
        self.verdicts.append((description, met))
        return verdict(met)

    def markdown(self) -> str:
        parts = [f"### {self.title}", "", self.summary, ""]
        parts.extend(table.markdown() for table in self.tables)
        parts.append(f"_Measured in {self.seconds:.0f} s._\n")
        return "\n".join(parts)


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


@contextmanager
def quiet_gc() -> Iterator[None]:
    """Collect garbage, then keep the collector off for the timed block (as ``timeit`` does)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def timed(block: Callable[[], object]) -> float:
    """Return the seconds ``block()`` takes, with the garbage collector off."""
    with quiet_gc():
        start = time.perf_counter()
        block()
        return time.perf_counter() - start


def single_thread() -> str:
    """Limit torch to one intra-op thread in this process; return the note that says so."""
    torch.set_num_threads(1)
    return (
        "torch.set_num_threads(1) in the measuring process, so that no contender gets the "
        "second core for its tensor ops while another's Python loop cannot use it"
    )


def interleave(
    contenders: Mapping[str, Measure], rounds: int, *, warmup: int = 1
) -> dict[str, list[float]]:
    """Run every contender once per round, the order rotated each round; return the times.

    Rotating the order spreads the machine's drifts (another tenant, frequency changes) over
    all contenders; the ``warmup`` rounds are run first and thrown away.
    """
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            seconds = contenders[name]()
            if round_index >= warmup:
                times[name].append(seconds)
    return times


Step = Callable[[], object]
"""One step of a contender: take its next batch (or chunk of indices)."""


def lockstep(
    makers: Mapping[str, Callable[[], Step]], steps: int, *, seed: int = 0
) -> dict[str, list[int]]:
    """Return the nanoseconds of every step of every contender, taken in lockstep.

    Step ``i`` of every contender is taken and timed before step ``i + 1`` of any, in an order
    shuffled at every step (a rotation would have each contender nearly always follow the same
    other one, and inherit the caches it leaves). A burst of load from a neighbour then falls
    on all contenders alike. A contender's ``maker`` runs inside its first timed step.
    """
    order = list(makers)
    shuffler = random.Random(seed)  # local and seeded: the global RNG is left alone
    clock = time.perf_counter_ns
    stepping: dict[str, Step] = {}
    times: dict[str, list[int]] = {name: [0] * steps for name in order}
    with quiet_gc():
        for step in range(steps):
            shuffler.shuffle(order)
            for name in order:
                start = clock()
                if step == 0:
                    stepping[name] = makers[name]()
                stepping[name]()
                times[name][step] = clock() - start
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def paired_ratios(values: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Return ``values[i] / baseline[i]``: each round against the baseline of the same round."""
    return [value / base for value, base in zip(values, baseline, strict=True)]


def spread(values: Sequence[float]) -> tuple[float, float]:
    """Return the lower and upper quartiles (the middle half of the rounds)."""
    if len(values) < 2:
        return values[0], values[0]
    low, _, high = statistics.quantiles(values, n=4, method="inclusive")
    return low, high


def fmt_ratio(ratios: Sequence[float]) -> str:
    """Return ``median (q1-q3)`` of ratios."""
    low, high = spread(ratios)
    return f"{median(ratios):.3f}x ({low:.3f}-{high:.3f})"


def fmt_seconds(seconds: float) -> str:
    """Return a duration with a unit that keeps three significant digits."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_count(value: float) -> str:
    """Return a count such as ``10^7`` or ``1.6e+06`` compactly."""
    if value >= 1000 and float(value).is_integer():
        exponent = len(str(int(value))) - 1
        if int(value) == 10**exponent:
            return f"10^{exponent}"
    return f"{value:.3g}"
