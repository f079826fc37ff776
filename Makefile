# Quick start: `make demo` (set up, then run the demo) and `make test` (set up, then run the tests).
# Everything installs from this repository's own files: pyproject.toml, constraints.txt and
# scripts/install-system-deps.sh.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PYTEST_ARGS ?=

.PHONY: setup setup-dev system-deps demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch==2.13.0 resolves to the CPU build on workstations and CI; constraints.txt pins the rest.
setup: $(BIN)/python
	$(PIP) install -q -c constraints.txt -e '.[torch,mpi,mpich]'

setup-dev: setup
	$(PIP) install -q -c constraints.txt -e '.[torch,mpi,mpich,dev]'

system-deps:
	bash scripts/install-system-deps.sh

demo: setup
	$(BIN)/epbench demo

test: setup-dev system-deps
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info
