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


# pytest-xdist (`make test` / `make check`: -n 2 --dist loadfile --no-loadscope-reorder) hands out whole files in
# collection order, and a worker takes the next file when two tests of its own are left. The files that take longest
# go first (longest processing time first), so that the files handed out last are short ones. xdist's own order (most
# tests first) handed out test_quality_eta0.py (one test, 512 s) last, after test_p2plus_bars.py (four tests, 240 s):
# replayed from the measured durations, its two workers end about 450 s apart (1,376 s, against 1,325 s measured on
# 2026-11-29), where this order ends them together (1,152 s). The seconds are one worker's (one torch thread) in
# `make check` on this 2-core machine, from `--durations` (2026-11-29; the three marked * have been cut since, to
# about 212, 230 and 25 s; this order still simulates best, 1,098 s); the rest of the files come after, in
# collection order.
HEAVY_FIRST = ("test_quality.py",              # 769 s: toy-t2i eta 1 (502 s), toy-ddpm (149 s), editability (53 s)
               "test_quality_eta0.py",         # 512 s: toy-t2i eta 0
               "test_guidance_bars.py",        # 268 s *
               "test_p2plus_bars.py",          # 247 s *
               "test_inversion_bars.py",       # 107 s
               "test_rectifier.py",            # 105 s
               "test_stylediffusion_bars.py",  # 68 s
               "test_zoo.py",                  # 62 s *
               "test_editing_bars.py")         # 52 s; every other file took under 35 s


def pytest_collection_modifyitems(config, items):
    """The files of HEAVY_FIRST first, in that order; within a file, and for every other file, collection order."""
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
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
