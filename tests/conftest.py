"""Shared test setup: offline hub access, at most two CPU threads, and the repository root."""
import os
from pathlib import Path

# Set before diffusers / transformers / huggingface_hub are imported by any test: tests never download.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def repo_root() -> Path:
    """The repository root (the folder holding pyproject.toml)."""
    return Path(__file__).resolve().parents[1]


# `make test`, `make check` and `make check-all` run the tests, the notebooks under nbval and (check-all) the browser
# suite in one pytest-xdist session (-n 2 --dist loadfile --no-loadscope-reorder), which hands out whole files in
# collection order; a worker takes the next file when two tests of its own are left. The files that take longest go
# first (longest processing time first), so that the files handed out last are short ones and both workers end
# together. xdist's own order (most tests first) handed out test_quality_eta0.py (one test, 512 s) last: replayed from
# the measured durations, its two workers ended about 450 s apart. The seconds are one worker's (one torch thread,
# the other core busy) on this 2-core machine: the test files from `--durations` (2026-11-29/30), a notebook from its
# nbval cells, the browser suite from its eight Restart-and-Run-All runs, slider moves and page loads (estimates
# where marked ~, from two-thread runs; 2026-11-30). Every other file comes after, in collection order.
LONGEST_FIRST = (
    "test_lab.py",                  # ~1,000 s: the browser suite, all 8 notebooks (tests/browser; check-all only)
    "test_quality.py",              # 769 s: toy-t2i eta 1 (502 s), toy-ddpm (149 s), editability (53 s)
    "test_quality_eta0.py",         # 512 s: toy-t2i eta 0
    "test_p2plus_bars.py",          # 243 s
    "test_guidance_bars.py",        # 212 s
    "08_gradient_guidance.ipynb",   # ~200 s
    "06_p2plus.ipynb",              # ~130 s
    "05_stylediffusion.ipynb",      # ~115 s
    "03_rectifier.ipynb",           # ~110 s
    "test_inversion_bars.py",       # 107 s
    "test_rectifier.py",            # 105 s
    "02_inversion.ipynb",           # ~95 s
    "04_editing_training.ipynb",    # ~90 s
    "01_diffusion_basics.ipynb",    # ~75 s
    "test_stylediffusion_bars.py",  # 68 s
    "test_editing_bars.py",         # 52 s
    "07_sdd_hqs.ipynb",             # ~45 s; every other file took under 35 s
)


def pytest_collection_modifyitems(config, items):
    """The files of LONGEST_FIRST first, in that order; within a file, and for every other file, collection order.
    (A session-wide hook: it orders the notebooks and the browser suite too when the command line names them.)"""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))     # stable


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a model-quality or paper-claim bar on the shipped weights (`make check`; "
                                       "`make test` skips them)")


# ----------------------------------------------------------------------------------------------
# Expensive measurements, computed once per pytest run and shared by every test that reads them.
# Each fixture loads its own copy of a model, so tests that install attention processors on their own
# bundles cannot change what these measure.
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def attr_model():
    from diffnb import zoo
    return zoo.load("toy-attr").model


@pytest.fixture(scope="session")
def clip_bundle():
    from diffnb import zoo
    return zoo.load("toy-clip")


@pytest.fixture(scope="session")
def t2i_quality_at(attr_model, clip_bundle):
    """eta -> evaluate.T2IQuality of the shipped toy-t2i on 256 random partial captions (50 DDIM steps, guidance 5),
    each eta sampled once per run."""
    from diffnb import evaluate, zoo
    bundle, cache = zoo.load("toy-t2i"), {}

    def at(eta: float):
        if eta not in cache:
            cache[eta] = evaluate.t2i_quality(bundle, attr_model, clip_bundle, n=256, guidance_scale=5.0,
                                              num_inference_steps=50, eta=eta)
        return cache[eta]
    return at
