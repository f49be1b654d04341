# diffnb: set up, open, test and benchmark the course.
#   make lab     set everything up, then open JupyterLab on notebooks/
#   make test    set everything up, then run the unit tests, every notebook under nbval and (when Chromium is
#                found) the browser suite
#   make check   the unit tests, the model-quality and paper-claim bars and nbval
#   make check-all  make check and the browser suite, in one run, with Chromium required (what CI runs)
#   make browser every notebook in JupyterLab in a headless Chromium (tests/browser), alone
#   make bench   per-notebook times and throughputs (python -m diffnb.bench)
# Bootstraps with python3 (>= 3.11, the pinned set needs it); override with `make PYTHON=python3.11 lab`.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LOCK   := requirements-lock.txt
STAMP  := $(VENV)/.installed
# torch and torchvision are installed first and together, at the versions the lock pins
# (a torchvision built for another torch does not import).
TORCH_PINS = $(shell grep -E '^(torch|torchvision)==' $(LOCK))

.PHONY: venv install lab test check check-all browser bench notebook notebooks lock clean distclean

venv install: $(STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "error: $(PYTHON) is not Python >= 3.11, which the pinned set in $(LOCK) needs;" \
	         "run e.g. 'make PYTHON=python3.11 $(MAKECMDGOALS)'" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Re-runs only when the lock or pyproject.toml changes (the stamp is newer than both otherwise).
# --no-compile: pip would byte-compile all 16,515 .py files of the set (40 s on one core, measured 2026-11-30), where a
# run imports about 5,000 modules and Python compiles and caches those on first import (about 12 s, once).
$(STAMP): $(LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/pip install --no-compile -c $(LOCK) $(TORCH_PINS)
	$(BIN)/pip install --no-compile -c $(LOCK) -e ".[lab,test]"
	touch $@

# As root (a container) JupyterLab refuses to start without --allow-root; the URL with its token is printed either way.
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root,)

# Three test commands, split the way diffusers gates its slow tests:
#   make test       the unit tests, every notebook under nbval and (when Chromium is found) the browser suite: for
#                   students and contributors
#   make check      the unit tests, the model-quality and paper-claim bars on the shipped weights (tests marked
#                   `slow`, session-scoped fixtures sample each model once) and nbval
#   make check-all  make check and the browser suite, with Chromium required: what CI runs (.ci/run)
PYTEST := HF_HUB_OFFLINE=1 DIFFNB_PROGRESS=0 $(BIN)/python -m pytest
# Everything runs in ONE pytest session of JOBS pytest-xdist workers of one torch thread each, a whole file per worker
# (--dist loadfile: module fixtures are computed once; a notebook under nbval, and the browser suite, are one file
# each), so that both cores stay busy to the end. Measured on this 2-core machine: the tests took 1,287 s in two
# one-thread workers against 1,498 s in one two-thread process; notebooks 01 and 05 under nbval took 103 s side by side
# at one thread each against 121 s one after the other at two threads (2026-11-30: a notebook's Python-bound cells
# leave the second core idle); and the three phases run one after the other (tests, then nbval, then the browser
# suite) took 2,656-2,798 s in CI, over the 45-minute budget. A two-thread torch process slows down several-fold when
# another process holds a core, so every worker, kernel and notebook runs one thread (OMP_NUM_THREADS=1 is inherited
# by nbval's kernels and by the browser suite's Jupyter server and its kernels).
JOBS   ?= 2
PAR    := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# --no-loadscope-reorder: files are handed out in collection order, which tests/conftest.py makes longest first
# (LONGEST_FIRST; xdist would hand them out by number of tests: the 512 s test_quality_eta0.py, one test, last).
XDIST  := -n $(JOBS) --dist loadfile --no-loadscope-reorder
# Notebooks are tested in nbval's lax mode: every cell must run without error, and the outputs of cells marked
# `# NBVAL_CHECK_OUTPUT` must match the saved ones after sanitising (STYLE.md, Tests). The options only concern
# .ipynb files; tests/*.py collect as usual.
NBVAL_OPTS := --nbval-lax --nbval-current-env --nbval-cell-timeout=600 \
              --nbval-sanitize-with=tests/nbval_sanitize.cfg
SUITE  = $(PAR) $(PYTEST) tests notebooks/ $(NBVAL_OPTS) --durations=25 $(XDIST)

# The browser suite (tests/browser): every notebook opened in JupyterLab in a headless Chromium, run through the UI,
# its sliders moved from the keyboard; screenshots and redraw times in tests/browser/artifacts/, and a summary at the
# end of the run. It uses the system's Chromium (Debian's `chromium` package) through the playwright package, never a
# Playwright browser download. `pytest tests` skips it unless tests/browser is named. `make test` runs it when
# Chromium is found and says how to install it otherwise (`make check` does not); `make check-all` (CI) fails
# without it, never a silent pass. Redraw times measured beside the other tests are slower than on a quiet machine:
# `make browser` runs the suite alone.
CHROMIUM_INSTALL := sudo apt-get install -y chromium
CHROMIUM = $(or $(DIFFNB_CHROMIUM),$(firstword $(foreach b,chromium chromium-browser google-chrome-stable \
             google-chrome,$(shell command -v $(b) 2>/dev/null))))
NO_CHROMIUM := no Chromium found; install it with: $(CHROMIUM_INSTALL) (or point DIFFNB_CHROMIUM at a Chromium binary)

# ruff (configured in pyproject.toml) lints the package and the tests first, then the notebooks' jupytext sources and
# build scripts for unused names and import order (F, I; the full rule set would reflow the notebooks' prose-like code).
LINT = $(BIN)/ruff check diffnb tests && $(BIN)/ruff check --select F,I notebooks/*.py notebooks/build/*.py
test: $(STAMP)
	$(LINT)
	@if [ -z "$(CHROMIUM)" ]; then echo "browser suite (tests/browser) skipped: $(NO_CHROMIUM)"; fi
	$(if $(CHROMIUM),DIFFNB_CHROMIUM=$(CHROMIUM)) $(SUITE) -m "not slow" $(if $(CHROMIUM),tests/browser)

check: $(STAMP)
	$(LINT)
	$(SUITE) --ignore=tests/browser

check-all: $(STAMP)
	@if [ -z "$(CHROMIUM)" ]; then echo "error: make check-all runs the browser suite (tests/browser): $(NO_CHROMIUM)" >&2; \
	  exit 1; fi
	$(LINT)
	DIFFNB_CHROMIUM=$(CHROMIUM) $(SUITE) tests/browser

# The browser suite alone, one notebook at a time on a machine it has to itself: the redraw times to quote.
browser: $(STAMP)
	@if [ -z "$(CHROMIUM)" ]; then echo "error: $(NO_CHROMIUM)" >&2; exit 1; fi
	DIFFNB_CHROMIUM=$(CHROMIUM) $(PYTEST) tests/browser -v -s

# Maintainers: each notebook's source is the jupytext percent file notebooks/NN_name.py (edit that, not the .ipynb).
#   make notebook NB=03   sync notebooks/03_*.ipynb from its source, execute it in place, normalise metadata
#   make notebooks        the same for every notebook
notebook: $(STAMP)
	@test -n "$(NB)" || { echo "usage: make notebook NB=03 (the number of a notebook in notebooks/)" >&2; exit 2; }
	@test -n "$(wildcard notebooks/$(NB)_*.py)" || { echo "no notebook source notebooks/$(NB)_*.py" >&2; exit 2; }
	HF_HUB_OFFLINE=1 DIFFNB_PROGRESS=0 $(BIN)/python notebooks/build/execute.py $(wildcard notebooks/$(NB)_*.py)

notebooks: $(STAMP)
	HF_HUB_OFFLINE=1 DIFFNB_PROGRESS=0 $(BIN)/python notebooks/build/execute.py $(wildcard notebooks/[0-9][0-9]_*.py)

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m diffnb.bench $(BENCH_ARGS)

# Rewrite the lock from the current .venv (after a deliberate upgrade that passes `make test`).
lock:
	{ sed -n '/^#/p' $(LOCK); $(BIN)/pip freeze --exclude-editable | grep -v -E '^(-e |diffnb)'; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)

clean:
	rm -rf build *.egg-info .pytest_cache tests/.pytest_cache tests/browser/artifacts $(STAMP)
	find . -path ./$(VENV) -prune -o -type d \( -name __pycache__ -o -name .ipynb_checkpoints \) \
	  -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
