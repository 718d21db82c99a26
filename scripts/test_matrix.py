"""Run the whole test suite on each cell (Python x torch) of the support matrix.

Usage::

    python scripts/test_matrix.py                  # every cell that can be installed here
    python scripts/test_matrix.py --only py3.10-torch2.2.2 --only py3.13-torch2.15.0
    python scripts/test_matrix.py --list           # the cells, and which interpreters exist

Each cell gets its own virtual environment under ``.matrix/<cell>/``: the cell's torch from the
package registry (the default build: CUDA on Linux x86_64, a few GB, downloaded once and kept),
the test dependencies of ``requirements-dev.txt`` at the newest versions that install beside
that Python and torch (pip resolves them; the versions it took are recorded), and the package
itself from a wheel built from this tree, never editable. The suite then runs from the
repository root against the installed package (``tests/`` plus the package's doctests through
``--pyargs``), after a check that ``virtual_epochs`` imports from the cell's own site-packages.

This machine's pip configuration caps torch with a constraints file; the matrix lifts it for
its own installs (``PIP_CONSTRAINT=/dev/null``) without touching the file. Every result is
appended to ``.matrix/results.jsonl``; the table printed at the end is the README's
"Support matrix". The exit status is non-zero when a cell that could be installed failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MATRIX_DIR = ROOT / ".matrix"
RESULTS = MATRIX_DIR / "results.jsonl"
# Tools only `make lint` needs; everything else in requirements-dev.txt is a test dependency.
NOT_FOR_TESTS = {"torch", "ruff", "mypy", "build", "twine", "mkdocs", "mkdocs-material"}
NOT_FOR_TESTS_PREFIXES = ("mkdocstrings", "griffe")
# Test files that check the release itself (a wheel build, the docs site) against the
# development environment; a matrix cell runs everything else.
RELEASE_ONLY_TESTS = ("tests/test_wheel.py", "tests/test_docs.py")


@dataclass(frozen=True)
class Cell:
    """One Python version with one torch version."""

    python: str
    torch: str

    @property
    def name(self) -> str:
        return f"py{self.python}-torch{self.torch}"

    def extra_requirements(self) -> list[str]:
        # torch before 2.3 was built against NumPy 1.x and cannot run beside NumPy 2.
        major, minor = (int(part) for part in self.torch.split(".")[:2])
        return ["numpy<2"] if (major, minor) < (2, 3) else []


# The floor (the oldest torch on which the whole suite passes) and the newest torch, each on the
# oldest and the newest Python, and the newest on 3.12 (3.11 with torch 2.13 is CI's own
# configuration, `make test`). Below the floor: torch 2.2 and 2.3 fail the demo's and
# Lightning's resume tests (their OneCycleLR state_dict cannot be loaded with
# torch.load(weights_only=True)); on Python 3.13.0, torch 2.5.1's torch.save fails (it sets
# Pickler.persistent_id, read-only in CPython 3.13.0 only), so 3.13's floor cell is 2.6.0.
CELLS = [
    Cell("3.10", "2.4.1"),
    Cell("3.10", "2.14.1"),  # torch 2.15 has no wheels for Python 3.10
    Cell("3.13", "2.6.0"),
    Cell("3.13", "2.15.0"),
    Cell("3.12", "2.15.0"),
]


def find_python(version: str) -> Path | None:
    """The interpreter for ``version`` (``3.12``): pyenv's, else ``python3.12`` on PATH."""
    pyenv = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    found = sorted(glob.glob(f"{pyenv}/versions/{version}.*/bin/python"))
    if found:
        return Path(found[-1])
    on_path = shutil.which(f"python{version}")
    return Path(on_path) if on_path else None


def test_requirements() -> list[str]:
    """The names of the test dependencies in requirements-dev.txt, without their pins."""
    names = []
    for raw in (ROOT / "requirements-dev.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name = re.split(r"[=<>!~\[ ;]", line, maxsplit=1)[0]
        if name.lower() in NOT_FOR_TESTS or name.lower().startswith(NOT_FOR_TESTS_PREFIXES):
            continue
        names.append(name)
    return names


def run(command: list[str], log: Path, **kwargs: object) -> int:
    """Run ``command``, appending its output to ``log``; return its exit status."""
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        return subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, check=False, **kwargs
        ).returncode  # type: ignore[call-overload,no-any-return]


def build_wheel(log: Path) -> Path:
    """Build this tree's wheel once, with the running interpreter (``python -m build``)."""
    out = Path(tempfile.mkdtemp(prefix="virtual-epochs-wheel-"))
    status = run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)], log)
    wheels = list(out.glob("virtual_epochs-*.whl"))
    if status != 0 or len(wheels) != 1:
        sys.exit(f"building the wheel failed; see {log}")
    return wheels[0]


def pip_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PIP_CONSTRAINT"] = "/dev/null"  # lift this machine's torch cap for the matrix only
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def summary_counts(output: str) -> dict[str, int]:
    """The counts of pytest's closing line (``731 passed, 2 skipped in 300.00s``)."""
    closing = [line for line in output.splitlines() if re.search(r" in [\d.]+s", line)]
    counts: dict[str, int] = {}
    if closing:
        for number, word in re.findall(r"(\d+) (\w+)", closing[-1]):
            counts[word] = int(number)
    return counts


