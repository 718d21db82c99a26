"""The package as users get it: a wheel and an sdist, installed into a clean environment.

``python -m build`` makes the sdist and, from it, the wheel (so the sdist is complete enough to
build from); ``twine check --strict`` checks their metadata; the wheel goes into a new virtual
environment (not editable, no source tree on the path), and the core of the test suite runs
there against the installed package.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from _helpers import run_command

if sys.version_info < (3, 11):
    pytest.skip("reads pyproject.toml with tomllib (Python 3.11+)", allow_module_level=True)
import tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
# The test files run against the installed wheel: every file that needs only torch and the
# test tools (the loader, the sampler, resume, the state format and its refusals, the
# permutation and its shuffle quality, the faults, the mixtures, the README; torchdata's
# StatefulDataLoader is one of their tools), plus the package's own doctests: about 900 tests
# in 2 minutes. Left out, to keep CI under its time budget: the multi-process, soak and
# benchmark tests, the keyed-randomness tests (worker processes), the contract test (run in the
# editable install), and the integrations with Lightning, Accelerate, torchdata and datasets,
# which test those libraries' installs as much as ours, and which the support matrix
# (scripts/test_matrix.py) runs against installed wheels.
CORE_TESTS = [
    "tests/test_loader.py",
    "tests/test_sampler.py",
    "tests/test_resume.py",
    "tests/test_state.py",
    "tests/test_fuzz_state.py",
    "tests/test_faults.py",
    "tests/test_permutation.py",
    "tests/test_readme.py",
    "tests/test_refusals.py",
    "tests/test_mixture.py",
    "tests/test_mixture_rule.py",
]
# What the core tests import besides the package and torch; installed at requirements-dev's pins.
TEST_TOOLS = [
    "torch",
    "torchdata",
    "pytest",
    "pytest-timeout",
    "hypothesis",
    "numpy",
    "scipy",
    "tqdm",
]
# Checks that the package imports from the environment's own site-packages, at this version.
WHERE = """
import sys, sysconfig
from importlib.metadata import version
from pathlib import Path
import virtual_epochs
site = Path(sysconfig.get_paths()["purelib"]).resolve()
here = Path(virtual_epochs.__file__).resolve()
assert site in here.parents, f"virtual_epochs imported from {here}, not from {site}"
assert virtual_epochs.__version__ == version("virtual-epochs"), virtual_epochs.__version__
print(virtual_epochs.__version__, here)
"""


def pins(names: list[str]) -> list[str]:
    """Return requirements-dev.txt's pinned requirement for each of ``names``."""
    found = {}
    for raw in (ROOT / "requirements-dev.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        match = re.match(r"([A-Za-z0-9_.-]+)==", line)
        if match:
            found[match.group(1).lower()] = line
    return [found[name] for name in names]


def run_in_root(command: list[str], timeout: float, env: dict[str, str]) -> str:
    """Run ``command`` in the repository root, in its own process group; it must exit 0."""
    return run_command(command, timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Build the sdist and the wheel (from the sdist) once for this module."""
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: build with the pinned setuptools of this environment, offline.
    command = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)]
    run_command(command, timeout=300)
    built = {path.suffix: path for path in out.iterdir()}
    assert sorted(built) == [".gz", ".whl"], sorted(out.iterdir())
    return {"wheel": built[".whl"], "sdist": built[".gz"]}


def test_the_metadata_passes_twine_check(dist: dict[str, Path], tmp_path: Path) -> None:
    # twine apart from the test environment (requirements-twine.txt says why).
    tools = tmp_path / "twine"
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    install += ["--target", str(tools), "-r", str(ROOT / "requirements-twine.txt")]
    run_command(install, timeout=600)
    command = [sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.values())]
    output = run_command(command, timeout=120, env={"PYTHONPATH": str(tools)})
    assert output.count("PASSED") == 2, output


def test_the_wheel_holds_the_package_and_its_metadata(dist: dict[str, Path]) -> None:
    assert dist["wheel"].name == f"virtual_epochs-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"virtual_epochs-{VERSION}.dist-info/METADATA").decode()
    sources = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src").rglob("*.py")}
    assert sources <= names, sorted(sources - names)
    assert "virtual_epochs/py.typed" in names
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/", "examples/"))]
    assert f"Version: {VERSION}\n" in metadata
    assert f"Requires-Python: {PYPROJECT['project']['requires-python']}\n" in metadata
    required = {
        str(Requirement(line.split(":", 1)[1]))
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    }
    assert required == {str(Requirement(r)) for r in PYPROJECT["project"]["dependencies"]}
    assert "Description-Content-Type: text/markdown" in metadata


def test_the_sdist_holds_what_building_and_testing_need(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    needed = {"pyproject.toml", "README.md", "LICENSE", "src/virtual_epochs/py.typed"}
    needed |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "src").rglob("*.py")}
    assert needed <= names, sorted(needed - names)


def test_the_installed_wheel_passes_the_core_tests(dist: dict[str, Path], tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)  # a clean environment: no system site-packages
    python = str(env_dir / "bin" / "python")
    # torch at requirements-dev's pin: this machine's disk has its CPU build.
    install = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run_command([*install, str(dist["wheel"]), *pins(TEST_TOOLS)], timeout=900)
    environment = {
        "PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(env_dir),
        "PYTHONPATH": "",
    }
    # From a neutral directory: the package comes from the environment, at the built version.
    where = subprocess.run(
        [python, "-c", WHERE], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(f"{VERSION} {env_dir.resolve()}/lib/"), where.stdout
    # From the repository root, for the tests' paths (README.md, tests/_helpers.py); the src
    # layout keeps the source tree off sys.path, so the tests import the installed package.
    pytest_command = [python, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    pytest_command += ["--pyargs", "virtual_epochs", *CORE_TESTS]
    output = run_in_root(pytest_command, timeout=1200, env=environment)
    summary = output.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary), output[-3000:]
    assert not re.search(r"\d+ (failed|errors?)\b", summary), output[-3000:]
