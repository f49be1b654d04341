"""Argument checks shared by every module: one rule and one message per kind of input.

Counts reject bool (True is not a batch size); numbers accept Python, numpy and 0-d torch scalars and reject bool,
NaN and infinities. Each check returns the value as a plain int or float and raises a ValueError that names the
argument, what is accepted and what was given.

    n = checks.count("batch_size", batch_size)                    # an int >= 1
    w = checks.number("guidance_scale", w, 0, 50)                   # a float in [0, 50]
    checks.num_inference_steps(num_inference_steps, 1000)
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch


def _scalar(value):
    """A plain Python number from an int, float, numpy scalar or 0-d tensor; None for anything else (bool too)."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, torch.Tensor):
        if value.ndim != 0 or value.dtype == torch.bool:
            return None
        return value.item()
    if isinstance(value, numbers.Number) and not isinstance(value, complex):
        return value.item() if isinstance(value, np.generic) else value
    return None


def count(name: str, value, minimum: int = 1) -> int:
    """An integer >= minimum (a batch size, a number of steps or iterations); bool is refused."""
    v = _scalar(value)
    if v is None or isinstance(v, float) or v < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(v)


def number(name: str, value, low: float | None = None, high: float | None = None, note: str = "",
           low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number in [low, high] (open ends with low_open / high_open; None: unbounded)."""
    v = _scalar(value)
    ok = v is not None and math.isfinite(v)
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        if low is not None and high is not None:
            where = f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            where = f" {'>' if low_open else '>='} {low:g}"
        elif high is not None:
            where = f" {'<' if high_open else '<='} {high:g}"
        else:
            where = ""
        raise ValueError(f"{name} must be a {'finite ' if not where else ''}number{where}{' ' + note if note else ''}, "
                         f"got {value!r}")
    return float(v)


def fraction(name: str, value) -> float:
    """A fraction of the sampling steps, in [0, 1] (the windows tau_c, tau_s, tau_u, tau_v)."""
    return number(name, value, 0.0, 1.0, "(a fraction of the sampling steps)")


def num_inference_steps(value, num_train_timesteps: int = 1000) -> int:
    """The number of sampling steps: an integer in [1, num_train_timesteps]."""
    v = _scalar(value)
    if v is None or isinstance(v, float) or not 1 <= v <= num_train_timesteps:
        raise ValueError(f"num_inference_steps must be an integer in [1, {num_train_timesteps}], got {value!r}")
    return int(v)


def step_index(name: str, value, num_steps: int) -> int:
    """A step index i of the sampling loop (0 is the noisiest step), in [0, num_steps)."""
    v = _scalar(value)
    if v is None or isinstance(v, float) or not 0 <= v < num_steps:
        raise ValueError(f"{name} must be a step index, an integer in [0, {num_steps}), got {value!r}")
    return int(v)


def guidance_scale(value) -> float:
    """The classifier-free guidance scale w, in [0, 50] (1: the conditional model alone)."""
    return number("guidance_scale", value, 0.0, 50.0)


def tensor(name: str, value, shape: tuple | None = None, low: float | None = None, high: float | None = None,
           dtype: torch.dtype | None = None, hint: str = "") -> torch.Tensor:
    """A non-empty floating-point torch tensor with every value finite, of `shape` where given (None: any size), in
    [low, high] where given, and of `dtype` where given (the model's: torch would fail deep inside on another).
    Returns the tensor unchanged; raises TypeError (not a float tensor) or ValueError naming `name`."""
    extra = f"; {hint}" if hint else ""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor, got {type(value).__name__}{extra}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}{extra}")
    if shape is not None:
        ok = value.ndim == len(shape) and all(s is None or s == g for s, g in zip(shape, value.shape))
        if not ok:
            want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {tuple(value.shape)}{extra}")
    if value.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(value.shape)}){extra}")
    if dtype is not None and value.dtype != dtype:
        raise ValueError(f"{name} has dtype {value.dtype} but the model runs in {dtype}; pass {name}.to({dtype})"
                         f"{extra}")
    if value.numel() and value.device.type != "meta":
        if not torch.isfinite(value).all():
            raise ValueError(f"{name} holds NaN or infinite values{extra}")
        lo, hi = float(value.min()), float(value.max())
        if (low is not None and lo < low) or (high is not None and hi > high):
            where = f"[{-math.inf if low is None else low:g}, {math.inf if high is None else high:g}]"
            raise ValueError(f"{name} must lie in {where}, got values in [{lo:.4g}, {hi:.4g}]{extra}")
    return value


def generator(value, name: str = "generator"):
    """A random-number source: None (torch's global one), a torch.Generator, a list of them (one per image), or an
    int seed >= 0 (numpy integers and 0-d tensors too), turned into a CPU torch.Generator seeded with it."""
    if value is None or isinstance(value, torch.Generator):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(g, torch.Generator) for g in value):
        return list(value)
    v = _scalar(value)
    if v is None or isinstance(v, float) or v < 0:
        raise TypeError(f"{name} must be an int seed >= 0 or a torch.Generator, got {value!r}")
    return torch.Generator().manual_seed(int(v))
