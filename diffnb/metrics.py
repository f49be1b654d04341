"""Every number a notebook reports: segmentation IoU and the perceptual distance.

The perceptual distance is LPIPS's formula, computed by the lpips package itself (`lpips.LPIPS` with
`lpips=False`: unit-normalised channel features, squared difference, summed over channels, spatial mean,
summed over layers). In real mode it is `lpips.LPIPS(net="alex")` unchanged. The AlexNet trunk needs ImageNet
weights that cannot be downloaded here, so toy mode plugs a trunk trained on the toy world (toy-attr's
convolutional blocks) into the same class. Every table says which one it used (`PerceptualMetric.name`).
"""
from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass

import torch
import torch.nn as nn

from . import world
from .images import to_tensor


def iou_per_class(pred: torch.Tensor, target: torch.Tensor, num_classes: int = len(world.MASK_CLASSES)) -> torch.Tensor:
    """IoU of each class over a batch of (B, H, W) masks; NaN for a class absent from both."""
    ious = torch.full((num_classes,), float("nan"))
    for k in range(num_classes):
        p, t = pred == k, target == k
        union = (p | t).sum()
        if union > 0:
            ious[k] = (p & t).sum() / union
    return ious


def mean_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int = len(world.MASK_CLASSES)) -> float:
    """Mean IoU over the classes present in prediction or target."""
    return float(iou_per_class(pred, target, num_classes).nanmean())


class _Trunk(nn.Module):
    """Adapts a network with `.features(x) -> [maps]` to the interface lpips.LPIPS expects of its `.net`."""

    def __init__(self, net: nn.Module, layers: tuple):
        super().__init__()
        self.net, self.layers = net, layers
        self.Out = namedtuple("Features", [f"f{i}" for i in layers])

    def forward(self, x):
        feats = self.net.features(x)
        return self.Out(*[feats[i] for i in self.layers])


@dataclass
class PerceptualMetric:
    """A perceptual distance d(a, b) -> (B,) and the name every table prints with its numbers."""
    name: str
    module: nn.Module

    @torch.no_grad()
    def __call__(self, a, b, size: int = 32) -> torch.Tensor:
        a, b = to_tensor(a, size=size), to_tensor(b, size=size)
        dev = next(self.module.parameters()).device
        return self.module(a.to(dev), b.to(dev)).flatten().cpu()


def toy_lpips(trunk: nn.Module, layers: tuple = (1, 2)) -> PerceptualMetric:
    """LPIPS's formula over a toy-world trunk (e.g. toy-attr's AttributeClassifier), through lpips.LPIPS.
    The default layers are the 16x16 and 8x8 blocks: the 32x32 block alone rates a 1-pixel shift as far as
    closed eyes, which no person would."""
    import warnings

    import lpips
    with warnings.catch_warnings():  # torchvision's note on its deprecated `pretrained` argument
        warnings.simplefilter("ignore", UserWarning)
        metric = lpips.LPIPS(pretrained=False, net="alex", pnet_rand=True, lpips=False, verbose=False)
    metric.net = _Trunk(trunk, layers)
    metric.L = len(layers)
    metric.scaling_layer = nn.Identity()   # the toy trunk takes [-1, 1] images as they are
    return PerceptualMetric("toy-LPIPS (toy-attr trunk)", metric.eval().requires_grad_(False))


def real_lpips() -> PerceptualMetric:
    """lpips.LPIPS(net='alex'): needs torchvision's ImageNet AlexNet weights (a download)."""
    import lpips
    return PerceptualMetric("LPIPS (alex)", lpips.LPIPS(net="alex", verbose=False).eval())
