# diffnb: set up, open, test and benchmark the course.
#   make lab     set everything up, then open JupyterLab on notebooks/
#   make test    set everything up, then run the unit tests, every notebook under nbval and (when Chromium is
#                found) the browser suite
#   make check   the unit tests, nbval and the model-quality and paper-claim bars (what CI runs; no browser suite yet)
#   make browser every notebook in JupyterLab in a headless Chromium (tests/browser)
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

# Notebooks are tested in nbval's lax mode: every cell must run without error, and the outputs of
# cells marked `# NBVAL_CHECK_OUTPUT` must match the saved ones after sanitising (STYLE.md, Tests).
NBVAL_OPTS := --nbval-lax --nbval-current-env --nbval-cell-timeout=300 \
              --nbval-sanitize-with=tests/nbval_sanitize.cfg

.PHONY: venv install lab test check browser bench notebook notebooks lock clean distclean

venv install: $(STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "error: $(PYTHON) is not Python >= 3.11, which the pinned set in $(LOCK) needs;" \
	         "run e.g. 'make PYTHON=python3.11 $(MAKECMDGOALS)'" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Re-runs only when the lock or pyproject.toml changes (the stamp is newer than both otherwise).
$(STAMP): $(LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/pip install -c $(LOCK) $(TORCH_PINS)
	$(BIN)/pip install -c $(LOCK) -e ".[lab,test]"
	touch $@

# As root (a container) JupyterLab refuses to start without --allow-root; the URL with its token is printed either way.
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root,)

# Two test commands, split the way diffusers gates its slow tests:
#   make test    the unit tests and every notebook under nbval (at most ~15 minutes): for students and contributors
#   make check   the same plus the model-quality and paper-claim bars on the shipped weights (tests marked `slow`,
#                session-scoped fixtures sample each model once); CI runs this (.ci/run)
# nbval is skipped while notebooks/ holds no .ipynb; pytest's exit code 5 ("no tests collected") is not a failure.
PYTEST := HF_HUB_OFFLINE=1 DIFFNB_PROGRESS=0 $(BIN)/python -m pytest
NBVAL  = @if ls notebooks/*.ipynb >/dev/null 2>&1; then \
	  set -x; $(PYTEST) notebooks/ $(NBVAL_OPTS) || test $$? -eq 5; \
	else \
	  echo "nbval: no notebooks in notebooks/ yet, skipped"; \
	fi

# The browser suite (tests/browser): every notebook opened in JupyterLab in a headless Chromium, run through the UI,
# its sliders moved from the keyboard; screenshots and redraw times in tests/browser/artifacts/. It uses the system's
# Chromium (Debian's `chromium` package) through the playwright package, never a Playwright browser download.
# `make test` runs it when Chromium is found and says how to install it otherwise; `make check` (CI) does not run it
# yet: executing every notebook a second time does not fit CI's budget.
CHROMIUM_INSTALL := sudo apt-get install -y chromium
CHROMIUM = $(or $(DIFFNB_CHROMIUM),$(firstword $(foreach b,chromium chromium-browser google-chrome-stable \
             google-chrome,$(shell command -v $(b) 2>/dev/null))))
BROWSER_SUITE = @if [ -n "$(CHROMIUM)" ]; then \
	  set -x; DIFFNB_CHROMIUM=$(CHROMIUM) $(PYTEST) tests/browser -v -s; \
	else \
	  echo "browser suite (tests/browser) skipped: no Chromium found; install it with: $(CHROMIUM_INSTALL)"; \
	fi

# ruff (configured in pyproject.toml) lints the package and the tests first.
test: $(STAMP)
	$(BIN)/ruff check diffnb tests
	$(PYTEST) tests -m "not slow" --ignore=tests/browser --durations=12
	$(NBVAL)
	$(BROWSER_SUITE)

check: $(STAMP)
	$(BIN)/ruff check diffnb tests
	$(PYTEST) tests --ignore=tests/browser --durations=20
	$(NBVAL)

browser: $(STAMP)
	$(BROWSER_SUITE)

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
