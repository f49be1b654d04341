"""Devices: which exist here, the one place that picks one, and moving a bundle of model parts as a whole.

    dev = devices.get_device()                 # cuda, else mps, else cpu
    bundle.to(dev)                             # every module the bundle holds (UNet, text encoder, VAE, ...)
"""
from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Union

import torch


def available() -> list:
    """The devices a bundle can move to here, by name."""
    names = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return names + ["meta"]


def check_device(device: Union[str, torch.device]) -> torch.device:
    """`device` as a torch.device, if it exists here; else a ValueError naming it and the devices that do."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{device!r} is not a device name; available here: {', '.join(available())}") from None
    if dev.type in ("cpu", "meta"):
        return dev
    ok = (dev.type == "cuda" and torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count()) or \
         (dev.type == "mps" and "mps" in available())
    if not ok:
        raise ValueError(f"device {str(dev)!r} does not exist here; available: {', '.join(available())}")
    return dev


def get_device() -> torch.device:
    """The one place that picks a device: CUDA if present, else Apple MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def modules(bundle) -> dict:
    """{name: torch.nn.Module} of every module a bundle holds (its dataclass fields, or its attributes)."""
    items = (((f.name, getattr(bundle, f.name)) for f in fields(bundle)) if is_dataclass(bundle)
             else vars(bundle).items())
    return {k: v for k, v in items if isinstance(v, torch.nn.Module)}


def move(bundle, device: Union[str, torch.device]):
    """Move every module of `bundle` to `device` (checked first: a missing device is named with the available
    ones); returns the bundle."""
    dev = check_device(device)
    for m in modules(bundle).values():
        m.to(dev)
    return bundle


class Bundle:
    """Base of the zoo's bundles (dataclasses of model parts): `.to(device)` moves all of them, `.device` is where
    the first one is."""

    def to(self, device: Union[str, torch.device]):
        """Move every module this bundle holds to `device`; returns the bundle."""
        return move(self, device)

    @property
    def device(self) -> torch.device:
        for m in modules(self).values():
            for p in m.parameters():
                return p.device
        return torch.device("cpu")
