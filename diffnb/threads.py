"""torch's thread count for one block of work, given back after it. Library calls that pick a count (training,
slider redraws) use this, so that none changes the count for the code after it; notebooks never set it (they run on
what their environment gives torch: OMP_NUM_THREADS)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Optional

import torch


@contextmanager
def torch_threads(n: Optional[int]):
    """Run the block with n torch threads (None: leave torch's setting), then restore the previous count."""
    before = torch.get_num_threads()
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"threads must be a positive integer or None, got {n!r}")
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
