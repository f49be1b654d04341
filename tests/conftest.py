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
