"""``python -m benchmarks [--smoke] [--only NAME ...]``: run, print, and save the tables."""

from __future__ import annotations

import argparse
import gc
import re
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from . import (
    boundary,
    mixture,
    overhead,
    plots,
    resume,
    sampler_memory,
    sampler_throughput,
    seeding,
)
from ._harness import Mode, Report, verdict
from ._machine import describe

BENCHMARKS: dict[str, Callable[[Mode], Report]] = {
    "overhead": overhead.run,
    "boundary": boundary.run,
    "sampler_memory": sampler_memory.run,
    "sampler_throughput": sampler_throughput.run,
    "resume": resume.run,
    "seeding": seeding.run,
    "mixture": mixture.run,
}
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.md"
DOCS = HERE.parent / "docs"
PAGE = DOCS / "performance.md"
START, END = "<!-- results: start -->", "<!-- results: end -->"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes: every benchmark end to end in seconds"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"where to write the markdown (default: {RESULTS.relative_to(HERE.parent)} when "
        "all benchmarks run in full mode, else nowhere)",
    )
    parser.add_argument(
        "--plots",
        type=Path,
        default=None,
        help="folder for the PNG plots (default: docs/ when all benchmarks run in full mode, "
        "else none)",
    )
    return parser.parse_args(argv)


def goals(reports: Sequence[Report]) -> str:
    """Return the markdown table of every goal's verdict."""
    lines = ["| benchmark | goal | verdict |", "|---|---|---|"]
    for report in reports:
        for description, met in report.verdicts:
            lines.append(f"| {report.name} | {description} | {verdict(met)} |")
    return "\n".join(lines) + "\n"


def render(reports: Sequence[Report], mode: Mode, total: float, machine: Sequence[str]) -> str:
    """Return the results page: the machine, the goals, then every table."""
    lines = ["# Benchmark results", ""]
    lines.append(
        "Written by `python -m benchmarks" + (" --smoke" if mode.smoke else "") + "`; "
        "see `docs/performance.md` for what each row measures."
    )
    lines.extend(["", *(f"- {line}" for line in machine), f"- total time: {total:.0f} s", ""])
    lines.extend(["## Goals", "", goals(reports), "## Tables", ""])
    lines.extend(report.markdown() for report in reports)
    return "\n".join(lines)


def embed(results: str, page: Path) -> bool:
    """Replace the block between the results markers of ``page``; return whether it had them."""
    if not page.exists():
        return False
    text = page.read_text()
    if START not in text or END not in text:
        return False
    body = re.sub(r"^#", "##", results.split("\n", 1)[1], flags=re.MULTILINE)  # a level down
    before, rest = text.split(START, 1)
    page.write_text(f"{before}{START}\n{body.strip()}\n{END}{rest.split(END, 1)[1]}")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    mode = Mode(smoke=args.smoke)
    # Only a full run of everything replaces the committed results and plots by default.
    complete = not mode.smoke and not args.only
    out = args.out if args.out is not None or not complete else RESULTS
    plot_dir = args.plots if args.plots is not None or not complete else DOCS
    names = args.only or list(BENCHMARKS)
    warnings.filterwarnings("ignore", message=".*resuming.*by replaying.*")
    warnings.filterwarnings("ignore", message="'set_vital' is deprecated")  # torchdata 0.11
    # The imports leave ~200k long-lived objects: freeze them, so that the collections between
    # measurements (which also shut DataLoader workers down) take microseconds, not 0.2 s.
    gc.collect()
    gc.freeze()
    reports = []
    machine = describe()  # the commit and the date at the start of the run
    started = time.perf_counter()
    for name in names:
        begun = time.perf_counter()
        print(f"== {name} ...", flush=True)
        report = BENCHMARKS[name](mode)
        report.seconds = time.perf_counter() - begun
        reports.append(report)
        print(report.markdown(), flush=True)
    total = time.perf_counter() - started
    text = render(reports, mode, total, machine)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}")
    if complete and embed(text, PAGE):
        print(f"updated the results in {PAGE}")
    if plot_dir is not None:
        for path in plots.draw(reports, plot_dir):
            print(f"wrote {path}")
    print(f"\n## Goals\n\n{goals(reports)}")
    print(f"total: {total:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
