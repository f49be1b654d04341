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

import numpy as np
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


def psnr(a, b) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, (B,), for images in [-1, 1] (scikit-image's implementation on
    [0, 1]); identical images give inf."""
    from skimage.metrics import peak_signal_noise_ratio
    x, y = _pairs(a, b)
    with np.errstate(divide="ignore"):
        return torch.tensor([peak_signal_noise_ratio(u, v, data_range=1.0) for u, v in zip(x, y)])


def ssim(a, b) -> torch.Tensor:
    """Structural similarity per image, (B,), by scikit-image (Gaussian-weighted, as Wang et al. 2004)."""
    from skimage.metrics import structural_similarity
    x, y = _pairs(a, b)
    return torch.tensor([structural_similarity(u, v, data_range=1.0, channel_axis=-1, gaussian_weights=True,
                                               sigma=1.5, use_sample_covariance=False) for u, v in zip(x, y)])


def _pairs(a, b):
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    size = a.shape[-1] if isinstance(a, torch.Tensor) else 32
    clamp = lambda x: x.clamp(-1, 1) if isinstance(x, torch.Tensor) else x   # reconstructions overshoot a little
    a, b = to_tensor(clamp(a), size=size), to_tensor(clamp(b), size=size)
    to01 = lambda x: ((x.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).double().cpu().numpy()
    return to01(a), to01(b)