def run_cell(cell: Cell, wheel: Path, pytest_args: list[str]) -> dict[str, object]:
    """Install one cell and run the suite in it; return its result record."""
    result: dict[str, object] = {
        "cell": cell.name,
        "python": cell.python,
        "torch": cell.torch,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    interpreter = find_python(cell.python)
    if interpreter is None:
        result["outcome"] = "not installable here (no interpreter)"
        return result
    venv = MATRIX_DIR / cell.name
    log = MATRIX_DIR / f"{cell.name}.log"
    log.write_text(f"{cell.name} {result['date']}\n")
    python = venv / "bin" / "python"
    if not python.exists():
        run([str(interpreter), "-m", "venv", str(venv)], log)
    # A venv's bundled pip can be too old to read newer wheels' metadata (torch 2.15 on 3.13.0's
    # pip 24.2 is not even seen): upgrade it first.
    upgrade = [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"]
    if run(upgrade, log, env=pip_environment()) != 0:
        result["outcome"] = "install failed"
        return result
    install = [str(python), "-m", "pip", "install", "--quiet", f"torch=={cell.torch}"]
    install += cell.extra_requirements() + test_requirements()
    if run(install, log, env=pip_environment()) != 0:
        result["outcome"] = "install failed"
        return result
    reinstall = [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall"]
    if run([*reinstall, str(wheel)], log, env=pip_environment()) != 0:
        result["outcome"] = "wheel install failed"
        return result
    versions = subprocess.run(
        [str(python), "-c", VERSIONS_PROBE], capture_output=True, text=True, check=False, cwd="/"
    )
    if versions.returncode != 0:
        result["outcome"] = "import failed"
        result["error"] = versions.stderr[-2000:]
        return result
    result.update(json.loads(versions.stdout))
    started = time.monotonic()
    command = [str(python), "-m", "pytest", "-p", "no:cacheprovider", "tests", "virtual_epochs"]
    command += ["--pyargs", *(f"--ignore={path}" for path in RELEASE_ONLY_TESTS), *pytest_args]
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        tested_from = out.tell()
        process = subprocess.run(
            command,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
            env=test_environment(venv),
        )
    with log.open() as out:
        out.seek(tested_from)
        output = out.read()
    result["seconds"] = round(time.monotonic() - started)
    result["counts"] = summary_counts(output)
    result["outcome"] = (
        "passed" if process.returncode == 0 else f"failed (exit {process.returncode})"
    )
    return result


# Prints the versions a cell runs, and fails unless the package comes from the cell's venv.
VERSIONS_PROBE = """
import json, platform, sys, sysconfig
from importlib.metadata import version
from pathlib import Path
import virtual_epochs
site = Path(sysconfig.get_paths()["purelib"]).resolve()
here = Path(virtual_epochs.__file__).resolve()
if site not in here.parents:
    sys.exit(f"virtual_epochs imported from {here}, not from {site}")
names = ["torch", "numpy", "lightning", "accelerate", "torchdata", "datasets", "hypothesis"]
print(json.dumps({
    "python_full": platform.python_version(),
    "virtual_epochs": virtual_epochs.__version__,
    "versions": {name: version(name) for name in names},
}))
"""


def test_environment(venv: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


def table(results: list[dict[str, object]]) -> str:
    lines = [
        "| Python | torch | result | other versions | date |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        counts = result.get("counts") or {}
        assert isinstance(counts, dict)
        tally = ", ".join(f"{n} {word}" for word, n in counts.items())
        outcome = f"{result['outcome']}: {tally}" if tally else str(result["outcome"])
        versions = result.get("versions") or {}
        assert isinstance(versions, dict)
        others = ", ".join(
            f"{name} {versions[name]}"
            for name in ("numpy", "lightning", "torchdata")
            if name in versions
        )
        python = result.get("python_full", result["python"])
        lines.append(f"| {python} | {result['torch']} | {outcome} | {others} | {result['date']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", action="append", default=[], help="a cell name (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the cells and exit")
    parser.add_argument("pytest_args", nargs="*", help="passed on to pytest (after --)")
    args = parser.parse_args()
    names = {cell.name for cell in CELLS}
    unknown = sorted(set(args.only) - names)
    if unknown:
        parser.error(f"--only: unknown cell(s) {unknown}; expected one of {sorted(names)}")
    if args.list:
        for cell in CELLS:
            print(f"{cell.name:24} {find_python(cell.python) or 'no interpreter here'}")
        return 0
    cells = [cell for cell in CELLS if not args.only or cell.name in args.only]
    MATRIX_DIR.mkdir(exist_ok=True)
    wheel = build_wheel(MATRIX_DIR / "build.log")
    results = []
    for cell in cells:
        print(
            f"{cell.name}: installing and testing (log: {MATRIX_DIR / cell.name}.log)", flush=True
        )
        result = run_cell(cell, wheel, args.pytest_args)
        print(f"{cell.name}: {result['outcome']} {result.get('counts', '')}", flush=True)
        with RESULTS.open("a") as out:
            out.write(json.dumps(result) + "\n")
        results.append(result)
    print(table(results))
    failed = [
        r for r in results if str(r["outcome"]).startswith(("failed", "install", "wheel", "import"))
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
