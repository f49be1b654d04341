"""Pictures for the notebooks: small, crisp grids of 32x32 images (nearest-neighbour upscaling)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .images import to_uint8

# Figures are drawn at DPI dots per inch: a grid at the default width of 6 inches is about 660 pixels wide, so
# 32x32 images stay legible in a saved notebook.
DPI = 110

# A fixed colour per mask class, for drawing segmentation masks.
MASK_COLOURS = np.array([(0, 0, 0), (240, 190, 150), (120, 70, 30), (60, 160, 255), (30, 90, 220),
                         (220, 40, 60), (250, 130, 20), (160, 230, 90), (250, 250, 250), (170, 60, 200)], np.uint8)


def mask_to_rgb(masks: torch.Tensor) -> torch.Tensor:
    """(B, H, W) class indices -> (B, 3, H, W) images in [-1, 1] with MASK_COLOURS."""
    rgb = torch.from_numpy(MASK_COLOURS[masks.cpu().numpy()]).permute(0, 3, 1, 2).float()
    return rgb / 127.5 - 1


def grid_array(images: torch.Tensor, nrow: int = 8, pad: int = 1, scale: int = 1) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> one uint8 (H', W', 3) mosaic with `nrow` images per row."""
    x = to_uint8(images)
    B, H, W, _ = x.shape
    ncol = min(nrow, B)
    rows = (B + ncol - 1) // ncol
    out = np.full((rows * (H + pad) + pad, ncol * (W + pad) + pad, 3), 255, np.uint8)
    for i in range(B):
        r, c = divmod(i, ncol)
        out[pad + r * (H + pad): pad + r * (H + pad) + H, pad + c * (W + pad): pad + c * (W + pad) + W] = x[i]
    return out.repeat(scale, 0).repeat(scale, 1) if scale > 1 else out


def grid(images: torch.Tensor, nrow: int = 8, title: Optional[str] = None, ax=None, width: float = 6.0):
    """Show a grid of images with matplotlib; returns the axes."""
    import matplotlib.pyplot as plt
    arr = grid_array(images, nrow)
    if ax is None:
        _, ax = plt.subplots(figsize=(width, width * arr.shape[0] / arr.shape[1]), dpi=DPI)
    ax.imshow(arr, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def rows(named: Sequence, nrow: int = 8, width: float = 6.0):
    """Several labelled grids stacked: named = [(label, images), ...]. Returns the figure."""
    import matplotlib.pyplot as plt
    arrays = [grid_array(x, nrow) for _, x in named]
    heights = [a.shape[0] for a in arrays]
    figsize = (width, width * sum(heights) / arrays[0].shape[1] + 0.3 * len(named))
    fig, axes = plt.subplots(len(named), 1, dpi=DPI, figsize=figsize, gridspec_kw={"height_ratios": heights},
                             squeeze=False)
    for ax, (label, _), arr in zip(axes[:, 0], named, arrays):
        ax.imshow(arr, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(label, fontsize=9, loc="left")
    fig.tight_layout()
    return fig
