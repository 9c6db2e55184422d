# teachkit: `make lab` opens the course, `make test` runs every test. Both set up .venv first.
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
PORT       ?= 8888
LAB_ARGS   ?=
NB         ?=
ROOT_FLAG  := $(if $(filter 0,$(shell id -u)),--allow-root,)
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.teachkit-installed
export OMP_NUM_THREADS ?= 1
export PYTHONHASHSEED  := 0
export MPLBACKEND      := Agg
export PYDEVD_DISABLE_FILE_VALIDATION := 1

NBVAL_FLAGS := --nbval-lax --nbval-current-env --nbval-cell-timeout=300 --nbval-sanitize-with notebooks/nbval_sanitize.cfg

.PHONY: setup lab lint test test-lib test-lib-portable test-notebooks test-notebooks-numerics test-notebooks-portable test-notebooks-second-path notebooks slides browser-check data bench clean-venv help

help:
	@echo "make lab        open the course in JupyterLab (PORT=$(PORT), LAB_ARGS=...)"
	@echo "make lint       ruff, the import-layer contracts and the cycle check (part of make test)"
	@echo "make test       lint, library tests (and the sparse ones on the I/O fallbacks), then every notebook"
	@echo "                under nbval twice: as this CPU runs it, and on a second float-rounding and I/O path"
	@echo "make notebooks  build notebooks from notebooks/src and execute them in place (NB=05 for one)"
	@echo "make slides     static HTML decks that open offline, into notebooks/_slides/ (NB=05 for one)"
	@echo "make data       rebuild data/ (checkpoints, pairs, stored runs), deterministic"
	@echo "make bench      run the benchmarks (minutes; quiet machine), JSON into data/"

setup: $(STAMP)

# Reinstall only when pyproject.toml changes (or the venv is new). CPU torch goes in first,
# so pip never pulls a multi-GB CUDA build; override with TORCH_SPEC=... for another build.
$(STAMP): pyproject.toml
	@test -x $(PY) || { echo "==> creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "==> installing $(TORCH_SPEC) (CPU build)"
	$(PY) -m pip install -qq --progress-bar off "$(TORCH_SPEC)"
	@echo "==> installing teachkit and its dependencies"
	$(PY) -m pip install -qq --progress-bar off -e ".[test,trl]"
	@touch $(STAMP)

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --port=$(PORT) $(ROOT_FLAG) $(LAB_ARGS)

# Every notebook runs twice: as this CPU runs it, then on a second path that changes both the float
# rounding (NUMERICS_ENV) and the I/O (the fallbacks a Mac takes): both must pass.
test: setup lint test-lib test-lib-portable test-notebooks test-notebooks-second-path

# Lint (ruff, rules in pyproject.toml) and the layer contracts (import-linter): which package may
# import which. `python -m teachkit.devtools.layers` prints the map and checks for cycles.
lint: setup
	$(VENV)/bin/ruff check teachkit tests notebooks/src
	$(VENV)/bin/lint-imports
	$(PY) -m teachkit.devtools.layers

test-lib: setup
	$(PY) -m pytest tests/ -q

# Every notebook in one pytest run, one kernel at a time (NB=05 for one). Not in parallel: two
# kernels started at once can pick the same free ports (jupyter_client picks them before the kernel
# binds them) and one then never answers. $(1): environment for the run.
run-notebooks = $(1) $(PY) -m pytest $(NBVAL_FLAGS) -q notebooks/$(if $(NB),$(NB)*.ipynb,)

test-notebooks: setup
	$(call run-notebooks,)

# A second float-rounding path: torch's portable kernels instead of AVX2/AVX-512 ones, and MKL's
# bitwise-compatible mode. A learner's CPU rounds differently from the one that stored the outputs,
# so every notebook's asserts, and every compared output, must hold on this path too.
NUMERICS_ENV ?= ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE
test-notebooks-numerics: setup
	$(call run-notebooks,$(NUMERICS_ENV))

# The sparse notebooks (10-14) on the I/O fallbacks a Mac takes: O_DIRECT, posix_fadvise, kernel AIO
# and /proc hidden (teachkit/sparse/flash/platform_io.py). IO_PLATFORM=windows also hides pread.
IO_PLATFORM ?= portable
test-notebooks-portable: setup
	TEACHKIT_IO_PLATFORM=$(IO_PLATFORM) $(PY) -m pytest $(NBVAL_FLAGS) -q $(sort $(wildcard notebooks/1[0-4]_*.ipynb))

# The sparse engine's library tests with the Linux-only I/O calls hidden (tests needing them skip, by name).
SPARSE_IO_TESTS := tests/test_aio.py tests/test_flash.py tests/test_cache.py tests/test_pipeline.py tests/test_engine.py \
                   tests/test_lookahead.py tests/test_faults.py tests/test_platform_io.py tests/test_engine_memory.py
test-lib-portable: setup
	TEACHKIT_IO_PLATFORM=$(IO_PLATFORM) $(PY) -m pytest -q $(SPARSE_IO_TESTS)

test-notebooks-second-path: setup
	$(call run-notebooks,$(NUMERICS_ENV) TEACHKIT_IO_PLATFORM=$(IO_PLATFORM))

# Source (notebooks/src, jupytext percent format) -> .ipynb -> executed in place.
notebooks: setup
	$(PY) -m teachkit.devtools.sync_notebooks --execute $(NB)

# Static reveal.js decks, one per notebook, into notebooks/_slides/ (git-ignored); they open offline.
slides: setup
	$(PY) -m teachkit.devtools.slides build $(NB)

# Maintainers: every notebook run in JupyterLab in the system Chromium (Debian: apt-get install chromium).
browser-check: setup
	$(PY) -m pip install -qq --progress-bar off -e ".[test,trl,browser]"
	$(PY) -m teachkit.devtools.browser_check $(NB)

data: setup
	$(PY) -m teachkit.devtools.make_data

# Full-size runs (several minutes, several GB of RAM; run on a quiet machine). The stored JSON in
# data/ is what notebooks 11 and 14 plot, labelled as stored results. `--quick` runs both parts in
# one command: `python -m teachkit.sparse.bench --quick --json PATH` (kernels + `engine` section).
bench: setup
	@echo "==> [1/2] sparse kernels vs dense (data/sparse_bench.json)"
	$(PY) -m teachkit.sparse.bench --no-engine --json data/sparse_bench.json
	@echo "==> [2/2] engine vs baselines (data/engine_bench.json)"
	$(PY) -m teachkit.sparse.bench.engine --json data/engine_bench.json

clean-venv:
	rm -rf $(VENV)
