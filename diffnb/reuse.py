"""Value equality for the keys of the course's reuse caches (`attention.EditCache`, `guidance.PrefixCache`): a cache
reuses earlier steps only for a call whose inputs equal, value for value, those it recorded."""
from __future__ import annotations

import torch


def same(a, b) -> bool:
    """Equality of nested tuples, lists, dicts and tensors (tensors by shape, dtype and value)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and torch.equal(a.cpu(), b.cpu()))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b
