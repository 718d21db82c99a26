# Two commands do all the set-up on a fresh machine with Python 3.10+ and make:
#   make demo   the main job: a real training run with virtual epochs, killed and resumed
#   make test   everything CI runs: lint, format check, mypy --strict, the test suite (which
#               also builds and installs the wheel and builds the docs in strict mode)
# Release:
#   make dist         wheel and sdist in dist/ (python -m build), metadata checked by twine
#   make docs         the documentation site in site/ (mkdocs, strict)
#   make test-matrix  the whole suite on every Python x torch cell that installs here (slow:
#                     downloads torch builds of a few GB each into .matrix/)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench dist docs test-matrix clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps \
		--no-build-isolation -e .
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src

test: lint
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/python examples/train_digits.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks

dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade \
		--target build/twine -r requirements-twine.txt
	PYTHONPATH=build/twine $(BIN)/python -m twine check --strict dist/*

docs: $(STAMP)
	$(BIN)/python -m mkdocs build --strict

test-matrix: $(STAMP)
	nice -n 10 $(BIN)/python scripts/test_matrix.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis dist site build
