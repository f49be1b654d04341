"""What the browser suite's fixtures and tests share: paths, the Chromium lookup and limits."""
from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ARTIFACTS = HERE / "artifacts"                   # git-ignored; the README names it
TIMES = ARTIFACTS / "redraw_times.json"          # read by `python -m diffnb.bench`
LOG = ARTIFACTS / "browser_times.log"            # this run's run-all and redraw lines, shown in the run's summary
INSTALL = ("install Chromium with `sudo apt-get install -y chromium` (Debian/Ubuntu), "
           "or point DIFFNB_CHROMIUM at a Chromium or Chrome binary")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome")
START_TIMEOUT_S = 60                             # a server (or browser) not up by then fails with its log
VIEWPORT = {"width": 1400, "height": 1000}


def find_chromium() -> str | None:
    """$DIFFNB_CHROMIUM if set, else the first of CHROMIUM_NAMES on PATH (the Makefile looks the same way)."""
    named = os.environ.get("DIFFNB_CHROMIUM")
    if named:
        return shutil.which(named)
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)



def report(line: str) -> None:
    """Print a run-all or redraw line and keep it in LOG: under pytest-xdist (make test, make check-all) a worker's
    prints are not shown, so the run's summary prints LOG (tests/browser/conftest.py)."""
    print(line)
    ARTIFACTS.mkdir(exist_ok=True)
    with open(LOG, "a") as f:
        f.write(line.strip() + "\n")


def alone() -> bool:
    """Whether this run has the machine to itself, as far as pytest knows: not beside other tests in an xdist
    worker (redraw times measured there are slower than a student's; `make browser` runs the suite alone)."""
    return "PYTEST_XDIST_WORKER" not in os.environ


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
