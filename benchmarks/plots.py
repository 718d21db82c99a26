"""The PNG plots of ``docs/performance.md``: resume latency and sampler memory, log scales."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # after choosing the backend

from ._harness import Report

MEMORY_FLOOR_MIB = 0.1  # a log axis cannot show 0: smaller peaks are drawn here


def _short(label: str) -> tuple[str, int]:
    """Split ``"name, 2 workers"`` into the name and the number of workers."""
    name, _, workers = label.rpartition(", ")
    return name, int(workers.split()[0])


def _resume(curves: dict[str, list[tuple[int, float]]], path: Path) -> None:
    names = sorted(
        {_short(label)[0] for label in curves}, key=lambda name: not name.startswith("ours")
    )
    colours = {name: f"C{i}" for i, name in enumerate(names)}
    figure, panels = plt.subplots(1, 2, figsize=(11, 5), sharey=True)
    for workers, axes in zip((0, 2), panels, strict=True):
        for label, points in curves.items():
            name, label_workers = _short(label)
            if label_workers != workers:
                continue
            xs, ys = zip(*sorted(points), strict=True)
            ours = name.startswith("ours (seek")
            axes.plot(
                xs,
                [y * 1000 for y in ys],
                "-o" if name.startswith("ours") else "--s",
                color=colours[name],
                linewidth=2.5 if ours else 1.2,
                markersize=5 if ours else 4,
                label=name,
            )
        if workers == 0:
            axes.axhline(2, color="grey", linewidth=0.8, linestyle=":", label="goal: 2 ms")
        axes.set(
            xscale="log",
            yscale="log",
            xlabel="checkpoint position (samples into the stream)",
            title=f"{workers} workers",
        )
        axes.grid(True, which="major", alpha=0.3)
    panels[0].set_ylabel("load_state_dict + first batch (ms, median)")
    handles: dict[str, Any] = {}
    for axes in panels:
        for handle, label in zip(*axes.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    figure.legend(handles.values(), handles.keys(), loc="lower center", ncol=3, fontsize=8)
    figure.suptitle("Resume latency against position (log-log)")
    figure.tight_layout(rect=(0, 0.14, 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _memory(curves: dict[str, list[tuple[int, float]]], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    styles = iter([("o", 9), ("s", 6), ("^", 4), ("D", 4)])
    for label, points in curves.items():
        xs, ys = zip(*sorted(points), strict=True)
        marker, size = next(styles, ("o", 4))
        axes.plot(
            xs,
            [max(y, MEMORY_FLOOR_MIB) for y in ys],
            "-" + marker,
            label=label,
            markersize=size,
            markerfacecolor="none" if size > 5 else None,
        )
    axes.axhline(32, color="grey", linewidth=0.8, linestyle=":", label="goal: 32 MiB")
    largest = max(x for points in curves.values() for x, _ in points)
    axes.annotate(
        "the three peers coincide;\nat 10^10 they would need\n~450 GiB (not run)",
        xy=(largest, 100),
        ha="right",
        fontsize=8,
    )
    axes.set(
        xscale="log",
        yscale="log",
        xlabel="dataset size n (samples)",
        ylabel="peak RSS increase (MiB)",
        title="Sampler memory: make it, draw the first indices (log-log)",
    )
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def draw(reports: Sequence[Report], folder: Path) -> list[Path]:
    """Draw the plots whose data the reports carry; return the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for report in reports:
        if "resume" in report.data:
            path = folder / "resume_latency.png"
            _resume(report.data["resume"], path)
            written.append(path)
        if "memory" in report.data:
            path = folder / "sampler_memory.png"
            _memory(report.data["memory"], path)
            written.append(path)
    return written
