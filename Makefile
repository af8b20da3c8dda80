# Two entry points, each doing all set-up on a fresh machine with Python 3.11:
#   make demo   -> creates .venv, installs CPU torch first, the package, then runs `gendex demo`
#   make test   -> the same set-up, then ruff and the test suite (what .ci/run calls)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0
STAMP := $(VENV)/.gendex-installed
# one BLAS/OpenMP thread per test worker unless the caller says otherwise (`OMP_NUM_THREADS=2 make test`)
OMP_NUM_THREADS ?= 1
# lint only the folders that exist (benchmarks/ may not yet)
LINT_PATHS := $(wildcard src tests benchmarks tutorials)

DOCS_STAMP := $(VENV)/.gendex-docs-installed

.PHONY: demo test lint docs clean

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
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	# type hints of src/ (settings and the modules not yet typed: [tool.mypy] in pyproject.toml)
	$(BIN)/mypy

# pytest exits 5 when it collected no test: that is a failure too
test: $(STAMP) lint
	MPLBACKEND=agg OMP_NUM_THREADS=$(OMP_NUM_THREADS) $(BIN)/python -m pytest -n 2 --dist loadfile -q $(PYTEST_ARGS); \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; fi; exit $$rc

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e ".[docs]"
	touch $(DOCS_STAMP)

# the documentation, tutorials executed, warnings as errors; needs no network (see docs/conf.py)
docs: $(DOCS_STAMP)
	MPLBACKEND=agg OMP_NUM_THREADS=1 $(BIN)/sphinx-build -M html docs docs/_build -W --keep-going -q

clean:
	rm -rf $(VENV) gendex-demo gse60450-demo .pytest_cache .ruff_cache .mypy_cache docs/_build docs/generated \
		docs/jupyter_execute
