# Two entry points, each doing all set-up on a fresh machine with Python 3.11:
#   make demo   -> creates .venv, installs CPU torch first, the package, then runs `gendex demo`
#   make test   -> the same set-up plus test extras, then ruff and the test suite (what .ci/run calls)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0
STAMP := $(VENV)/.gendex-installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned to the local CPU wheel, so that no dependency ever resolves a CUDA build
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	MPLBACKEND=agg $(BIN)/gendex demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: $(STAMP) lint
	MPLBACKEND=agg OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) gendex-demo .pytest_cache .ruff_cache
