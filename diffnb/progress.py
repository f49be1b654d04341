"""Progress bars for long work: training (`python -m diffnb.zoo train`, `diffnb.fit`), null-text inversion, SDD's
distillation, the editing runs. Through tqdm.auto: a widget bar in a notebook, a text bar in a terminal.

One switch, the environment variable DIFFNB_PROGRESS: "1" shows the bars, "0" hides them. Unset, they show except
under pytest (and so under nbval, whose kernels inherit pytest's environment) and in `make notebook`, which sets
DIFFNB_PROGRESS=0, so that saved notebook outputs stay small and stable.

    from diffnb import progress
    for step in progress.bar(range(steps), desc="training"):
        ...
"""
from __future__ import annotations

import os

SWITCH = "DIFFNB_PROGRESS"


def enabled() -> bool:
    """Whether bars show (DIFFNB_PROGRESS, else off under pytest)."""
    value = os.environ.get(SWITCH)
    if value is None:
        return "PYTEST_CURRENT_TEST" not in os.environ
    if value not in ("0", "1"):
        raise ValueError(f"{SWITCH} must be '0' (no progress bars) or '1' (progress bars), got {value!r}")
    return value == "1"


def bar(iterable=None, desc: str = "", total=None, **kwargs):
    """tqdm.auto.tqdm over `iterable`, disabled unless `enabled()`; leaves no finished bar behind in a notebook."""
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=desc, total=total, disable=not enabled(), leave=False, **kwargs)
