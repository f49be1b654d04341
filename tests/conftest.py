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
