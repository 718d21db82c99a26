"""A description of the machine and software a run was measured on."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.0f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str:
    """Return what ``git args`` prints in this checkout (read-only commands only)."""
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


def _code() -> str:
    """Return the commit measured, and whether the working tree had changes (read-only git)."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no", "--", "src")
    except (OSError, subprocess.SubprocessError):
        return "code: unknown commit"
    return f"code: commit {head}" + (" with uncommitted changes in src/" if dirty else "")


def describe() -> list[str]:
    """Return ``key: value`` lines that say where and with what a run was measured."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"CPU: {_cpu_model()}, {usable} usable cores; memory {_memory_gib()}",
        f"OS: {platform.platform()}",
        (
            f"Python {sys.version.split()[0]}, torch {torch.__version__}, "
            f"torchdata {_version('torchdata')}, accelerate {_version('accelerate')}, "
            f"virtual_epochs {_version('virtual-epochs')}"
        ),
        _code(),
    ]
